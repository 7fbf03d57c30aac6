"""Keras/QKeras model -> integer reference model, with exact types for every tensor.

One exporter per Keras class in ``EXPORTERS``; a new method adds its own entry. This is also the
deployability check: a layer without an exporter is refused here, at load time, with the reason.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass

import numpy as np

from flow.errors import BadInput
from flow.quantizers import (
    _config,
    kernel_type,
    po2_exponent_bits,
    quantized_bits_activation_type,
    relu_type,
    sigmoid_type,
    tanh_type,
    weight_type,
)
from flow.runtime.fixed import MAX_WIDTH, FixedType
from flow.runtime.ref_activations import HardSigmoid, HardTanh, Sigmoid, Softmax, Tanh, index_bits
from flow.runtime.ref_block_sparse import BlockSparseDense, pack_blocks
from flow.runtime.ref_conv import BlockSparseConv2D, Conv2D, MaxPool2D, same_padding
from flow.runtime.ref_layers import BatchNorm, Dense, DensePo2, Flatten, Input, Linear, ReLU, sum_bound
from flow.runtime.ref_lstm import BlockSparseLSTM, pack_gates
from flow.runtime.ref_sst import SSTDense
from flow.runtime.sst_code import SSTCode
from flow.runtime.reference import IntegerModel


class UnsupportedModel(BadInput):
    pass


# hls4ml turns layer names into C++ identifiers (defines.h, parameters.h, weights/<name>.txt)
C_IDENTIFIER = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*$')
CPP_KEYWORDS = frozenset(
    'alignas alignof and and_eq asm auto bitand bitor bool break case catch char char16_t char32_t class compl const '
    'constexpr const_cast continue decltype default delete do double dynamic_cast else enum explicit export extern '
    'false float for friend goto if inline int long mutable namespace new noexcept not not_eq nullptr operator or '
    'or_eq private protected public register reinterpret_cast return short signed sizeof static static_assert '
    'static_cast struct switch template this thread_local throw true try typedef typeid typename union unsigned '
    'using virtual void volatile wchar_t while xor xor_eq'.split()
)
STREAM_MAX_BITS = 32  # the AXI4-Stream format carries codes in 8/16/32-bit lanes (runtime/stream.py)


@dataclass
class Overrides:
    """Per-layer precision the user asked for (hls4ml precision strings), or None for exact."""

    accum: str | None = None
    result: str | None = None
    table_size: int | None = None  # table activations only; default: hls4ml's
    table_t: str | None = None


def layer_overrides(cfg) -> dict[str, Overrides]:
    """The per-layer settings of a FlowConfig that change the reference."""
    fields = ('accum', 'result', 'table_size', 'table_t')
    # every named layer, also those with only a ReuseFactor or strategy: a name the model lacks is refused
    return {name: Overrides(**{f: getattr(lc, f) for f in fields}) for name, lc in cfg.layers.items()}


def exact_accum_type(w_codes, w_t: FixedType, b_codes, b_t: FixedType, in_t: FixedType) -> FixedType:
    """Smallest signed accumulator that holds every partial sum exactly, for these weights.

    Tighter than hls4ml's 'auto' (which assumes worst-case weights) and never wraps."""
    bound, frac = sum_bound(w_codes, w_t, b_codes, b_t, in_t)
    width = bound.bit_length() + 1
    return FixedType(width, width - frac, signed=True)


def _fixed_kernel(layer, where: str):
    """A quantized_bits kernel: its type and quantized values (float)."""
    w_t = weight_type(layer.kernel_quantizer_internal, where)
    return w_t, np.asarray(layer.kernel_quantizer_internal(layer.kernel.numpy())), {}


def _po2_kernel(layer, where: str):
    """A quantized_po2 kernel. hls4ml 1.3.0 stores each weight as a sign and an ap_int<bits> exponent
    (ExponentWeightVariable, header entries {sign, log2|w|}) and multiplies by shifting
    (nnet::product::weight_exponential). The reference keeps the values on a fixed-point grid wide
    enough for every exponent present; DensePo2.check refuses inputs the shift product would cut."""
    q = layer.kernel_quantizer_internal
    bits = po2_exponent_bits(q, where)
    values = np.asarray(q(layer.kernel.numpy()), dtype=np.float64)
    mant, exp = np.frexp(np.abs(values))
    if np.any(mant != 0.5):  # also catches 0: hls4ml would store log2(0) and multiply by 2^0
        i = tuple(int(k) for k in np.argwhere(mant != 0.5)[0])
        raise UnsupportedModel(f'{where}: quantized_po2 weight {values[i]!r} at index {i} is not a power of two, which '
                               "hls4ml's exponent storage cannot hold")
    e = exp - 1
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if e.min() < lo or e.max() > hi:  # a guard: QKeras 0.9.0 keeps them in range for every max_value (measured)
        bad = int(e.min()) if e.min() < lo else int(e.max())
        raise UnsupportedModel(
            f"{where}: quantized_po2({bits}) produced a weight 2^{bad}, whose exponent does not fit hls4ml's ap_int<{bits}> "
            f'exponent field ([{lo}, {hi}]; it would wrap): lower max_value to at most 2^{hi} or use more bits'
        )
    frac, integer = max(0, -int(e.min())), max(int(e.max()) + 2, 1)
    if frac + integer > MAX_WIDTH:
        raise UnsupportedModel(f'{where}: the po2 weights span 2^{int(e.min())} to 2^{int(e.max())}, more than the '
                               f'{MAX_WIDTH}-bit codes the reference computes with; use a quantized_po2 with fewer bits')
    return FixedType(frac + integer, integer), values, {'exponent_bits': bits}


# kernel quantizer -> (kernel function, reference class); quantized_bits (and anything else, which
# weight_type refuses with the reason) -> hls4ml's plain Dense
QDENSE_KERNELS = {'quantized_po2': (_po2_kernel, DensePo2)}


def _quantizer_name(q) -> str:
    return _config(q)[0]


NO_BIAS_TYPE = FixedType(1, 1, signed=False)


