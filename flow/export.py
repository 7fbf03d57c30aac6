"""Keras/QKeras model -> integer reference model, with exact types for every tensor.

One exporter per Keras class in ``EXPORTERS``; a new method adds its own entry. This is also the
deployability check: a layer without an exporter is refused here, at load time, with the reason.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass

import numpy as np

from flow.errors import BadInput
from flow.quantizers import UnsupportedQuantizer, relu_type, sigmoid_type, tanh_type, weight_type
from flow.runtime.fixed import FixedType
from flow.runtime.ref_activations import HardSigmoid, HardTanh, Sigmoid, Softmax, Tanh, index_bits
from flow.runtime.ref_block_sparse import BlockSparseDense, pack_blocks
from flow.runtime.ref_layers import Dense, Input, ReLU, sum_bound
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
    return {name: Overrides(**{f: getattr(lc, f) for f in fields}) for name, lc in cfg.layers.items()
            if any(getattr(lc, f) for f in fields)}


def exact_accum_type(w_codes, w_t: FixedType, b_codes, b_t: FixedType, in_t: FixedType) -> FixedType:
    """Smallest signed accumulator that holds every partial sum exactly, for these weights.

    Tighter than hls4ml's 'auto' (which assumes worst-case weights) and never wraps."""
    bound, frac = sum_bound(w_codes, w_t, b_codes, b_t, in_t)
    width = bound.bit_length() + 1
    return FixedType(width, width - frac, signed=True)


def _dense_types(layer, in_t: FixedType, ov: Overrides, element_mask=None):
    """Types and codes of a dense-like layer; the mask multiplies the *quantized* kernel."""
    w_t = weight_type(layer.kernel_quantizer_internal, f"layer '{layer.name}' kernel")
    if not layer.use_bias:
        raise UnsupportedModel(f"layer '{layer.name}': use_bias=False is not supported; hls4ml adds a zero bias, keep use_bias=True")
    b_t = weight_type(layer.bias_quantizer_internal, f"layer '{layer.name}' bias")
    kernel = np.asarray(layer.kernel_quantizer_internal(layer.kernel.numpy()))
    if element_mask is not None:
        kernel = kernel * element_mask
    bias = np.asarray(layer.bias_quantizer_internal(layer.bias.numpy()))
    w_codes = w_t.from_float_exact(kernel, f"layer '{layer.name}' quantized kernel")
    b_codes = b_t.from_float_exact(bias, f"layer '{layer.name}' quantized bias")
    try:
        acc_t = FixedType.parse(ov.accum) if ov.accum else exact_accum_type(w_codes, w_t, b_codes, b_t, in_t)
    except ValueError as e:  # wider than the int64 codes the reference computes with
        raise UnsupportedModel(
            f"layer '{layer.name}': its exact accumulator is too wide ({e}); narrow the input or weight precision"
        ) from e
    res_t = FixedType.parse(ov.result) if ov.result else acc_t
    act = layer.get_config().get('activation')
    if act not in (None, 'linear'):
        raise UnsupportedModel(
            f"layer '{layer.name}': fused activation {act!r}; put the activation in its own QActivation layer"
        )
    return dict(weight_type=w_t, bias_type=b_t, accum_type=acc_t, bias=b_codes, out_type=res_t), w_codes


def export_qdense(layer, in_t, ov):
    kw, w_codes = _dense_types(layer, in_t, ov)
    return Dense(name=layer.name, weight=w_codes, **kw)


def export_block_sparse_qdense(layer, in_t, ov):
    from keras_models.masks import expand

    block_mask = layer.get_block_mask()
    kw, w_codes = _dense_types(layer, in_t, ov, expand(block_mask, layer.block_shape))
    values, index, k = pack_blocks(w_codes, block_mask, layer.block_shape)
    n_in, n_out = w_codes.shape
    return BlockSparseDense(
        name=layer.name, n_in=n_in, n_out=n_out, block=layer.block_shape, kept_per_row=k, values=values, index=index, **kw
    )


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


