"""Pooling and shape layers in io_stream: average / max / global pooling, zero padding, nearest
upsampling and reshapes, 1-D and 2-D. The hls4ml C simulation == the integer reference bit for bit
over random geometries and input types; Keras's float == the reference where hls4ml's average is
exact (windows of 2^k values); one-line refusals for what hls4ml's io_stream templates compute
differently."""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flow.config import FlowConfig
from flow.export import Overrides, UnsupportedModel, to_integer_model
from flow.runtime.fixed import FixedType
from test_conv_cosim import check_cosim
from user_models import random_weights

EXAMPLES = int(os.environ.get('COSIM_EXAMPLES', 3))


def _layers():
    import tensorflow as tf

    return tf.keras.layers


def _head(x, name='head'):
    from qkeras import QDense, quantized_bits

    return QDense(3, kernel_quantizer=quantized_bits(5, 0, alpha=1), bias_quantizer=quantized_bits(8, 2, alpha=1),
                  name=name)(x)


def _model(shape, build, seed):
    """Input ``shape`` -> build(x) -> QDense(3), random weights."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input(shape, name='x')
    return random_weights(tf.keras.Model(inp, _head(build(inp))), seed, kernel=1.5, bias=3)


def keras_equals_reference(model, im, in_type, n=32, seed=0):
    """Every layer whose float computation the reference says is exact (``qkeras_inexact`` None) gives
    Keras's float values == the reference's codes; returns the layers compared."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    x = rng.integers(in_type.min_code, in_type.max_code + 1, size=(n, *im.input.shape))
    trace, t, names = im.trace(x), in_type, []
    for layer in im.layers[1:]:
        if layer.qkeras_inexact(t) or layer.inexact_in_float():
            break
        names.append(layer.name)
        t = layer.out_type
    if not names:
        return names
    probe = tf.keras.Model(model.inputs, [model.get_layer(nm).output for nm in names])
    outs = probe.predict(in_type.to_float(x).astype(np.float32), verbose=0)
    for nm, out in zip(names, outs if isinstance(outs, list) else [outs]):
        layer = next(l for l in im.layers if l.name == nm)
        np.testing.assert_array_equal(out, layer.out_type.to_float(trace[nm]), err_msg=nm)
    return names


def _cfg():
    return FlowConfig.load(None, model='user.h5')


@st.composite
def cases_2d(draw):
    h, w = draw(st.integers(2, 8)), draw(st.integers(2, 8))
    c = draw(st.sampled_from([1, 2, 3, 4]))
    pads = tuple(draw(st.integers(0, 2)) for _ in range(4)) if draw(st.booleans()) else None
    ph, pw = h + (sum(pads[:2]) if pads else 0), w + (sum(pads[2:]) if pads else 0)
    pool = (draw(st.integers(1, min(3, ph))), draw(st.integers(1, min(3, pw))))
    op = draw(st.sampled_from(['avg', 'max', 'none']))
    up = (draw(st.integers(1, 2)), draw(st.integers(1, 3))) if draw(st.booleans()) else None
    tail = draw(st.sampled_from(['gap', 'gmp', 'flatten', 'gap_keepdims']))
    in_type = FixedType(draw(st.integers(3, 9)), draw(st.integers(1, 3)), signed=draw(st.booleans()))
    return (h, w, c), pads, pool, op, up, tail, in_type, draw(st.integers(0, 10_000))


def _chain_2d(pads, pool, op, up, tail):
    def build(x):
        L = _layers()
        if pads:
            x = L.ZeroPadding2D(((pads[0], pads[1]), (pads[2], pads[3])), name='zp')(x)
        if op != 'none':
            x = (L.AveragePooling2D if op == 'avg' else L.MaxPooling2D)(pool, name='pool')(x)
        if up:
            x = L.UpSampling2D(up, name='up')(x)
        if tail.startswith('gap'):
            x = L.GlobalAveragePooling2D(keepdims=tail.endswith('keepdims'), name='gpool')(x)
        elif tail == 'gmp':
            x = L.GlobalMaxPooling2D(name='gpool')(x)
        return L.Flatten(name='flat')(x)

    return build


