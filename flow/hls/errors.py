"""The error of a conversion whose result differs from the integer reference."""


class ConversionMismatch(RuntimeError):
    """hls4ml built something other than the reference: a node, type, weight or generated kernel."""
