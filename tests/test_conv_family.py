"""The convolution layers of real QKeras models (DS-CNNs, 1-D CNNs, the folded-batchnorm layers of
published PYNQ models): QConv2DBatchnorm, QDepthwiseConv2DBatchnorm, QConv1D, BlockSparseQConv1D,
QDepthwiseConv2D, QSeparableConv2D and QSeparableConv1D. Over random geometries and quantizers: the
hls4ml C simulation (io_stream) == the integer reference, bit for bit, and QKeras == the reference
where QKeras is exact (float32 sums within 2^24); refusals name the layer and the fix."""

import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flow.config import FlowConfig
from flow.export import Overrides, UnsupportedModel, to_integer_model
from flow.runtime.fixed import FixedType
from test_conv_cosim import check_cosim

EXAMPLES = int(os.environ.get('COSIM_EXAMPLES', 3))


def randomize(model, seed, kernel=1.5, bias=3.0):
    """Every kernel (plain, depthwise, pointwise) uniform in [-kernel, kernel], biases in [-bias, bias],
    and trained-like batch-normalization statistics inside the folded layers."""
    rng = np.random.default_rng(seed)
    draws = {'kernel': (-kernel, kernel), 'bias': (-bias, bias), 'gamma': (0.5, 2), 'beta': (-1, 1),
             'moving_mean': (-2, 2), 'moving_variance': (0.2, 3)}
    for layer in model.layers:
        for w in layer.weights:
            short = w.name.split('/')[-1].split(':')[0]
            key = 'kernel' if short.endswith('kernel') else short
            if key in draws:
                w.assign(rng.uniform(*draws[key], size=w.shape))
    return model


def quant(bits, integer=0):
    from qkeras import quantized_bits

    return quantized_bits(bits, integer, alpha=1)


def build(kind, shape, f, kernel, strides, padding, wbits, seed, block=(1, 1), drop=0.0, use_bias=True):
    """Input ``shape`` -> the layer under test ('conv') -> quantized_relu -> Flatten -> QDense(3)."""
    import tensorflow as tf
    from qkeras import (QActivation, QConv1D, QConv2DBatchnorm, QDense, QDepthwiseConv2D, QDepthwiseConv2DBatchnorm,
                        QSeparableConv1D, QSeparableConv2D, quantized_relu)

    from keras_models.conv import BlockSparseQConv1D

    tf.keras.utils.set_random_seed(seed)
    common = dict(strides=strides, padding=padding, name='conv', use_bias=use_bias, bias_quantizer=quant(8, 2))
    kq, dq, pq = dict(kernel_quantizer=quant(wbits)), dict(depthwise_quantizer=quant(wbits)), \
        dict(pointwise_quantizer=quant(max(2, wbits - 1)))
    layer = {
        'conv2d_bn': lambda: QConv2DBatchnorm(f, kernel, **kq, **common),
        'depthwise_bn': lambda: QDepthwiseConv2DBatchnorm(kernel, **dq, **common),
        'depthwise': lambda: QDepthwiseConv2D(kernel, **dq, **common),
        'sep2d': lambda: QSeparableConv2D(f, kernel, **dq, **pq, **common),
        'conv1d': lambda: QConv1D(f, kernel, **kq, **common),
        'bs_conv1d': lambda: BlockSparseQConv1D(f, kernel, block_shape=block, drop_rate=drop, mask_seed=seed, **kq,
                                                **common),
        'sep1d': lambda: QSeparableConv1D(f, kernel, **dq, **pq, **common),
    }[kind]()
    inp = tf.keras.Input(shape, name='x')
    x = QActivation(quantized_relu(5, 2), name='relu')(layer(inp))
    x = tf.keras.layers.Flatten(name='flat')(x)
    x = QDense(3, kernel_quantizer=quant(5), bias_quantizer=quant(8, 2), name='head')(x)
    return randomize(tf.keras.Model(inp, x), seed)


