"""HCGS: hierarchical block masks (any number of levels), one reference and one template with CGS,
the index cost per level, and the paper's index-cost example."""

import numpy as np
import pytest

from flow.runtime.fixed import FixedType
from flow.runtime.ref_block_sparse import BlockSparseDense, pack_blocks
from keras_models.masks import BlockShapeError, expand, make_block_mask, make_hierarchical_mask

PAPER = [((32, 32), 0.75), ((4, 4), 0.75)]  # METHODS.md section 2: 512 x 512, B1 = 32, B2 = 4, 75% / 75%


def reference(mask, block, levels, shape):
    w = np.ones(shape, dtype=np.int64) * expand(mask, block)
    values, index, k = pack_blocks(w, mask, block)
    t = FixedType(4, 1)
    return BlockSparseDense('l', out_type=t, weight_type=t, bias_type=t, accum_type=FixedType(20, 10),
                            bias=np.zeros(shape[1], np.int64), n_in=shape[0], n_out=shape[1], block=block,
                            kept_per_row=k, values=values, index=index, levels=levels)


def test_paper_index_cost_example():
    """16,384 kept weights; index: 64 kept 32x32 blocks x 4 bits (which of 16 output blocks) +
    1024 kept 4x4 sub-blocks x 3 bits (which of 8 inside their block) = 3,328 bits, the paper's
    'about 3.3 kbit' (0.2 bit per kept weight)."""
    mask = make_hierarchical_mask('cgs', 'l', (512, 512), PAPER, seed=3)
    assert mask.shape == (128, 128)
    ref = reference(mask, (4, 4), [[32, 32], [4, 4]], (512, 512))
    st = ref.storage()
    assert st['kept_weights'] == 16384
    assert st['index_bits_per_level'] == [64 * 4, 1024 * 3] and st['index_bits'] == 3328
    # one level at the finest blocks (CGS with 4x4 blocks) would pay 7 bits per kept block
    assert reference(mask, (4, 4), None, (512, 512)).storage()['index_bits'] == 1024 * 7


@pytest.mark.parametrize('seed', range(3))
def test_every_level_keeps_equal_fan_out_inside_its_parent(seed):
    levels = [((16, 8), 0.5), ((4, 4), 0.5), ((2, 1), 0.75)]  # three levels, non-square blocks
    mask = make_hierarchical_mask('cgs', 'l', (64, 32), levels, seed)
    assert mask.shape == (32, 32)
    level1 = make_block_mask('cgs', 'l', (64, 32), (16, 8), 0.5, seed)
    coarse = mask.reshape(4, 8, 4, 8).any(axis=(1, 3))
    assert np.array_equal(coarse, level1)  # finest blocks only inside kept level-1 blocks
    assert set(mask.sum(axis=1).tolist()) == {2 * 1 * 1}  # every finest block-row: 2 (of 4) x 1 (of 2) x 1 (of 4)
    for r, c in np.argwhere(level1):  # inside a kept 16x8 block: 4x4 sub-blocks, 1 of 2 per sub-row
        sub = mask[r * 8:(r + 1) * 8, c * 8:(c + 1) * 8].reshape(4, 2, 2, 4).any(axis=(1, 3))
        assert set(sub.sum(axis=1).tolist()) == {1}
    assert not np.array_equal(mask, make_hierarchical_mask('cgs', 'l', (64, 32), levels, seed + 10))
    assert np.array_equal(mask, make_hierarchical_mask('cgs', 'l', (64, 32), levels, seed))


def test_one_level_is_cgs_and_bad_sub_blocks_are_refused():
    assert np.array_equal(make_hierarchical_mask('cgs', 'l', (64, 32), [((8, 8), 0.5)], 7),
                          make_block_mask('cgs', 'l', (64, 32), (8, 8), 0.5, 7))
    with pytest.raises(BlockShapeError, match='level 2 block 3x4 does not divide level 1 block 8x8'):
        make_hierarchical_mask('cgs', 'fc', (64, 32), [((8, 8), 0.5), ((3, 4), 0.5)], 0)


def test_layer_saves_its_levels_and_runs_bit_exact(tmp_path):
    """An HCGS BlockSparseQDense: saved and loaded with its levels and mask; its finest mask is a
    CGS mask, so the block-sparse template computes it: C simulation == reference."""
    import tensorflow as tf
    from qkeras import quantized_bits

    from flow.config import FlowConfig
    from keras_models.layers import BlockSparseQDense, load_model
    from test_cosim import check_cosim
    from user_models import random_weights

    inp = tf.keras.Input((64,), name='x')
    layer = BlockSparseQDense(32, levels=[((16, 16), 0.5), ((4, 4), 0.5)], mask_seed=5, name='h',
                              kernel_quantizer=quantized_bits(4, 0, alpha=1), bias_quantizer=quantized_bits(8, 3, alpha=1))
    model = random_weights(tf.keras.Model(inp, layer(inp)), 0)
    assert layer.block_shape == (4, 4)
    np.testing.assert_array_equal(layer.get_block_mask(), make_hierarchical_mask('cgs', 'h', (64, 32), layer.levels, 5))
    model.save(tmp_path / 'm.h5')
    again = load_model(tmp_path / 'm.h5').get_layer('h')
    assert again.levels == layer.levels and np.array_equal(again.get_block_mask(), layer.get_block_mask())
    cfg = FlowConfig.load(None, model='user.h5', layers={'h': {'reuse_factor': 8}})
    im, _ = check_cosim(tmp_path / 'c', model, FixedType(8, 2), cfg)
    st = im.layers[1].storage()
    assert len(st['index_bits_per_level']) == 2 and st['kept_weights'] == 64 * 32 // 4


