"""Co-simulation of convolutional networks in io_stream: the hls4ml C simulation (its line buffer,
padding and pooling, our block-sparse kernel per pixel) == the integer reference, bit for bit, over
random image sizes, kernels, strides, paddings, channel counts, block shapes and bit widths."""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flow.infra.boards import get_board
from flow.config import FlowConfig
from flow.plan import resolve_io_type
from flow.stages.convert import compile_csim, convert_model
from flow.export import Overrides, to_integer_model
from flow.runtime.fixed import FixedType
from flow.stages.verify import Mismatch, compare_reference_csim, csim_library
from user_models import random_weights

pytestmark = pytest.mark.csim


def build_cnn(shape, filters, kernel, strides, padding, block, drop, wbits, seed, sparse=True, pool=False, head=True):
    """Input ``shape`` (H, W, C) -> [BlockSparse]QConv2D + quantized_relu [-> MaxPooling2D 2x2] -> Flatten
    [-> QDense(3)]."""
    import tensorflow as tf
    from qkeras import QActivation, QConv2D, QDense, quantized_bits, quantized_relu

    from keras_models.conv import BlockSparseQConv2D

    tf.keras.utils.set_random_seed(seed)
    quant = dict(kernel_quantizer=quantized_bits(wbits, 0, alpha=1), bias_quantizer=quantized_bits(8, 2, alpha=1))
    inp = tf.keras.Input(shape, name='x')
    if sparse:
        conv = BlockSparseQConv2D(filters, kernel, strides=strides, padding=padding, block_shape=block, drop_rate=drop,
                                  mask_seed=seed, name='conv', **quant)
    else:
        conv = QConv2D(filters, kernel, strides=strides, padding=padding, name='conv', **quant)
    x = QActivation(quantized_relu(5, 2), name='relu')(conv(inp))
    if pool:
        x = tf.keras.layers.MaxPooling2D(2, name='pool')(x)
    x = tf.keras.layers.Flatten(name='flat')(x)
    if head:
        x = QDense(3, kernel_quantizer=quantized_bits(5, 0, alpha=1), bias_quantizer=quantized_bits(8, 2, alpha=1),
                   name='head')(x)
    return random_weights(tf.keras.Model(inp, x), seed, kernel=1.5, bias=3)


def check_cosim(tmp_path, model, in_type, cfg, n_vectors=16, seed=0):
    im = to_integer_model(model, in_type, {n: Overrides(lc.accum, lc.result) for n, lc in cfg.layers.items()})
    board = get_board('pynq-z2')
    assert resolve_io_type(im, cfg, board) == 'io_stream'
    convert_model(model, im, cfg, board, tmp_path / 'hls')
    compile_csim(tmp_path / 'hls')
    lib = csim_library(tmp_path, im, cfg.project_name)
    rng = np.random.default_rng(seed)
    x_codes = rng.integers(in_type.min_code, in_type.max_code + 1, size=(n_vectors, int(np.prod(im.input.shape))))
    x_codes[0] = in_type.max_code  # extremes drive the accumulator bound
    x_codes[1] = in_type.min_code
    compare_reference_csim(im, lib, in_type.to_float(x_codes), x_codes)  # raises naming layer, pixel and channel
    return im, lib


def _divisors(n, among=(1, 2, 3, 4, 8)):
    return [d for d in among if n % d == 0]


@st.composite
def conv_cases(draw):
    h, w = draw(st.integers(3, 9)), draw(st.integers(3, 9))
    c = draw(st.sampled_from([1, 2, 3, 4, 8]))
    f = draw(st.sampled_from([2, 4, 6, 8]))
    kernel = (draw(st.integers(1, min(3, h))), draw(st.integers(1, min(3, w))))
    strides = (draw(st.integers(1, 2 if kernel[0] > 1 else 1)), draw(st.integers(1, 2)))  # see the refusal test
    padding = draw(st.sampled_from(['valid', 'same']))
    block = (draw(st.sampled_from(_divisors(c))), draw(st.sampled_from(_divisors(f))))
    drop = draw(st.sampled_from([0.0, 0.25, 0.5, 0.75]))
    wbits = draw(st.integers(2, 6))
    in_type = FixedType(draw(st.integers(4, 9)), draw(st.integers(1, 3)))
    sparse = draw(st.booleans())
    pool = draw(st.booleans())
    seed = draw(st.integers(0, 10_000))
    rf_pick = draw(st.integers(0, 100))
    return (h, w, c), f, kernel, strides, padding, block, drop, wbits, in_type, sparse, pool, seed, rf_pick