def check_qkeras(model, im, n=32, seed=0):
    """QKeras' outputs == the reference's codes on every layer QKeras computes exactly, which must
    include the layer under test (a separable layer: its pointwise node's output is the layer's)."""
    from flow.stages.verify import qkeras_comparable, qkeras_outputs, to_codes

    rng = np.random.default_rng(seed)
    codes = rng.integers(im.in_type.min_code, im.in_type.max_code + 1, (n, int(np.prod(im.input.shape))))
    codes[0], codes[1] = im.in_type.max_code, im.in_type.min_code
    names, why = qkeras_comparable(im)
    q, trace = qkeras_outputs(model, im, im.in_type.to_float(codes)), im.trace(codes)
    if 'conv_pointwise' in trace:  # the Keras layer 'conv' is hls4ml's two nodes: its output is the second's
        import tensorflow as tf

        probe = tf.keras.Model(model.inputs, model.get_layer('conv').output)
        q['conv_pointwise'] = probe.predict(im.in_type.to_float(codes).reshape(n, *probe.input_shape[1:]), verbose=0)
    assert 'conv' in names or 'conv_pointwise' in names, why
    for layer in im.layers[1:]:
        if layer.name in names and layer.name in q:
            assert np.array_equal(to_codes(q[layer.name], layer.out_type.frac), trace[layer.name]), layer.name
    return [n for n in names if n in q]


@st.composite
def cases(draw, one_d=False):
    w = draw(st.integers(3, 9))
    h = 1 if one_d else draw(st.integers(3, 7))
    c = draw(st.sampled_from([1, 2, 3, 4]))
    f = draw(st.sampled_from([2, 4]))
    kw = draw(st.integers(1, min(3, w)))
    kh = 1 if one_d else draw(st.integers(1, min(3, h)))
    sh = 1 if kh == 1 else draw(st.integers(1, 2))  # one-row filters with a vertical stride are refused
    sw = draw(st.integers(1, 2))
    padding = draw(st.sampled_from(['valid', 'same']))
    wbits = draw(st.integers(2, 6))
    in_type = FixedType(draw(st.integers(4, 9)), draw(st.integers(1, 3)))
    seed = draw(st.integers(0, 10_000))
    use_bias = draw(st.booleans())
    rf_pick = draw(st.integers(0, 100))
    shape, kernel, strides = ((w, c), kw, sw) if one_d else ((h, w, c), (kh, kw), (sh, sw))
    return shape, f, kernel, strides, padding, wbits, in_type, seed, use_bias, rf_pick


def _cosim(tmp_path_factory, kind, case, **extra):
    shape, f, kernel, strides, padding, wbits, in_type, seed, use_bias, rf_pick = case
    model = build(kind, shape, f, kernel, strides, padding, wbits, seed, use_bias=use_bias, **extra)
    im = to_integer_model(model, in_type)
    compared = check_qkeras(model, im, seed=seed)
    conv = next(l for l in im.layers if l.name.startswith('conv'))
    products = conv.values.size if hasattr(conv, 'values') else conv.weight.size
    cfg = FlowConfig.load(None, model='user.h5', layers={conv.name: {'reuse_factor': 1 + rf_pick % min(products, 8)}})
    check_cosim(tmp_path_factory.mktemp(kind), model, in_type, cfg, seed=seed)
    return im, compared


SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
pytestmark = pytest.mark.csim


@given(cases())
@SETTINGS
def test_qconv2d_batchnorm_folded_like_qkeras(tmp_path_factory, case):
    im, _ = _cosim(tmp_path_factory, 'conv2d_bn', case)
    assert im.layers[1].kind == 'conv2d' and im.layers[1].bias_type.width == 8  # the folded bias, quantized


@given(cases())
@SETTINGS
def test_qdepthwise_conv2d_batchnorm_folded_like_qkeras(tmp_path_factory, case):
    assert _cosim(tmp_path_factory, 'depthwise_bn', case)[0].layers[1].kind == 'depthwise_conv2d'


