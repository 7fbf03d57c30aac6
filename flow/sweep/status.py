"""Which of a sweep point's exit codes (build-bitstream's, flow/infra/errors.py) count as done."""

from flow.infra.errors import EXIT_OK, EXIT_TOOL_MISSING

DONE_CODES = (EXIT_OK, EXIT_TOOL_MISSING)  # 3: every step that needs no missing tool is done
