"""The layers real QKeras models use: each deploys bit-exactly (integer reference == hls4ml's C
simulation on every vector, QKeras == reference wherever QKeras is exact) or is refused when the
model is loaded, naming the layer, what is missing and what to change.

What hls4ml 1.3.0 builds for each, and the reference mirrors:
* ``QActivation(quantized_bits)`` (e.g. on the input): a 'linear' activation node, a cast to
  ap_fixed<bits, integer + 1, AP_RND_CONV, AP_SAT[_SYM]>; no node when the types are equal.
* ``quantized_po2`` kernels: a sign and an ap_int<bits> exponent per weight, shift products.
* ``quantized_bits(symmetric=1)``: a plain fixed weight type with codes in the symmetric range.
* ``Dropout``: skipped by hls4ml's parser (no node); ``Flatten``: a Reshape node, an alias.
* ``activation=`` on QDense/BlockSparseQDense: a node of its own, '<layer>_<activation>'.
* ``BatchNormalization``: a node of its own, x * scale + bias at full precision.
"""

import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flow.config import FlowConfig
from flow.export import Overrides, UnsupportedModel, keras_view, layer_overrides, to_integer_model
from flow.runtime.fixed import FixedType
from flow.runtime.reference import IntegerModel
from user_models import random_weights

F = FixedType.parse
EPS = 2.0**-10  # a BatchNormalization epsilon that float32 adds exactly


def qb(bits, integer, **kw):
    from qkeras import quantized_bits

    return quantized_bits(bits, integer, alpha=1, **kw)


def qdense(n, name, kernel=None, bias=None, **kw):
    from qkeras import QDense

    return QDense(n, kernel_quantizer=kernel or qb(4, 0), bias_quantizer=bias or qb(8, 3), name=name, **kw)