def _dense_types(layer, in_t: FixedType, ov: Overrides, kernel=_fixed_kernel, element_mask=None):
    """Types and codes of a dense-like layer; the mask multiplies the *quantized* kernel. Its
    activation, if any, is a node of its own (``fused_activation``)."""
    w_t, kernel_values, extra = kernel(layer, f"layer '{layer.name}' kernel")
    if not layer.use_bias:  # hls4ml adds a zero bias of type uint<1> (Layer.add_bias)
        b_t, bias = NO_BIAS_TYPE, np.zeros(kernel_values.shape[-1])
    elif _quantizer_name(layer.bias_quantizer_internal) == 'quantized_po2':
        raise UnsupportedModel(
            f"layer '{layer.name}' bias: hls4ml 1.3.0 stores a quantized_po2 bias as exponents, which its dense templates "
            'cannot add (the C++ does not compile); use quantized_bits for the bias, e.g. quantized_bits(8, 3, alpha=1)'
        )
    else:
        b_t = weight_type(layer.bias_quantizer_internal, f"layer '{layer.name}' bias")
        bias = np.asarray(layer.bias_quantizer_internal(layer.bias.numpy()))
    if element_mask is not None:
        kernel_values = kernel_values * element_mask
    w_codes = w_t.from_float_exact(kernel_values, f"layer '{layer.name}' quantized kernel")
    b_codes = b_t.from_float_exact(bias, f"layer '{layer.name}' quantized bias")
    try:
        acc_t = FixedType.parse(ov.accum) if ov.accum else exact_accum_type(w_codes, w_t, b_codes, b_t, in_t)
    except ValueError as e:  # wider than the int64 codes the reference computes with
        raise UnsupportedModel(
            f"layer '{layer.name}': its exact accumulator is too wide ({e}); narrow the input or weight precision"
        ) from e
    res_t = FixedType.parse(ov.result) if ov.result else acc_t
    return dict(weight_type=w_t, bias_type=b_t, accum_type=acc_t, bias=b_codes, out_type=res_t, **extra), w_codes


def export_qdense(layer, in_t, ov):
    kernel, cls = QDENSE_KERNELS.get(_quantizer_name(layer.kernel_quantizer_internal), (_fixed_kernel, Dense))
    kw, w_codes = _dense_types(layer, in_t, ov, kernel)
    return cls(name=layer.name, weight=w_codes, **kw)


def _sparse_kernel(layer, where: str):
    """A block-sparse kernel: quantized_bits, binary or ternary (flow.quantizers.kernel_type), its
    values as the quantizer gives them (binary: 0 is +alpha; the caller masks them after)."""
    w_t = kernel_type(layer.kernel_quantizer_internal, where)
    return w_t, np.asarray(layer.kernel_quantizer_internal(layer.kernel.numpy())), {}


def _refuse_po2_block_sparse(layer):
    name = _quantizer_name(layer.kernel_quantizer_internal)
    if name in QDENSE_KERNELS:
        raise UnsupportedModel(f"layer '{layer.name}' kernel: {name} is not supported by the block-sparse template "
                               '(it multiplies fixed-point weights); use quantized_bits(bits, integer, alpha=1), binary or '
                               'ternary (alpha a power of two), or a QDense')


def _block_sparse_fields(layer, w_codes: np.ndarray, block_mask: np.ndarray) -> dict:
    """The packed kept blocks of a (n_in, n_out) kernel under its block mask (BlockSparseDense fields)."""
    values, index, k = pack_blocks(w_codes, block_mask, layer.block_shape)
    n_in, n_out = w_codes.shape
    return dict(n_in=n_in, n_out=n_out, block=layer.block_shape, kept_per_row=k, values=values, index=index,
                levels=[list(b) for b, _ in layer.levels] if len(layer.levels) > 1 else None)


def export_block_sparse_qdense(layer, in_t, ov):
    from keras_models.masks import expand

    _refuse_po2_block_sparse(layer)
    block_mask = layer.get_block_mask()
    kw, w_codes = _dense_types(layer, in_t, ov, kernel=_sparse_kernel, element_mask=expand(block_mask, layer.block_shape))
    return BlockSparseDense(name=layer.name, **_block_sparse_fields(layer, w_codes, block_mask), **kw)


# --- convolutions and pooling (channels last; io_stream) ---------------------------------------


def _window_geometry(layer, window: str, paddings=('valid', 'same')) -> dict:
    """PatchGeometry fields of a Keras Conv2D/pooling layer (``window``: its kernel_size/pool_size)."""
    c = layer.get_config()
    where = f"layer '{layer.name}' ({type(layer).__name__})"
    if c.get('data_format', 'channels_last') != 'channels_last':
        raise UnsupportedModel(f"{where}: data_format {c['data_format']!r}; the accelerator streams pixels with their "
                               "channels last: use data_format='channels_last'")
    if tuple(c.get('dilation_rate', (1, 1))) != (1, 1) or c.get('groups', 1) != 1:
        raise UnsupportedModel(f'{where}: dilation_rate {tuple(c.get("dilation_rate"))} / groups {c.get("groups", 1)}; '
                               "hls4ml's line buffer computes undilated, ungrouped windows: use dilation_rate=1, groups=1")
    if c['padding'] not in paddings:  # pooling: hls4ml pads with zeros where Keras ignores the border
        raise UnsupportedModel(f"{where}: padding {c['padding']!r}; hls4ml's pooling would pad with zeros where Keras "
                               'ignores the border: use padding=' + ' or '.join(repr(p) for p in paddings))
    in_shape = tuple(int(d) for d in layer.input_shape[1:])
    filt = tuple(int(k) for k in c[window])
    strides = tuple(int(k) for k in (c.get('strides') or filt))
    if window == 'kernel_size' and filt[0] == 1 and strides[0] > 1:
        # hls4ml 1.3.0's io_stream line buffer for one-row filters (compute_output_buffer_1d) never
        # skips rows: it would compute every row (measured in the C simulation)
        raise UnsupportedModel(f"{where}: a filter of height 1 with vertical stride {strides[0]}; hls4ml's line buffer "
                               'ignores the vertical stride of one-row filters: use strides (1, w) and a MaxPooling2D, '
                               'or a filter height of 2 or more')
    pads = (0, 0, 0, 0)
    if c['padding'] == 'same':
        pads = same_padding(in_shape[0], filt[0], strides[0]) + same_padding(in_shape[1], filt[1], strides[1])
    return dict(in_shape=in_shape, filt=filt, strides=strides, pads=pads)


def export_qconv2d(layer, in_t, ov):
    """QConv2D -> hls4ml's Conv2D: the kernel as a (kh * kw * C, F) matrix applied to every patch."""
    geometry = _window_geometry(layer, 'kernel_size')
    if _quantizer_name(layer.kernel_quantizer_internal) in QDENSE_KERNELS:
        raise UnsupportedModel(f"layer '{layer.name}' kernel: quantized_po2 convolutions are not supported; use "
                               'quantized_bits(bits, integer, alpha=1)')
    kw, w_codes = _dense_types(layer, in_t, ov)
    return Conv2D(name=layer.name, weight=w_codes.reshape(-1, layer.filters), **geometry, **kw)


def export_block_sparse_qconv2d(layer, in_t, ov):
    """BlockSparseQConv2D: the (kh * kw * C, F) matrix is block-sparse with the channel mask
    repeated for every kernel position; packed like a BlockSparseQDense kernel."""
    from keras_models.masks import expand

    geometry = _window_geometry(layer, 'kernel_size')
    _refuse_po2_block_sparse(layer)
    block_mask = layer.get_block_mask()
    kw, w_codes = _dense_types(layer, in_t, ov, kernel=_sparse_kernel,
                               element_mask=expand(block_mask, layer.block_shape)[None, None])
    positions = geometry['filt'][0] * geometry['filt'][1]
    fields = _block_sparse_fields(layer, w_codes.reshape(-1, layer.filters), np.tile(block_mask, (positions, 1)))
    return BlockSparseConv2D(name=layer.name, **fields, **geometry, **kw)