@given(cases())
@SETTINGS
def test_qdepthwise_conv2d(tmp_path_factory, case):
    assert _cosim(tmp_path_factory, 'depthwise', case)[0].layers[1].kind == 'depthwise_conv2d'


@given(cases())
@SETTINGS
def test_qseparable_conv2d_is_hls4mls_two_nodes(tmp_path_factory, case):
    im, compared = _cosim(tmp_path_factory, 'sep2d', case)
    assert [l.kind for l in im.layers[1:3]] == ['depthwise_conv2d', 'conv2d']
    assert 'conv_pointwise' in compared


@given(cases(one_d=True))
@SETTINGS
def test_qconv1d(tmp_path_factory, case):
    assert _cosim(tmp_path_factory, 'conv1d', case)[0].layers[1].kind == 'conv1d'


@given(cases(one_d=True), st.sampled_from([0.0, 0.5, 0.75]))
@SETTINGS
def test_block_sparse_qconv1d(tmp_path_factory, case, drop):
    c, f = case[0][1], case[1]
    block = (max(b for b in (1, 2) if c % b == 0), 2)
    im, _ = _cosim(tmp_path_factory, 'bs_conv1d', case, block=block, drop=drop)
    assert im.layers[1].kind == 'block_sparse_conv1d'


@given(cases(one_d=True))
@SETTINGS
def test_qseparable_conv1d_is_hls4mls_two_nodes(tmp_path_factory, case):
    im, compared = _cosim(tmp_path_factory, 'sep1d', case)
    assert [l.kind for l in im.layers[1:3]] == ['depthwise_conv1d', 'conv1d']
    assert 'conv_pointwise' in compared


# --- refusals, one line each ------------------------------------------------------------------------

def _refused(model, match):
    with pytest.raises(UnsupportedModel, match=match):
        to_integer_model(model, FixedType(8, 3))


def test_depth_multiplier_is_refused():
    import tensorflow as tf
    from qkeras import QDepthwiseConv2D

    inp = tf.keras.Input((5, 5, 2), name='x')
    x = QDepthwiseConv2D(3, depth_multiplier=2, depthwise_quantizer=quant(4), bias_quantizer=quant(8, 2), name='dw')(inp)
    model = tf.keras.Model(inp, tf.keras.layers.Flatten(name='f')(x))
    _refused(model, r"layer 'dw' \(QDepthwiseConv2D\): depth_multiplier 2; .*depth_multiplier=1 only")


def test_causal_and_dilated_conv1d_are_refused():
    import tensorflow as tf
    from qkeras import QConv1D

    for kw, match in (({'padding': 'causal'}, r"layer 'c' \(QConv1D\): padding 'causal'; .*leading zeros and use padding='valid'"),
                      ({'dilation_rate': 2}, r"layer 'c' \(QConv1D\): dilation_rate \(2,\).*use dilation_rate=1")):
        inp = tf.keras.Input((8, 2), name='x')
        x = QConv1D(2, 3, kernel_quantizer=quant(4), bias_quantizer=quant(8, 2), name='c', **kw)(inp)
        _refused(tf.keras.Model(inp, tf.keras.layers.Flatten(name='f')(x)), match)


def test_folded_layer_without_a_bias_quantizer_is_refused():
    """QKeras folds the batch norm into a float bias; without a bias_quantizer it stays float."""
    import tensorflow as tf
    from qkeras import QConv2DBatchnorm

    inp = tf.keras.Input((5, 5, 2), name='x')
    x = QConv2DBatchnorm(2, 3, kernel_quantizer=quant(4), name='cb')(inp)
    _refused(tf.keras.Model(inp, tf.keras.layers.Flatten(name='f')(x)), r"layer 'cb' bias: no quantizer")


def test_separable_accum_override_is_refused():
    model = build('sep2d', (5, 5, 2), 2, 3, 1, 'valid', 4, 0)
    with pytest.raises(UnsupportedModel, match=r"layer 'conv': setting 'accum' does not apply"):
        to_integer_model(model, FixedType(8, 3), {'conv': Overrides(accum='ap_fixed<32,16>')})


