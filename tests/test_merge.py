"""Skip connections: Add, Subtract, Multiply, Average, Maximum, Minimum and Concatenate of two
branches. The reference walks the graph (``RefLayer.inputs``) and equals hls4ml's C simulation
bit for bit, in io_stream (with the ``clone_<layer>`` nodes hls4ml inserts where a stream is read
twice) and in io_parallel; what hls4ml cannot merge is refused in one line."""

import numpy as np
import pytest

from flow.config import FlowConfig
from flow.export import Overrides, UnsupportedModel, to_integer_model
from flow.runtime.fixed import FixedType
from flow.runtime.reference import IntegerModel
from user_models import random_weights



def _quant(wbits=4):
    from qkeras import quantized_bits

    return dict(kernel_quantizer=quantized_bits(wbits, 0, alpha=1), bias_quantizer=quantized_bits(8, 2, alpha=1))


def resnet_block(shape=(6, 5, 3), filters=3, merge='Add', seed=0, head=True):
    """x -> QConv2D -> QActivation -> QConv2D (+ fused relu) -> merge with x [-> Flatten -> QDense(3)]."""
    import tensorflow as tf
    from qkeras import QActivation, QConv2D, QDense, quantized_relu

    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input(shape, name='x')
    y = QConv2D(filters, 3, padding='same', name='conv1', **_quant())(inp)
    y = QActivation(quantized_relu(5, 2), name='relu1')(y)
    y = QConv2D(shape[-1], 3, padding='same', activation=quantized_relu(5, 2), name='conv2', **_quant())(y)
    y = getattr(tf.keras.layers, merge)(name='merge')([y, inp])
    if head:
        y = tf.keras.layers.Flatten(name='flat')(y)
        y = QDense(3, name='head', **_quant(5))(y)
    return random_weights(tf.keras.Model(inp, y), seed, kernel=1.5, bias=3)


def two_branches(shape=(5, 4, 2), seed=0, axis=-1):
    """Two convolution branches from one input, concatenated, then a convolution and a dense head."""
    import tensorflow as tf
    from qkeras import QActivation, QConv2D, QDense, quantized_bits, quantized_relu

    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input(shape, name='x')
    a = QConv2D(3, 3, padding='same', activation=quantized_relu(4, 2), name='left', **_quant())(inp)
    b = QConv2D(2 if axis == -1 else 3, 1, name='right', **_quant(3))(inp)  # other axes: equal channels
    b = QActivation(quantized_bits(6, 3, alpha=1), name='right_cast')(b)
    y = tf.keras.layers.Concatenate(axis=axis, name='cat')([a, b])
    y = QConv2D(2, 2, name='mix', **_quant())(y)
    y = tf.keras.layers.Flatten(name='flat')(y)
    y = QDense(3, name='head', **_quant(5))(y)
    return random_weights(tf.keras.Model(inp, y), seed, kernel=1.5, bias=3)


def mlp_skip(merge='Add', seed=0, n_in=8):
    """An MLP whose two QDense branches meet in a merge, then a dense head."""
    import tensorflow as tf
    from qkeras import QActivation, QDense, quantized_relu

    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input((n_in,), name='x')
    h = QDense(6, activation=quantized_relu(5, 2), name='fc1', **_quant())(inp)
    a = QDense(6, name='fc2a', **_quant())(h)
    b = QActivation(quantized_relu(4, 1), name='b_relu')(h)
    b = tf.keras.layers.Dropout(0.2, name='drop')(b)
    y = getattr(tf.keras.layers, merge)(name='merge')([a, b])
    y = QDense(4, name='head', **_quant(5))(y)
    return random_weights(tf.keras.Model(inp, y), seed, kernel=1.5, bias=3)


# --- the reference on its own ------------------------------------------------------------------

def _float_model_codes(model, im, x_codes):
    """QKeras' output in the reference's output codes (exact where the reference says it is)."""
    x = im.in_type.to_float(x_codes).reshape(len(x_codes), *im.input.shape).astype(np.float32)
    return np.rint(model.predict(x, verbose=0) * 2.0**im.out_type.frac).astype(np.int64)