def chain(shape, *layers, seed=0, kernel_scale=1.0):
    """Input -> layers, with random weights (and trained-like BatchNormalization statistics)."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input(shape if isinstance(shape, tuple) else (shape,), name='x')
    x = inp
    for layer in layers:
        x = layer(x)
    return random_weights(tf.keras.Model(inp, x), seed, kernel_scale=kernel_scale)


def exact_batchnorm(layer, seed=0):
    """Statistics whose scale and bias are short binary fractions, equal in TensorFlow and hls4ml:
    var + eps = 1/4, so scale = 2 * gamma exactly."""
    rng = np.random.default_rng(seed)
    n = layer.gamma.shape
    layer.set_weights([rng.choice([0.5, 0.75, 1.0, 1.5], n), rng.integers(-8, 8, n) / 8, rng.integers(-8, 8, n) / 8,
                       np.full(n, 0.25 - EPS)])


def cosim(tmp_path, model, in_type, layers=None, n=200, seed=0):
    """Convert with hls4ml, compile its C simulation, compare every output code with the reference
    (random, all-max, all-min and alternating inputs)."""
    from flow.infra.boards import get_board
    from flow.stages.convert import compile_csim, convert_model
    from flow.stages.verify import compare_reference_csim, csim_library

    cfg = FlowConfig.load(None, model='user.h5', layers=layers or {})
    im = to_integer_model(model, in_type, layer_overrides(cfg))
    hls_model = convert_model(model, im, cfg, get_board('pynq-z2'), tmp_path / 'hls')
    compile_csim(tmp_path / 'hls')
    lib = csim_library(tmp_path, im, cfg.project_name)
    rng = np.random.default_rng(seed)
    x_codes = rng.integers(in_type.min_code, in_type.max_code + 1, size=(n, lib.n_in))
    x_codes[0], x_codes[1] = in_type.max_code, in_type.min_code
    x_codes[2, ::2], x_codes[2, 1::2] = in_type.max_code, in_type.min_code
    compare_reference_csim(im, lib, in_type.to_float(x_codes), x_codes)  # raises naming layer and element
    return im, x_codes, hls_model


def qkeras_matches(model, im, x_codes):
    """QKeras == reference, code for code, on every layer ``qkeras_comparable`` names; returns them."""
    from flow.stages.verify import qkeras_comparable, qkeras_outputs

    names, why = qkeras_comparable(im)
    q = qkeras_outputs(model, im, im.in_type.to_float(x_codes))
    ref = im.trace(x_codes)
    for layer in im.layers[1:]:
        if layer.name in names:
            got = np.asarray(q[layer.name], np.float64).reshape(ref[layer.name].shape) * 2.0**layer.out_type.frac
            bad = np.argwhere(got != ref[layer.name])
            assert not len(bad), f'{layer.name}: QKeras {got[tuple(bad[0])]} vs reference {ref[layer.name][tuple(bad[0])]}'
    return names, why


def names_kinds(im):
    return [(layer.name, layer.kind) for layer in im.layers]


# --- QActivation(quantized_bits), also on the input ------------------------------------------------


@st.composite
def activation_quantizers(draw):
    signed = draw(st.booleans())
    bits = draw(st.integers(2, 10))
    integer = draw(st.integers(0, bits - 1 if signed else bits))
    sym = signed and draw(st.booleans())
    in_t = FixedType(draw(st.integers(3, 12)), draw(st.integers(-1, 5)), signed=draw(st.booleans()))
    return bits, integer, signed, sym, in_t


@given(activation_quantizers())
@settings(max_examples=int(os.environ.get('LAYER_EXAMPLES', 25)), deadline=None)
def test_quantized_bits_activation_is_a_cast_qkeras_agrees_with_on_every_code(case):
    """A quantized_bits QActivation right after the input: the reference casts to the quantizer's
    type (round half to even, saturate) exactly as QKeras quantizes, on every input code; a cast
    to the input type itself is no node (hls4ml removes it)."""
    from qkeras import QActivation, quantized_bits

    bits, integer, signed, sym, in_t = case
    q = quantized_bits(bits, integer, alpha=1, keep_negative=signed, symmetric=sym)
    model = chain(4, QActivation(q, name='qin'))
    im = to_integer_model(model, in_t)
    x = np.arange(in_t.min_code, in_t.max_code + 1)
    x = np.resize(x, (int(np.ceil(len(x) / 4)), 4))
    want = np.asarray(q(in_t.to_float(x).astype(np.float32)), np.float64)
    assert np.array_equal(im.out_type.to_float(im.predict_codes(x)), want)
    out_t = FixedType(bits, integer + signed, signed, 'RND_CONV', 'SAT_SYM' if sym else 'SAT')
    assert names_kinds(im) == ([('x', 'input')] if out_t == in_t else [('x', 'input'), ('qin', 'linear')])


@pytest.mark.csim
def test_input_quantizers_deploy_exactly(tmp_path):
    """quantized_bits / symmetric quantized_bits / quantized_relu activations on the input: casts
    that round and saturate, C simulation == reference == QKeras on every layer."""
    from qkeras import QActivation, quantized_relu

    model = chain(10, QActivation(qb(8, 2), name='q8'), QActivation(qb(5, 1, symmetric=1), name='qsym'),
                  QActivation(quantized_relu(4, 1), name='r'), qdense(4, 'd'))
    in_t = F('ap_fixed<12,4>')  # 8 fraction bits: every cast rounds, and saturates at both ends
    im, x_codes, _ = cosim(tmp_path, model, in_t)
    assert names_kinds(im) == [('x', 'input'), ('q8', 'linear'), ('qsym', 'linear'), ('r', 'relu'), ('d', 'dense')]
    assert im.layers[2].out_type == F('ap_fixed<5,2,AP_RND_CONV,AP_SAT_SYM>')
    assert set(np.unique(im.trace(x_codes)['qsym'])) >= {-15, 15} and -16 not in im.trace(x_codes)['qsym']
    assert qkeras_matches(model, im, x_codes)[0] == ['q8', 'qsym', 'r', 'd']


def test_cast_to_the_input_type_is_no_node_in_hls4ml_either(tmp_path):
    """hls4ml's EliminateLinearActivation removes a linear activation whose input and output types
    are equal; the reference has no layer for it and the converted graph still matches."""
    from qkeras import QActivation

    from flow.infra.boards import get_board
    from flow.stages.convert import convert_model

    model = chain(6, QActivation(qb(8, 0), name='qin'), qdense(3, 'd'))
    cfg = FlowConfig.load(None, model='user.h5')
    im = to_integer_model(model, F('ap_fixed<8,1,AP_RND_CONV,AP_SAT>'))
    assert [layer.name for layer in im.layers] == ['x', 'd']
    hls_model = convert_model(model, im, cfg, get_board('pynq-z2'), tmp_path / 'hls')
    assert list(hls_model.graph) == ['x', 'd']
    im = to_integer_model(model, F('ap_fixed<8,1>'))  # same numbers, other modes: a node (a no-op cast)
    assert [layer.name for layer in im.layers] == ['x', 'qin', 'd']


# --- quantized_po2 kernels ------------------------------------------------------------------------


@pytest.mark.csim
@pytest.mark.parametrize('bits, strategy, rf, in_type', [
    (4, 'latency', 1, 'ap_fixed<8,0>'),  # x * 2^-4 lands exactly on the shift product's last bit
    (5, 'resource', 8, 'ap_fixed<10,3>'),
])
def test_po2_kernels_deploy_exactly(tmp_path, bits, strategy, rf, in_type):
    from qkeras import QActivation, quantized_po2, quantized_relu

    model = chain(8, qdense(6, 'p1', kernel=quantized_po2(bits)), QActivation(quantized_relu(6, 2), name='r'),
                  qdense(4, 'p2', kernel=quantized_po2(bits), activation='relu'), seed=bits)
    model.get_layer('p1').kernel[0, 0].assign(0.06)  # quantizes to 2^-4: the smallest exponent
    layers = {'p1': {'strategy': strategy, 'reuse_factor': rf}, 'p2': {'strategy': strategy}}
    im, x_codes, _ = cosim(tmp_path, model, F(in_type), layers)
    p1 = im.layers[1]
    assert (p1.kind, p1.exponent_bits) == ('dense_po2', bits) and p1.weight[0, 0] * 2.0**-p1.weight_type.frac == 2**-4
    w = np.abs(p1.weight[p1.weight != 0])
    assert np.all(w & (w - 1) == 0)  # powers of two
    assert '{' in (tmp_path / 'hls' / 'firmware' / 'weights' / 'w2.txt').read_text()  # {sign, exponent} entries
    assert qkeras_matches(model, im, x_codes)[0] == ['p1', 'r', 'p2', 'p2_relu']


@st.composite
def po2_cases(draw):
    return (draw(st.integers(2, 5)), draw(st.integers(1, 12)), draw(st.integers(1, 6)),
            FixedType(draw(st.integers(4, 12)), draw(st.integers(0, 4))), draw(st.integers(0, 1000)))


@given(po2_cases())
@settings(max_examples=int(os.environ.get('LAYER_EXAMPLES', 10)), deadline=None)
def test_po2_reference_equals_qkeras(case):
    """Reference only (cheap): a po2 QDense's sums equal QKeras', or the layer is refused because
    hls4ml's shift product would cut bits, naming the exponent."""
    from qkeras import quantized_po2

    bits, n_in, n_out, in_t, seed = case
    model = chain(n_in, qdense(n_out, 'p', kernel=quantized_po2(bits)), seed=seed, kernel_scale=4.0)
    try:
        im = to_integer_model(model, in_t)
    except UnsupportedModel as e:
        assert 'drops low bits of it' in str(e) and "layer 'p'" in str(e)
        assert in_t.integer + bits < 2 ** (bits - 2)  # only when some exponent goes below the r_T's fraction
        return
    x = np.random.default_rng(seed).integers(in_t.min_code, in_t.max_code + 1, size=(64, n_in))
    assert qkeras_matches(model, im, x)[0] == ['p']