def export_maxpool2d(layer, in_t, ov):
    """MaxPooling2D -> hls4ml's Pooling2D (max): exact in the input's type ('same' padding would pad
    with zeros in hls4ml, not ignore the border as Keras does)."""
    _no_override(layer, ov, 'result', 'the largest input is exact in the input type')
    _no_override(layer, ov, 'accum', 'hls4ml compares the inputs in the input type')
    geometry = _window_geometry(layer, 'pool_size', paddings=('valid',))
    if geometry['strides'] != geometry['filt']:
        raise UnsupportedModel(f"layer '{layer.name}' (MaxPooling2D): strides {geometry['strides']} differ from pool_size "
                               f"{geometry['filt']}; hls4ml's io_stream pooling takes non-overlapping windows only: use "
                               'strides=None (the pool size)')
    return MaxPool2D(name=layer.name, out_type=in_t, **geometry)


def export_sst_qdense(layer, in_t, ov):
    """SSTQDense: the (N, K) ternary pattern as codewords, the quantized scale as the narrowest
    fixed type holding it exactly, the effective weights t * scale (on the scale's grid) sizing the
    accumulator. The ternary pattern comes from ``ternary_kernel``, the function the hls4ml
    extension uses too (tests check it equals the layer's own TensorFlow top-k)."""
    from keras_models.sst import ternary_kernel

    where = f"layer '{layer.name}'"
    t = ternary_kernel(layer.kernel.numpy(), layer.group, layer.nonzeros).astype(np.int64)
    scale = np.asarray(layer.quantized_scale(), dtype=np.float64)
    s_t, _ = exact_fixed_type(scale, f'{where} scale', 'use a scale_quantizer with fewer bits')
    s_full = np.broadcast_to(scale, (layer.units,))

    def sst_kernel(_layer, _where):
        return s_t, t * s_full, {}

    kw, _ = _dense_types(layer, in_t, ov, kernel=sst_kernel)
    bound = int(np.abs(t).sum(axis=0).max(initial=0)) * max(abs(in_t.min_code), abs(in_t.max_code))
    sum_t = _exact_type(bound, in_t.frac, f'{where}: the sum of +-inputs', 'narrow the input precision')
    return SSTDense(name=layer.name, n_in=t.shape[0], n_out=layer.units, group=layer.group, nonzeros=layer.nonzeros,
                    per_output_scale=layer.per_output_scale, scale_type=s_t, sum_type=sum_t,
                    codes=SSTCode(layer.group, layer.nonzeros).encode(t), scale=s_t.from_float_exact(s_full, f'{where} scale'),
                    **kw)


def _exact_type(bound: int, frac: int, where: str, fix: str) -> FixedType:
    """The narrowest signed type holding every multiple of 2^-frac up to bound LSBs."""
    width = bound.bit_length() + 1
    if width > MAX_WIDTH:
        raise UnsupportedModel(f'{where} needs {width} bits exactly, more than the {MAX_WIDTH}-bit codes the reference '
                               f'computes with; {fix}')
    return FixedType(width, width - frac)


def export_block_sparse_qlstm(layer, in_t, ov):
    """BlockSparseQLSTM: every type from its quantizers (weights and bias quantized_bits; gates
    quantized_sigmoid and cell activation quantized_tanh in their hard forms; cell and hidden state
    quantized_bits, i.e. AP_RND_CONV and AP_SAT), the gate sums, f c + i g and o tanh(c) in the
    exact types sized from the weights and these types."""
    where = f"layer '{layer.name}'"
    for f in ('accum', 'result', 'table_size', 'table_t'):
        _no_override(layer, ov, f, 'every type of the LSTM comes from its quantizers or is sized exactly')
    w_t = kernel_type(layer.kernel_quantizer_internal, f'{where} kernel')
    u_t = kernel_type(layer.recurrent_quantizer_internal, f'{where} recurrent kernel')
    b_t = weight_type(layer.bias_quantizer_internal, f'{where} bias')
    for q, name, real, arg in ((layer.gate_activation, 'quantized_sigmoid', 'use_real_sigmoid', 'recurrent_activation'),
                               (layer.cell_activation, 'quantized_tanh', 'use_real_tanh', 'activation')):
        got, c = _config(q)
        if got != name or c.get(real):
            raise UnsupportedModel(f'{where}: {arg} must be {name}(bits) in its hard form (exact in hardware and in '
                                   f'float32); got {got}{" with " + real if c.get(real) else ""}')
    gate_t = sigmoid_type(layer.gate_activation, f'{where} recurrent_activation')
    act_t = tanh_type(layer.cell_activation, f'{where} activation')
    cell_t = quantized_bits_activation_type(layer.cell_quantizer_internal, f'{where} cell_quantizer')
    h_t = quantized_bits_activation_type(layer.state_quantizer_internal, f'{where} state_quantizer')
    w_mask, u_mask = layer.element_masks_numpy()
    w = w_t.from_float_exact(np.asarray(layer.kernel_quantizer_internal(layer.kernel.numpy())) * w_mask,
                             f'{where} quantized kernel')
    u = u_t.from_float_exact(np.asarray(layer.recurrent_quantizer_internal(layer.recurrent_kernel.numpy())) * u_mask,
                             f'{where} quantized recurrent kernel')
    b = b_t.from_float_exact(np.asarray(layer.bias_quantizer_internal(layer.bias.numpy())), f'{where} quantized bias')
    values, index, k = pack_gates(w, layer.get_block_mask(), layer.block_shape)
    r_values, r_index, r_k = pack_gates(u, layer.get_recurrent_block_mask(), layer.recurrent_block_shape)
    ref = BlockSparseLSTM(
        name=layer.name, out_type=h_t, n_in=w.shape[0], units=layer.units, return_sequences=layer.return_sequences,
        block=layer.block_shape, recurrent_block=layer.recurrent_block_shape, kept_per_row=k, recurrent_kept_per_row=r_k,
        weight_type=w_t, recurrent_type=u_t, bias_type=b_t, gate_type=gate_t, act_type=act_t, cell_type=cell_t,
        values=values, index=index, recurrent_values=r_values, recurrent_index=r_index, bias=b,
        levels=[list(b) for b, _ in layer.levels] if len(layer.levels) > 1 else None,
        recurrent_levels=[list(b) for b, _ in layer.recurrent_levels] if len(layer.recurrent_levels) > 1 else None)
    ref.accum_type = _exact_type(*ref.z_bound(in_t), f'{where}: the gate sums x W + h U + b',
                                 'narrow the input, weight or hidden state precision')
    ref.cell_sum_type = _exact_type(*ref.cell_sum_bound(), f'{where}: f * c + i * g', 'narrow the cell_quantizer')
    ref.hidden_product_type = _exact_type(*ref.hidden_product_bound(), f'{where}: o * tanh(c)', 'use fewer activation bits')
    return ref