@pytest.mark.parametrize('merge', ['Add', 'Subtract', 'Multiply', 'Average', 'Maximum', 'Minimum'])
def test_merges_of_an_mlp_equal_qkeras_and_survive_saving(tmp_path, merge, rng):
    """The graph reference of every merge equals QKeras code for code (exact types: no cast loses a
    bit), the merge names what it reads, and reference.json reloads to the same trace."""
    from flow.rtl.logic import no_rtl
    from flow.stages.verify import qkeras_comparable

    model = mlp_skip(merge)
    in_t = FixedType(8, 3)
    im = to_integer_model(model, in_t)
    names = [l.name for l in im.layers]
    assert sorted(names) == sorted(['x', 'fc1', 'fc1_quantized_relu', 'fc2a', 'b_relu', 'merge', 'head'])  # no Dropout
    src = im.sources()
    assert src['b_relu'] == src['fc2a'] == ('fc1_quantized_relu',) and src['merge'] == ('fc2a', 'b_relu')
    # a layer stores what it reads only where that is not the layer before it
    assert [l.name for l in im.layers if l.inputs] == [n for n in names[1:] if src[n] != (names[names.index(n) - 1],)]
    assert len([l for l in im.layers if l.inputs]) == 2
    x = rng.integers(in_t.min_code, in_t.max_code + 1, size=(64, 8))
    x[0], x[1] = in_t.max_code, in_t.min_code
    assert qkeras_comparable(im)[0] == names[1:]
    assert "layer 'merge' (merge): the RTL level builds chains only" in no_rtl(im)
    np.testing.assert_array_equal(im.predict_codes(x), _float_model_codes(model, im, x))
    im.save(tmp_path)
    again = IntegerModel.load(tmp_path)
    for name, v in im.trace(x).items():
        np.testing.assert_array_equal(again.trace(x)[name], v)


def test_a_narrower_merge_result_rounds_and_saturates_like_ap_fixed():
    """A result type from the config: the exact sum cast once (RND_CONV, SAT), on codes; QKeras is
    then compared only up to the merge."""
    from flow.stages.verify import qkeras_comparable

    model = mlp_skip('Add')
    im = to_integer_model(model, FixedType(8, 3), {'merge': Overrides(result='ap_fixed<5,2,AP_RND_CONV,AP_SAT>')})
    merge = {l.name: l for l in im.layers}['merge']
    ta, tb = im.in_types()['merge']
    f = max(ta.frac, tb.frac)
    a = np.arange(ta.min_code, ta.max_code + 1)[:, None]
    b = np.arange(tb.min_code, tb.max_code + 1)[None, :]
    want = merge.out_type.from_codes((a << (f - ta.frac)) + (b << (f - tb.frac)), f)
    exact = ((a << (f - ta.frac)) + (b << (f - tb.frac))) * 2.0**-f
    # ap_fixed<5,2,RND_CONV,SAT>: eighths, half to even, clipped to [-2, 1.875]
    ref_float = np.clip(np.round(exact * 8) / 8, -2, 1.875)
    np.testing.assert_array_equal(merge.out_type.to_float(merge.forward((np.broadcast_to(a, want.shape),
                                                                          np.broadcast_to(b, want.shape)), (ta, tb))),
                                  ref_float)
    names, why = qkeras_comparable(im)
    assert 'merge' not in names and "from layer 'merge' on: its result type ap_fixed<5,2,AP_RND_CONV,AP_SAT>" in why


