"""A sweep point's exit codes: the ones build-bitstream gives (flow/cli.py), and which count as done."""

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_TOOL_MISSING, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
DONE_CODES = (EXIT_OK, EXIT_TOOL_MISSING)  # 3: every step that needs no missing tool is done