# --- layers without arithmetic -----------------------------------------------------------------


def export_dropout(layer, in_t, ov):
    """Dropout: hls4ml skips it when parsing (an inference no-op), so the reference has no layer."""
    _no_override(layer, ov, 'result', 'hls4ml removes Dropout')
    _no_override(layer, ov, 'accum', 'hls4ml removes Dropout')
    return []


def export_flatten(layer, in_t, ov):
    """Flatten: hls4ml keeps a Reshape node, in io_parallel an alias of its input (no cast)."""
    _no_override(layer, ov, 'result', 'hls4ml aliases the input of a Flatten, it cannot cast')
    _no_override(layer, ov, 'accum', 'a Flatten has no accumulator')
    return Flatten(name=layer.name, out_type=in_t)


# --- BatchNormalization ------------------------------------------------------------------------


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


def _batchnorm_float(layer):
    """(scale, bias) as hls4ml 1.3.0 computes them in numpy float32 (keras/core.py parser and
    BatchNormalization.initialize), and as TensorFlow's BatchNormalization computes them at
    inference (tf.nn.batch_normalization): scale = rsqrt(var + eps) * gamma."""
    import tensorflow as tf

    c = layer.get_config()
    gamma = layer.gamma.numpy() if c['scale'] else 1
    beta = layer.beta.numpy() if c['center'] else 0
    mean, var, eps = layer.moving_mean.numpy(), layer.moving_variance.numpy(), c['epsilon']
    scale = gamma / np.sqrt(var + eps)  # hls4ml, float32
    bias = beta - scale * mean
    inv = tf.math.rsqrt(layer.moving_variance + eps)  # TensorFlow, float32
    if c['scale']:
        inv = inv * layer.gamma
    offset = (layer.beta - layer.moving_mean * inv) if c['center'] else -layer.moving_mean * inv
    return (np.asarray(scale, np.float32), np.asarray(bias, np.float32)), (inv.numpy(), offset.numpy())


def export_batchnorm(layer, in_t, ov):
    """BatchNormalization after a dense layer (or anywhere in the flat chain).

    hls4ml keeps it as its own node: its FuseBatchNormalization pass only folds into a dense layer
    whose result type is 'auto' and whose kernel is unquantized, and this flow sets every type.
    Folding it into the quantized kernel ourselves would put the weights off the quantizer's grid
    in general and change the graph hls4ml builds. So the reference mirrors the node exactly:
    nnet::normalize computes x * scale + bias at full precision; scale and bias are hls4ml's own
    float32 values, each given the narrowest fixed type that holds them exactly, so hls4ml writes
    them without rounding (convert.check_against_reference compares the values it will write)."""
    _no_override(layer, ov, 'accum', "hls4ml's BatchNormalization computes x * scale + bias at full precision")
    c = layer.get_config()
    axis = c.get('axis', -1)
    axis = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    rank = len(layer.input_shape)
    if [a % rank for a in axis] != [rank - 1]:
        raise UnsupportedModel(f"layer '{layer.name}': BatchNormalization over axis {axis} of a {rank - 1}-d tensor; "
                               'only the last axis (the features, or an image\'s channels) is supported: use axis=-1')
    (scale, bias), (tf_scale, tf_bias) = _batchnorm_float(layer)
    if np.all(scale == 1) and np.all(bias == 0):
        return []  # hls4ml's RemoveNopBatchNormalization drops it
    where = f"layer '{layer.name}'"
    fix = ('its values span too many powers of two: fold the BatchNormalization into the QDense before it and '
           'retrain (quantizing the folded kernel), or drop the features whose scale is (almost) 0')
    s_t, s_codes = exact_fixed_type(scale, f'{where} scale (gamma / sqrt(variance + epsilon))', fix)
    b_t, b_codes = exact_fixed_type(bias, f'{where} bias (beta - scale * mean)', fix)
    frac = max(in_t.frac + s_t.frac, b_t.frac)
    x_mag = max(abs(in_t.min_code), abs(in_t.max_code))
    bound = max((abs(int(s)) * x_mag << (frac - in_t.frac - s_t.frac)) + (abs(int(b)) << (frac - b_t.frac))
                for s, b in zip(s_codes, b_codes))
    width = bound.bit_length() + 1
    if width > MAX_WIDTH:
        raise UnsupportedModel(
            f'{where}: x * scale + bias with input {in_t.hls()}, scale {s_t.hls()} and bias {b_t.hls()} (the types that hold '
            f"hls4ml's values exactly) needs {width} bits, more than the {MAX_WIDTH}-bit codes the reference computes "
            'with; give the previous layer a narrower result type'
        )
    acc_t = FixedType(width, width - frac)
    note = ''
    differ = np.flatnonzero((tf_scale != scale) | (tf_bias != bias))
    if len(differ):
        i = int(differ[0])
        note = (f'TensorFlow computes its scale and bias as rsqrt(var + eps) * gamma = {float(tf_scale[i])!r} and '
                f'{float(tf_bias[i])!r}, hls4ml as gamma / sqrt(var + eps) = {float(scale[i])!r} and {float(bias[i])!r} '
                f'(feature {i})')
    return BatchNorm(name=layer.name, out_type=_result(ov) or acc_t, weight_type=s_t, bias_type=b_t, accum_type=acc_t,
                     scale=s_codes, bias=b_codes, float_note=note)


# --- activations ------------------------------------------------------------------------------
# hls4ml's defaults (FPGABackend attributes): Activation table_size 1024, table_t ap_fixed<18,8>;
# Softmax exp/inv tables ap_fixed<18,8,AP_RND,AP_SAT>, 'stable' implementation.
TABLE_SIZE = 1024
TABLE_T = 'ap_fixed<18,8>'
SOFTMAX_TABLE_T = 'ap_fixed<18,8,AP_RND,AP_SAT>'
SOFTMAX_RESULT = 'ap_ufixed<16,0,AP_RND_CONV,AP_SAT>'  # softmax outputs lie in [0, 1]
# hls4ml's HardActivation constants and their types: Keras' hard_sigmoid (its parser's defaults)
# and QKeras' quantized_sigmoid/tanh without use_real_* (qkeras.py parser).
KERAS_HARD = (0.2, FixedType(16, 0, signed=False), 0.5, FixedType(2, 0, signed=False))
QKERAS_HARD = (0.5, FixedType(2, 0, signed=False), 0.5, FixedType(2, 0, signed=False))