def test_merges_hls4ml_cannot_build_are_refused_in_one_line():
    import tensorflow as tf
    from qkeras import QConv2D, QDense

    inp = tf.keras.Input((8,), name='x')
    a = QDense(4, name='a', **_quant())(inp)
    b = QDense(4, name='b', **_quant())(inp)
    c = QDense(4, name='c', **_quant())(inp)
    three = tf.keras.Model(inp, tf.keras.layers.Add(name='add3')([a, b, c]))
    with pytest.raises(UnsupportedModel, match=r"^layer 'add3' \(Add\) merges 3 tensors; hls4ml 1\.3\.0 merges two: "
                                               r'chain two-input Add layers$'):
        to_integer_model(three, FixedType(8, 3))

    img = tf.keras.Input((4, 4, 2), name='x')
    small = QConv2D(2, 4, name='squeeze', **_quant())(img)  # (1, 1, 2)
    bcast = tf.keras.Model(img, tf.keras.layers.Flatten(name='f')(tf.keras.layers.Add(name='add')([img, small])))
    with pytest.raises(UnsupportedModel, match=r"layer 'add' \(Add\) merges tensors of shapes \(4, 4, 2\) and \(1, 1, 2\); "
                                               r"hls4ml's streamed merge takes equal shapes"):
        to_integer_model(bcast, FixedType(8, 3))

    twice = tf.keras.Model(inp, tf.keras.layers.Add(name='same_twice')([a, a]))
    with pytest.raises(UnsupportedModel, match=r"layer 'same_twice' reads the same tensor 2 times"):
        to_integer_model(twice, FixedType(8, 3))

    shared = QDense(8, name='shared', **_quant())
    reuse = tf.keras.Model(inp, shared(shared(inp)))
    with pytest.raises(UnsupportedModel, match=r"layer 'shared' is called 2 times \(a shared layer\)"):
        to_integer_model(reuse, FixedType(8, 3))

    dot = tf.keras.Model(inp, tf.keras.layers.Dot(axes=1, name='dot')([a, b]))
    with pytest.raises(UnsupportedModel, match=r"layer 'dot' \(Dot\): not supported; .*"):
        to_integer_model(dot, FixedType(8, 3))


# --- C simulation == reference ------------------------------------------------------------------

def _cosim(tmp_path, model, in_type, io_type='io_stream', n=24, seed=0, **cfg):
    from flow.infra.boards import get_board
    from flow.plan import resolve_io_type
    from flow.stages.convert import compile_csim, convert_model
    from flow.stages.verify import compare_reference_csim, csim_library

    cfg = FlowConfig.load(None, model='user.h5', io_type=io_type, **cfg)
    im = to_integer_model(model, in_type, {k: Overrides(lc.accum, lc.result) for k, lc in cfg.layers.items()})
    board = get_board('pynq-z2')
    assert resolve_io_type(im, cfg, board) == io_type
    hls = convert_model(model, im, cfg, board, tmp_path / 'hls')
    compile_csim(tmp_path / 'hls')
    lib = csim_library(tmp_path, im, cfg.project_name)
    rng = np.random.default_rng(seed)
    x = rng.integers(in_type.min_code, in_type.max_code + 1, size=(n, int(np.prod(im.input.shape))))
    x[0], x[1] = in_type.max_code, in_type.min_code
    compare_reference_csim(im, lib, in_type.to_float(x), x)  # raises naming the first differing layer
    return im, hls, lib, x


@pytest.mark.csim
@pytest.mark.parametrize('merge, seed', [('Add', 0), ('Subtract', 1), ('Maximum', 2)])
def test_resnet_blocks_match_the_c_simulation_exactly(tmp_path, merge, seed):
    """conv -> relu -> conv + the block input, in io_stream: hls4ml clones the input stream
    (``clone_x``), and every layer, the merge included, equals the reference in the trace."""
    from flow.stages.verify import to_codes

    model = resnet_block(merge=merge, seed=seed)
    im, hls, lib, x = _cosim(tmp_path, model, FixedType(7, 2), seed=seed)
    assert 'clone_x' in dict(hls.graph)
    traced = lib.trace(FixedType(7, 2).to_float(x), im.sizes())
    ref = im.trace(x)
    merge_layer = {l.name: l for l in im.layers}['merge']
    assert 'merge' in traced
    np.testing.assert_array_equal(to_codes(traced['merge'], merge_layer.out_type.frac), ref['merge'].reshape(len(x), -1))