def test_po2_settings_hls4ml_cannot_reproduce_are_refused():
    from qkeras import quantized_po2

    from keras_models.layers import BlockSparseQDense

    with pytest.raises(UnsupportedModel, match=r"layer 'p' bias: hls4ml 1.3.0 stores a quantized_po2 bias as exponents.*"
                                               r'use quantized_bits for the bias'):
        to_integer_model(chain(4, qdense(2, 'p', kernel=quantized_po2(4), bias=quantized_po2(4))), F('ap_fixed<8,3>'))
    with pytest.raises(UnsupportedModel, match=r"layer 'p' kernel: quantized_po2 with stochastic rounding cannot be "
                                               r'reproduced.*use_stochastic_rounding=False'):
        to_integer_model(chain(4, qdense(2, 'p', kernel=quantized_po2(4, use_stochastic_rounding=True))), F('ap_fixed<8,3>'))
    # max_value < 1 moves QKeras' exponents down to -2^(bits-1) (measured: po2(4, max_value=0.5) -> 2^-8 .. 2^-1)
    low = chain(4, qdense(2, 'p', kernel=quantized_po2(4, max_value=0.5)), kernel_scale=0.01)
    with pytest.raises(UnsupportedModel, match=r"layer 'p': hls4ml computes x \* 2\^-8 in ap_fixed<24,12> .* which drops "
                                               r'low bits of it; use a quantized_po2 with a narrower exponent range'):
        to_integer_model(low, F('ap_fixed<8,3>'))
    assert to_integer_model(low, F('ap_fixed<8,4>')).layers[1].exponent_bits == 4  # the last bit of r_T: exact
    small = chain(4, qdense(2, 'p', kernel=quantized_po2(4)))
    small.get_layer('p').kernel[0, 0].assign(0.06)
    with pytest.raises(UnsupportedModel, match=r"layer 'p': hls4ml computes x \* 2\^-4 in ap_fixed<24,12> .* which drops "
                                               r'low bits of it'):
        to_integer_model(small, F('ap_fixed<8,-1>'))
    with pytest.raises(UnsupportedModel, match=r"layer 'bs' kernel: quantized_po2 is not supported by the block-sparse "
                                               r'template.*use quantized_bits'):
        to_integer_model(chain(8, BlockSparseQDense(4, block_shape=(4, 2), drop_rate=0.5, kernel_quantizer=quantized_po2(4),
                                                    bias_quantizer=qb(8, 3), name='bs')), F('ap_fixed<8,3>'))


