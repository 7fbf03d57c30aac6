"""Integer reference layers: the arithmetic of the generated hardware, on integer codes.

Each layer kind is one class registered under ``kind``; a sparse method adds its own module
(see ``ref_block_sparse.py``) instead of branching here. numpy only (runs on the board).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .fixed import FixedType

LAYER_KINDS: dict[str, type[RefLayer]] = {}
IO_TYPES = ('io_parallel', 'io_stream')  # hls4ml's IOTypes a layer can be built in


def register_kind(cls):
    LAYER_KINDS[cls.kind] = cls
    return cls


@dataclass
class RefLayer:
    """One layer. ``name`` is the hls4ml layer name, so traces can be compared by name."""

    kind = 'base'
    elementwise = False  # True: acts on each element alone, so any input shape is fine
    input_rank = 1  # the per-sample input rank it takes: 1 flat vectors, 3 images (H, W, C); None any
    io_types = IO_TYPES  # the hls4ml io_types it is built in
    name: str
    out_type: FixedType

    def forward(self, x: np.ndarray, in_type: FixedType) -> np.ndarray:
        raise NotImplementedError

    def check(self, in_type: FixedType) -> None:
        """Raise ValueError if this layer's types cannot be computed exactly from ``in_type``."""

    def locate(self, element: tuple) -> str:
        """Where output element ``element`` (its index in one sample's output) sits, in words, for
        mismatch reports; '' when the index says it all."""
        return ''

    def storage(self) -> dict | None:
        """What the hardware stores for this layer's weights (flow/stages/footprint.py), None for a layer
        without a kernel: shape (n_in, n_out), kept_weights, and the bits of the weights, of their
        index (or codewords) and of the biases. Each kind counts its own format."""
        return None

    # serialization: scalars/types go to JSON, arrays to npz (prefixed with the layer name)
    def scalars(self) -> dict:
        return {}

    def arrays(self) -> dict[str, np.ndarray]:
        return {}

    def to_json(self) -> dict:
        return {'kind': self.kind, 'name': self.name, 'out_type': self.out_type.to_dict(), **self.scalars()}

    @classmethod
    def from_json(cls, d: dict, arrays: dict[str, np.ndarray]) -> RefLayer:
        d = dict(d)
        d.pop('kind')
        types = {k: FixedType.from_dict(v) for k, v in d.items() if k.endswith('_type')}
        d.update(types)
        return cls(**d, **arrays)


@register_kind
@dataclass
class Input(RefLayer):
    """The input type; forward checks the codes are in range (the caller quantized them)."""

    kind = 'input'
    shape: tuple = ()

    def forward(self, x, in_type):
        x = np.asarray(x, dtype=np.int64)
        if x.shape[1:] != tuple(self.shape) and x.ndim == 2 and x.shape[1] == int(np.prod(self.shape)):
            x = x.reshape(len(x), *self.shape)  # flat rows (golden vectors, the C simulation's arrays)
        if x.shape[1:] != tuple(self.shape):
            raise ValueError(f'input shape {x.shape[1:]} does not match the model input {tuple(self.shape)}')
        t = self.out_type
        if x.size and (x.min() < t.min_code or x.max() > t.max_code):
            raise ValueError(f'input codes outside {t.hls()} range [{t.min_code}, {t.max_code}]')
        return x

    def scalars(self):
        return {'shape': list(self.shape)}


def sum_bound(w_codes, w_t: FixedType, b_codes, b_t: FixedType, in_t: FixedType) -> tuple[int, int]:
    """(bound, frac): every partial sum of bias + x*w, in any order, is a multiple of 2^-frac
    with magnitude <= bound * 2^-frac, for every input of ``in_t`` and these weights."""
    frac = max(in_t.frac + w_t.frac, b_t.frac)
    x_max = max(abs(in_t.min_code), abs(in_t.max_code))
    w = np.abs(np.asarray(w_codes, dtype=np.int64).reshape(-1, np.shape(b_codes)[0]))
    bound = (w.sum(axis=0) * x_max) << (frac - in_t.frac - w_t.frac)
    bound = bound + (np.abs(np.asarray(b_codes, dtype=np.int64)) << (frac - b_t.frac))
    return int(bound.max()), frac


