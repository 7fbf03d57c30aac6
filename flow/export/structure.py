"""Layers without weights of their own (Dropout, Flatten) and BatchNormalization."""

from __future__ import annotations

import numpy as np

from flow.export.registry import UnsupportedModel, _no_override, _result, exporter
from flow.export.types import exact_fixed_type
from flow.runtime.fixed import MAX_WIDTH, FixedType
from flow.runtime.ref_layers import BatchNorm, Flatten


@exporter('Dropout')
def export_dropout(layer, in_t, ov):
    """Dropout: hls4ml skips it when parsing (an inference no-op), so the reference has no layer."""
    _no_override(layer, ov, 'result', 'hls4ml removes Dropout')
    _no_override(layer, ov, 'accum', 'hls4ml removes Dropout')
    return []


@exporter('Flatten')
def export_flatten(layer, in_t, ov):
    """Flatten: hls4ml keeps a Reshape node, in io_parallel an alias of its input (no cast)."""
    _no_override(layer, ov, 'result', 'hls4ml aliases the input of a Flatten, it cannot cast')
    _no_override(layer, ov, 'accum', 'a Flatten has no accumulator')
    return Flatten(name=layer.name, out_type=in_t)


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


@exporter('BatchNormalization')
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