# --- symmetric quantized_bits ---------------------------------------------------------------------


@pytest.mark.csim
def test_symmetric_weights_deploy_exactly(tmp_path):
    from qkeras import QActivation, quantized_relu

    from keras_models.layers import BlockSparseQDense

    model = chain(8, qdense(6, 'ds', kernel=qb(4, 0, symmetric=1), bias=qb(8, 3, symmetric=True)),
                  QActivation(quantized_relu(6, 2), name='r'),
                  BlockSparseQDense(4, block_shape=(3, 2), drop_rate=0.5, mask_seed=1, kernel_quantizer=qb(3, 0, symmetric=1),
                                    bias_quantizer=qb(8, 3), name='bs'), kernel_scale=1.5)
    im, x_codes, _ = cosim(tmp_path, model, F('ap_fixed<8,3>'))
    ds, bs = im.layers[1], im.layers[3]
    assert ds.weight_type == F('ap_fixed<4,1>') and ds.weight.min() == -7 and ds.weight.max() == 7  # never -8
    assert bs.values.min() == -3 and bs.values.max() == 3
    assert qkeras_matches(model, im, x_codes)[0] == ['ds', 'r', 'bs']


# --- activation=, Dropout, Flatten ----------------------------------------------------------------


@pytest.mark.csim
def test_fused_activations_are_nodes_of_their_own(tmp_path):
    """hls4ml splits ``activation=`` off each layer into '<layer>_<activation>'; Dropout leaves no
    node, Flatten (of a flat tensor) a Reshape node; QKeras agrees up to the softmax table."""
    import tensorflow as tf
    from qkeras import quantized_relu, quantized_tanh

    from keras_models.layers import BlockSparseQDense

    model = chain(8, tf.keras.layers.Flatten(name='fl'), qdense(8, 'a', activation='relu'),
                  tf.keras.layers.Dropout(0.3, name='drop'), qdense(8, 'b', activation=quantized_relu(5, 1)),
                  BlockSparseQDense(8, block_shape=(2, 4), drop_rate=0.5, mask_seed=2, kernel_quantizer=qb(4, 0),
                                    bias_quantizer=qb(8, 3), activation=qb(6, 2), name='c'),
                  qdense(6, 'e', activation='linear'), qdense(6, 'f', activation=quantized_tanh(4)),
                  qdense(4, 'g', activation='softmax'))
    im, x_codes, hls_model = cosim(tmp_path, model, F('ap_fixed<8,3>'), {'g_softmax': {'table_size': 256}})
    assert names_kinds(im) == [
        ('x', 'input'), ('fl', 'flatten'), ('a', 'dense'), ('a_relu', 'relu'), ('b', 'dense'), ('b_quantized_relu', 'relu'),
        ('c', 'block_sparse_dense'), ('c_quantized_bits', 'linear'), ('e', 'dense'), ('f', 'dense'),
        ('f_quantized_tanh', 'hard_tanh'), ('g', 'dense'), ('g_softmax', 'softmax')]
    assert hls_model.graph['fl'].class_name == 'Reshape' and 'drop' not in hls_model.graph
    assert im.layers[3].out_type == im.layers[2].out_type  # a float relu keeps the dense result type: exact
    assert im.layers[-1].exp_table_size == 256
    names, why = qkeras_matches(model, im, x_codes)
    assert names == [layer.name for layer in im.layers[1:-1]] and "from layer 'g_softmax' on" in why
    view = keras_view(model)
    assert [layer.name for layer in view.layers if layer.name in dict(names_kinds(im))] == [l.name for l in im.layers]


