"""Integer reference layers: the arithmetic of the generated hardware, on integer codes.

Each layer kind is one class registered under ``kind``; a sparse method adds its own module
(see ``ref_block_sparse.py``) instead of branching here. numpy only (runs on the board).

A kind also carries its deployment facts, read by the host flow, which iterates over layers and
never switches on a kind (hls4ml's ``_expected_attributes`` and FINN's per-op ``get_exp_cycles``
are the models): the hls4ml strategies and ReuseFactors it takes (``flow/plan.py``), the weight
variables and attributes hls4ml must write (``flow/stages/convert.py``), its template's cost
(``flow/stages/estimate.py``), its time-multiplexed schedule and its da4ml logic (``flow/rtl``).
Methods that need host libraries receive them as arguments, so this package imports nothing
above it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .fixed import FixedType

LAYER_KINDS: dict[str, type[RefLayer]] = {}
IO_TYPES = ('io_parallel', 'io_stream')  # hls4ml's IOTypes a layer can be built in


LATENCY, RESOURCE, DA = 'latency', 'resource', 'distributed_arithmetic'  # hls4ml strategies (config spelling)


@dataclass(frozen=True)
class HlsWeight:
    """A weight variable hls4ml writes for a layer: its values as the reference's codes, the type the
    config gives it and conversion checks (None: an integer table hls4ml sizes itself), or for a
    weight hls4ml stores as a sign and an exponent (quantized_po2) the exponent's width instead."""

    codes: np.ndarray
    type: FixedType | None = None
    exponent_bits: int | None = None


@dataclass(frozen=True)
class ReuseFactors:
    """The ReuseFactors a layer can be built with, and why (for refusals)."""

    values: Sequence[int]
    why: str

    def describe(self) -> str:
        v = self.values
        if isinstance(v, range):
            return f'{v.start} .. {v.stop - 1}' if len(v) else 'none'
        return ', '.join(map(str, v))