# --- a DS-CNN (keyword spotting) through the plan, footprint and estimate ------------------------------

def ds_cnn(path=None, seed=0, folded=False):
    """DS-CNN style: QConv2D -> QDepthwiseConv2D -> 1x1 QConv2D (QConv2DBatchnorm / QDepthwiseConv2DBatchnorm
    when ``folded``, as the published PYNQ models) -> MaxPooling2D -> Flatten -> QDense."""
    import tensorflow as tf
    from qkeras import (QActivation, QConv2D, QConv2DBatchnorm, QDense, QDepthwiseConv2D, QDepthwiseConv2DBatchnorm,
                        quantized_relu)

    conv, dw = (QConv2DBatchnorm, QDepthwiseConv2DBatchnorm) if folded else (QConv2D, QDepthwiseConv2D)
    b = dict(bias_quantizer=quant(8, 3))
    inp = tf.keras.Input((10, 8, 1), name='mfcc')
    x = conv(8, (3, 3), strides=(2, 1), padding='same', kernel_quantizer=quant(6), name='conv1', **b)(inp)
    x = QActivation(quantized_relu(6, 2), name='relu1')(x)
    x = dw((3, 3), padding='same', depthwise_quantizer=quant(6), name='dw1', **b)(x)
    x = QActivation(quantized_relu(6, 2), name='relu2')(x)
    x = conv(8, (1, 1), kernel_quantizer=quant(6), name='pw1', **b)(x)
    x = QActivation(quantized_relu(6, 2), name='relu3')(x)
    x = tf.keras.layers.MaxPooling2D((1, 2), name='pool')(x)
    x = tf.keras.layers.Flatten(name='flat')(x)
    x = QDense(4, kernel_quantizer=quant(6), bias_quantizer=quant(8, 3), name='logits')(x)
    model = randomize(tf.keras.Model(inp, x), seed, kernel=0.7, bias=1)
    if path:
        model.save(path)
    return model


@pytest.mark.parametrize('folded', [False, True])
def test_ds_cnn_is_planned_and_estimated(folded):
    """Every new kind carries the facts the plan, footprint and estimate read: the depthwise layer is
    costed as hls4ml's depthwise kernel (one multiplier per tap and channel), not as a dense matrix."""
    from flow.infra.boards import get_board
    from flow.plan import make_plan
    from flow.stages.estimate import estimate_model
    from flow.stages.footprint import footprint

    im = to_integer_model(ds_cnn(folded=folded), FixedType(8, 3))
    assert [l.kind for l in im.layers if 'conv' in l.kind] == ['conv2d', 'depthwise_conv2d', 'conv2d']
    cfg = FlowConfig.load(None, model='user.h5', layers={'dw1': {'reuse_factor': 3}})
    plan = make_plan(im, cfg, get_board('pynq-z2'))
    assert plan.io_type == 'io_stream' and plan['dw1'].reuse_factor == 3
    est = estimate_model(im, plan, get_board('pynq-z2'))
    dw = est['layers']['dw1']
    assert dw['shape'] == [9, 8] and dw['ours']['multipliers'] == 9 * 8 // 3 and dw['hls4ml_dense']['multipliers'] == 24
    assert dw['pixels'] == {'in': 7 * 10, 'out': 5 * 8}  # conv1's 5x8 output, padded by one on each side
    fp = footprint(im)['layers']['dw1']
    assert fp['kept_weights'] == 72 and fp['weight_bits'] == 72 * 6 and fp['bias_bits'] == 8 * 8


