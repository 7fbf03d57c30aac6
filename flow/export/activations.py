"""Activations: Keras activations by name, QKeras quantizers (QActivation), softmax and the lookup
tables hls4ml fills, and the activation hls4ml splits off a layer with ``activation=``."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from flow.export.quantizers import quantized_bits_activation_type, relu_type, sigmoid_type, tanh_type
from flow.export.registry import EXPORTERS, Overrides, UnsupportedModel, _compute_layers, _no_override, _result, exporter, input_layer_name, rebuild
from flow.runtime.fixed import FixedType
from flow.runtime.ref_activations import BinaryTanh, HardSigmoid, HardTanh, Sigmoid, Softmax, Tanh, index_bits
from flow.runtime.ref_layers import Linear, ReLU


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


def table_activation(cls, name: str, in_t: FixedType, out_t: FixedType | None, ov: Overrides):
    """nnet::sigmoid / nnet::tanh with the table hls4ml's C++ fills (table_size, table_t)."""
    from flow.export.tables import TableSpec, hls4ml_tables

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
    from flow.export.tables import TableSpec, exact_code

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
    from flow.export.tables import hls4ml_tables

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
    from flow.export.tables import exact_code

    slope, slope_t, shift, shift_t = constants
    if out_t is None:
        frac, signed = max(slope_t.frac + in_t.frac, shift_t.frac, 0), cls is HardTanh
        out_t = FixedType(frac + 1 + signed, 1 + signed, signed=signed)
    return cls(name=name, out_type=out_t, slope=exact_code(slope, slope_t), slope_type=slope_t,
               shift=exact_code(shift, shift_t), shift_type=shift_t)


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


def is_softmax(layer) -> bool:
    """A Keras Softmax layer, or an Activation('softmax')."""
    return type(layer).__name__ in ('Activation', 'Softmax') and activation_name(layer) == 'softmax'


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


BINARY_T = FixedType(2, 2)  # -1 and +1: hls4ml's own type for binary activations (utils/config.py)


def _binary(a, t, ov):
    """QActivation(binary()): sign(x) with 0 -> +1, times alpha; hls4ml's binary_tanh computes
    x >= 0 ? 1 : -1 and has no alpha, so alpha must be 1 (or None: 1 on tanh(x), same sign)."""
    c = a.quantizer.get_config()
    alpha = c.get('alpha')
    if c.get('use_01') or c.get('use_stochastic_rounding') or (alpha is not None and (
            isinstance(alpha, str) or np.ndim(alpha) != 0 or float(alpha) != 1.0)):
        raise UnsupportedModel(f'{a.where}: binary(alpha={alpha!r}, use_01={bool(c.get("use_01"))}, use_stochastic_rounding='
                               f'{bool(c.get("use_stochastic_rounding"))}) as an activation: hls4ml\'s binary_tanh outputs '
                               '-1/+1 only; use binary() or binary(alpha=1)')
    return BinaryTanh(name=a.name, out_type=BINARY_T, raw_input=alpha is not None)


QKERAS_ACTIVATIONS = {
    'binary': _binary,
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


# QKeras activations hls4ml converts to something else than QKeras computes: why, and the fix.
INEXACT_QACTIVATIONS = {
    'binary_tanh': "QKeras' binary_tanh maps 0 to -1 (2 * round(0.5 * x + 0.5) - 1, round half to even), hls4ml's "
                   'binary_tanh maps it to +1; use QActivation(binary()), which maps 0 to +1 as hls4ml does',
    'ternary': "hls4ml's ternary_tanh ignores QKeras' threshold (|x| >= 0.33 by default) and compares 2 * x against "
               '+-1 in the input type (x > 0.5 -> 1, x <= -0.5 -> -1, 2 * x wrapping for large inputs); no setting '
               'makes them equal; use binary() or quantized_bits/quantized_relu',
}
INEXACT_QACTIVATIONS['ternary_tanh'] = INEXACT_QACTIVATIONS['ternary']


def _activation_exporter(a: ActivationSpec):
    """The exporter for an activation, or UnsupportedModel naming the fix."""
    if a.cls == 'QActivation':
        if a.function in QKERAS_ACTIVATIONS:
            return QKERAS_ACTIVATIONS[a.function]
        if a.function in INEXACT_QACTIVATIONS:
            raise UnsupportedModel(f'{a.where}: QActivation {a.function}: {INEXACT_QACTIVATIONS[a.function]}')
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


@exporter('QActivation', 'Activation', 'Softmax')  # by quantizer (QKERAS_ACTIVATIONS) or name (KERAS_ACTIVATIONS)
def export_activation(layer, in_t, ov):
    return export_activation_spec(activation_spec(layer), in_t, ov)


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

    def call(layer, x):  # copies: a layer shared with ``model`` would have two outputs
        spec = fused[layer.name]
        config = layer.get_config() if spec is None else {**layer.get_config(), 'activation': 'linear'}
        copy = type(layer).from_config(config)
        x = copy(x)
        copy.set_weights(layer.get_weights())
        if spec is not None:
            act = QActivation(spec.quantizer, name=spec.name) if spec.cls == 'QActivation' else \
                tf.keras.layers.Activation(spec.function, name=spec.name)
            x = act(x)
        return x

    return rebuild(model, call, inp, x)
