"""QKeras binary activations as hls4ml builds them (nnet::binary_tanh: x >= 0 ? 1 : -1); the binary and
ternary activations hls4ml computes otherwise than QKeras are refused in one line."""

import json

import numpy as np
import pytest

from flow.export import UnsupportedModel, to_integer_model
from flow.runtime.fixed import FixedType
from flow.runtime.ref_activations import BinaryTanh
from user_models import chain, random_weights


def test_binary_maps_zero_to_plus_one():
    layer = BinaryTanh(name='b', out_type=FixedType(2, 2))
    assert layer.forward(np.array([[-3, -1, 0, 1, 7]]), FixedType(6, 3)).tolist() == [[-1, -1, 1, 1, 1]]


def test_qkeras_binary_float32_exactness_is_bounded_by_the_input_span():
    layer = BinaryTanh(name='b', out_type=FixedType(2, 2), raw_input=True)
    assert layer.qkeras_inexact(FixedType(16, 6)) is None
    assert 'float32' in layer.qkeras_inexact(FixedType(30, 10))
    assert BinaryTanh(name='b', out_type=FixedType(2, 2)).qkeras_inexact(FixedType(30, 10)) is None  # on tanh(x)


@pytest.mark.parametrize('quantizer, message', [
    ("'binary_tanh'", r"QActivation binary_tanh: QKeras' binary_tanh maps 0 to -1 .* use QActivation\(binary\(\)\)"),
    ('ternary()', r"QActivation ternary: hls4ml's ternary_tanh ignores QKeras' threshold"),
    ('binary(alpha=2)', r"binary\(alpha=2.*hls4ml's binary_tanh outputs -1/\+1 only; use binary\(\) or binary\(alpha=1\)"),
    ('binary(use_01=True)', r'use_01=True.*outputs -1/\+1 only'),
])
def test_binary_and_ternary_activations_hls4ml_computes_otherwise_are_refused(quantizer, message):
    from qkeras import QActivation, binary, ternary  # noqa: F401  (the quantizers the cases name)

    model = chain(QActivation(eval(quantizer), name='a'))
    with pytest.raises(UnsupportedModel, match=message):
        to_integer_model(model, FixedType(8, 3))


@pytest.mark.slow
@pytest.mark.csim
def test_binary_network_is_exact_against_csim_and_qkeras_with_zero_inputs(tmp_path):
    """QDense without bias (an all-zero input gives sums of exactly 0: binary maps them to +1) ->
    QActivation(binary()) -> QDense(activation=binary(alpha=1)) -> QDense."""
    from qkeras import QActivation, QDense, binary, quantized_bits

    from flow.config import FlowConfig
    from flow.steps import run_flow

    q = dict(kernel_quantizer=quantized_bits(3, 0, alpha=1), bias_quantizer=quantized_bits(8, 3, alpha=1))
    model = random_weights(chain(QDense(16, use_bias=False, name='fc1', **q), QActivation(binary(), name='bin1'),
                                 QDense(8, activation=binary(alpha=1), name='fc2', **q), QDense(4, name='out', **q),
                                 n_in=12), 0)
    model.save(tmp_path / 'm.h5')
    cfg = FlowConfig.load(None, model=str(tmp_path / 'm.h5'), input_precision='ap_fixed<6,3>', n_golden=64, rtl=False)
    run_flow(cfg, tmp_path / 'b', to_step='verify')
    report = json.loads((tmp_path / 'b' / 'reports' / 'verify.json').read_text())
    assert report['reference_vs_csim'] == {'equal_vectors': 64, 'exact': True}
    assert report['qkeras_vs_reference']['all_layers_exact']
    from flow.runtime.reference import IntegerModel

    im = IntegerModel.load(tmp_path / 'b' / 'reference')
    assert [l.kind for l in im.layers[1:]] == ['dense', 'binary_tanh', 'dense', 'binary_tanh', 'dense']
    trace = im.trace(np.load(tmp_path / 'b' / 'golden' / 'input_codes.npy'))
    zero = trace['fc1'] == 0
    assert zero.any() and (trace['bin1'][zero] == 1).all()  # the case QKeras' binary_tanh would get wrong


def test_batchnorm_before_binary_is_refused_in_one_line():
    """hls4ml merges the two into BatchNormalizationQuantizedTanh (0/1 outputs), which nothing models."""
    import tensorflow as tf
    from qkeras import QActivation, QDense, binary, quantized_bits

    q = dict(kernel_quantizer=quantized_bits(3, 0, alpha=1), bias_quantizer=quantized_bits(8, 3, alpha=1))
    model = chain(QDense(8, name='fc1', **q), tf.keras.layers.BatchNormalization(name='bn'),
                  QActivation(binary(), name='bin'), n_in=4)
    with pytest.raises(UnsupportedModel, match=r"layer 'bin' after 'bn' \(batchnorm\): hls4ml merges a BatchNormalization "
                                               r'followed by a binary activation'):
        to_integer_model(model, FixedType(8, 3))