@dataclass
class _Accumulating(RefLayer):
    """Shared by dense kernels: bias init, exact product sum, accumulator overflow, result cast."""

    weight_type: FixedType = None
    bias_type: FixedType = None
    accum_type: FixedType = None
    bias: np.ndarray = field(default=None, repr=False)

    def _check_accum(self, in_type: FixedType):
        pf = in_type.frac + self.weight_type.frac
        if self.accum_type.frac < pf or self.accum_type.frac < self.bias_type.frac:
            # Per-term rounding makes the result depend on the hardware's summation order.
            raise ValueError(
                f"layer '{self.name}': accumulator {self.accum_type.hls()} has fewer fractional bits than the "
                f'products ({pf}) or the bias ({self.bias_type.frac}); give its accum at least {max(pf, self.bias_type.frac)}'
            )
        if self.accum_type.overflow != 'WRAP':
            raise ValueError(f"layer '{self.name}': a saturating accumulator depends on summation order; use WRAP for its accum")
        return pf

    check = _check_accum

    def _finish(self, products_sum: np.ndarray, pf: int) -> np.ndarray:
        acc_t = self.accum_type
        acc = products_sum << (acc_t.frac - pf)
        acc = acc + (self.bias.astype(np.int64) << (acc_t.frac - self.bias_type.frac))
        acc = acc_t.from_codes(acc, acc_t.frac)  # wrap: modular sums are order independent
        return self.out_type.from_codes(acc, acc_t.frac)

    def sum_bound(self, in_type: FixedType) -> tuple[int, int]:
        return sum_bound(self.dense_weight(), self.weight_type, self.bias, self.bias_type, in_type)

    def float32_bound(self, in_type: FixedType) -> int:
        """The largest magnitude, in units of its own LSB, of any value QKeras' float32 computation
        of this layer meets (every partial sum: QKeras adds x * w in float32). Exact while <= 2^24."""
        return self.sum_bound(in_type)[0]

    def dense_weight(self) -> np.ndarray:
        """The (n_in, n_out) weight codes, zeros included."""
        raise NotImplementedError

    def scalars(self):
        return {k: getattr(self, k).to_dict() for k in ('weight_type', 'bias_type', 'accum_type')}


@register_kind
@dataclass
class Dense(_Accumulating):
    """hls4ml's own Dense (any strategy): out = cast(bias + sum x*w)."""

    kind = 'dense'
    weight: np.ndarray = field(default=None, repr=False)  # (n_in, n_out) codes

    def forward(self, x, in_type):
        pf = self._check_accum(in_type)
        return self._finish(x @ self.weight.astype(np.int64), pf)

    def arrays(self):
        return {'weight': self.weight, 'bias': self.bias}

    def dense_weight(self):
        return self.weight

    @property
    def weight_code_bits(self) -> int:
        """Bits hls4ml stores per weight."""
        return self.weight_type.width

    def storage(self):
        n_in, n_out = self.weight.shape  # hls4ml's Dense stores every weight, zeros too
        return {'shape': [n_in, n_out], 'kept_weights': n_in * n_out, 'weight_bits': n_in * n_out * self.weight_code_bits,
                'index_bits': 0, 'bias_bits': n_out * self.bias_type.width}

    @property
    def n_in(self):
        return self.weight.shape[0]

    @property
    def n_out(self):
        return self.weight.shape[1]


@register_kind
@dataclass
class ReLU(RefLayer):
    """hls4ml relu: res = x > 0 ? (res_T) x : 0, with res_T's rounding and overflow."""

    kind = 'relu'
    elementwise = True

    def forward(self, x, in_type):
        return self.out_type.from_codes(np.where(x > 0, x, 0), in_type.frac)