def _no_override(layer, ov, field: str, why: str):
    if getattr(ov, field):
        raise UnsupportedModel(f"layer '{layer.name}': setting {field!r} does not apply ({why}); remove it")


def table_activation(cls, name: str, in_t: FixedType, out_t: FixedType | None, ov: Overrides):
    """nnet::sigmoid / nnet::tanh with the table hls4ml's C++ fills (table_size, table_t)."""
    from flow.tables import TableSpec, hls4ml_tables

    size = ov.table_size or TABLE_SIZE
    table_t = FixedType.parse(ov.table_t or TABLE_T)
    if in_t.width + index_bits(size) > 62 or in_t.integer + index_bits(size) - index_bits(cls.RANGE) > 30:
        raise UnsupportedModel(f"layer '{name}': input {in_t.hls()} is too wide to index a {size}-entry table "
                               '(hls4ml computes the index in a 32-bit int); narrow the previous result type')
    [table] = hls4ml_tables([TableSpec(cls.kind, size, table_t)])
    return cls(name=name, out_type=out_t or table_t, table_size=size, table_type=table_t, table=table)


def softmax_norm_type(in_t: FixedType, table_t: FixedType) -> FixedType:
    """inp_norm_t, which holds max(x) - x and whose top bits address the exp table: every fraction bit
    of the input, and integer bits up to 2**I where exp(-2**I + 1) is below half an LSB of the table
    type, saturating above (the exact entry would be 0 too). Not the input's own integer bits: wide
    logits (ap_fixed<24,10>) would leave the table a step of 2**10 / 1024 = 1, and close logits would
    tie (measured: 30 of 32 argmaxes changed)."""
    integer = max(1, math.ceil(math.log2((table_t.frac + 1) * math.log(2) + 1)))
    return FixedType(integer + max(in_t.frac, 0), integer, signed=False, rounding='TRN', overflow='SAT')


def softmax_plan(name: str, in_t: FixedType, n: int, ov: Overrides | None = None):
    """hls4ml's 'stable' softmax with every internal type chosen so that nothing wraps:
    inp_norm_t holds max(x) - x exactly where the exp table is not 0, saturating beyond
    (``softmax_norm_type``; hls4ml's default ap_ufixed<W-1,I-1> wraps differences of 2**(I-1) or
    more), accum_t holds the sum of n exp table entries exactly, inv_inp_t is the same sum unsigned, so the 1/x table is addressed by the top bits of the sum's own range.
    Returns the Softmax fields (without tables) and the two TableSpecs."""
    from flow.tables import TableSpec, exact_code

    ov = ov or Overrides()
    size = ov.table_size or TABLE_SIZE
    if size < 2 or size & (size - 1):
        raise UnsupportedModel(f"layer '{name}': softmax table_size {size} must be a power of two "
                               '(hls4ml addresses its tables with the top bits of a fixed-point value)')
    table_t = FixedType.parse(ov.table_t or SOFTMAX_TABLE_T)
    one = exact_code(1.0, table_t)  # exp(-0) = 1: the largest entry of the exp table
    if one <= 0:
        raise UnsupportedModel(f"layer '{name}': softmax table type {table_t.hls()} wraps exp(0) = 1 to {one}; "
                               'give table_t an integer bit more or AP_SAT')
    inp_norm = softmax_norm_type(in_t, table_t)
    width = (n * one).bit_length() + 1
    accum = FixedType(width, width - table_t.frac)
    inv_inp = FixedType(width - 1, width - 1 - table_t.frac, signed=False)
    if accum.width + table_t.width > 62 or in_t.width > 61:
        raise UnsupportedModel(f"layer '{name}': softmax products of {accum.hls()} x {table_t.hls()} exceed 62 bits; "
                               'use a narrower table_t')
    fields = dict(exp_table_size=min(size, 1 << inp_norm.width), inv_table_size=min(size, 1 << inv_inp.width),
                  exp_table_type=table_t, inv_table_type=table_t, accum_type=accum, inv_inp_type=inv_inp,
                  inp_norm_type=inp_norm)
    specs = [TableSpec('softmax_exp', fields['exp_table_size'], table_t, inp_norm),
             TableSpec('softmax_inv', fields['inv_table_size'], table_t, inv_inp)]
    return fields, specs


def softmax_layer(name: str, in_t: FixedType, n: int, out_t: FixedType | None = None, ov: Overrides | None = None) -> Softmax:
    from flow.tables import hls4ml_tables

    fields, specs = softmax_plan(name, in_t, n, ov)
    exp_table, inv_table = hls4ml_tables(specs)
    if exp_table.min() < 0 or exp_table.max() != exp_table[0]:
        raise RuntimeError(f"layer '{name}': the exp table is not decreasing from exp(0); the accumulator sizing assumes it")
    return Softmax(name=name, out_type=out_t or FixedType.parse(SOFTMAX_RESULT), exp_table=exp_table, inv_table=inv_table,
                   **fields)


def hard_activation(cls, name: str, in_t: FixedType, out_t: FixedType | None, constants):
    """nnet::hard_sigmoid / hard_tanh with hls4ml's constants (slope, slope_t, shift, shift_t).
    Without a result type: the exact one (the clipped value's fraction bits, one integer bit,
    a sign for tanh)."""
    from flow.tables import exact_code

    slope, slope_t, shift, shift_t = constants
    if out_t is None:
        frac, signed = max(slope_t.frac + in_t.frac, shift_t.frac, 0), cls is HardTanh
        out_t = FixedType(frac + 1 + signed, 1 + signed, signed=signed)
    return cls(name=name, out_type=out_t, slope=exact_code(slope, slope_t), slope_type=slope_t,
               shift=exact_code(shift, shift_t), shift_type=shift_t)


def _result(ov) -> FixedType | None:
    return FixedType.parse(ov.result) if ov.result else None


@dataclass
class ActivationSpec:
    """One activation node as hls4ml builds it: from a Keras activation layer, or from the
    ``activation=`` of a QDense/BlockSparseQDense, which hls4ml splits into its own node named
    ``<layer>_<activation>`` (``<layer>_<quantizer class>`` for a QKeras quantizer)."""

    name: str  # the hls4ml node name
    cls: str  # 'QActivation' (a QKeras quantizer), 'Activation' or 'Softmax' (Keras)
    function: str  # activation name: 'relu', 'quantized_relu', ...
    quantizer: object = None  # the QKeras quantizer object or function (QActivation)
    units: int = 0  # features of the input
    axis: int = -1  # softmax axis
    where: str = ''  # how refusals name it


def activation_name(layer) -> str:
    """The activation a Keras Activation/Softmax or QKeras QActivation layer applies."""
    cls = type(layer).__name__
    if cls == 'Softmax':
        return 'softmax'
    if cls == 'QActivation':
        q = layer.quantizer
        return getattr(q, '__name__', None) or type(q).__name__  # a function, or a quantizer object
    act = layer.get_config().get('activation')
    return act if isinstance(act, str) else getattr(act, '__name__', str(act))