def cnn_1d(path, seed=0):
    """A 1-D CNN for time series: BlockSparseQConv1D -> QSeparableConv1D (strided) -> Flatten -> QDense."""
    import tensorflow as tf
    from qkeras import QActivation, QDense, QSeparableConv1D, quantized_relu

    from keras_models.conv import BlockSparseQConv1D

    inp = tf.keras.Input((16, 3), name='series')
    x = BlockSparseQConv1D(8, 3, padding='same', block_shape=(1, 2), drop_rate=0.5, kernel_quantizer=quant(5),
                           bias_quantizer=quant(8, 3), name='conv1')(inp)
    x = QActivation(quantized_relu(6, 2), name='relu1')(x)
    x = QSeparableConv1D(8, 3, strides=2, depthwise_quantizer=quant(5), pointwise_quantizer=quant(5),
                         bias_quantizer=quant(8, 3), name='sep')(x)
    x = QActivation(quantized_relu(6, 2), name='relu2')(x)
    x = QDense(4, kernel_quantizer=quant(6), bias_quantizer=quant(8, 3), name='logits')(tf.keras.layers.Flatten(name='flat')(x))
    randomize(tf.keras.Model(inp, x), seed, kernel=0.7, bias=1).save(path)


@pytest.mark.slow
@pytest.mark.parametrize('net, layers', [('ds_cnn', {'conv1', 'dw1', 'pw1', 'pool', 'logits'}),
                                         ('cnn_1d', {'conv1', 'sep_depthwise', 'sep_pointwise', 'logits'})])
def test_cnn_flow_through_estimate(tmp_path, net, layers):
    """A DS-CNN of folded layers / a 1-D CNN file through build-bitstream's steps up to the estimate:
    converted, lint-clean, C simulation == reference on random golden vectors, QKeras == reference
    (the separable layer through the layer after it), the estimate written."""
    from flow.steps import run_flow

    ds_cnn(tmp_path / 'm.h5', folded=True) if net == 'ds_cnn' else cnn_1d(tmp_path / 'm.h5')
    cfg = FlowConfig.load(None, model=str(tmp_path / 'm.h5'), input_precision='ap_fixed<8,3>', n_golden=16, rtl=False,
                          layers={'conv1': {'reuse_factor': 4}})
    run_flow(cfg, tmp_path / 'b', to_step='estimate')
    verify = json.loads((tmp_path / 'b' / 'reports' / 'verify.json').read_text())
    assert verify['reference_vs_csim']['exact'] and verify['qkeras_vs_reference']['all_layers_exact'], verify
    est = json.loads((tmp_path / 'b' / 'reports' / 'estimate.json').read_text())
    assert layers <= set(est['layers'])


# --- zero channel blocks found in a QConv2D / QConv1D kernel ----------------------------------------------

@pytest.mark.parametrize('one_d', [False, True])
def test_found_channel_blocks_deploy_block_sparse(tmp_path, one_d):
    """A QConv kernel whose (2 x 2) channel blocks are zero at every position, as a channel-pruning tool
    leaves it: deployed with the block-sparse kernel (hls4ml handed a BlockSparseQConv*), exact."""
    from flow.export import deployed_model
    from keras_models.conv import BlockSparseQConv1D, BlockSparseQConv2D

    kind = 'conv1d' if one_d else 'conv2d_plain'
    shape = (7, 4) if one_d else (5, 6, 4)
    model = build('conv1d', shape, 4, 3, 1, 'same', 4, 3) if one_d else _plain_conv2d(shape)
    conv = model.get_layer('conv')
    k = conv.kernel.numpy()
    keep = np.array([[1, 0], [0, 1]], dtype=bool)  # channel blocks (in 0-1 / 2-3) x (out 0-1 / 2-3): half zero
    k *= np.kron(keep, np.ones((2, 2)))[(None,) * (k.ndim - 2)]
    conv.kernel.assign(k)
    in_type = FixedType(8, 3)
    im = to_integer_model(model, in_type)
    ref = im.layers[1]
    assert ref.kind == ('block_sparse_conv1d' if one_d else 'block_sparse_conv2d'), kind
    assert ref.found['deployed_sparse'] and ref.found['density'] == 0.5
    dep = deployed_model(model, 'model', im).get_layer('conv')
    assert isinstance(dep, BlockSparseQConv1D if one_d else BlockSparseQConv2D)
    check_qkeras(model, im)
    check_cosim(tmp_path, model, in_type, FlowConfig.load(None, model='user.h5'))
    assert to_integer_model(model, in_type, sparse=False).layers[1].kind == ('conv1d' if one_d else 'conv2d')


