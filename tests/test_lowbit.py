"""Binary, ternary and 2-3 bit kernels with element-, row-, column- and block-wise masks
(METHODS.md section 4): exact types, refusals, the packed format with dropped rows, and the
hls4ml C simulation equal to the integer reference on random layers."""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flow.export import to_integer_model
from flow.export.quantizers import UnsupportedQuantizer, kernel_type, weight_type
from flow.runtime.fixed import FixedType
from flow.runtime.ref_block_sparse import BlockSparseDense, block_rows, pack_blocks, row_index_bits, unpack_blocks
from flow.runtime.schedule import gather
from keras_models.masks import expand, make_block_mask
from test_cosim import check_cosim  # one compile: convert, g++, compare every vector (at import: it holds a @given)

# --- quantizer types ---------------------------------------------------------------------------


@pytest.mark.parametrize('alpha, want', [(1, FixedType(2, 2)), (0.5, FixedType(2, 1)), (2, FixedType(2, 3)),
                                         (0.125, FixedType(2, -1))])
def test_binary_and_ternary_types_hold_minus_a_zero_plus_a(alpha, want):
    from qkeras import binary, ternary

    for q in (binary(alpha=alpha), ternary(alpha=alpha), ternary(alpha=alpha, threshold=0.1)):
        t = kernel_type(q, 'k')
        assert t == want
        # -a, 0 and +a are codes -1, 0, 1 of that type, and the quantizer's outputs lie on them
        assert list(t.from_float_exact([-alpha, 0.0, alpha])) == [-1, 0, 1]
        x = np.random.default_rng(0).normal(0, 2, 1000).astype(np.float32)
        assert set(t.from_float_exact(q(x).numpy()).tolist()) <= {-1, 0, 1}


def test_quantized_bits_kernel_type_is_unchanged():
    from qkeras import quantized_bits

    assert kernel_type(quantized_bits(3, 0, alpha=1), 'k') == FixedType(3, 1)
    assert kernel_type(quantized_bits(2, 1, alpha=1), 'k') == FixedType(2, 2)


@pytest.mark.parametrize('make, match', [
    (lambda q: q.binary(alpha='auto_po2'), r"k: binary alpha='auto_po2' is a learned per-channel scale.*binary\(alpha=1\)"),
    (lambda q: q.binary(alpha=None), r'binary alpha=None is a learned'),
    (lambda q: q.ternary(alpha='auto'), r"ternary alpha='auto' is a learned.*ternary\(alpha=1\)"),
    (lambda q: q.binary(alpha=0.3), r'binary alpha=0.3 is not a power of two'),
    (lambda q: q.ternary(alpha=3), r'ternary alpha=3 is not a power of two'),
    (lambda q: q.binary(use_01=True, alpha=1), r'use_01=True.*binary\(use_01=False, alpha=1\)'),
    (lambda q: q.ternary(alpha=1, threshold='auto'), r"threshold='auto' is computed from the weights"),
    (lambda q: q.binary(alpha=1, use_stochastic_rounding=True), r'stochastic rounding'),
])
def test_binary_ternary_settings_that_cannot_be_exact_are_refused(make, match):
    import qkeras

    with pytest.raises(UnsupportedQuantizer, match=match):
        kernel_type(make(qkeras), 'k')


@pytest.mark.parametrize('name', ['binary', 'ternary'])
def test_plain_qdense_binary_ternary_kernel_is_refused_with_the_block_sparse_fix(name):
    """hls4ml 1.3.0 makes a QDense binary kernel XNOR {0, 1} (weight_binary product, alpha lost)."""
    import qkeras
    import tensorflow as tf
    from qkeras import QDense, quantized_bits

    from flow.export import UnsupportedModel

    inp = tf.keras.Input((8,), name='x')
    out = QDense(4, kernel_quantizer=getattr(qkeras, name)(alpha=1), bias_quantizer=quantized_bits(8, 3, alpha=1), name='d')(inp)
    with pytest.raises((UnsupportedQuantizer, UnsupportedModel),
                       match=rf"layer 'd' kernel: {name} is deployed by BlockSparseQDense only.*drop_rate=0\.0"):
        to_integer_model(tf.keras.Model(inp, out), FixedType(8, 3))
    with pytest.raises(UnsupportedQuantizer, match='deployed by BlockSparseQDense only'):
        weight_type(getattr(qkeras, name)(alpha=1), 'k')