def activation_spec(layer) -> ActivationSpec:
    cls = type(layer).__name__
    return ActivationSpec(name=layer.name, cls=cls, function=activation_name(layer),
                          quantizer=getattr(layer, 'quantizer', None), units=int(layer.input_shape[-1]),
                          axis=layer.get_config().get('axis', -1) if cls == 'Softmax' else -1, where=f"layer '{layer.name}'")


def fused_activation(layer) -> ActivationSpec | None:
    """The activation node hls4ml splits off a layer with ``activation=`` (keras_v2_to_hls: every
    layer with an 'activation' setting that is not itself an activation), or None. 'linear' (a
    QDense without activation) makes '<layer>_linear', which hls4ml removes again when its type is
    the layer's (the reference has no layer for it; ``removed_nodes`` gives it that type)."""
    if EXPORTERS.get(type(layer).__name__) is export_activation:
        return None
    # the attribute, not get_config(): QKeras' get_config warns about its quantizers on stderr
    act = getattr(layer, 'activation', None)
    if act is None:
        return None
    units = int(layer.output_shape[-1])
    if hasattr(act, 'get_config'):  # a QKeras quantizer object: serialized as {'class_name': ..., 'config': ...}
        fn = type(act).__name__
        return ActivationSpec(name=f'{layer.name}_{fn}', cls='QActivation', function=fn, quantizer=act,
                              units=units, where=f"layer '{layer.name}' (activation={fn})")
    fn = getattr(act, '__name__', None)  # a Keras activation function: serialized by name
    if fn is None:
        raise UnsupportedModel(f"layer '{layer.name}': activation {act!r} cannot be converted; use a Keras activation name "
                               'or a QKeras quantizer object')
    return ActivationSpec(name=f'{layer.name}_{fn}', cls='Activation', function=fn, units=units,
                          where=f"layer '{layer.name}' (activation='{fn}')")


def _linear(name: str, in_t: FixedType, out_t: FixedType):
    """hls4ml's linear activation: a cast, or nothing when the types are equal (its
    EliminateLinearActivation pass removes the node)."""
    return [] if out_t == in_t else Linear(name=name, out_type=out_t)


TABLE_LAYERS = (Sigmoid, Tanh, Softmax)

KERAS_ACTIVATIONS = {
    'sigmoid': lambda a, t, ov: table_activation(Sigmoid, a.name, t, _result(ov), ov),
    'tanh': lambda a, t, ov: table_activation(Tanh, a.name, t, _result(ov), ov),
    'softmax': lambda a, t, ov: softmax_layer(a.name, t, a.units, _result(ov), ov),
    'hard_sigmoid': lambda a, t, ov: hard_activation(HardSigmoid, a.name, t, _result(ov), KERAS_HARD),
    # exact in the input type (a float ReLU has no type of its own); QKeras computes the same
    'relu': lambda a, t, ov: ReLU(name=a.name, out_type=_result(ov) or t),
    'linear': lambda a, t, ov: _linear(a.name, t, _result(ov) or t),
}


def _quantized_sigmoid(a, t, ov):
    out_t = sigmoid_type(a.quantizer, a.where)
    if a.quantizer.get_config().get('use_real_sigmoid'):
        return table_activation(Sigmoid, a.name, t, out_t, ov)
    return hard_activation(HardSigmoid, a.name, t, out_t, QKERAS_HARD)


def _quantized_tanh(a, t, ov):
    out_t = tanh_type(a.quantizer, a.where)
    if a.quantizer.get_config().get('use_real_tanh'):
        return table_activation(Tanh, a.name, t, out_t, ov)
    return hard_activation(HardTanh, a.name, t, out_t, QKERAS_HARD)


def _quantized_relu(a, t, ov):
    return ReLU(name=a.name, out_type=relu_type(a.quantizer, a.where))


def _quantized_bits(a, t, ov):
    """QActivation(quantized_bits(...)), e.g. on the input: hls4ml's linear activation, a cast to
    the quantizer's type (round half to even, saturate: what QKeras computes)."""
    return _linear(a.name, t, quantized_bits_activation_type(a.quantizer, a.where))


QKERAS_ACTIVATIONS = {
    'quantized_relu': _quantized_relu,
    'quantized_sigmoid': _quantized_sigmoid,
    'quantized_tanh': _quantized_tanh,
    'quantized_bits': _quantized_bits,
}
# QActivation('name') with a plain function: hls4ml 1.3.0 refuses all of them
# ("Unsupported QKeras activation: unknown"); the fix for each.
QACTIVATION_FIX = {
    'softmax': "tf.keras.layers.Activation('softmax')",
    'sigmoid': "tf.keras.layers.Activation('sigmoid') or QActivation(quantized_sigmoid(bits, use_real_sigmoid=True))",
    'tanh': "tf.keras.layers.Activation('tanh') or QActivation(quantized_tanh(bits, use_real_tanh=True))",
    'hard_sigmoid': 'QActivation(quantized_sigmoid(bits)) (the same 0.5 * x + 0.5, quantized)',
    'hard_tanh': 'QActivation(quantized_tanh(bits)) (the same 2 * hard_sigmoid(x) - 1, quantized)',
    'relu': "QActivation(quantized_relu(bits, integer)) or tf.keras.layers.Activation('relu')",
}


def _activation_exporter(a: ActivationSpec):
    """The exporter for an activation, or UnsupportedModel naming the fix."""
    if a.cls == 'QActivation':
        if a.function in QKERAS_ACTIVATIONS:
            return QKERAS_ACTIVATIONS[a.function]
        fix = QACTIVATION_FIX.get(a.function)
        if fix and not hasattr(a.quantizer, 'get_config'):  # a plain function, not a quantizer
            raise UnsupportedModel(f"{a.where}: hls4ml 1.3.0 refuses QActivation('{a.function}') "
                                   f"(Unsupported QKeras activation); use {fix}")
        raise UnsupportedModel(f'{a.where}: the QKeras activation {a.function} cannot be reproduced by this flow; use one of '
                               f'{sorted(QKERAS_ACTIVATIONS)}, or a Keras activation {sorted(KERAS_ACTIVATIONS)}')
    if a.cls == 'Softmax' and a.axis not in (-1, 1):
        raise UnsupportedModel(f'{a.where}: softmax over axis {a.axis}; only the last axis is supported, use axis=-1')
    if a.function not in KERAS_ACTIVATIONS:
        raise UnsupportedModel(f'{a.where}: activation {a.function!r} is not supported; supported: '
                               f'{sorted(KERAS_ACTIVATIONS)} (Keras), {sorted(QKERAS_ACTIVATIONS)} (QActivation)')
    return KERAS_ACTIVATIONS[a.function]