def hls4ml_resource_reuse_factors(n_in: int, n_out: int) -> list[int]:
    """The ReuseFactors hls4ml 1.3.0 keeps for its Resource Dense (FPGABackend._validate_reuse_factor;
    any other it silently moves to the closest one). tests/test_plan.py checks it against hls4ml."""
    out = []
    for rf in range(1, n_in * n_out + 1):
        mults = -(-n_in * n_out // min(n_in, rf))
        if ((mults % n_out == 0) or rf >= n_in) and (rf % n_in == 0 or rf < n_in) and (n_in * n_out) % rf == 0:
            out.append(rf)
    return out


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
    hls_activation = None  # str: the activation hls4ml's node must implement, for activation kinds
    strategies = ()  # hls4ml strategies a layer of this kind can be given (flow/plan.py)
    rtl_unbuilt = None  # why the RTL level cannot build this kind, whatever the tools installed
    sequence_input = False  # takes (time steps, features) and runs its product once per step
    line_buffer = False  # a sliding window in io_stream, behind hls4ml's line buffer (``pixels_per_image``)
    hls_dropped_when_last = False  # hls4ml's RemoveFinalReshape drops it when it ends the model
    found = None  # dense kinds: the zero blocks found in a kernel another tool pruned (flow/export/found.py)
    float_weights = None  # dense kinds: how an unquantized layer's float weights were cast (flow/export/float_layers.py)
    # the kinds after which hls4ml merges this layer with the one before into a node of its own, and why that is refused
    hls_merged_after = {}
    name: str
    out_type: FixedType
    # the layers whose outputs it reads (a merge reads two: its ``forward`` then gets tuples of codes and
    # types); () is the layer before it in the model, so a chain stores none
    inputs: tuple = field(default=(), kw_only=True)

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

    def inexact_in_float(self) -> str | None:
        """Why TensorFlow's float computation of this layer differs from the hardware by design
        (lookup tables, hls4ml's own constants), None when it does not."""
        return None

    def qkeras_inexact(self, in_type: FixedType) -> str | None:
        """For a layer that bounds its own float32 computation step by step (not a plain sum of
        products): why QKeras may differ from these codes for inputs of ``in_type``, else None."""
        return None

    # --- deployment facts (see the module docstring) --------------------------------------------
    def reuse_factors(self, strategy: str | None) -> ReuseFactors | None:
        """The ReuseFactors this layer can be built with under ``strategy`` (one of ``strategies``,
        None for a kind that takes none); None: the kind takes no ReuseFactor."""
        return None

    def hls_weights(self, rf: int) -> dict[str, HlsWeight]:
        """hls4ml weight variable -> what it must hold, at ReuseFactor ``rf``."""
        return {}

    def hls_attrs(self) -> dict:
        """hls4ml layer attributes set from the reference and checked after conversion (table sizes
        and types, per-step types); FixedType values are types, others are compared as text."""
        return {}

    def hls_node(self, io_type: str) -> str:
        """The name of the hls4ml node that builds this layer (some are replaced in io_stream)."""
        return self.name

    def hls_inserted(self, in_type: FixedType, io_type: str) -> dict[str, FixedType]:
        """Nodes hls4ml inserts before this layer that the reference computes inside it, with the type
        they must pass on unchanged (name -> type)."""
        return {}

    def hls_constants(self) -> dict[str, tuple[int, FixedType]]:
        """Constants hls4ml's parser chooses itself (attribute -> the reference's code and type),
        checked after conversion; its type attribute is ``<attribute>_t``."""
        return {}

    def stream_pixels(self) -> tuple[int, int] | None:
        """(input, output) pixels per image of a weightless layer that hls4ml streams pixel by pixel
        without a line buffer (global pooling, padding, upsampling, repacking: II = 1 a pixel), for
        the estimate's cycles; None: not such a layer."""
        return None

    def constant_dividers(self) -> int:
        """Divisions by a constant that is not a power of two this layer's hardware does in parallel
        (an average's sum / N per channel): HLS builds each as a multiply by the reciprocal, so the
        estimate counts them as multipliers; a power of two is a shift."""
        return 0

    def engine_vectors(self, x: np.ndarray) -> np.ndarray:
        """The engine's input vectors (one per row, in the order it computes them) for the layer's
        input ``x`` (n, ...): one per sample; a convolution's, one per output pixel (its patch)."""
        return np.asarray(x).reshape(len(x), -1)

    def engine_estimate(self, rf: int, in_type: FixedType | None, steps: int = 1) -> dict | None:
        """This kind's template's cost at ReuseFactor ``rf`` (multipliers, cycles, weight_memory_bits,
        bram18, index_bits, ...); ``steps``: time steps of a sequence layer. None: the layer is
        built by hls4ml's own Dense, the baseline (``flow/stages/estimate.py``)."""
        return None

    def rtl_logic(self, x, in_type: FixedType, rtl):
        """This layer on the da4ml array ``x`` (values of ``in_type``), using ``rtl``'s exact casts
        (``flow/rtl/logic.py``, passed in); None: the kind has no da4ml form."""
        return None

    # serialization: scalars/types go to JSON, arrays to npz (prefixed with the layer name)
    def scalars(self) -> dict:
        return {}

    def arrays(self) -> dict[str, np.ndarray]:
        return {}

    def to_json(self) -> dict:
        inputs = {'inputs': list(self.inputs)} if self.inputs else {}
        return {'kind': self.kind, 'name': self.name, 'out_type': self.out_type.to_dict(), **inputs, **self.scalars()}

    @classmethod
    def from_json(cls, d: dict, arrays: dict[str, np.ndarray]) -> RefLayer:
        d = dict(d)
        d.pop('kind')
        types = {k: FixedType.from_dict(v) for k, v in d.items() if k.endswith('_type')}
        d.update(types)
        if 'inputs' in d:
            d['inputs'] = tuple(d['inputs'])
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

    def rtl_logic(self, x, in_type, rtl):
        """The exact constant matrix-vector product plus bias (zero weights cost nothing in da4ml)."""
        w = rtl.values(self.dense_weight(), self.weight_type.frac)
        return rtl.finish(self, x.reshape(-1) @ w + rtl.values(self.bias, self.bias_type.frac))

    def scalars(self):
        return {k: getattr(self, k).to_dict() for k in ('weight_type', 'bias_type', 'accum_type')}


@register_kind
@dataclass
class Dense(_Accumulating):
    """hls4ml's own Dense (any strategy): out = cast(bias + sum x*w)."""

    kind = 'dense'
    strategies = (LATENCY, RESOURCE, DA)
    weight: np.ndarray = field(default=None, repr=False)  # (n_in, n_out) codes
    # zero blocks found in the kernel that dropping would not make smaller (flow/export/found.py), or None
    found: dict | None = None
    # an unquantized Keras layer: how its float weights became these codes (so TensorFlow's float
    # model differs by design), or None
    float_weights: str | None = None

    def reuse_factors(self, strategy):
        n_in, n_out = self.weight.shape
        if strategy == DA:
            return ReuseFactors([1], f'{DA} computes every product at once')
        if strategy == RESOURCE:
            return ReuseFactors(hls4ml_resource_reuse_factors(n_in, n_out),
                                f"the values hls4ml's Resource Dense keeps for {n_in}x{n_out} products")
        return ReuseFactors(range(1, n_in * n_out + 1), f'its {n_in}x{n_out} products')

    def hls_weights(self, rf):
        return {'weight': HlsWeight(self.weight, self.weight_type), 'bias': HlsWeight(self.bias, self.bias_type)}

    def forward(self, x, in_type):
        pf = self._check_accum(in_type)
        return self._finish(x @ self.weight.astype(np.int64), pf)

    def arrays(self):
        return {'weight': self.weight, 'bias': self.bias}

    def scalars(self):
        return {**super().scalars(), **({'found': self.found} if self.found else {}),
                **({'float_weights': self.float_weights} if self.float_weights else {})}

    def inexact_in_float(self):
        return self.float_weights

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
    hls_activation = 'relu'

    def rtl_logic(self, x, in_type, rtl):
        return rtl.cast(x.relu(), self.out_type, f'layer {self.name!r}')

    def forward(self, x, in_type):
        return self.out_type.from_codes(np.where(x > 0, x, 0), in_type.frac)


@register_kind
@dataclass
class Linear(RefLayer):
    """hls4ml's linear activation (a QKeras ``quantized_bits`` activation): res = (res_T) x, a cast
    with res_T's rounding and overflow."""

    kind = 'linear'
    elementwise = True
    hls_activation = 'linear'

    def rtl_logic(self, x, in_type, rtl):
        return rtl.cast(x, self.out_type, f'layer {self.name!r}')

    def forward(self, x, in_type):
        return self.out_type.from_codes(x, in_type.frac)


@register_kind
@dataclass
class Flatten(RefLayer):
    """Keras Flatten, hls4ml's Reshape: in io_parallel an alias of its input (no code, no cast)."""

    kind = 'flatten'
    input_rank = None
    hls_dropped_when_last = True  # in io_parallel the output array is the same, uncast

    def forward(self, x, in_type):
        return np.asarray(x).reshape(len(x), -1)

    def rtl_logic(self, x, in_type, rtl):
        return x.reshape(-1)


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

    def hls_weights(self, rf):
        # hls4ml takes the exponent type from the QKeras quantizer, not from the config
        return {**super().hls_weights(rf), 'weight': HlsWeight(self.weight, exponent_bits=self.exponent_bits)}

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

    def hls_weights(self, rf):
        return {'scale': HlsWeight(self.scale, self.weight_type), 'bias': HlsWeight(self.bias, self.bias_type)}

    def rtl_logic(self, x, in_type, rtl):
        # per element x * scale + bias: a constant multiply each, not an n x n diagonal matrix
        y = x.reshape(-1) * rtl.values(self.scale, self.weight_type.frac) + rtl.values(self.bias, self.bias_type.frac)
        return rtl.finish(self, y)

    def arrays(self):
        return {'scale': self.scale, 'bias': self.bias}

    def scalars(self):
        return {**super().scalars(), 'float_note': self.float_note}

    def inexact_in_float(self):
        return self.float_note or None
