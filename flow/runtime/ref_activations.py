"""Activation reference layers: hls4ml's table activations (sigmoid, tanh, softmax) and hard
activations (hard_sigmoid, hard_tanh) on integer codes, as ``nnet_utils/nnet_activation.h``
(hls4ml 1.3.0) computes them for io_parallel.

Each layer stores its lookup tables as codes (filled by hls4ml's own C++ at export, see
``flow/export/tables.py``) with the table parameters; ``forward`` reproduces the index computation,
the lookups and every cast. numpy only (runs on the board).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .fixed import FixedType
from .ref_layers import RefLayer, register_kind


def index_bits(size: int) -> int:
    """hls4ml's ceillog2 (nnet_helpers.h): the address bits of a table of ``size`` entries."""
    return 1 if size <= 2 else 1 + index_bits((size + 1) // 2)


def _trunc_div(num: np.ndarray, den: int) -> np.ndarray:
    """Integer division rounding toward zero (C's, and ap_fixed's sdiv)."""
    q = np.abs(num) // den
    return np.where(num < 0, -q, q)


def top_bits(codes: np.ndarray, t: FixedType, size: int) -> np.ndarray:
    """softmax_idx_from_real_val: the top ceillog2(size) bits of the raw (two's complement) code."""
    n = index_bits(size)
    if n > t.width:
        raise ValueError(f'a {size}-entry table needs {n} address bits, more than {t.hls()} has')
    raw = np.asarray(codes, dtype=np.int64) & ((1 << t.width) - 1)
    return raw >> (t.width - n)


@dataclass
class _LookupTable(RefLayer):
    """nnet::sigmoid / nnet::tanh: ``table[clip(int(x * N / RANGE) + N / 2, 0, N - 1)]`` cast to the
    result type, where ``int()`` truncates toward zero (ap_fixed division, then C conversion)
    and the table holds f((i - N/2) * RANGE / N) in ``table_type``."""

    RANGE = 16  # the table covers [-RANGE/2, RANGE/2)
    elementwise = True
    table_size: int = 1024
    table_type: FixedType = None
    table: np.ndarray = field(default=None, repr=False)

    def index(self, x: np.ndarray, in_type: FixedType) -> np.ndarray:
        n = self.table_size
        num = np.asarray(x, dtype=np.int64) * n
        den = self.RANGE
        if in_type.frac >= 0:
            den <<= in_type.frac
        else:
            num = num << -in_type.frac
        return np.clip(_trunc_div(num, den) + self.RANGE // 2 * n // self.RANGE, 0, n - 1)

    def forward(self, x, in_type):
        return self.out_type.from_codes(self.table[self.index(x, in_type)], self.table_type.frac)

    def scalars(self):
        return {'table_size': self.table_size, 'table_type': self.table_type.to_dict()}

    def arrays(self):
        return {'table': self.table}

    def hls_attrs(self):
        return {'table_size': self.table_size, 'table_t': self.table_type}

    def inexact_in_float(self) -> str:
        half = self.RANGE // 2
        return (f'{self.kind} is a {self.table_size}-entry {self.table_type.hls()} lookup table over '
                f'[-{half}, {half}) in hls4ml, not the float function')


@register_kind
@dataclass
class Sigmoid(_LookupTable):
    kind = 'sigmoid'
    hls_activation = 'sigmoid'
    RANGE = 16


@register_kind
@dataclass
class Tanh(_LookupTable):
    kind = 'tanh'
    hls_activation = 'tanh'
    RANGE = 8


@register_kind
@dataclass
class HardSigmoid(RefLayer):
    """nnet::hard_sigmoid: clip(slope * x + shift, 0, 1) in full precision, cast to the result
    type (exact by construction). ``slope``/``shift`` are codes of ``slope_type``/``shift_type``."""

    kind = 'hard_sigmoid'
    hls_activation = 'hard_sigmoid'
    elementwise = True
    slope: int = 0
    slope_type: FixedType = None
    shift: int = 0
    shift_type: FixedType = None

    def _clipped(self, x, in_type):
        f = self.slope_type.frac + in_type.frac
        frac = max(f, self.shift_type.frac, 0)
        v = (np.asarray(x, dtype=np.int64) * self.slope << (frac - f)) + (self.shift << (frac - self.shift_type.frac))
        return np.clip(v, 0, 1 << frac), frac

    def forward(self, x, in_type):
        v, frac = self._clipped(x, in_type)
        return self.out_type.from_codes(v, frac)

    def scalars(self):
        return {'slope': int(self.slope), 'slope_type': self.slope_type.to_dict(),
                'shift': int(self.shift), 'shift_type': self.shift_type.to_dict()}

    def hls_constants(self):
        return {'slope': (self.slope, self.slope_type), 'shift': (self.shift, self.shift_type)}

    def _rtl_clipped(self, x, rtl):
        """clip(slope * x + shift, 0, 1), exact (``_clipped`` on da4ml values)."""
        v = x * rtl.values(self.slope, self.slope_type.frac) + rtl.values(self.shift, self.shift_type.frac)
        return np.minimum(np.maximum(v, 0.0), 1.0)

    def rtl_logic(self, x, in_type, rtl):
        return rtl.cast(self._rtl_clipped(x, rtl), self.out_type, f'layer {self.name!r}')

    def inexact_in_float(self) -> str | None:
        slope = self.slope * 2.0**-self.slope_type.frac
        shift = self.shift * 2.0**-self.shift_type.frac
        if slope == 0.5 and shift == 0.5:
            return None  # QKeras' hard sigmoid: 0.5 * x + 0.5 is exact in float32 too
        return (f'{self.kind} uses slope {slope!r} (stored as {self.slope_type.hls()}) and shift {shift!r}; '
                'the float model computes with its own slope (Keras: 0.2)')


@register_kind
@dataclass
class HardTanh(HardSigmoid):
    """nnet::hard_tanh: 2 * hard_sigmoid(x) - 1, cast to the result type."""

    kind = 'hard_tanh'
    hls_activation = 'hard_tanh'

    def forward(self, x, in_type):
        v, frac = self._clipped(x, in_type)
        return self.out_type.from_codes(2 * v - (1 << frac), frac)

    def rtl_logic(self, x, in_type, rtl):
        return rtl.cast(self._rtl_clipped(x, rtl) * 2.0 - 1.0, self.out_type, f'layer {self.name!r}')


@register_kind
@dataclass
class BinaryTanh(RefLayer):
    """nnet::binary_tanh: x >= 0 ? 1 : -1 (an ap_int<2>), cast to the result type: QKeras' binary()
    activation (0 maps to +1, alpha 1). ``raw_input``: QKeras returns x + (-x + sign) on the input
    itself (alpha given) rather than on tanh(x) (alpha None), in float32."""

    kind = 'binary_tanh'
    elementwise = True
    hls_activation = 'binary_tanh'
    rtl_unbuilt = 'binary_tanh has no da4ml form here (a comparison, not a product or a cast); use rtl: false'
    hls_merged_after = {'batchnorm': "hls4ml merges a BatchNormalization followed by a binary activation into its "
                                     'BatchNormalizationQuantizedTanh, whose 0/1 output (ap_uint<1>) is not the -1/+1 '
                                     'QKeras computes; put another layer between them (e.g. fold the normalization '
                                     'into the dense layer before it)'}
    raw_input: bool = False

    def forward(self, x, in_type):
        return self.out_type.from_codes(np.where(np.asarray(x) >= 0, 1, -1), 0)

    def qkeras_inexact(self, in_type):
        # -x + s (s = +-1) is exact in float32 while x and 1 share one 24-bit significand; then so is x + (-x + s)
        span = max(in_type.integer, 1) + max(in_type.frac, 0) + 1
        if self.raw_input and span > 24:
            return (f'QKeras computes x + (-x + sign(x)) in float32, which rounds for {in_type.hls()} inputs '
                    f'({span} bits of span, more than float32\'s 24)')
        return None

    def scalars(self):
        return {'raw_input': self.raw_input}


def _tree_sum(cols: list[np.ndarray], t: FixedType) -> np.ndarray:
    """nnet::reduce with Op_add<accum_t>: a balanced tree, each addition cast to ``t``."""
    n = len(cols)
    if n == 1:
        return cols[0]
    if n == 2:
        return t.from_codes(cols[0] + cols[1], t.frac)
    left = 1 << ((n - 1).bit_length() - 1)  # pow2(floorlog2(n - 1))
    return t.from_codes(_tree_sum(cols[:left], t) + _tree_sum(cols[left:], t), t.frac)


@register_kind
@dataclass
class Softmax(RefLayer):
    """nnet::softmax_stable (hls4ml's default softmax implementation), for one flat slice:

    d_i = (inp_norm_t)(max(x) - x_i); e_i = (accum_t) exp_table[top bits of d_i];
    s = (inv_inp_t) tree-sum of e_i in accum_t; r = inv_table[top bits of s];
    y_i = (result_t)(e_i * r). exp_table[k] = exp(-value of index k), inv_table[k] = 1 / value."""

    kind = 'softmax'
    hls_activation = 'softmax'
    implementation: str = 'stable'
    exp_table_size: int = 1024
    inv_table_size: int = 1024
    exp_table_type: FixedType = None
    inv_table_type: FixedType = None
    accum_type: FixedType = None
    inv_inp_type: FixedType = None
    inp_norm_type: FixedType = None
    exp_table: np.ndarray = field(default=None, repr=False)
    inv_table: np.ndarray = field(default=None, repr=False)

    TYPES = ('exp_table_type', 'inv_table_type', 'accum_type', 'inv_inp_type', 'inp_norm_type')

    def forward(self, x, in_type):
        if self.implementation != 'stable':
            raise ValueError(f'{self.name}: softmax implementation {self.implementation!r} is not modelled; use stable')
        x = np.asarray(x, dtype=np.int64)
        acc = self.accum_type
        d = self.inp_norm_type.from_codes(x.max(axis=1, keepdims=True) - x, in_type.frac)
        e = acc.from_codes(self.exp_table[top_bits(d, self.inp_norm_type, self.exp_table_size)], self.exp_table_type.frac)
        s = _tree_sum([e[:, i] for i in range(e.shape[1])], acc)
        s = self.inv_inp_type.from_codes(s, acc.frac)
        r = self.inv_table[top_bits(s, self.inv_inp_type, self.inv_table_size)]
        return self.out_type.from_codes(e * r[:, None], acc.frac + self.inv_table_type.frac)

    def scalars(self):
        return {'implementation': self.implementation, 'exp_table_size': self.exp_table_size,
                'inv_table_size': self.inv_table_size, **{k: getattr(self, k).to_dict() for k in self.TYPES}}

    def arrays(self):
        return {'exp_table': self.exp_table, 'inv_table': self.inv_table}

    def hls_attrs(self):
        # 'activation': hls4ml names a Keras Softmax layer's config struct 'Softmax_config<i>' but calls
        # 'softmax_config<i>' (1.3.0; the C simulation does not compile): the lower-case name fixes both
        return {'implementation': self.implementation, 'exp_table_size': self.exp_table_size,
                'inv_table_size': self.inv_table_size, 'exp_table_t': self.exp_table_type,
                'inv_table_t': self.inv_table_type, 'accum_t': self.accum_type, 'inv_inp_t': self.inv_inp_type,
                'inp_norm_t': self.inp_norm_type, 'activation': 'softmax', 'exp_scale': 1.0, 'skip': False}

    def inexact_in_float(self) -> str:
        return (f'softmax looks exp up in a {self.exp_table_size}-entry and 1/x in a {self.inv_table_size}-entry '
                f'{self.inv_table_type.hls()} table in hls4ml, not the float function')