# --- BatchNormalization ---------------------------------------------------------------------------


@pytest.mark.csim
def test_batchnorm_is_mirrored_node_for_node(tmp_path):
    """BatchNormalization after QDense stays its own hls4ml node; the reference computes x * scale +
    bias with hls4ml's float32 scale and bias, exactly. With statistics that make those short
    binary fractions QKeras agrees; with trained-like ones TensorFlow's scale differs in the last
    float32 bit and the comparison stops there, saying so."""
    import tensorflow as tf
    from qkeras import QActivation, quantized_relu

    model = chain(6, qdense(8, 'd1'), tf.keras.layers.BatchNormalization(epsilon=EPS, name='bn1'),
                  QActivation(quantized_relu(6, 2), name='r1'), qdense(5, 'd2'),
                  tf.keras.layers.BatchNormalization(name='bn2'), QActivation(quantized_relu(8, 3), name='r2'))
    exact_batchnorm(model.get_layer('bn1'))
    layers = {'bn2': {'result': 'ap_fixed<12,5,AP_RND_CONV,AP_SAT>'}}
    im, x_codes, hls_model = cosim(tmp_path, model, F('ap_fixed<8,3>'), layers)
    assert [k for _, k in names_kinds(im)] == ['input', 'dense', 'batchnorm', 'relu', 'dense', 'batchnorm', 'relu']
    assert hls_model.graph['bn1'].class_name == 'BatchNormalization'
    bn1, bn2 = im.layers[2], im.layers[5]
    assert bn1.float_note == '' and bn1.weight_type.width <= 4  # scales 1, 1.5, 2, 3
    assert bn2.out_type == F(layers['bn2']['result']) and 'rsqrt(var + eps) * gamma' in bn2.float_note
    names, why = qkeras_matches(model, im, x_codes)
    assert names == ['d1', 'bn1', 'r1', 'd2'] and "from layer 'bn2' on: TensorFlow computes" in why