@given(cases_2d())
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_random_2d_pooling_and_shape_layers_match_reference_exactly(tmp_path_factory, case):
    """ZeroPadding2D -> Average/MaxPooling2D -> UpSampling2D -> GlobalAverage/GlobalMaxPooling2D or
    Flatten -> QDense, each optional, over random sizes, pools, paddings, factors and input types."""
    shape, pads, pool, op, up, tail, in_type, seed = case
    model = _model(shape, _chain_2d(pads, pool, op, up, tail), seed)
    im, _ = check_cosim(tmp_path_factory.mktemp('pool2d'), model, in_type, _cfg(), seed=seed)
    keras_equals_reference(model, im, in_type, seed=seed)


@st.composite
def cases_1d(draw):
    steps, c = draw(st.integers(2, 12)), draw(st.sampled_from([1, 2, 3, 5]))
    pads = (draw(st.integers(0, 3)), draw(st.integers(0, 3))) if draw(st.booleans()) else None
    pool = draw(st.integers(1, min(4, steps + (sum(pads) if pads else 0))))
    op = draw(st.sampled_from(['avg', 'max', 'none']))
    up = draw(st.integers(2, 3)) if draw(st.booleans()) else None
    tail = draw(st.sampled_from(['gap', 'gmp', 'flatten']))
    in_type = FixedType(draw(st.integers(3, 9)), draw(st.integers(1, 3)), signed=draw(st.booleans()))
    return (steps, c), pads, pool, op, up, tail, in_type, draw(st.integers(0, 10_000))


def _chain_1d(pads, pool, op, up, tail):
    def build(x):
        L = _layers()
        if pads:
            x = L.ZeroPadding1D(pads, name='zp')(x)
        if op != 'none':
            x = (L.AveragePooling1D if op == 'avg' else L.MaxPooling1D)(pool, name='pool')(x)
        if up:
            x = L.UpSampling1D(up, name='up')(x)
        if tail == 'gap':
            x = L.GlobalAveragePooling1D(name='gpool')(x)
        elif tail == 'gmp':
            x = L.GlobalMaxPooling1D(name='gpool')(x)
        return L.Flatten(name='flat')(x)

    return build


@given(cases_1d())
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_random_1d_pooling_and_shape_layers_match_reference_exactly(tmp_path_factory, case):
    """(steps, channels) input -> ZeroPadding1D -> Average/MaxPooling1D -> UpSampling1D ->
    GlobalAverage/GlobalMaxPooling1D or Flatten -> QDense, each optional."""
    shape, pads, pool, op, up, tail, in_type, seed = case
    model = _model(shape, _chain_1d(pads, pool, op, up, tail), seed)
    im, _ = check_cosim(tmp_path_factory.mktemp('pool1d'), model, in_type, _cfg(), seed=seed)
    keras_equals_reference(model, im, in_type, seed=seed)