def test_sign_magnitude_quantizer_has_no_zero_code_and_deploys_exactly(tmp_path):
    """The HCGS papers' quantizer: levels +-k/4 for 3 bits (k = 1..4), nearest (halves up), clipped,
    never 0; straight-through gradient inside [-1, 1]. On a masked layer the zeros come from the
    mask only, and the reference (an exact ap_fixed<4,2>) equals QKeras code for code."""
    import tensorflow as tf
    from qkeras import quantized_bits

    from flow.export import to_integer_model
    from flow.stages.verify import qkeras_outputs
    from keras_models.layers import BlockSparseQDense, load_model
    from keras_models.quantizers import sign_magnitude

    q = sign_magnitude(3)
    x = tf.constant([-2.0, -1.0, -0.6, -0.374, 0.0, 0.124, 0.125, 0.375, 0.9, 3.0])
    assert q(x).numpy().tolist() == [-1.0, -1.0, -0.5, -0.25, 0.25, 0.25, 0.25, 0.5, 1.0, 1.0]
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reduce_sum(q(x))
    assert tape.gradient(y, x).numpy().tolist() == [0, 1, 1, 1, 1, 1, 1, 1, 1, 0]

    inp = tf.keras.Input((32,), name='x')
    out = BlockSparseQDense(16, levels=[((8, 8), 0.5), ((2, 2), 0.5)], mask_seed=1, name='h', kernel_quantizer=q,
                            bias_quantizer=quantized_bits(8, 3, alpha=1))(inp)
    model = tf.keras.Model(inp, out)
    model.save(tmp_path / 'm.h5')
    model = load_model(tmp_path / 'm.h5')
    in_t = FixedType(6, 2)
    im = to_integer_model(model, in_t)
    layer = im.layers[1]
    assert layer.weight_type == FixedType(4, 2) and np.all(layer.values != 0)  # no zero code among kept weights
    assert np.count_nonzero(layer.dense_weight()) == 32 * 16 // 4
    xc = np.random.default_rng(0).integers(in_t.min_code, in_t.max_code + 1, (50, 32))
    got = qkeras_outputs(model, im, in_t.to_float(xc))['h'] * 2.0**layer.out_type.frac
    assert np.array_equal(got, im.predict_codes(xc))


def test_hcgs_lstm_shares_each_level_mask_across_gates(tmp_path):
    """An HCGS LSTM (the paper's use): each kernel's two-level mask is shared by the four gates,
    saved with the model; the footprint counts each level's index once per kernel; the reference
    still equals the Keras layer code for code."""
    import tensorflow as tf

    from flow.export import to_integer_model
    from flow.stages.verify import qkeras_outputs
    from keras_models.layers import load_model
    from keras_models.lstm import BlockSparseQLSTM

    inp = tf.keras.Input((5, 16), name='x')
    lstm = BlockSparseQLSTM(16, levels=[((8, 8), 0.5), ((2, 2), 0.5)], mask_seed=2, name='lstm')
    model = tf.keras.Model(inp, lstm(inp))
    model.save(tmp_path / 'm.h5')
    model = load_model(tmp_path / 'm.h5')
    lstm = model.get_layer('lstm')
    assert lstm.levels == lstm.recurrent_levels == [((8, 8), 0.5), ((2, 2), 0.5)]
    np.testing.assert_array_equal(lstm.get_block_mask(), make_hierarchical_mask('cgs', 'lstm', (16, 16), lstm.levels, 2))
    in_t = FixedType(8, 3)
    im = to_integer_model(model, in_t)
    st = im.layers[1].storage()
    # per kernel: 2 kept 8x8 blocks of 2 per block-row x 1 bit, 16 kept 2x2 blocks x 2 bits (of 4 inside)
    assert st['index_bits_per_level'] == [2 * (2 * 1), 2 * (16 * 2)] and st['index_bits'] == 68
    x = np.random.default_rng(0).integers(in_t.min_code, in_t.max_code + 1, (40, 5 * 16))
    got = qkeras_outputs(model, im, in_t.to_float(x))['lstm'] * 2.0**im.layers[1].out_type.frac
    assert np.array_equal(got, im.predict_codes(x))