def test_batchnorm_that_does_nothing_is_removed_like_hls4ml(tmp_path):
    import tensorflow as tf

    from flow.infra.boards import get_board
    from flow.stages.convert import convert_model

    model = chain(4, qdense(3, 'd'), tf.keras.layers.BatchNormalization(epsilon=EPS, name='bn'))
    model.get_layer('bn').set_weights([np.ones(3), np.zeros(3), np.zeros(3), np.full(3, 1 - EPS)])
    im = to_integer_model(model, F('ap_fixed<8,3>'))
    assert [layer.name for layer in im.layers] == ['x', 'd']
    hls_model = convert_model(model, im, FlowConfig.load(None, model='user.h5'), get_board('pynq-z2'), tmp_path / 'hls')
    assert 'bn' not in hls_model.graph  # RemoveNopBatchNormalization


def test_conversion_checks_the_values_hls4ml_writes(tmp_path):
    """hls4ml computes a BatchNormalization's scale and bias itself; the values it will write (and
    a po2 kernel's exponent type) are compared with the reference's after conversion."""
    import tensorflow as tf
    from qkeras import quantized_po2

    from flow.infra.boards import get_board
    from flow.plan import make_plan
    from flow.stages.convert import ConversionMismatch, check_against_reference, convert_model

    model = chain(4, qdense(3, 'p', kernel=quantized_po2(4)), tf.keras.layers.BatchNormalization(name='bn'))
    cfg = FlowConfig.load(None, model='user.h5', layers={'bn': {'result': 'ap_fixed<16,6>'}})
    im = to_integer_model(model, F('ap_fixed<8,3>'), layer_overrides(cfg))
    hls_model = convert_model(model, im, cfg, get_board('pynq-z2'), tmp_path / 'hls')
    im.layers[2].scale[1] += 1
    with pytest.raises(ConversionMismatch, match=r"layer 'bn': hls4ml's scale values are not the reference's .* at 1"):
        check_against_reference(hls_model, im, make_plan(im, cfg, get_board('pynq-z2')))
    im.layers[2].scale[1] -= 1
    im.layers[1].exponent_bits = 5
    with pytest.raises(ConversionMismatch, match=r"layer 'p': hls4ml stores weight as int<4> .* needs 5-bit exponents"):
        check_against_reference(hls_model, im, make_plan(im, cfg, get_board('pynq-z2')))


def test_batchnorm_refusals_name_the_layer_and_the_fix():
    import tensorflow as tf

    bn = chain(4, qdense(3, 'd'), tf.keras.layers.BatchNormalization(name='bn'))
    with pytest.raises(UnsupportedModel, match=r"layer 'bn': setting 'accum' does not apply \(hls4ml's BatchNormalization "
                                               r'computes x \* scale \+ bias at full precision\)'):
        to_integer_model(bn, F('ap_fixed<8,3>'), {'bn': Overrides(accum='ap_fixed<20,8>')})
    with pytest.raises(UnsupportedModel, match=r"layer 'bn': BatchNormalization over axis \[1\] of a 2-d tensor; only the "
                                               r"last axis \(the features, or an image's channels\) is supported"):
        to_integer_model(chain((4, 4), tf.keras.layers.BatchNormalization(axis=1, name='bn'), tf.keras.layers.Flatten(name='f')),
                         F('ap_fixed<8,3>'))
    tiny = chain(4, qdense(3, 'd'), tf.keras.layers.BatchNormalization(name='bn'))
    tiny.get_layer('bn').set_weights([np.array([1e-30, 1, 1]), np.zeros(3), np.zeros(3), np.ones(3)])
    with pytest.raises(UnsupportedModel, match=r"layer 'bn' scale .*holding its values exactly takes \d+ bits, more than .*fold the BatchNorm"):
        to_integer_model(tiny, F('ap_fixed<8,3>'))