@register_kind
@dataclass
class Linear(RefLayer):
    """hls4ml's linear activation (a QKeras ``quantized_bits`` activation): res = (res_T) x, a cast
    with res_T's rounding and overflow."""

    kind = 'linear'
    elementwise = True

    def forward(self, x, in_type):
        return self.out_type.from_codes(x, in_type.frac)


@register_kind
@dataclass
class Flatten(RefLayer):
    """Keras Flatten, hls4ml's Reshape: in io_parallel an alias of its input (no code, no cast)."""

    kind = 'flatten'
    input_rank = None

    def forward(self, x, in_type):
        return np.asarray(x).reshape(len(x), -1)


@register_kind
@dataclass
class DensePo2(Dense):
    """hls4ml's Dense with ``quantized_po2`` weights (nnet::product::weight_exponential): each weight
    is stored as a sign and an ``ap_int<exponent_bits>`` exponent e, and the product is
    ``(r_T) x << e`` with ``r_T = ap_fixed<2 * (exponent_bits + W_x), exponent_bits + W_x>``.
    The codes in ``weight`` are the weights' values on ``weight_type``'s grid; ``check`` refuses an
    input type whose products r_T would truncate or wrap, so the sum is the exact one."""

    kind = 'dense_po2'
    exponent_bits: int = 0

    def product_type(self, in_type: FixedType) -> FixedType:
        w = self.exponent_bits + in_type.width
        return FixedType(2 * w, w)

    def check(self, in_type):
        super().check(in_type)
        r_t = self.product_type(in_type)
        x_mag = max(abs(in_type.min_code), abs(in_type.max_code))
        nonzero = self.weight[self.weight != 0]
        exps = {0} | {int(e) for e in np.unique(np.log2(np.abs(nonzero)).astype(np.int64)) - self.weight_type.frac}
        for e in sorted(exps):
            shift = r_t.frac - in_type.frac + e  # the product's code in r_T is x_code << shift
            if shift < 0 or (x_mag << shift) > r_t.max_code:
                what = 'drops low bits of' if shift < 0 else 'overflows on'
                raise ValueError(
                    f"layer '{self.name}': hls4ml computes x * 2^{e} in {r_t.hls()} (weight_exponential for "
                    f'{self.exponent_bits}-bit exponents and input {in_type.hls()}), which {what} it; '
                    f'use a quantized_po2 with a narrower exponent range or change the previous layer\'s result type'
                )

    @property
    def weight_code_bits(self):
        return 1 + self.exponent_bits  # a sign and an exponent

    def scalars(self):
        return {**super().scalars(), 'exponent_bits': self.exponent_bits}


@register_kind
@dataclass
class BatchNorm(_Accumulating):
    """hls4ml's BatchNormalization (nnet::normalize): res = (res_T)(x * scale + bias) per element,
    product and sum at full precision. ``scale`` holds the codes of ``weight_type`` (hls4ml's
    scale_t), ``bias`` of ``bias_type``; ``accum_type`` (reference only) holds every x * scale + bias
    exactly. ``float_note`` says why TensorFlow's float computation differs from these values."""

    kind = 'batchnorm'
    input_rank = None  # per feature: the last axis (an image's channels)
    scale: np.ndarray = field(default=None, repr=False)
    float_note: str = ''

    def forward(self, x, in_type):
        pf = self._check_accum(in_type)
        return self._finish(np.asarray(x, dtype=np.int64) * self.scale.astype(np.int64), pf)

    def dense_weight(self):
        return np.diag(self.scale)

    def arrays(self):
        return {'scale': self.scale, 'bias': self.bias}

    def scalars(self):
        return {**super().scalars(), 'float_note': self.float_note}

    def inexact_in_float(self) -> str | None:
        return self.float_note or None