def export_activation_spec(a: ActivationSpec, in_t, ov):
    exporter = _activation_exporter(a)
    _no_override(a, ov, 'accum', 'an activation has no accumulator')
    if a.cls == 'QActivation':
        _no_override(a, ov, 'result', 'its output type comes from its quantizer')
    return exporter(a, in_t, ov)


def export_activation(layer, in_t, ov):
    return export_activation_spec(activation_spec(layer), in_t, ov)


EXPORTERS = {
    'QDense': export_qdense,  # kernel quantized_bits or quantized_po2 (QDENSE_KERNELS)
    'BlockSparseQDense': export_block_sparse_qdense,
    'SSTQDense': export_sst_qdense,
    'BlockSparseQLSTM': export_block_sparse_qlstm,  # takes (time steps, features): BlockSparseLSTM.sequence_input
    'QConv2D': export_qconv2d,  # takes (height, width, channels): io_stream
    'BlockSparseQConv2D': export_block_sparse_qconv2d,
    'MaxPooling2D': export_maxpool2d,
    'QActivation': export_activation,  # by quantizer: QKERAS_ACTIVATIONS
    'Activation': export_activation,  # by name: KERAS_ACTIVATIONS
    'Softmax': export_activation,
    'BatchNormalization': export_batchnorm,
    'Flatten': export_flatten,
    'Dropout': export_dropout,
}

# What to change, for Keras/QKeras layers users commonly have that this flow cannot deploy.
UNSUPPORTED_FIX = {
    'Dense': 'use qkeras.QDense with kernel_quantizer=quantized_bits(bits, integer, alpha=1) and a bias_quantizer '
             '(float weights cannot be reproduced bit-exactly)',
    'Conv2D': 'use qkeras.QConv2D with kernel_quantizer=quantized_bits(bits, integer, alpha=1) and a bias_quantizer '
              '(float weights cannot be reproduced bit-exactly), or keras_models.conv.BlockSparseQConv2D',
    'ReLU': "use QActivation(quantized_relu(bits, integer)) or Activation('relu')",
    'LeakyReLU': 'use QActivation(quantized_relu(bits, integer)) (negative_slope=0)',
    'QBatchNormalization': "use a Keras BatchNormalization (the reference mirrors hls4ml's float32 scale and bias)",
    'QDenseBatchnorm': 'use a QDense followed by a Keras BatchNormalization',
    'QConv2DBatchnorm': 'use a QConv2D followed by a Keras BatchNormalization',
    'Reshape': 'use Flatten (to flatten images before the dense layers), or give the model its image shape as input',
    'InputLayer': 'the model must have a single input',
    'ZeroPadding2D': "use padding='same' in the convolution after it",
    **{c: 'use MaxPooling2D (exact in the input type) or a strided QConv2D' for c in (
        'AveragePooling2D', 'GlobalAveragePooling2D', 'GlobalMaxPooling2D')},
    **{c: 'this flow deploys 2-D convolutions (QConv2D, BlockSparseQConv2D); for 1-D data use a (1, width, channels) '
          'input with (1, k) kernels' for c in ('Conv1D', 'QConv1D', 'MaxPooling1D', 'AveragePooling1D',
                                              'GlobalAveragePooling1D')},
    **{c: 'depthwise and separable convolutions have no template here; use QConv2D' for c in (
        'DepthwiseConv2D', 'QDepthwiseConv2D', 'SeparableConv2D', 'QSeparableConv2D')},
    **{c: 'use keras_models.lstm.BlockSparseQLSTM (quantized, hard sigmoid/tanh, block masks shared by the 4 gates; '
          'drop_rate=0 keeps every weight): the one recurrent layer with an exact reference and HLS template'
       for c in ('LSTM', 'QLSTM')},
    **{c: 'recurrent layers other than LSTM have no template; use keras_models.lstm.BlockSparseQLSTM'
       for c in ('GRU', 'SimpleRNN', 'QGRU', 'QSimpleRNN')},
    **{c: 'the model must be a single chain without merges' for c in (
        'Add', 'Concatenate', 'Multiply', 'Subtract', 'Average', 'Maximum', 'Minimum')},
}


def _unsupported_layer(layer) -> str:
    cls = type(layer).__name__
    fix = UNSUPPORTED_FIX.get(cls, 'replace it by one of them or remove it')
    return f"layer '{layer.name}' ({cls}): not supported; supported layers are {sorted(EXPORTERS)}; {fix}"


def check_deployable(model) -> None:
    """Refuse, with every reason at once, a model whose structure this flow cannot deploy (the
    quantizers and types are checked by ``to_integer_model``)."""
    problems = []
    for layer in model.layers:
        if not C_IDENTIFIER.match(layer.name) or layer.name in CPP_KEYWORDS:
            fixed = re.sub(r'\W', '_', layer.name)
            fixed = fixed if C_IDENTIFIER.match(fixed) and fixed not in CPP_KEYWORDS else f'l_{fixed}'
            problems.append(f"layer name '{layer.name}' is not a C++ identifier (hls4ml generates C++ from layer names); "
                            f"rename it, e.g. to '{fixed}'")
    for layer in _compute_layers(model):
        cls = type(layer).__name__
        if cls not in EXPORTERS:
            problems.append(_unsupported_layer(layer))
            continue
        try:
            specs = [activation_spec(layer)] if EXPORTERS[cls] is export_activation else []
            specs += [s for s in [fused_activation(layer)] if s]
            for spec in specs:
                _activation_exporter(spec)
        except UnsupportedModel as e:
            problems.append(str(e))
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        problems.append('the model must have one input and one output (a chain of layers)')
    if problems:
        sep = '\n  ' if len(problems) > 1 else ' '
        raise UnsupportedModel('model cannot be deployed:' + sep + sep.join(problems))


def _has_input_layer(model) -> bool:
    return bool(model.layers) and type(model.layers[0]).__name__ == 'InputLayer'


def _compute_layers(model) -> list:
    return model.layers[1:] if _has_input_layer(model) else model.layers


def input_layer_name(model) -> str:
    return model.layers[0].name if _has_input_layer(model) else model.input.name.split(':')[0]


def export_steps(model) -> list[tuple[str, object]]:
    """(hls4ml node name, exporter(in_type, overrides)) for every node hls4ml builds, in order: one
    per layer, plus the activation it splits off a layer with ``activation=``."""
    steps = []
    for layer in _compute_layers(model):
        steps.append((layer.name, functools.partial(EXPORTERS[type(layer).__name__], layer)))
        spec = fused_activation(layer)
        if spec:
            steps.append((spec.name, functools.partial(export_activation_spec, spec)))
    return steps


OUTPUTS = ('model', 'logits')