# --- refusals -------------------------------------------------------------------------------------


def test_refusals_name_the_layer_what_is_missing_and_the_fix():
    import tensorflow as tf
    from qkeras import QActivation, quantized_bits

    with pytest.raises(UnsupportedModel, match=r"layer 'd' \(dense\) gets a \(4, 4\) tensor.*put a Flatten before it"):
        to_integer_model(chain((4, 4), qdense(3, 'd')), F('ap_fixed<8,3>'))
    with pytest.raises(UnsupportedModel, match=r"layer 'c' \(Conv1D\): not supported; .*use qkeras.QConv1D with kernel_quantizer=.*BlockSparseQConv1D"):
        to_integer_model(chain((4, 4), tf.keras.layers.Conv1D(2, 2, name='c')), F('ap_fixed<8,3>'))
    with pytest.raises(UnsupportedModel, match=r"layer 'r' \(ReLU\): max_value.* use ReLU\(\) without them, or QActivation\(quantized_relu"):
        to_integer_model(chain(4, qdense(3, 'd'), tf.keras.layers.ReLU(max_value=6.0, name='r')), F('ap_fixed<8,3>'))
    with pytest.raises(UnsupportedModel, match=r"layer 'd' \(activation='elu'\): activation 'elu' is not supported"):
        to_integer_model(chain(4, qdense(3, 'd', activation='elu')), F('ap_fixed<8,3>'))
    with pytest.raises(UnsupportedModel, match=r"layer 'q': quantized_bits alpha='auto' scales the activation.*use alpha=1"):
        to_integer_model(chain(4, QActivation(quantized_bits(8, 2, alpha='auto'), name='q')), F('ap_fixed<8,3>'))
    drop = chain(4, tf.keras.layers.Dropout(0.5, name='drop'), qdense(3, 'd'))
    with pytest.raises(UnsupportedModel, match=r"\['drop'\] removed by hls4ml"):
        to_integer_model(drop, F('ap_fixed<8,3>'), {'drop': Overrides(table_size=64)})
    with pytest.raises(UnsupportedModel, match=r"layer 'drop': setting 'result' does not apply \(hls4ml removes Dropout\)"):
        to_integer_model(drop, F('ap_fixed<8,3>'), {'drop': Overrides(result='ap_fixed<8,3>')})


def test_new_layers_save_and_load(tmp_path):
    """Every new reference kind round-trips through reference.json/npz."""
    import tensorflow as tf
    from qkeras import QActivation, quantized_po2

    model = chain((3, 2), QActivation(qb(6, 2), name='q'), tf.keras.layers.Flatten(name='f'),
                  qdense(4, 'p', kernel=quantized_po2(4), activation='relu'), tf.keras.layers.BatchNormalization(name='bn'))
    im = to_integer_model(model, F('ap_fixed<8,3>'), {'bn': Overrides(result='ap_fixed<16,6>')})
    im.save(tmp_path)
    loaded = IntegerModel.load(tmp_path)
    assert [l.to_json() for l in loaded.layers] == [l.to_json() for l in im.layers]
    assert [l.kind for l in im.layers] == ['input', 'linear', 'flatten', 'dense_po2', 'relu', 'batchnorm']
    x = np.random.default_rng(0).integers(-128, 128, size=(20, 6))
    assert np.array_equal(loaded.predict_codes(x), im.predict_codes(x))
    assert json.loads((tmp_path / 'reference.json').read_text())['layers'][3]['exponent_bits'] == 4
    from flow.stages.footprint import footprint

    assert footprint(im)['layers']['p']['weight_bits'] == 6 * 4 * (1 + 4)  # a sign and a 4-bit exponent per weight


# --- the MLP of hls4ml's tutorials ------------------------------------------------------------------


