"""Unit costs of FPGA memories, shared by the kinds' estimates (``RefLayer.engine_estimate``) and
``flow/stages/estimate.py``. Plain arithmetic; host side (not shipped to the board)."""

from __future__ import annotations

import math

import numpy as np

RAMB18_SHAPES = [(16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36)]  # (depth, width)


def bram18(width_bits: int, depth: int) -> int:
    """RAMB18s for a ROM of ``depth`` words of ``width_bits``: the cheapest tiling by the RAMB18 aspect
    ratios (0 for a single word: a constant in logic)."""
    if depth <= 1 or width_bits == 0:
        return 0
    return min(math.ceil(depth / d) * math.ceil(width_bits / w) for d, w in RAMB18_SHAPES)


def table_bits(table) -> int:
    """A stored table of unsigned integers, each at the width of the largest (at least 1 bit),
    as the hls4ml extensions type them."""
    table = np.asarray(table)
    return table.size * max(1, int(table.max(initial=0)).bit_length())