def deployed_model(model, output: str = 'model'):
    """The model as deployed: ``output='logits'`` strips a final softmax (argmax unchanged)."""
    if output not in OUTPUTS:
        raise UnsupportedModel(f'output {output!r} unknown; one of {OUTPUTS}')
    if output == 'model':
        return model
    last = _compute_layers(model)[-1]
    if type(last).__name__ not in ('Activation', 'Softmax') or activation_name(last) != 'softmax':
        raise UnsupportedModel(f"output: logits strips a final softmax, but the last layer '{last.name}' "
                               f'({type(last).__name__}) is not one; use output: model')
    import tensorflow as tf

    return tf.keras.Model(model.inputs, last.input, name=model.name)


def removed_nodes(model, im: IntegerModel, output: str = 'model') -> dict[str, FixedType]:
    """The nodes hls4ml builds that the reference has no layer for (Dropout, a cast to the same type,
    '<layer>_linear', a BatchNormalization that does nothing), with the type flowing there: the
    conversion gives each that result type, so hls4ml removes them (EliminateLinearActivation
    needs equal types in and out; the others are removed whatever their type)."""
    ref = {layer.name: layer for layer in im.layers}
    t, removed = im.in_type, {}
    for name, _ in export_steps(deployed_model(model, output)):
        if name in ref:
            t = ref[name].out_type
        else:
            removed[name] = t
    return removed


def keras_view(model):
    """``model`` with the layer names of its reference, for comparing QKeras layer by layer: every
    activation a layer carries (``activation=``) in a layer of its own under hls4ml's node name,
    after a copy of the layer without it, and a flat input (reshaped inside). The same QKeras
    arithmetic, operation for operation; ``model`` itself when nothing needs changing."""
    import tensorflow as tf
    from qkeras import QActivation

    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    layers = _compute_layers(model)
    fused = {layer.name: fused_activation(layer) for layer in layers}
    fused = {name: None if spec and spec.function == 'linear' else spec for name, spec in fused.items()}
    if len(shape) == 1 and not any(fused.values()):
        return model
    inp = tf.keras.Input((int(np.prod(shape)),), name=input_layer_name(model))
    x = tf.keras.layers.Reshape(shape, name=f'{inp.name.split(":")[0]}_shape')(inp) if len(shape) > 1 else inp
    for layer in layers:  # copies: a layer shared with ``model`` would have two outputs
        spec = fused[layer.name]
        config = layer.get_config() if spec is None else {**layer.get_config(), 'activation': 'linear'}
        copy = type(layer).from_config(config)
        x = copy(x)
        copy.set_weights(layer.get_weights())
        if spec is not None:
            act = QActivation(spec.quantizer, name=spec.name) if spec.cls == 'QActivation' else \
                tf.keras.layers.Activation(spec.function, name=spec.name)
            x = act(x)
    return tf.keras.Model(inp, x, name=model.name)


def to_integer_model(model, input_type: FixedType, overrides: dict[str, Overrides] | None = None,
                     output: str = 'model') -> IntegerModel:
    check_deployable(model)
    full = model
    model = deployed_model(model, output)
    overrides = overrides or {}
    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    layers = [Input(name=input_layer_name(model), out_type=input_type, shape=shape)]
    t = input_type
    for name, export in export_steps(model):
        ov = overrides.get(name, Overrides())
        try:
            out = export(t, ov)
            refs = out if isinstance(out, list) else [out]  # [] for a node hls4ml removes
            for ref in refs:
                _check_rank(ref, shape)
                ref.check(t)
        except UnsupportedModel:
            raise
        except ValueError as e:  # a quantizer or type the hardware cannot reproduce exactly
            raise UnsupportedModel(str(e)) from e
        for ref in refs:
            if (ov.table_size or ov.table_t) and not isinstance(ref, TABLE_LAYERS):
                raise UnsupportedModel(f"layer '{ref.name}': table_size/table_t apply to sigmoid, tanh and softmax "
                                       f'lookup tables; this layer ({ref.kind}) has none')
            layers.append(ref)
            shape = tuple(ref.forward(np.zeros((1, *shape), dtype=np.int64), t).shape[1:])  # its output per sample
            t = ref.out_type
    unknown = set(overrides) - {layer.name for layer in layers}
    if unknown:
        stripped = unknown & {layer.name for layer in full.layers} - {layer.name for layer in model.layers}
        hint = f' ({sorted(stripped)} removed by output: {output})' if stripped else ''
        removed = unknown & {layer.name for layer in model.layers}
        hint += f' ({sorted(removed)} removed by hls4ml: no-ops)' if removed else ''
        raise UnsupportedModel(f'per-layer settings name layers the model does not have: {sorted(unknown)}{hint}; '
                               f'its layers: {[layer.name for layer in layers]}')
    if len(shape) != 1:
        raise UnsupportedModel(f'the output is a {shape} tensor; the accelerator streams flat vectors: add a Flatten')
    _check_streamable(layers[0], layers[-1])
    return IntegerModel(layers)


RANK_FIX = {1: 'it acts on flat vectors: put a Flatten before it', 2: 'it takes a (time steps, features) sequence: '
            'remove the Flatten before it', 3: 'it takes (height, width, channels) images: give the model an image '
            'input, e.g. Input((28, 28, 1)), and no Flatten before it'}


def _check_rank(ref, shape: tuple) -> None:
    """Refuse a layer the tensor reaching it does not fit (each reference kind says what it takes)."""
    if ref.elementwise or ref.input_rank is None or len(shape) == ref.input_rank:
        return
    raise UnsupportedModel(f"layer '{ref.name}' ({ref.kind}) gets a {shape} tensor; {RANK_FIX[ref.input_rank]}")


def _check_streamable(first, last) -> None:
    if first.out_type.width > STREAM_MAX_BITS:
        raise UnsupportedModel(f'input precision {first.out_type.hls()} is wider than the {STREAM_MAX_BITS}-bit codes the '
                               'accelerator stream carries; choose a narrower input_precision')
    if last.out_type.width > STREAM_MAX_BITS:
        fix = FixedType(STREAM_MAX_BITS, min(last.out_type.integer, STREAM_MAX_BITS), True, 'RND_CONV', 'SAT')  # same range
        raise UnsupportedModel(
            f"layer '{last.name}' (the output): its result type {last.out_type.hls()} is wider than the {STREAM_MAX_BITS}-bit "
            f'codes the accelerator stream carries; give it a narrower result in the config, e.g. '
            f'layers: {{{last.name}: {{result: "{fix.hls()}"}}}}'
        )


def reference_for(model, cfg) -> IntegerModel:
    """The integer reference of ``model`` under the flow config: the full deployability check."""
    from flow.convert import check_io_type, check_strategies

    im = to_integer_model(model, FixedType.parse(cfg.input_precision), layer_overrides(cfg), cfg.output)
    check_strategies(im, cfg)
    check_io_type(im, cfg)
    return im
