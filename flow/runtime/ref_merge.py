"""Merges of two tensors (skip connections): hls4ml 1.3.0's Merge and Concatenate, on codes.

nnet_merge.h (io_parallel) and nnet_merge_stream.h (io_stream) compute ``res[i] = a[i] op b[i]``
on ap_fixed values, whose +, - and * give the full-precision result, so the op is exact
(``average``: ``(a + b) * ap_ufixed<1, 0>(0.5)``, exact too; ``maximum``/``minimum`` pick one input),
and the one rounding is the assignment to the result type, with its rounding and overflow.
Concatenate assigns every element to the result type the same way. numpy only (runs on the board).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fixed import MAX_WIDTH, FixedType
from .ref_layers import RefLayer, register_kind

FLOAT32_EXACT = 2**24  # float32 holds every integer up to 2^24: TensorFlow's merge is exact below it

# op -> (the exact result on codes aligned to one fraction, fraction bits it adds)
MERGE_OPS = {
    'add': (lambda a, b: a + b, 0),
    'subtract': (lambda a, b: a - b, 0),
    'average': (lambda a, b: a + b, 1),  # (a + b) * 0.5: the same codes, one more fraction bit
    'maximum': (np.maximum, 0),
    'minimum': (np.minimum, 0),
}
MULTIPLY = 'multiply'  # codes multiply as they are: the fractions add


def _aligned(types) -> int:
    return max(t.frac for t in types)


def result_range(op: str, ta: FixedType, tb: FixedType) -> tuple[int, int, int]:
    """(lowest, highest, frac): every exact result of ``op`` on inputs of these types is a code
    between lowest and highest at ``frac`` fraction bits."""
    if op == MULTIPLY:
        corners = [a * b for a in (ta.min_code, ta.max_code) for b in (tb.min_code, tb.max_code)]
        return min(corners), max(corners), ta.frac + tb.frac
    f = _aligned((ta, tb))
    (alo, ahi), (blo, bhi) = ((t.min_code << (f - t.frac), t.max_code << (f - t.frac)) for t in (ta, tb))
    lo, hi = {'add': (alo + blo, ahi + bhi), 'average': (alo + blo, ahi + bhi), 'subtract': (alo - bhi, ahi - blo),
              'maximum': (max(alo, blo), max(ahi, bhi)), 'minimum': (min(alo, blo), min(ahi, bhi))}[op]
    return lo, hi, f + MERGE_OPS[op][1]


def range_type(lo: int, hi: int, frac: int) -> FixedType:
    """The narrowest type holding every code in [lo, hi] at ``frac`` fraction bits (unsigned when lo >= 0)."""
    signed = lo < 0
    width = max(hi.bit_length(), (-lo - 1).bit_length() if signed else 0) + signed
    return FixedType(max(width, 1), max(width, 1) - frac, signed)


def holds_range(t: FixedType, lo: int, hi: int, frac: int) -> bool:
    if t.frac < frac:
        return False
    return t.min_code <= lo << (t.frac - frac) and hi << (t.frac - frac) <= t.max_code


@register_kind
@dataclass
class Merge(RefLayer):
    """hls4ml's Merge of two equal-shaped tensors: ``(res_T)(a op b)`` for ``op`` in MERGE_OPS or multiply."""

    kind = 'merge'
    elementwise = True
    rtl_unbuilt = 'the RTL level builds chains only (a merge reads two layers)'
    op: str = 'add'

    def check(self, in_type):
        ta, tb = in_type
        lo, hi, frac = result_range(self.op, ta, tb)
        if max(hi, -lo).bit_length() + 1 > MAX_WIDTH:
            raise ValueError(f"layer '{self.name}' ({self.op}): the exact result of {ta.hls()} and {tb.hls()} needs more "
                             f'than the {MAX_WIDTH}-bit codes the reference computes with; give its inputs narrower types')

    def forward(self, x, in_type):
        (a, b), (ta, tb) = x, in_type
        a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
        if self.op == MULTIPLY:
            return self.out_type.from_codes(a * b, ta.frac + tb.frac)
        f = _aligned((ta, tb))
        fn, extra = MERGE_OPS[self.op]
        return self.out_type.from_codes(fn(a << (f - ta.frac), b << (f - tb.frac)), f + extra)

    def qkeras_inexact(self, in_type):
        lo, hi, frac = result_range(self.op, *in_type)
        if not holds_range(self.out_type, lo, hi, frac):
            return (f'its result type {self.out_type.hls()} rounds or saturates the exact {self.op} '
                    f'(which needs {range_type(lo, hi, frac).hls()}), a cast TensorFlow does not do')
        if max(hi, -lo) > FLOAT32_EXACT:
            return f'its results reach {max(hi, -lo)} LSBs, beyond the 2^24 that float32 (TensorFlow) holds exactly'
        return None

    def scalars(self):
        return {'op': self.op}


@register_kind
@dataclass
class Concatenate(RefLayer):
    """hls4ml's Concatenate of two tensors along ``axis`` (numpy's, over (samples, ...)): every
    element assigned to the result type."""

    kind = 'concatenate'
    input_rank = None
    rtl_unbuilt = Merge.rtl_unbuilt
    axis: int = -1

    def forward(self, x, in_type):
        parts = [self.out_type.from_codes(v, t.frac) for v, t in zip(x, in_type)]
        return np.concatenate(parts, axis=self.axis)

    def qkeras_inexact(self, in_type):
        for t in in_type:
            if not holds_range(self.out_type, t.min_code, t.max_code, t.frac):
                return f'its result type {self.out_type.hls()} does not hold every value of its input type {t.hls()}'
        return None

    def scalars(self):
        return {'axis': self.axis}