@pytest.mark.csim
@pytest.mark.parametrize('axis', [-1, 1])
def test_concatenated_branches_match_the_c_simulation_exactly(tmp_path, axis):
    """Two convolution branches of one input (channels of different types), concatenated along the
    channels or the rows, then convolved: exact."""
    model = two_branches(axis=axis, seed=3 + axis)
    _cosim(tmp_path, model, FixedType(6, 2), seed=axis % 7)


@pytest.mark.csim
@pytest.mark.parametrize('merge, io_type', [('Add', 'io_parallel'), ('Multiply', 'io_parallel'), ('Average', 'io_stream'),
                                            ('Minimum', 'io_stream'), ('Concatenate', 'io_parallel'),
                                            ('Concatenate', 'io_stream')])
def test_dense_branches_merge_exactly_in_both_io_types(tmp_path, merge, io_type):
    _cosim(tmp_path, mlp_skip(merge, seed=5), FixedType(8, 3), io_type=io_type)


@pytest.mark.csim
@pytest.mark.parametrize('merge, result', [('Average', 'ap_fixed<5,1,AP_RND,AP_SAT>'), ('Multiply', 'ap_fixed<6,2>')])
def test_a_narrower_merge_result_casts_like_the_c_simulation(tmp_path, merge, result):
    """A result type from the config rounds and saturates (or truncates and wraps) the exact merge
    as the C simulation's assignment does."""
    im, *_ = _cosim(tmp_path, mlp_skip(merge, seed=6), FixedType(8, 3), n=48, layers={'merge': {'result': result}})
    assert {l.name: l for l in im.layers}['merge'].out_type.hls() == result


@pytest.mark.csim
def test_a_wrong_merge_is_traced_to_the_merge(tmp_path):
    """The reference computing another merge than hls4ml: the mismatch names the merge layer."""
    from flow.stages.verify import Mismatch, compare_reference_csim

    model = resnet_block(seed=4)
    in_t = FixedType(7, 2)
    im, _, lib, x = _cosim(tmp_path, model, in_t, n=4, seed=4)
    merge = {l.name: l for l in im.layers}['merge']
    merge.op = 'subtract'
    with pytest.raises(Mismatch, match=r"first difference in layer 'merge'"):
        compare_reference_csim(im, lib, in_t.to_float(x), x)


# --- the whole flow -----------------------------------------------------------------------------

def small_resnet(path, seed=0):
    """A ResNet-like CNN as users write it: a stem, one residual block (block-sparse second
    convolution), relu after the Add, max pooling and a dense head."""
    import tensorflow as tf
    from qkeras import QActivation, QConv2D, QDense, quantized_relu

    from keras_models.conv import BlockSparseQConv2D

    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input((8, 8, 1), name='image')
    stem = QConv2D(4, 3, padding='same', activation=quantized_relu(5, 2), name='stem', **_quant())(inp)
    y = QConv2D(4, 3, padding='same', name='c1', **_quant())(stem)
    y = QActivation(quantized_relu(5, 2), name='r1')(y)
    y = BlockSparseQConv2D(4, 3, padding='same', block_shape=(2, 2), drop_rate=0.5, mask_seed=seed, name='c2', **_quant())(y)
    y = tf.keras.layers.Add(name='add')([y, stem])
    y = QActivation(quantized_relu(6, 3), name='r2')(y)
    y = tf.keras.layers.MaxPooling2D(2, name='pool')(y)
    y = tf.keras.layers.Flatten(name='flat')(y)
    y = QDense(10, name='logits', **_quant(5))(y)
    random_weights(tf.keras.Model(inp, y), seed, kernel=1.5, bias=3).save(path)


