"""Sparsity trained by other tools (TFMOT block pruning, sparsity_m_by_n, hls4ml's Optimization API)
is found in QDense kernels and deployed block-sparse (flow/export/found.py), bit-exactly."""

import json
import subprocess
import sys

import numpy as np
import pytest

from flow.config import FlowConfig
from flow.export import UnsupportedModel, deployed_model, reference_for, to_integer_model
from flow.export.found import find_blocks
from flow.runtime.fixed import FixedType
from flow.runtime.ref_block_sparse import BlockSparseDense
from flow.runtime.ref_layers import Dense
from tests.user_models import chain, random_weights, tfmot_pruned_mlp

IN_T = FixedType(8, 3)


def _codes(rng, n_in, n_out, block=(1, 1), keep=1.0, lo=-7, hi=8):
    """Non-zero codes, zero outside a random keep-fraction of ``block`` blocks."""
    k = rng.integers(lo, hi, (n_in, n_out))
    k[k == 0] = 1
    mask = rng.random((n_in // block[0], n_out // block[1])) < keep
    mask.flat[0] = True
    return k * np.repeat(np.repeat(mask, block[0], 0), block[1], 1)


def _two_of_four(rng, n_in, n_out):
    k = _codes(rng, n_in, n_out).reshape(n_in // 4, 4, n_out)
    for g in range(n_in // 4):
        for o in range(n_out):
            k[g, rng.choice(4, 2, replace=False), o] = 0
    return k.reshape(n_in, n_out)


# --- the search on hand-made kernels -------------------------------------------------------------

def test_zero_8x8_blocks_choose_8x8(rng):
    k = _codes(rng, 64, 32, (8, 8), keep=0.25)
    f = find_blocks(k, 4)
    assert f.block == (8, 8) and f.worth_it and f.n_m is None
    assert f.summary(64, 32)['pattern'] == 'TFMOT block_size-style block pruning'
    # the bits it minimised are those the reference's storage() counts
    from flow.runtime.ref_block_sparse import pack_blocks

    values, index, kpr = pack_blocks(k, f.mask, f.block)
    ref = BlockSparseDense('x', IN_T, n_in=64, n_out=32, block=f.block, kept_per_row=kpr, values=values, index=index,
                           weight_type=FixedType(4, 1), bias_type=FixedType(8, 3), accum_type=FixedType(20, 8),
                           bias=np.zeros(32, dtype=np.int64))
    st = ref.storage()
    assert st['weight_bits'] + st['index_bits'] == f.sparse_bits < f.dense_bits == 64 * 32 * 4


def test_whole_zero_columns_and_rows(rng):
    k = _codes(rng, 64, 32)
    k[:, rng.choice(32, 24, replace=False)] = 0
    f = find_blocks(k, 4)
    assert f.block == (64, 1) and f.worth_it and f.mask.sum() == 8
    assert f.summary(64, 32)['unit'].startswith('output neurons')
    k = _codes(rng, 64, 32)
    k[rng.choice(64, 48, replace=False)] = 0
    f = find_blocks(k, 4)
    assert f.block == (1, 32) and f.worth_it and f.mask.sum() == 16


def test_two_of_four_is_found_and_kept_where_it_saves_bits(rng):
    k = _two_of_four(rng, 64, 32)
    wide = find_blocks(k, 8)  # 8-bit weights: 8 + 5 index bits per kept weight, half of them kept: saves
    assert wide.block == (1, 1) and wide.n_m == '2:4' and wide.worth_it
    narrow = find_blocks(k, 4)  # 4-bit: 4 + 5 bits per kept weight is more than 4 per weight dense
    assert narrow.n_m == '2:4' and not narrow.worth_it


def test_dense_random_kernel_stays_dense(rng):
    f = find_blocks(_codes(rng, 64, 32), 4)
    assert f is None or not f.worth_it
    k = rng.integers(-7, 8, (64, 32))  # with the zeros of a quantizer: still not worth an index
    assert not find_blocks(k, 4).worth_it
    assert find_blocks(np.zeros((8, 8)), 4) is None


# --- the exporter and the settings ----------------------------------------------------------------

def _qdense_model(kernel, wbits=4, n_out_logits=10):
    import tensorflow as tf
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu

    n_in, n_out = kernel.shape
    bq = quantized_bits(8, 3, alpha=1)
    model = chain(QDense(n_out, kernel_quantizer=quantized_bits(wbits, 0, alpha=1), bias_quantizer=bq, name='fc1'),
                  QActivation(quantized_relu(6, 2), name='relu1'),
                  QDense(n_out_logits, kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=bq, name='logits'),
                  n_in=n_in)
    random_weights(model, 0)
    lsb = 2.0 ** -(wbits - 1)
    model.get_layer('fc1').kernel.assign(tf.constant(kernel * lsb, tf.float32))
    return model


@pytest.fixture(scope='module')
def blocky():
    k = _codes(np.random.default_rng(5), 64, 32, (8, 8), keep=0.25)
    return _qdense_model(k)


def _cfg(**kw):
    return FlowConfig.load(None, model='m.h5', input_precision='ap_fixed<8,3>', **kw)


def test_qdense_with_zero_blocks_exports_block_sparse(blocky):
    im = reference_for(blocky, _cfg())
    fc1, logits = im.layers[1], im.layers[3]
    assert isinstance(fc1, BlockSparseDense) and fc1.block == (8, 8)
    assert fc1.found['deployed_sparse'] and fc1.found['block'] == [8, 8] and fc1.found['n_m'] is None
    assert isinstance(logits, Dense) and logits.found is None  # random weights: dense
    # the same product as the dense kernel
    assert np.array_equal(fc1.dense_weight(), np.asarray(blocky.get_layer('fc1').kernel.numpy() * 8, dtype=np.int64))


def test_settings_turn_it_off_or_force_a_shape(blocky):
    assert isinstance(reference_for(blocky, _cfg(sparse=False)).layers[1], Dense)
    assert isinstance(reference_for(blocky, _cfg(layers={'fc1': {'sparse': False}})).layers[1], Dense)
    # an hls4ml Dense strategy asked for the layer keeps it hls4ml's Dense
    assert isinstance(reference_for(blocky, _cfg(layers={'fc1': {'strategy': 'resource'}})).layers[1], Dense)
    # a layer's own sparse: true wins over the model-wide false
    assert isinstance(reference_for(blocky, _cfg(sparse=False, layers={'fc1': {'sparse': True}})).layers[1], BlockSparseDense)
    found = reference_for(blocky, _cfg()).layers[1]
    forced = reference_for(blocky, _cfg(layers={'fc1': {'block_shape': [4, 4]}})).layers[1]
    assert forced.block == (4, 4) and forced.found['forced'] and forced.n_kept_blocks == 4 * found.n_kept_blocks
    assert np.array_equal(forced.dense_weight(), found.dense_weight())
    # any block shape that divides the kernel, even one that keeps every block (16x32: none all zero)
    whole = reference_for(blocky, _cfg(layers={'logits': {'block_shape': [32, 10]}})).layers[3]
    assert isinstance(whole, BlockSparseDense) and whole.n_kept_blocks == 1
    with pytest.raises(UnsupportedModel, match=r"layer 'fc1': block_shape \[5, 8\] does not divide its 64x32 kernel"):
        reference_for(blocky, _cfg(layers={'fc1': {'block_shape': [5, 8]}}))
    with pytest.raises(UnsupportedModel, match=r"layer 'relu1': block_shape applies to dense layers"):
        reference_for(blocky, _cfg(layers={'relu1': {'block_shape': [1, 1]}}))


def test_fingerprint_of_export_covers_the_settings():
    from flow.steps import fingerprints

    def fp(**kw):
        return fingerprints(FlowConfig.load(None, **kw))  # the built-in model: no file to hash

    base = fp()
    assert fp(sparse=False)['export_reference'] != base['export_reference']
    assert fp(layers={'fc1': {'block_shape': [4, 4]}})['export_reference'] != base['export_reference']
    assert fp(sparse=False)['train'] == base['train']  # no retraining


def test_reference_equals_qkeras_and_the_deployed_model(blocky, tmp_path):
    from flow.stages.verify import qkeras_comparable, qkeras_outputs, to_codes
    from keras_models.layers import BlockSparseQDense

    im = to_integer_model(blocky, IN_T)
    rng = np.random.default_rng(0)
    codes = rng.integers(IN_T.min_code, IN_T.max_code + 1, (200, 64))
    x = codes / 2.0 ** IN_T.frac
    names, why = qkeras_comparable(im)
    assert names == ['fc1', 'relu1', 'logits'], why
    trace = im.trace(codes)
    q = qkeras_outputs(blocky, im, x)
    for name in names:
        layer = next(l for l in im.layers if l.name == name)
        assert np.array_equal(to_codes(q[name], layer.out_type.frac), trace[name]), name
    # what hls4ml converts: fc1 a BlockSparseQDense with the found mask and the same weights, same outputs
    dep = deployed_model(blocky, 'model', im)
    fc1 = dep.get_layer('fc1')
    assert isinstance(fc1, BlockSparseQDense) and fc1.block_shape == (8, 8)
    assert np.array_equal(fc1.get_block_mask(), im.layers[1].block_mask())
    assert [l.name for l in dep.layers] == [l.name for l in blocky.layers]
    assert np.array_equal(dep.predict(x, verbose=0), blocky.predict(x, verbose=0))
    assert deployed_model(blocky, 'model', to_integer_model(blocky, IN_T, sparse=False)) is blocky


# --- models as TFMOT users save them, end to end --------------------------------------------------

@pytest.fixture(scope='module')
def pruned_files(tmp_path_factory):
    d = tmp_path_factory.mktemp('tfmot')
    return tfmot_pruned_mlp(d / 'stripped.h5'), d / 'stripped.h5', tfmot_pruned_mlp(d / 'wrapped.h5', strip=False), \
        d / 'wrapped.h5'


def test_tfmot_wrappers_are_stripped_on_load(pruned_files, capsys):
    from flow.infra.model_file import load_user_model

    stripped, stripped_path, _, wrapped_path = pruned_files
    model = load_user_model(wrapped_path)
    assert [type(l).__name__ for l in model.layers] == ['InputLayer', 'QDense', 'QActivation', 'QDense']
    assert 'stripped TFMOT pruning wrappers from' in ' '.join(capsys.readouterr().err.split())  # the console: stderr
    im = to_integer_model(model, IN_T)
    assert im.layers[1].found['block'] == [8, 8] and im.layers[1].found['zero_block_fraction'] == 0.75
    assert im.layers[3].found['n_m'] == '2:4'
    assert [type(l).__name__ for l in load_user_model(stripped_path).layers] == [type(l).__name__ for l in stripped.layers]


@pytest.mark.slow
@pytest.mark.csim
def test_found_sparse_user_model_end_to_end(pruned_files, tmp_path):
    """A TFMOT-pruned QKeras MLP (8x8 blocks at 75%, 2:4 logits): reference == QKeras == C simulation,
    the footprint and the estimate count only the kept weights."""
    _, path, _, _ = pruned_files
    (tmp_path / 'flow.yaml').write_text('input_precision: ap_fixed<8,3>\nn_golden: 64\nrtl: false\nreuse_factor: 4\n')
    res = subprocess.run([sys.executable, '-m', 'flow.cli', '--model', str(path), '--data', 'digits', '--config',
                          str(tmp_path / 'flow.yaml'), '--build-dir', str(tmp_path / 'b'), '--to-step', 'estimate'],
                         capture_output=True, text=True)
    out = ' '.join((res.stdout + res.stderr).split())
    assert res.returncode == 0, out[-3000:]
    assert "layer 'fc1': found 75% of its 8x8 blocks zero (TFMOT block_size-style block pruning): deployed block-sparse" in out
    assert "layer 'logits': found" in out and '2:4 along the inputs' in out
    root = tmp_path / 'b'
    verify = json.loads((root / 'reports' / 'verify.json').read_text())
    assert verify['reference_vs_csim']['exact'] is True
    assert verify['qkeras_vs_reference']['all_layers_exact'] is True, verify['qkeras_vs_reference']
    fp = json.loads((root / 'reference' / 'footprint.json').read_text())
    assert fp['layers']['fc1']['density'] == 0.25 and fp['layers']['fc1']['found_sparsity']['block'] == [8, 8]
    assert fp['total']['density'] < 1
    est = json.loads((root / 'reports' / 'estimate.json').read_text())
    fc1 = est['layers']['fc1']
    assert fc1['kind'] == 'block_sparse_dense' and fc1['found_sparsity']['deployed_sparse']
    assert fc1['ours']['multipliers'] < fc1['hls4ml_dense']['multipliers']
    assert est['total']['ours']['multipliers'] < est['total']['hls4ml_dense']['multipliers']
    nodes = json.loads((root / 'manifest.json').read_text())['steps']['convert']['summary']['layers']
    assert 'fc1' in nodes and 'logits' in nodes


def test_a_pruned_float_dense_deploys_cast_to_the_default_precision(tmp_path):
    """TFMOT prunes float Keras layers too: stripped, a float Dense is cast to hls4ml's default precision
    (flow/export/float_layers.py) and stays dense (its zeros are not looked for)."""
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot

    from flow.infra.model_file import load_user_model

    dense = tfmot.sparsity.keras.prune_low_magnitude(tf.keras.layers.Dense(8, name='fc1'), block_size=(8, 8),
                                                     pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(0.5, 0))
    chain(dense, n_in=16).save(tmp_path / 'float.h5')
    model = load_user_model(tmp_path / 'float.h5')
    fc1 = reference_for(model, _cfg()).layers[1]
    assert fc1.kind == 'dense' and fc1.float_weights and fc1.weight_type.hls() == 'ap_fixed<16,6>' and fc1.found is None