def _output_hw(shape, kernel, strides, padding):
    if padding == 'same':
        return tuple(-(-shape[i] // strides[i]) for i in range(2))
    return tuple((shape[i] - kernel[i]) // strides[i] + 1 for i in range(2))


@given(conv_cases())
@settings(max_examples=int(os.environ.get('COSIM_EXAMPLES', 6)), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_random_convolutions_match_reference_exactly(tmp_path_factory, case):
    """Random image sizes, kernels, strides, paddings, channels, blocks, densities, bit widths and
    ReuseFactors; block-sparse or hls4ml's own QConv2D; with or without max pooling."""
    shape, f, kernel, strides, padding, block, drop, wbits, in_type, sparse, pool, seed, rf_pick = case
    pool = pool and min(_output_hw(shape, kernel, strides, padding)) >= 2
    model = build_cnn(shape, f, kernel, strides, padding, block, drop, wbits, seed, sparse=sparse, pool=pool)
    im = to_integer_model(model, in_type)
    conv = im.layers[1]
    # ours: any ReuseFactor up to its kept weights (zero padding); hls4ml's Latency conv: any up to its products
    products = conv.values.size if hasattr(conv, "values") else conv.weight.size  # zero channel blocks found: block-sparse
    cfg = FlowConfig.load(None, model='user.h5', layers={'conv': {'reuse_factor': 1 + rf_pick % min(products, 16)}})
    check_cosim(tmp_path_factory.mktemp('conv'), model, in_type, cfg, seed=seed)


def test_one_row_filters_with_a_vertical_stride_are_refused():
    """hls4ml's io_stream line buffer for filters of height 1 ignores the vertical stride (the C
    simulation computes every row): refused with the fix instead of deploying a wrong network."""
    from flow.export import UnsupportedModel

    model = build_cnn((3, 3, 1), 2, (1, 2), (2, 1), 'valid', (1, 1), 0.0, 2, seed=0, sparse=False)
    with pytest.raises(UnsupportedModel, match=r"layer 'conv' \(QConv2D\): a filter of height 1 with vertical stride 2; .*"
                                               r'use strides \(1, w\)'):
        to_integer_model(model, FixedType(4, 1))


def test_a_wrong_weight_is_reported_with_its_layer_pixel_and_channel(tmp_path):
    """One reference weight off by one: the C simulation is traced back to the convolution, and the
    report names the output pixel and channel."""
    model = build_cnn((6, 5, 4), 4, (3, 3), (1, 1), 'same', (2, 2), 0.5, 4, seed=3)
    in_type = FixedType(8, 2)
    im, lib = check_cosim(tmp_path, model, in_type, FlowConfig.load(None, model='user.h5'))
    conv = im.layers[1]
    conv.values[0, 0, 0] += 1  # kept block 0 (position (0, 0)), its first row and column
    x_codes = np.full((2, 6 * 5 * 4), in_type.max_code)
    channel = int(conv.index[0]) * 2
    with pytest.raises(Mismatch, match=rf"layer 'conv', sample 0, element \(1, 1, {channel}\) \(pixel \(row 1, column 1\), "
                                       rf'channel {channel}\)'):
        compare_reference_csim(im, lib, in_type.to_float(x_codes), x_codes)


def test_dense_layers_also_build_in_io_stream(tmp_path):
    """An MLP in io_stream (the config chooses): our block-sparse and SST dense layers read the whole
    input vector from the stream, and equal the reference exactly."""
    import tensorflow as tf
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu, quantized_po2

    from keras_models.layers import BlockSparseQDense
    from keras_models.sst import SSTQDense

    quant = dict(kernel_quantizer=quantized_bits(4, 0, alpha=1), bias_quantizer=quantized_bits(8, 2, alpha=1))
    inp = tf.keras.Input((24,), name='x')
    x = BlockSparseQDense(16, block_shape=(4, 4), drop_rate=0.5, name='bs', **quant)(inp)
    x = QActivation(quantized_relu(5, 2), name='r1')(x)
    x = SSTQDense(8, group=8, nonzeros=2, scale_quantizer=quantized_po2(4), bias_quantizer=quantized_bits(8, 2, alpha=1),
                  name='sst')(x)
    x = QActivation(quantized_relu(5, 2), name='r2')(x)
    x = QDense(4, name='head', **quant)(x)
    model = random_weights(tf.keras.Model(inp, x), 7, kernel=1.5, bias=3)
    cfg = FlowConfig.load(None, model='user.h5', io_type='io_stream', layers={'bs': {'reuse_factor': 5}})
    im, _ = check_cosim(tmp_path, model, FixedType(8, 3), cfg)
    assert 'nnet::block_sparse_dense<' in (tmp_path / 'hls' / 'firmware' / f'{cfg.project_name}.cpp').read_text()
    assert resolve_io_type(im, FlowConfig.load(None, model='user.h5'), get_board('pynq-z2')) == 'io_parallel'  # auto: small


def test_a_cnn_without_biases_with_batchnorm_on_channels_matches_reference(tmp_path):
    """As users build CNNs: convolutions and dense layers with use_bias=False (hls4ml adds a zero
    bias) followed by BatchNormalization over the channels, in io_stream."""
    import tensorflow as tf
    from qkeras import QActivation, QConv2D, QDense, quantized_bits, quantized_relu

    from keras_models.conv import BlockSparseQConv2D
    from keras_models.layers import BlockSparseQDense

    q = dict(kernel_quantizer=quantized_bits(4, 0, alpha=1), bias_quantizer=quantized_bits(8, 2, alpha=1), use_bias=False)
    inp = tf.keras.Input((6, 6, 4), name='x')
    x = QConv2D(4, 3, padding='same', name='c1', **q)(inp)
    x = tf.keras.layers.BatchNormalization(name='bn1')(x)
    x = QActivation(quantized_relu(5, 2), name='r1')(x)
    x = BlockSparseQConv2D(4, 3, block_shape=(2, 2), name='c2', **q)(x)
    x = tf.keras.layers.BatchNormalization(name='bn2')(x)
    x = QActivation(quantized_relu(5, 2), name='r2')(x)
    x = tf.keras.layers.Flatten(name='f')(x)
    x = BlockSparseQDense(8, block_shape=(4, 4), drop_rate=0.5, name='d1', **q)(x)
    x = QActivation(quantized_relu(5, 2), name='r3')(x)
    x = QDense(3, name='head', **q)(x)
    model = random_weights(tf.keras.Model(inp, x), 3, kernel=1.5, bias=3)
    im, _ = check_cosim(tmp_path, model, FixedType(8, 3), FlowConfig.load(None, model='user.h5', layers={'c2': {'reuse_factor': 3}}))
    assert [l.kind for l in im.layers[1:3]] == ['conv2d', 'batchnorm'] and not im.layers[1].bias.any()


def test_a_changed_generated_conv_cycle_is_a_conversion_mismatch(tmp_path, monkeypatch):
    """The conv's generated kernel cycle (its case tables and source lists) drifting from the
    reference's gather schedule stops the conversion, even when every weight is right."""
    from flow.hls import block_sparse_conv2d
    from flow.stages.convert import ConversionMismatch

    model = build_cnn((5, 5, 4), 4, (3, 3), (1, 1), 'valid', (2, 2), 0.5, 4, seed=1)
    im = to_integer_model(model, FixedType(8, 2))
    good = block_sparse_conv2d.conv_cycle
    monkeypatch.setattr(block_sparse_conv2d, 'conv_cycle', lambda *a: good(*a).replace('x0 = data[', 'x0 = data[1 + ', 1))
    with pytest.raises(ConversionMismatch, match=r"layer 'conv': hls4ml's generated kernel is not the one of the "
                                                 r"reference's"):
        convert_model(model, im, FlowConfig.load(None, model='user.h5', layers={'conv': {'reuse_factor': 3}}),
                      get_board('pynq-z2'), tmp_path / 'hls')