# --- masks and the packed format ---------------------------------------------------------------


def test_row_and_column_masks_drop_whole_lines_at_the_rate():
    rows = make_block_mask('rows', 'l', (64, 32), (2, 4), 0.75, 3)  # 32 x 8 blocks
    assert rows.shape == (32, 8)
    kept_rows = rows.any(axis=1)
    assert kept_rows.sum() == 8 and rows[kept_rows].all() and not rows[~kept_rows].any()
    cols = make_block_mask('columns', 'l', (64, 32), (2, 4), 0.5, 3)
    kept_cols = cols.any(axis=0)
    assert kept_cols.sum() == 4 and cols[:, kept_cols].all() and not cols[:, ~kept_cols].any()
    # seeded: the same seed gives the same mask, another seed another one
    assert np.array_equal(rows, make_block_mask('rows', 'l', (64, 32), (2, 4), 0.75, 3))
    assert not np.array_equal(rows, make_block_mask('rows', 'l', (64, 32), (2, 4), 0.75, 4))


def test_packed_format_with_dropped_rows_round_trips_and_counts_its_row_index():
    rng = np.random.default_rng(0)
    mask = make_block_mask('rows', 'l', (24, 16), (3, 4), 0.5, 1)  # 8 x 4 blocks, 4 rows kept
    w = rng.integers(-3, 4, (24, 16)) * expand(mask, (3, 4))
    values, index, kpr = pack_blocks(w, mask, (3, 4))
    assert isinstance(kpr, list) and sorted(set(kpr)) == [0, 4]
    assert np.array_equal(block_rows(kpr, len(index)), np.repeat(np.flatnonzero(mask.any(axis=1)), 4))
    assert np.array_equal(unpack_blocks(values, index, kpr, (24, 16), (3, 4)), w)
    assert row_index_bits(kpr, 4) == 8 + 3  # kept-row bitmap + the common count
    assert row_index_bits([1, 0, 2, 3], 4) == 4 * 3  # unequal counts: a count per block-row
    # CGS's equal case keeps its footprint: no row index at all
    cgs = make_block_mask('cgs', 'l', (24, 16), (3, 4), 0.5, 1)
    assert isinstance(pack_blocks(w * 0 + 1, cgs, (3, 4))[2], int)
    assert row_index_bits(2, 4) == 0
    with pytest.raises(ValueError, match='keeps no block'):
        pack_blocks(w, np.zeros_like(mask), (3, 4))


def _layer(mask, block, rng, n_in, n_out):
    w = rng.integers(-1, 2, (n_in, n_out)) * expand(mask, block)
    values, index, kpr = pack_blocks(w, mask, block)
    t = FixedType(2, 2)
    return BlockSparseDense('l', out_type=None, weight_type=t, bias_type=t, accum_type=FixedType(16, 10),
                            bias=np.zeros(n_out, np.int64), n_in=n_in, n_out=n_out, block=block, kept_per_row=kpr,
                            values=values, index=index), w


