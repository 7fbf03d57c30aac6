"""The flow's error classes, by who has to act (and so by exit code).

``BadInput`` (exit 2): the user's model, data, config or build folder; the message names the problem
and the fix. Everything else that a step raises is a failure of the flow or a tool (exit 1).
"""

from __future__ import annotations

# build-bitstream's exit codes (a sweep records each point's)
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_TOOL_MISSING, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class BadInput(ValueError):
    """A user error: bad model, data, config, arguments or build folder (exit code 2)."""
