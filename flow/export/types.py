"""Exact fixed-point types: the narrowest type that holds a set of values or sums exactly."""

from __future__ import annotations

import numpy as np

from flow.export.registry import UnsupportedModel
from flow.runtime.fixed import MAX_WIDTH, FixedType
from flow.runtime.ref_layers import sum_bound


def exact_accum_type(w_codes, w_t: FixedType, b_codes, b_t: FixedType, in_t: FixedType) -> FixedType:
    """Smallest signed accumulator that holds every partial sum exactly, for these weights.

    Tighter than hls4ml's 'auto' (which assumes worst-case weights) and never wraps."""
    bound, frac = sum_bound(w_codes, w_t, b_codes, b_t, in_t)
    width = bound.bit_length() + 1
    return FixedType(width, width - frac, signed=True)


def _exact_type(bound: int, frac: int, where: str, fix: str) -> FixedType:
    """The narrowest signed type holding every multiple of 2^-frac up to bound LSBs."""
    width = bound.bit_length() + 1
    if width > MAX_WIDTH:
        raise UnsupportedModel(f'{where} needs {width} bits exactly, more than the {MAX_WIDTH}-bit codes the reference '
                               f'computes with; {fix}')
    return FixedType(width, width - frac)


def exact_fixed_type(values, what: str, fix: str) -> tuple[FixedType, np.ndarray]:
    """The narrowest signed fixed-point type holding every (binary floating-point) value exactly,
    and the values' codes in it."""
    ratios = [float(v).as_integer_ratio() for v in np.ravel(values)]
    frac = max((d.bit_length() - 1 for _, d in ratios), default=0)
    codes = [n << (frac - (d.bit_length() - 1)) for n, d in ratios]
    width = max(max((abs(c).bit_length() for c in codes), default=0) + 1, 2)
    if width > MAX_WIDTH:
        raise UnsupportedModel(f'{what}: holding its values exactly takes {width} bits, more than the {MAX_WIDTH}-bit codes '
                               f'the reference computes with; {fix}')
    return FixedType(width, width - frac), np.array(codes, dtype=np.int64).reshape(np.shape(values))