@pytest.mark.parametrize('rf', [1, 5, 16])
def test_the_schedule_never_reads_dropped_inputs_nor_computes_dropped_outputs(rf):
    rng = np.random.default_rng(rf)
    n_in, n_out, block = 32, 16, (2, 2)
    mask = (make_block_mask('rows', 'l', (n_in, n_out), block, 0.75, 7)
            & make_block_mask('columns', 'l', (n_in, n_out), block, 0.5, 8))
    layer, w = _layer(mask, block, rng, n_in, n_out)
    sched = gather(layer, rf)
    kept_in = np.flatnonzero(expand(mask, block).any(axis=1))
    kept_out = np.flatnonzero(expand(mask, block).any(axis=0))
    assert (len(kept_in), len(kept_out)) == (8, 8)
    used = sched.inputs >= 0
    assert set(sched.inputs[used].tolist()) == set(kept_in.tolist())
    assert set(np.unique(sched.outputs).tolist()) <= set(kept_out.tolist())  # padding writes 0 to a kept output
    # the engine is as big as a dense 8 x 8 layer's: slots = kept weights (plus padding to whole cycles)
    assert sched.slots - sched.padding == 8 * 8
    assert sched.n_mult * rf >= 64 and sched.n_mult <= 2 * -(-64 // rf) + block[1]
    assert np.array_equal(sched.dense_weight(), w)


def test_reference_forward_with_dropped_rows_equals_the_dense_product():
    rng = np.random.default_rng(5)
    mask = make_block_mask('rows', 'l', (16, 8), (1, 2), 0.5, 2)
    layer, w = _layer(mask, (1, 2), rng, 16, 8)
    layer.out_type = layer.accum_type
    in_t = FixedType(6, 3)
    x = rng.integers(in_t.min_code, in_t.max_code + 1, (20, 16))
    assert np.array_equal(layer.forward(x, in_t), (x @ w) << (layer.accum_type.frac - in_t.frac))
    # the footprint counts the kept-row bitmap (16 block-rows) and the common count (4 -> 3 bits)
    assert layer.storage()['index_bits'] == 32 * 2 + 16 + 3 and layer.storage()['kept_weights'] == 8 * 8
    # a dropped input changes nothing
    x2 = x.copy()
    x2[:, ~mask.any(axis=1)] = in_t.max_code
    assert np.array_equal(layer.forward(x2, in_t), layer.forward(x, in_t))


# --- Keras models through the reference ---------------------------------------------------------


QUANTIZERS = {  # name -> kernel quantizer from (qkeras, alpha); alpha only for binary/ternary
    'binary': lambda q, a: q.binary(alpha=a),
    'ternary': lambda q, a: q.ternary(alpha=a, threshold=0.4 * a),
    '2bit': lambda q, a: q.quantized_bits(2, 0, alpha=1),
    '3bit': lambda q, a: q.quantized_bits(3, 0, alpha=1),
}
MASKS = {  # name -> (mask method, block shape as a function of the layer's (n_in, n_out))
    'element': ('cgs', lambda n_in, n_out: (1, 1)),
    'block': ('cgs', lambda n_in, n_out: (4, 2)),
    'rows': ('rows', lambda n_in, n_out: (1, 2)),
    'columns': ('columns', lambda n_in, n_out: (2, 1)),
}


def build_chain(specs, n_in, seed):
    """x -> one BlockSparseQDense per (n_out, quantizer, alpha, mask, drop), each with a
    quantized_relu, so a compile covers several bit widths and masks."""
    import qkeras
    import tensorflow as tf
    from qkeras import QActivation, quantized_bits, quantized_relu

    from keras_models.layers import BlockSparseQDense
    from user_models import random_weights

    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input((n_in,), name='x')
    x, width = inp, n_in
    for i, (n_out, qname, alpha, mname, drop) in enumerate(specs):
        method, block = MASKS[mname]
        x = BlockSparseQDense(n_out, block_shape=block(width, n_out), drop_rate=drop, mask_method=method,
                              mask_seed=seed + i, kernel_quantizer=QUANTIZERS[qname](qkeras, alpha),
                              bias_quantizer=quantized_bits(8, 3, alpha=1), name=f'bs{i}')(x)
        x = QActivation(quantized_relu(6, 2), name=f'relu{i}')(x)
        width = n_out
    return random_weights(tf.keras.Model(inp, x), seed, kernel=1.0, bias=2)


def test_binary_zeros_survive_into_the_reference_and_match_keras(tmp_path):
    """binary maps the dropped (0.0) latent weights to +alpha; after the mask they are 0 in the
    reference's kernel, and the reference's outputs are QKeras' exactly."""
    model = build_chain([(8, 'binary', 0.25, 'rows', 0.5)], 16, 3)
    layer = model.get_layer('bs0')
    layer.kernel.assign(np.zeros(layer.kernel.shape, np.float32))  # every latent weight 0.0 -> +alpha
    in_t = FixedType(8, 3)
    im = to_integer_model(model, in_t)
    bs = im.layers[1]
    dropped = ~expand(layer.get_block_mask(), layer.block_shape)
    assert dropped.any()
    w = bs.dense_weight()
    assert np.all(w[dropped] == 0) and np.all(w[~dropped] == 1)  # code 1 = +alpha
    assert bs.weight_type == FixedType(2, 0)  # step alpha = 2^-2
    x_codes = np.random.default_rng(0).integers(in_t.min_code, in_t.max_code + 1, (64, 16))
    x = in_t.to_float(x_codes)
    keras = model.predict(x, verbose=0)
    assert np.array_equal(im.out_type.from_float_exact(keras, 'keras output'), im.predict_codes(x_codes))
    # the saved reference (what the board package carries) keeps the per-row counts
    from flow.runtime.reference import IntegerModel

    assert isinstance(bs.kept_per_row, list)
    (tmp_path / 'ref').mkdir()
    im.save(tmp_path / 'ref')
    loaded = IntegerModel.load(tmp_path / 'ref')
    assert loaded.layers[1].kept_per_row == bs.kept_per_row
    assert np.array_equal(loaded.predict_codes(x_codes), im.predict_codes(x_codes))


@pytest.mark.parametrize('name, kernel', [('fashion_binary_mlp', 'binary'), ('fashion_lowbit_mlp', 'quantized_bits')])
def test_builtin_low_bit_models_export_with_their_input_precision(name, kernel):
    from flow.export.registry import _quantizer_name
    from keras_models import BUILTIN, get

    assert name in BUILTIN
    module = get(name)
    model = module.build(0)
    im = to_integer_model(model, FixedType.parse(module.INPUT_PRECISION))
    sparse = [lay for lay in im.layers if lay.kind == 'block_sparse_dense']
    assert [lay.name for lay in sparse] == ['fc1', 'fc2'] and module.DATASET == 'fashion_mnist'
    assert {_quantizer_name(model.get_layer(lay.name).kernel_quantizer_internal) for lay in sparse} == {kernel}
    for lay in sparse:  # every ReuseFactor default is within the layer's kept weights
        assert 1 <= module.FLOW_DEFAULTS['layers'][lay.name]['reuse_factor'] <= lay.values.size
    density = sum(lay.values.size for lay in sparse) / sum(lay.n_in * lay.n_out for lay in sparse)
    assert density == (0.5 if kernel == 'binary' else 0.125)


def test_mask_and_quantizer_are_saved_with_the_model(tmp_path):
    from keras_models.layers import load_model

    model = build_chain([(8, 'binary', 0.5, 'rows', 0.5), (4, 'ternary', 1, 'columns', 0.5)], 16, 9)
    model.save(tmp_path / 'm.h5')
    loaded = load_model(tmp_path / 'm.h5')
    for name in ('bs0', 'bs1'):
        a, b = model.get_layer(name), loaded.get_layer(name)
        assert np.array_equal(a.get_block_mask(), b.get_block_mask()) and b.mask_method == a.mask_method
    x = np.random.default_rng(0).uniform(-4, 4, (16, 16)).astype(np.float32)
    assert np.array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))