def _plain_conv2d(shape):
    import tensorflow as tf
    from qkeras import QActivation, QConv2D, QDense, quantized_relu

    inp = tf.keras.Input(shape, name='x')
    x = QConv2D(4, 3, padding='same', kernel_quantizer=quant(4), bias_quantizer=quant(8, 2), name='conv')(inp)
    x = QActivation(quantized_relu(5, 2), name='relu')(x)
    x = QDense(3, kernel_quantizer=quant(5), bias_quantizer=quant(8, 2), name='head')(tf.keras.layers.Flatten(name='f')(x))
    return randomize(tf.keras.Model(inp, x), 3)


@pytest.mark.parametrize('mode', ['ema_stats_folding', 'batch_stats_folding'])
def test_both_folding_modes_equal_qkeras_after_training_steps(mode):
    """At inference both folding modes fold the moving statistics; after a few training steps (moving
    statistics and the layer's iteration counter updated) QKeras still equals the reference exactly,
    with a fused quantized_relu on the folded layer."""
    import tensorflow as tf
    from qkeras import QConv2DBatchnorm, QDense, QDepthwiseConv2DBatchnorm, quantized_relu

    tf.keras.utils.set_random_seed(1)
    inp = tf.keras.Input((6, 6, 2), name='x')
    x = QConv2DBatchnorm(4, 3, padding='same', kernel_quantizer=quant(5), bias_quantizer=quant(8, 3), folding_mode=mode,
                         activation=quantized_relu(6, 2), name='conv')(inp)
    x = QDepthwiseConv2DBatchnorm(3, depthwise_quantizer=quant(5), bias_quantizer=quant(8, 3), folding_mode=mode,
                                  name='dw')(x)
    x = QDense(3, kernel_quantizer=quant(5), bias_quantizer=quant(8, 3), name='head')(tf.keras.layers.Flatten(name='f')(x))
    model = tf.keras.Model(inp, x)
    model.compile('adam', 'mse')
    rng = np.random.default_rng(0)
    model.fit(rng.uniform(-2, 2, (64, 6, 6, 2)), rng.normal(size=(64, 3)), epochs=2, batch_size=16, verbose=0)
    im = to_integer_model(model, FixedType(8, 3))
    assert [l.name for l in im.layers[1:4]] == ['conv', 'conv_quantized_relu', 'dw']
    check_qkeras(model, im)


def test_precision_settings_on_a_separable_part_are_refused():
    model = build('sep2d', (5, 5, 2), 2, 3, 1, 'valid', 4, 0)
    with pytest.raises(UnsupportedModel, match=r"layer 'conv_pointwise': hls4ml builds it as a part of layer 'conv'"):
        to_integer_model(model, FixedType(8, 3), {'conv_pointwise': Overrides(result='ap_fixed<8,4>')})
    assert to_integer_model(model, FixedType(8, 3), {'conv_pointwise': Overrides()}).layers[2].name == 'conv_pointwise'


def test_new_kinds_run_on_the_board_runtime(tmp_path):
    """Saved and reloaded by the files the package ships (numpy only): every new kind, same codes."""
    from shipped_runtime import predict_with_shipped_runtime

    for i, model in enumerate((ds_cnn(folded=True), _loaded(cnn_1d, tmp_path / 'c.h5'),
                               build('sep2d', (5, 5, 2), 2, 3, 1, 'same', 4, 0))):
        im = to_integer_model(model, FixedType(8, 3))
        x = np.random.default_rng(i).integers(-128, 128, (8, int(np.prod(im.input.shape))))
        assert np.array_equal(predict_with_shipped_runtime(tmp_path / str(i), im, x), im.predict_codes(x))


def _loaded(make, path):
    from keras_models.layers import load_model

    make(path)
    return load_model(path)