@pytest.mark.csim
def test_a_skip_connection_cnn_runs_through_the_flow_exactly(tmp_path):
    import json

    from flow.steps import run_flow

    small_resnet(tmp_path / 'resnet.h5')
    cfg = FlowConfig.load(None, model=str(tmp_path / 'resnet.h5'), input_precision='ap_fixed<6,1>', n_golden=24,
                          reuse_factor=2)
    ctx = run_flow(cfg, tmp_path / 'b', to_step='estimate')
    b = ctx.root
    ref = json.loads((b / 'reference' / 'reference.json').read_text())
    add = next(l for l in ref['layers'] if l['name'] == 'add')
    assert add['kind'] == 'merge' and add['op'] == 'add' and add['inputs'] == ['c2', 'stem_quantized_relu']
    report = json.loads((b / 'reports' / 'verify.json').read_text())
    assert report['reference_vs_csim'] == {'equal_vectors': 24, 'exact': True}
    assert report['accelerator_testbench'].startswith('PASS: 24 samples')
    assert report['qkeras_vs_reference']['all_layers_exact'] is True  # the Add too: its type holds every sum
    convert = json.loads((b / 'manifest.json').read_text())['steps']['convert']['summary']
    assert convert['io_type'] == 'io_stream'
    rtl = json.loads((b / 'reports' / 'rtl_resources.json').read_text())
    assert rtl['built'] is False and 'convolutional networks' in rtl['reason']  # the first reason; merges have theirs
    # no da4ml network, but the block-sparse convolution's engine: Verilated exact on every patch, synthesized
    assert set(rtl['engines']) == {'c2'} and rtl['engines']['c2']['lut'] > 0
    assert report['rtl']['engines']['c2']['exact'] and report['rtl']['equal_vectors'] == 24
    est = json.loads((b / 'reports' / 'estimate.json').read_text())
    assert {'stem', 'c1', 'c2', 'logits'} <= set(est['layers']) and 'add' not in est['layers']
    assert est['layers']['c2']['kind'] == 'block_sparse_conv2d'
    assert est['total']['ours']['interval'] == max(l['ours']['cycles'] for l in est['layers'].values())


def test_a_found_sparse_branch_is_rewritten_in_place_in_the_graph():
    """A QDense branch whose kernel is mostly zero deploys block-sparse (``deployed_model``): the
    rewritten model keeps the graph, so the merge reads the block-sparse layer and QKeras' model
    and the deployed one compute the same."""
    from flow.export import deployed_model

    model = mlp_skip('Add', seed=7)
    fc2a = model.get_layer('fc2a')
    kernel = np.zeros(fc2a.kernel.shape, np.float32)
    kernel[:2, :2] = 0.5
    fc2a.kernel.assign(kernel)
    im = to_integer_model(model, FixedType(8, 3))
    assert {l.name: l for l in im.layers}['fc2a'].kind == 'block_sparse_dense'
    deployed = deployed_model(model, im=im)
    assert type(deployed.get_layer('fc2a')).__name__ == 'BlockSparseQDense'
    inbound = [n[0] for n in deployed.get_config()['layers'][-2]['inbound_nodes'][0]]
    assert deployed.get_config()['layers'][-2]['name'] == 'merge' and set(inbound) == {'fc2a', 'drop'}
    x = np.random.default_rng(0).integers(-128, 128, size=(32, 8)) / 32
    np.testing.assert_array_equal(deployed.predict(x, verbose=0), model.predict(x, verbose=0))


def test_a_sequential_model_is_still_a_chain():
    """Sequential models have no graph in their config: read as the chain they are."""
    import tensorflow as tf
    from qkeras import QActivation, QDense, quantized_relu

    model = tf.keras.Sequential([tf.keras.Input((8,)), QDense(4, name='fc', **_quant()),
                                 QActivation(quantized_relu(4, 1), name='relu'), QDense(2, name='out', **_quant())])
    im = to_integer_model(random_weights(model, 1), FixedType(8, 3))
    assert [l.name for l in im.layers][1:] == ['fc', 'relu', 'out'] and not any(l.inputs for l in im.layers)
    x = np.random.default_rng(1).integers(-128, 128, size=(16, 8))
    np.testing.assert_array_equal(im.predict_codes(x), _float_model_codes(model, im, x))