def softmax_plan(name: str, in_t: FixedType, n: int, ov: Overrides | None = None):
    """hls4ml's 'stable' softmax with every internal type chosen so that nothing wraps:
    inp_norm_t holds max(x) - x exactly (hls4ml's default ap_ufixed<W-1,I-1> wraps differences
    of 2**(I-1) or more), accum_t holds the sum of n exp table entries exactly, inv_inp_t is the
    same sum unsigned, so the 1/x table is addressed by the top bits of the sum's own range.
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
    inp_norm = FixedType(in_t.width, in_t.integer, signed=False)
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


def _units(layer) -> int:
    return int(layer.input_shape[-1])


TABLE_LAYERS = (Sigmoid, Tanh, Softmax)

KERAS_ACTIVATIONS = {
    'sigmoid': lambda l, t, ov: table_activation(Sigmoid, l.name, t, _result(ov), ov),
    'tanh': lambda l, t, ov: table_activation(Tanh, l.name, t, _result(ov), ov),
    'softmax': lambda l, t, ov: softmax_layer(l.name, t, _units(l), _result(ov), ov),
    'hard_sigmoid': lambda l, t, ov: hard_activation(HardSigmoid, l.name, t, _result(ov), KERAS_HARD),
}


def _quantized_sigmoid(layer, t, ov):
    out_t = sigmoid_type(layer.quantizer, f"layer '{layer.name}'")
    if layer.quantizer.get_config().get('use_real_sigmoid'):
        return table_activation(Sigmoid, layer.name, t, out_t, ov)
    return hard_activation(HardSigmoid, layer.name, t, out_t, QKERAS_HARD)


def _quantized_tanh(layer, t, ov):
    out_t = tanh_type(layer.quantizer, f"layer '{layer.name}'")
    if layer.quantizer.get_config().get('use_real_tanh'):
        return table_activation(Tanh, layer.name, t, out_t, ov)
    return hard_activation(HardTanh, layer.name, t, out_t, QKERAS_HARD)


def _quantized_relu(layer, t, ov):
    return ReLU(name=layer.name, out_type=relu_type(layer.quantizer, f"layer '{layer.name}'"))


QKERAS_ACTIVATIONS = {
    'quantized_relu': _quantized_relu,
    'quantized_sigmoid': _quantized_sigmoid,
    'quantized_tanh': _quantized_tanh,
}
# QActivation('name') with a plain function: hls4ml 1.3.0 refuses all of them
# ("Unsupported QKeras activation: unknown"); the fix for each.
QACTIVATION_FIX = {
    'softmax': "tf.keras.layers.Activation('softmax')",
    'sigmoid': "tf.keras.layers.Activation('sigmoid') or QActivation(quantized_sigmoid(bits, use_real_sigmoid=True))",
    'tanh': "tf.keras.layers.Activation('tanh') or QActivation(quantized_tanh(bits, use_real_tanh=True))",
    'hard_sigmoid': 'QActivation(quantized_sigmoid(bits)) (the same 0.5 * x + 0.5, quantized)',
    'hard_tanh': 'QActivation(quantized_tanh(bits)) (the same 2 * hard_sigmoid(x) - 1, quantized)',
    'relu': 'QActivation(quantized_relu(bits, integer))',
}


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


def _activation_exporter(layer):
    """The exporter for an activation layer, or UnsupportedModel naming the fix."""
    name, cls = activation_name(layer), type(layer).__name__
    if cls == 'QActivation':
        if name in QKERAS_ACTIVATIONS:
            return QKERAS_ACTIVATIONS[name]
        fix = QACTIVATION_FIX.get(name)
        if fix and not hasattr(layer.quantizer, 'get_config'):  # a plain function, not a quantizer
            raise UnsupportedModel(f"layer '{layer.name}': hls4ml 1.3.0 refuses QActivation('{name}') "
                                   f"(Unsupported QKeras activation); use {fix}")
        raise UnsupportedModel(f"layer '{layer.name}': QActivation {name} is not supported; supported quantizers: "
                               f'{sorted(QKERAS_ACTIVATIONS)}')
    if cls == 'Softmax' and layer.get_config().get('axis', -1) not in (-1, 1):
        raise UnsupportedModel(f"layer '{layer.name}': softmax over axis {layer.get_config()['axis']}; "
                               'only the last axis is supported')
    if name not in KERAS_ACTIVATIONS:
        raise UnsupportedModel(f"layer '{layer.name}': activation {name!r} is not supported; supported: "
                               f'{sorted(KERAS_ACTIVATIONS)} (Keras), {sorted(QKERAS_ACTIVATIONS)} (QActivation)')
    return KERAS_ACTIVATIONS[name]


def export_activation(layer, in_t, ov):
    exporter = _activation_exporter(layer)
    _no_override(layer, ov, 'accum', 'an activation has no accumulator')
    if type(layer).__name__ == 'QActivation':
        _no_override(layer, ov, 'result', 'its output type comes from its quantizer')
    return exporter(layer, in_t, ov)


EXPORTERS = {
    'QDense': export_qdense,
    'BlockSparseQDense': export_block_sparse_qdense,
    'QActivation': export_activation,  # by quantizer: QKERAS_ACTIVATIONS
    'Activation': export_activation,  # by name: KERAS_ACTIVATIONS
    'Softmax': export_activation,
}


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
            problems.append(f"layer '{layer.name}' ({cls}): not supported; supported layers are {sorted(EXPORTERS)}")
        elif EXPORTERS[cls] is export_activation:
            try:
                _activation_exporter(layer)
            except UnsupportedModel as e:
                problems.append(str(e))
    if len(model.inputs) != 1 or len(model.outputs) != 1 or len(model.inputs[0].shape) != 2:
        problems.append('the model must have one flat input and one output (a chain of dense layers)')
    if problems:
        sep = '\n  ' if len(problems) > 1 else ' '
        raise UnsupportedModel('model cannot be deployed:' + sep + sep.join(problems))


def _has_input_layer(model) -> bool:
    return bool(model.layers) and type(model.layers[0]).__name__ == 'InputLayer'


def _compute_layers(model) -> list:
    return model.layers[1:] if _has_input_layer(model) else model.layers


def input_layer_name(model) -> str:
    return model.layers[0].name if _has_input_layer(model) else model.input.name.split(':')[0]


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


def to_integer_model(model, input_type: FixedType, overrides: dict[str, Overrides] | None = None,
                     output: str = 'model') -> IntegerModel:
    check_deployable(model)
    full = model
    model = deployed_model(model, output)
    overrides = overrides or {}
    unknown = set(overrides) - {layer.name for layer in model.layers}
    if unknown:
        stripped = unknown & {layer.name for layer in full.layers}
        hint = f' ({sorted(stripped)} removed by output: {output})' if stripped else ''
        raise UnsupportedModel(f'per-layer settings name layers the model does not have: {sorted(unknown)}{hint}; '
                               f'its layers: {[layer.name for layer in model.layers]}')
    layers = [Input(name=input_layer_name(model), out_type=input_type, shape=tuple(model.inputs[0].shape[1:]))]
    t = input_type
    for layer in _compute_layers(model):
        ov = overrides.get(layer.name, Overrides())
        try:
            ref = EXPORTERS[type(layer).__name__](layer, t, ov)
            ref.check(t)
        except UnsupportedModel:
            raise
        except ValueError as e:  # a quantizer or type the hardware cannot reproduce exactly
            raise UnsupportedModel(str(e)) from e
        if (ov.table_size or ov.table_t) and not isinstance(ref, TABLE_LAYERS):
            raise UnsupportedModel(f"layer '{layer.name}': table_size/table_t apply to sigmoid, tanh and softmax "
                                   f'lookup tables; this layer ({ref.kind}) has none')
        layers.append(ref)
        t = ref.out_type
    _check_streamable(layers[0], layers[-1])
    return IntegerModel(layers)


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
    return to_integer_model(model, FixedType.parse(cfg.input_precision), layer_overrides(cfg), cfg.output)
