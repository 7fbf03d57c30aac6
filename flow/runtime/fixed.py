"""Fixed-point types as integer codes, with the rounding and overflow modes of Xilinx ap_fixed.

A value is ``code * 2**-frac``. Every tensor in the reference is an int64 array of codes plus
its ``FixedType``; conversions between types reproduce ap_fixed's quantization (rounding) and
overflow (saturation / wrap) modes exactly. numpy only: this module also runs on the board.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import numpy as np

ROUNDING = ('TRN', 'TRN_ZERO', 'RND', 'RND_ZERO', 'RND_INF', 'RND_MIN_INF', 'RND_CONV')
OVERFLOW = ('WRAP', 'SAT', 'SAT_SYM', 'SAT_ZERO')
MAX_WIDTH = 62  # int64 codes with headroom for one addition


@dataclass(frozen=True)
class FixedType:
    """ap_fixed<width, integer, AP_<rounding>, AP_<overflow>> (or ap_ufixed when not signed)."""

    width: int
    integer: int
    signed: bool = True
    rounding: str = 'TRN'
    overflow: str = 'WRAP'

    def __post_init__(self):
        if not 1 <= self.width <= MAX_WIDTH:
            raise ValueError(f'fixed-point width {self.width} outside 1..{MAX_WIDTH}')
        if self.rounding not in ROUNDING:
            raise ValueError(f'rounding mode {self.rounding!r} unknown; use one of {ROUNDING}')
        if self.overflow not in OVERFLOW:
            raise ValueError(f'overflow mode {self.overflow!r} unknown; use one of {OVERFLOW}')

    @property
    def frac(self) -> int:
        return self.width - self.integer

    @property
    def min_code(self) -> int:
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def max_code(self) -> int:
        return (1 << (self.width - 1)) - 1 if self.signed else (1 << self.width) - 1

    def hls(self) -> str:
        """The C++ type name, as hls4ml's precision strings spell it."""
        base = 'ap_fixed' if self.signed else 'ap_ufixed'
        if self.rounding == 'TRN' and self.overflow == 'WRAP':
            return f'{base}<{self.width},{self.integer}>'
        return f'{base}<{self.width},{self.integer},AP_{self.rounding},AP_{self.overflow}>'

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> FixedType:
        return cls(**d)

    @classmethod
    def parse(cls, text: str) -> FixedType:
        """Parse 'ap_fixed<8,3>', 'ap_ufixed<8,0,AP_RND_CONV,AP_SAT>', 'fixed<8,3,RND,SAT>'."""
        m = re.fullmatch(r'\s*(ap_)?(u?)fixed<\s*(\d+)\s*,\s*(-?\d+)\s*(?:,([^,>]+))?(?:,([^,>]+))?(?:,\s*\d+)?\s*>\s*', text)
        if not m:
            raise ValueError(f'cannot parse fixed-point type {text!r}; expected e.g. ap_fixed<16,6>')
        rnd = (m.group(5) or 'TRN').strip().removeprefix('AP_')
        ovf = (m.group(6) or 'WRAP').strip().removeprefix('AP_')
        return cls(int(m.group(3)), int(m.group(4)), signed=not m.group(2), rounding=rnd, overflow=ovf)

    # --- conversions -------------------------------------------------------------------------

    def from_codes(self, codes, frac: int) -> np.ndarray:
        """Convert integer codes with ``frac`` fractional bits to this type, like an ap_fixed
        assignment: quantize to ``self.frac`` bits with the rounding mode, then apply overflow."""
        c = np.asarray(codes, dtype=np.int64)
        shift = frac - self.frac
        if shift > 0:
            c = _round_shift(c, shift, self.rounding)
        elif shift < 0:
            if np.any(np.abs(c) >= (1 << (MAX_WIDTH + shift))):
                raise OverflowError('left shift would overflow int64 codes')
            c = c << (-shift)
        return self._overflow(c)

    def _overflow(self, c: np.ndarray) -> np.ndarray:
        lo, hi = self.min_code, self.max_code
        if self.overflow == 'WRAP':
            span = 1 << self.width
            c = c & (span - 1)
            if self.signed:
                c = np.where(c > hi, c - span, c)
            return c
        if self.overflow == 'SAT_SYM' and self.signed and self.width > 1:
            lo = -hi  # symmetric range: even the minimum code becomes -max (ap_fixed<1,..> excepted, as measured)
        over, under = c > hi, c < lo
        if self.overflow == 'SAT_ZERO':
            return np.where(over | under, 0, c)
        return np.where(over, hi, np.where(under, lo, c))

    def from_float_exact(self, values, what: str = 'value') -> np.ndarray:
        """Codes of float values that must already lie on this type's grid and range (no rounding).

        Raises with the first offending element: an off-grid float would make every later
        comparison meaningless (STACK_NOTES: off-grid inputs break QKeras/C-sim agreement)."""
        v = np.asarray(values, dtype=np.float64)
        scaled = v * float(2**self.frac)
        codes = np.rint(scaled)
        bad = (codes != scaled) | (codes < self.min_code) | (codes > self.max_code)
        if np.any(bad):
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f'{what} {v[idx]!r} at index {idx} is not representable in {self.hls()} '
                f'(grid step 2^-{self.frac}, range [{self.to_float(self.min_code)}, {self.to_float(self.max_code)}])'
            )
        return codes.astype(np.int64)

    def quantize_float(self, values) -> np.ndarray:
        """Codes of arbitrary floats with this type's rounding and overflow (for preparing inputs)."""
        v = np.asarray(values, dtype=np.float64)
        extra = 16  # sub-LSB bits kept before the mode-correct rounding step
        fine = np.floor(v * float(2 ** (self.frac + extra))).astype(np.int64)
        return self.from_codes(fine, self.frac + extra)

    def holds(self, bound: int, frac: int) -> bool:
        """Whether every multiple of 2^-frac with magnitude <= bound * 2^-frac is a value of this type."""
        if self.frac < frac:
            return bound == 0
        scaled = bound << (self.frac - frac)
        return scaled <= self.max_code and -scaled >= self.min_code

    def to_float(self, codes) -> np.ndarray:
        return np.asarray(codes, dtype=np.float64) * 2.0**-self.frac


def _round_shift(c: np.ndarray, s: int, mode: str) -> np.ndarray:
    """Divide codes by 2**s with ap_fixed's quantization mode."""
    floor = c >> s  # arithmetic shift = floor division
    rem = c - (floor << s)  # 0 <= rem < 2**s
    if mode == 'TRN':
        return floor
    if mode == 'TRN_ZERO':
        return np.where((c < 0) & (rem != 0), floor + 1, floor)
    half = 1 << (s - 1)
    above, tie = rem > half, rem == half
    if mode == 'RND':  # ties toward +inf
        up = above | tie
    elif mode == 'RND_MIN_INF':
        up = above
    elif mode == 'RND_ZERO':
        up = above | (tie & (c < 0))
    elif mode == 'RND_INF':
        up = above | (tie & (c >= 0))
    else:  # RND_CONV: ties to even
        up = above | (tie & ((floor & 1) == 1))
    return floor + up.astype(np.int64)