def tutorial_mlp(po2=False, seed=0):
    """16-64-32-32-5 as hls4ml's tutorials train it: quantized_bits(6,0,alpha=1) kernels and biases,
    quantized_relu(6), Dropout, a final softmax; here fused relus in two layers. ``po2``:
    quantized_po2(4) kernels and a quantized_bits input QActivation."""
    import tensorflow as tf
    from qkeras import QActivation, quantized_po2, quantized_relu

    kq = (lambda: quantized_po2(4)) if po2 else (lambda: qb(6, 0))
    dense = lambda n, name, **kw: qdense(n, name, kernel=kq(), bias=qb(6, 0), **kw)  # noqa: E731
    first = [QActivation(qb(8, 3), name='qin')] if po2 else []
    return chain(16, *first, dense(64, 'fc1'), QActivation(quantized_relu(6), name='relu1'),
                 tf.keras.layers.Dropout(0.2, name='drop1'), dense(32, 'fc2', activation='relu'),
                 dense(32, 'fc3', activation=quantized_relu(6)), tf.keras.layers.Dropout(0.2, name='drop3'),
                 dense(5, 'output'), tf.keras.layers.Activation('softmax', name='softmax'), seed=seed)


@pytest.mark.csim
@pytest.mark.parametrize('po2', [False, True])
def test_tutorial_mlp_deploys_exactly(tmp_path, po2):
    model = tutorial_mlp(po2)
    im, x_codes, _ = cosim(tmp_path, model, F('ap_fixed<16,6>'), n=300)
    names = [layer.name for layer in im.layers]
    assert names == ['x', *(['qin'] if po2 else []), 'fc1', 'relu1', 'fc2', 'fc2_relu', 'fc3', 'fc3_quantized_relu', 'output',
                     'softmax']
    assert {layer.kind for layer in im.layers if layer.name in ('fc1', 'fc2', 'fc3', 'output')} == {'dense_po2' if po2 else 'dense'}
    exact, why = qkeras_matches(model, im, x_codes)
    # fc2's float relu keeps fc2's full result type, so fc3's sums outgrow float32: QKeras may round there
    assert exact == names[1:names.index('fc3')] and "from layer 'fc3' on: its sums reach" in why


# --- the flow, end to end ----------------------------------------------------------------------------


@pytest.mark.csim
def test_flow_verifies_a_model_with_these_layers(tmp_path):
    """An (8, 8) input flattened, fused activations, Dropout, BatchNormalization and a po2 kernel
    through the build steps: the golden vectors (flat) are exact in the C simulation and QKeras
    agrees on every layer (its probe sees fused activations as layers of their own)."""
    import tensorflow as tf
    from qkeras import QActivation, quantized_po2, quantized_relu

    from flow.steps import run_flow

    model = chain((8, 8), tf.keras.layers.Flatten(name='flat'), qdense(16, 'fc', activation=quantized_relu(6, 2)),
                  tf.keras.layers.Dropout(0.25, name='drop'), qdense(16, 'fc2'),
                  tf.keras.layers.BatchNormalization(epsilon=EPS, name='bn'), QActivation(quantized_relu(6, 2), name='relu2'),
                  qdense(10, 'logits', kernel=quantized_po2(4)))
    exact_batchnorm(model.get_layer('bn'))
    model.save(tmp_path / 'm.h5')
    cfg = FlowConfig.load(None, model=str(tmp_path / 'm.h5'), input_precision='ap_fixed<6,2>', n_golden=48)
    ctx = run_flow(cfg, tmp_path / 'b', to_step='verify')
    report = json.loads((ctx.root / 'reports' / 'verify.json').read_text())
    assert report['reference_vs_csim'] == {'equal_vectors': 48, 'exact': True}
    assert report['qkeras_vs_reference']['exact_layers'] == ['flat', 'fc', 'fc_quantized_relu', 'fc2', 'bn', 'relu2', 'logits']
    assert report['qkeras_vs_reference']['all_layers_exact'] is True
