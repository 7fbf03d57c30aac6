"""quantized_bits(alpha='auto_po2') kernels (hls4ml's own tests use them; alpha=None becomes it inside
QDense/QConv2D): the per-channel power-of-two scales applied exactly, the kernel deployed as its
exact values (hls4ml's ApplyAlpha would store a scale of 2 as 1)."""

import numpy as np
import pytest

from flow.export import to_integer_model
from flow.runtime.fixed import FixedType
from user_models import chain, random_weights


def _qdense(units, name, alpha='auto_po2', **kw):
    from qkeras import QDense, quantized_bits

    return QDense(units, kernel_quantizer=quantized_bits(4, 0, alpha=alpha), bias_quantizer=quantized_bits(8, 3, alpha=1),
                  name=name, **kw)


def _mlp(alpha='auto_po2', seed=0):
    from qkeras import QActivation, quantized_relu

    # kernel=3: weights beyond the 4-bit range, so the learned scales are 2 and 4, not 1
    return random_weights(chain(_qdense(8, 'fc1', alpha), QActivation(quantized_relu(6, 3), name='relu1'),
                                _qdense(3, 'out', alpha), n_in=6), seed, kernel=3.0)


@pytest.mark.parametrize('alpha', ['auto_po2', None])
def test_reference_weights_are_the_values_qkeras_multiplies_by(alpha):
    model = _mlp(alpha)
    im = to_integer_model(model, FixedType(8, 3))
    for name in ('fc1', 'out'):
        layer = model.get_layer(name)
        values = np.asarray(layer.kernel_quantizer_internal(layer.kernel.numpy()), dtype=np.float64)
        ref = next(l for l in im.layers if l.name == name)
        assert np.array_equal(ref.weight_type.to_float(ref.weight), values)
        assert (np.asarray(layer.kernel_quantizer_internal.scale) > 1).any()  # the scales are not all 1


@pytest.mark.csim
def test_auto_po2_mlp_and_conv_cosim_and_qkeras_exact(tmp_path):
    import tensorflow as tf
    from qkeras import QConv2D, quantized_bits

    from flow.config import FlowConfig
    from flow.stages.verify import qkeras_comparable, qkeras_outputs, to_codes
    from test_conv_cosim import check_cosim

    inp = tf.keras.Input((4, 4, 2), name='x')
    x = QConv2D(3, (2, 2), kernel_quantizer=quantized_bits(4, 0, alpha='auto_po2'),
                bias_quantizer=quantized_bits(8, 3, alpha=1), name='conv')(inp)
    x = tf.keras.layers.Flatten(name='flat')(x)
    model = random_weights(tf.keras.Model(inp, _qdense(3, 'head')(x)), 1, kernel=3.0)
    in_t = FixedType(6, 3)
    im, _ = check_cosim(tmp_path, model, in_t, FlowConfig.load(None, model='m.h5'))
    comparable, why = qkeras_comparable(im)
    assert {'conv', 'head'} <= set(comparable), why
    codes = np.random.default_rng(0).integers(in_t.min_code, in_t.max_code + 1, size=(32, 32))
    trace = im.trace(codes)
    q = qkeras_outputs(model, im, in_t.to_float(codes))
    for name in comparable:
        layer = next(l for l in im.layers if l.name == name)
        assert np.array_equal(to_codes(q[name].reshape(len(codes), -1), layer.out_type.frac),
                              trace[name].reshape(len(codes), -1)), name