@pytest.mark.parametrize('shape, build', [
    ((6, 4, 3), lambda x: _layers().GlobalAveragePooling2D(name='gap')(_layers().AveragePooling2D((3, 2), name='ap')(x))),
    ((9, 2), lambda x: _layers().GlobalAveragePooling1D(name='gap')(_layers().AveragePooling1D(3, name='ap')(x))),
], ids=['2d', '1d'])
def test_averages_of_any_window_truncate_toward_zero_like_hls4ml(tmp_path, shape, build):
    """Windows of 6 and 3 values, global averages over 4 and 3 pixels, signed inputs at their
    extremes: hls4ml's ap_fixed division truncates toward zero; Keras's float average differs
    there, and the reference says so."""
    model = _model(shape, build, 2)
    in_type = FixedType(7, 2)
    im, _ = check_cosim(tmp_path, model, in_type, _cfg(), n_vectors=32, seed=2)
    ap = im.layers[1]
    assert ap.kind.startswith('avgpool') and 'truncating toward zero' in ap.qkeras_inexact(in_type)
    x = np.full((1, *shape), in_type.min_code + 1)
    x[(0,) * (1 + len(shape))] = in_type.min_code  # channel 0's first window sums to N * (min + 1) - 1 (times 2^k in accum)
    n, shift = ap.window, ap.accum_type.frac - in_type.frac
    got = ap.forward(x, in_type).reshape(-1)[0]
    assert got == -((-(n * (in_type.min_code + 1) - 1) << shift) // n)  # toward zero, not floor


def test_reshapes_before_a_convolution_match_reference_exactly(tmp_path):
    """Flat input (H*W*C,) -> Reshape (H, W, C) -> QConv2D -> Flatten -> QDense -> Reshape (1, 1, N)
    -> GlobalMaxPooling2D -> QDense: hls4ml regroups the stream (repack_<name>) in row-major order."""
    from qkeras import QActivation, QConv2D, QDense, quantized_bits, quantized_relu

    q = dict(kernel_quantizer=quantized_bits(4, 0, alpha=1), bias_quantizer=quantized_bits(8, 2, alpha=1))

    def build(x):
        L = _layers()
        x = L.Reshape((4, 3, 2), name='to_image')(x)
        x = QConv2D(4, 2, name='conv', **q)(x)
        x = QActivation(quantized_relu(5, 2), name='relu')(x)
        x = L.Flatten(name='flat')(x)
        x = QDense(8, name='fc', **q)(x)
        x = QActivation(quantized_relu(5, 2), name='relu2')(x)
        x = L.Reshape((1, 2, 4), name='to_pixels')(x)
        return L.GlobalAveragePooling2D(name='gap')(x)

    model = _model((24,), build, 5)
    in_type = FixedType(7, 2)
    im, _ = check_cosim(tmp_path, model, in_type, _cfg())
    assert [l.kind for l in im.layers if l.name.startswith('to_')] == ['repack', 'repack']
    assert 'gap' in keras_equals_reference(model, im, in_type)  # 2 pixels: exact


def test_qconv2d_average_pooling_estimate_flow(tmp_path):
    """QConv2D -> AveragePooling2D -> Flatten -> QDense through export_reference, plan, convert,
    the C simulation, verify (QKeras == reference == C simulation) and estimate."""
    import tensorflow as tf
    from qkeras import QActivation, QConv2D, QDense, quantized_bits, quantized_relu

    from flow.steps import run_flow

    tf.keras.utils.set_random_seed(1)
    q = dict(kernel_quantizer=quantized_bits(4, 0, alpha=1), bias_quantizer=quantized_bits(8, 2, alpha=1))
    inp = tf.keras.Input((6, 6, 1), name='image')
    x = QConv2D(4, 3, padding='same', name='conv', **q)(inp)
    x = QActivation(quantized_relu(5, 2), name='relu')(x)
    x = tf.keras.layers.AveragePooling2D(2, name='avg')(x)
    x = tf.keras.layers.Flatten(name='flat')(x)
    x = QDense(3, name='head', **q)(x)
    random_weights(tf.keras.Model(inp, x), 1, kernel=1.5, bias=3).save(tmp_path / 'm.h5')
    rng = np.random.default_rng(0)
    np.savez(tmp_path / 'd.npz', x=rng.integers(0, 16, size=(40, 6, 6, 1)) / 16, y=rng.integers(0, 3, 40))
    cfg = FlowConfig.load(None, model=str(tmp_path / 'm.h5'), data=str(tmp_path / 'd.npz'),
                          input_precision='ap_ufixed<4,0>', n_golden=16, rtl=False)
    ctx = run_flow(cfg, tmp_path / 'b', to_step='estimate')
    import json

    verify = json.loads((ctx.root / 'reports' / 'verify.json').read_text())
    assert verify['reference_vs_csim']['exact'] and verify['qkeras_vs_reference']['all_layers_exact']
    est = json.loads((ctx.root / 'reports' / 'estimate.json').read_text())
    assert est['layers']['avg']['kind'] == 'avgpool2d' and est['layers']['avg']['pixels'] == {'in': 36, 'out': 9}


# --- refusals -------------------------------------------------------------------------------

def _refused(build, shape, match, overrides=None):
    model = _model(shape, build, 0)
    with pytest.raises(UnsupportedModel, match=match):
        to_integer_model(model, FixedType(6, 2), overrides)


def test_average_pooling_with_border_padding_is_refused():
    """'same' padding that pads: hls4ml's io_stream pooling asserts no padding (and would count zeros
    that Keras's average leaves out)."""
    _refused(lambda x: _layers().Flatten()(_layers().AveragePooling2D(2, padding='same', name='p')(x)), (5, 4, 1),
             r"layer 'p' \(AveragePooling2D\): padding 'same' pads this input by \(0, 1, 0, 0\); .*use padding='valid'")


def test_same_padding_that_pads_nothing_is_accepted():
    im = to_integer_model(_model((4, 6, 1), lambda x: _layers().Flatten()(_layers().AveragePooling2D(2, padding='same',
                                                                                                     name='p')(x)), 0),
                          FixedType(6, 2))
    assert im.layers[1].kind == 'avgpool2d' and im.layers[1].out_hw == (2, 3)


@pytest.mark.parametrize('cls', ['AveragePooling1D', 'MaxPooling1D', 'AveragePooling2D'])
def test_overlapping_pools_are_refused(cls):
    shape = (6, 2) if cls.endswith('1D') else (6, 6, 2)
    build = lambda x: _layers().Flatten()(getattr(_layers(), cls)(3, strides=2, name='p')(x))  # noqa: E731
    _refused(build, shape, rf"layer 'p' \({cls}\): strides \(2(,|, 2)\) differ from pool_size .*use strides=None")


def test_bilinear_upsampling_is_refused():
    _refused(lambda x: _layers().Flatten()(_layers().UpSampling2D(2, interpolation='bilinear', name='u')(x)), (3, 3, 1),
             r"layer 'u' \(UpSampling2D\): interpolation 'bilinear'; .*use interpolation='nearest'")


def test_reshapes_the_stream_cannot_regroup_are_refused():
    _refused(lambda x: _layers().Flatten()(_layers().Reshape((4, 6), name='r')(x)), (6, 4),
             r"layer 'r' \(Reshape\): \(6, 4\) -> \(4, 6\); .*words of 4 values into words of 6")
    _refused(lambda x: _layers().Flatten()(_layers().Reshape((2, 6), name='r')(_layers().Flatten(name='f')(x))),
             (3, 4), r"layer 'r' \(Reshape\): a Reshape right after a Flatten; .*merge the two")


def test_accumulator_overrides_on_averages_are_refused():
    _refused(lambda x: _layers().Flatten()(_layers().GlobalAveragePooling1D(name='g')(x)), (4, 2),
             r"layer 'g': setting 'accum' does not apply", {'g': Overrides(accum='ap_fixed<8,4>')})


def test_a_result_override_on_an_average_is_mirrored_and_not_called_exact():
    """A narrower result rounds the average like ap_fixed: the reference does too, and says that the
    float model differs from there on."""
    model = _model((4, 3), lambda x: _layers().GlobalAveragePooling1D(name='g')(x), 0)
    in_type = FixedType(6, 2)
    im = to_integer_model(model, in_type, {'g': Overrides(result='ap_fixed<5,2,AP_RND,AP_SAT>')})
    g = im.layers[1]
    assert g.qkeras_inexact(in_type).startswith('its types') and to_integer_model(model, in_type).layers[1].qkeras_inexact(in_type) is None
    x = np.array([[[31, 0, -32], [31, 1, -32], [31, 0, -32], [31, 0, -31]]])  # averages 31, 1/4, -127/4 codes of 2^-4
    # to 2^-3, rounding half up: 15.5 -> 16 saturates to 15; 0.125 -> 0; -15.875 -> -16
    np.testing.assert_array_equal(g.forward(x, in_type), [[15, 0, -16]])


def test_qkeras_average_pooling_is_refused_with_the_keras_layer_as_fix():
    import tensorflow as tf
    from qkeras import QAveragePooling2D

    inp = tf.keras.Input((4, 4, 1), name='x')
    model = tf.keras.Model(inp, _head(tf.keras.layers.Flatten()(QAveragePooling2D(2, name='qp')(inp))))
    with pytest.raises(UnsupportedModel, match=r"layer 'qp' \(QAveragePooling2D\): not supported; .*use Keras "
                                               r'AveragePooling2D .*followed by QActivation\(quantized_bits'):
        to_integer_model(model, FixedType(6, 2))


def test_a_1d_model_from_a_flat_input_verifies_through_the_accelerator(tmp_path):
    """Flat (24,) samples -> Reshape (12, 2) -> ZeroPadding1D -> AveragePooling1D -> UpSampling1D ->
    MaxPooling1D -> GlobalAveragePooling1D -> QDense through the flow to estimate: reference == C
    simulation == the AXI4-Stream accelerator's testbench, QKeras == reference (every window a
    power of two), and the pools' streamed pixels in the estimate."""
    import json

    from flow.steps import run_flow

    def build(x):
        L = _layers()
        x = L.Reshape((12, 2), name='seq')(x)
        x = L.ZeroPadding1D((1, 3), name='zp')(x)
        x = L.AveragePooling1D(2, name='ap')(x)
        x = L.UpSampling1D(2, name='up')(x)
        x = L.MaxPooling1D(4, name='mp')(x)
        return L.GlobalAveragePooling1D(name='gap')(x)

    model = _model((24,), build, 3)
    model.save(tmp_path / 'm.h5')
    rng = np.random.default_rng(0)
    np.savez(tmp_path / 'd.npz', x=rng.integers(-16, 16, size=(40, 24)) / 8, y=rng.integers(0, 3, 40))
    cfg = FlowConfig.load(None, model=str(tmp_path / 'm.h5'), data=str(tmp_path / 'd.npz'),
                          input_precision='ap_fixed<6,3>', n_golden=16)
    ctx = run_flow(cfg, tmp_path / 'b', to_step='estimate')
    verify = json.loads((ctx.root / 'reports' / 'verify.json').read_text())
    assert verify['reference_vs_csim']['exact'] and verify['qkeras_vs_reference']['all_layers_exact']
    est = json.loads((ctx.root / 'reports' / 'estimate.json').read_text())['layers']
    assert est['ap']['pixels'] == {'in': 16, 'out': 8} and est['mp']['pixels'] == {'in': 16, 'out': 4}
    tb = verify['accelerator_testbench']
    assert tb.startswith(f"PASS: {verify['n_vectors']} samples") and tb.endswith('bit-exact'), tb
    assert [l.kind for l in ctx.reference().layers[1:6]] == ['repack', 'zeropad', 'avgpool1d', 'upsample', 'maxpool1d']


def test_every_pool_and_shape_kind_saves_and_loads_to_the_same_codes(tmp_path):
    """The reference folder (export_reference) round-trips each kind: same layers, same outputs."""
    from flow.runtime.reference import IntegerModel

    def build(x):
        L = _layers()
        x = L.Reshape((4, 3, 2), name='img')(x)
        x = L.ZeroPadding2D(1, name='zp')(x)
        x = L.AveragePooling2D(2, name='ap')(x)
        x = L.UpSampling2D(2, name='up')(x)
        x = L.MaxPooling2D(2, name='mp')(x)
        x = L.GlobalMaxPooling2D(keepdims=True, name='gmp')(x)
        x = L.Reshape((2, 1), name='seq')(x)
        x = L.GlobalAveragePooling1D(name='gap')(x)
        return x

    in_type = FixedType(6, 2, signed=False)
    im = to_integer_model(_model((24,), build, 4), in_type)
    im.save(tmp_path)
    back = IntegerModel.load(tmp_path)
    assert [(l.kind, l.to_json()) for l in back.layers] == [(l.kind, l.to_json()) for l in im.layers]
    x = np.random.default_rng(0).integers(0, in_type.max_code + 1, size=(8, 24))
    for name, codes in im.trace(x).items():
        np.testing.assert_array_equal(back.trace(x)[name], codes, err_msg=name)