# --- co-simulation: C simulation == reference, bit for bit ----------------------------------------


@st.composite
def chains(draw):
    """Four layers, one per bit width, masks drawn per layer (every mask kind appears across the
    examples); shapes, drop rates, alphas and ReuseFactors random."""
    qnames = draw(st.permutations(list(QUANTIZERS)))
    mnames = draw(st.permutations(list(MASKS)))
    n_in = draw(st.sampled_from([8, 16, 24]))
    specs = []
    for q, m in zip(qnames, mnames):
        n_out = draw(st.sampled_from([8, 12, 16]))
        alpha = draw(st.sampled_from([1, 0.5, 0.125, 2])) if q in ('binary', 'ternary') else 1
        specs.append((n_out, q, alpha, m, draw(st.sampled_from([0.0, 0.25, 0.5, 0.75]))))
    return n_in, specs, draw(st.integers(0, 10_000)), [draw(st.integers(0, 1000)) for _ in specs]


@pytest.mark.csim
@given(chains())
@settings(max_examples=int(os.environ.get('LOWBIT_COSIM_EXAMPLES', 4)), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_random_low_bit_masked_chains_match_reference_exactly(tmp_path_factory, case):
    from flow.config import FlowConfig

    n_in, specs, seed, rf_picks = case
    model = build_chain(specs, n_in, seed)
    im = to_integer_model(model, FixedType(8, 3))
    layers = {}
    for i, pick in enumerate(rf_picks):
        n_kept = next(lay for lay in im.layers if lay.name == f'bs{i}').values.size
        layers[f'bs{i}'] = {'reuse_factor': 1 + pick % n_kept}
    cfg = FlowConfig.load(None, model='user.h5', layers=layers)
    im, _ = check_cosim(tmp_path_factory.mktemp('lowbit'), model, FixedType(8, 3), cfg, seed=seed)
    kinds = {lay.name: lay.weight_type for lay in im.layers if lay.kind == 'block_sparse_dense'}
    assert len(kinds) == 4


@pytest.mark.csim
def test_binary_zeros_survive_into_the_c_simulation(tmp_path):
    """Every latent weight of the binary layer is 0.0, which QKeras makes +alpha: only the mask
    (applied after the quantizer, and carried into the template's weights) keeps the dropped rows
    at 0. Also alphas below and above 1 (types ap_fixed<2,-1>, ap_fixed<2,3>) and all four masks."""
    from flow.config import FlowConfig

    specs = [(16, 'binary', 0.125, 'rows', 0.5), (8, 'ternary', 2, 'columns', 0.5),
             (16, '2bit', 1, 'block', 0.75), (8, '3bit', 1, 'element', 0.5)]
    model = build_chain(specs, 16, 21)
    layer = model.get_layer('bs0')
    layer.kernel.assign(np.zeros(layer.kernel.shape, np.float32))
    layers = {'bs0': {'reuse_factor': 5}, 'bs1': {'reuse_factor': 3}, 'bs2': {'reuse_factor': 7}, 'bs3': {'reuse_factor': 1}}
    im, _ = check_cosim(tmp_path, model, FixedType(8, 3), FlowConfig.load(None, model='user.h5', layers=layers))
    bs0 = im.layers[1]
    assert bs0.weight_type == FixedType(2, -1) and set(np.unique(bs0.dense_weight()).tolist()) == {0, 1}
    assert isinstance(bs0.kept_per_row, list) and 0 in bs0.kept_per_row  # dropped input rows


@pytest.mark.rtl
def test_rtl_engine_with_dropped_rows_and_columns_equals_the_reference(tmp_path):
    """The engine Verilog (flow/rtl/engine.py) built from a schedule over a row- and column-masked
    ternary-coded layer: every output code equals the reference's, one sample per ReuseFactor."""
    from flow.export import exact_accum_type
    from flow.rtl import tools

    if tools.missing():
        pytest.skip(f'RTL tools missing: {tools.missing()}')
    from test_engine import simulate

    rng = np.random.default_rng(11)
    n_in, n_out, block = 24, 12, (2, 2)
    mask = (make_block_mask('rows', 'l', (n_in, n_out), block, 0.5, 1)
            & make_block_mask('columns', 'l', (n_in, n_out), block, 0.5, 2))
    w = rng.integers(-1, 2, (n_in, n_out)) * expand(mask, block)
    w_t, b_t, in_t = FixedType(2, 0), FixedType(8, 3), FixedType(8, 3)
    bias = rng.integers(b_t.min_code, b_t.max_code + 1, n_out)
    acc = exact_accum_type(w, w_t, bias, b_t, in_t)
    values, index, kpr = pack_blocks(w, mask, block)
    layer = BlockSparseDense('l', acc, weight_type=w_t, bias_type=b_t, accum_type=acc, bias=bias, n_in=n_in, n_out=n_out,
                             block=block, kept_per_row=kpr, values=values, index=index)
    sched = gather(layer, 5)
    x = rng.integers(in_t.min_code, in_t.max_code + 1, (30, n_in))
    run = simulate(tmp_path, sched, layer, in_t, x)
    assert np.array_equal(run.codes, layer.forward(x, in_t))
    assert sched.slots - sched.padding == values.size == 12 * 6  # 12 kept inputs x 6 kept outputs, nothing else


@pytest.mark.csim
def test_distributed_arithmetic_builds_binary_and_ternary_masked_layers_exactly(tmp_path):
    """strategy distributed_arithmetic: hls4ml's Dense from the masked codes (dropped rows and
    columns as zeros, which cost nothing there), alphas 2^-3 and 2 included."""
    from flow.config import FlowConfig

    model = build_chain([(8, 'binary', 0.125, 'rows', 0.5), (8, 'ternary', 2, 'columns', 0.5)], 16, 4)
    da = {'reuse_factor': 1, 'strategy': 'distributed_arithmetic'}
    im, _ = check_cosim(tmp_path, model, FixedType(8, 3), FlowConfig.load(None, model='user.h5', layers={'bs0': da, 'bs1': da}))
    assert [lay.weight_type for lay in im.layers if lay.kind == 'block_sparse_dense'] == [FixedType(2, -1), FixedType(2, 3)]
