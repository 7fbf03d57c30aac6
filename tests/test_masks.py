"""CGS masks and the BlockSparseQDense layer: counts, reproducibility, training, save/load."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_models.masks import BlockShapeError, cgs_block_mask, expand, make_block_mask


@given(
    rows=st.integers(1, 12), cols=st.integers(1, 12), bi=st.sampled_from([1, 2, 4, 8]), bo=st.sampled_from([1, 2, 4, 8]),
    drop=st.floats(0.0, 0.95), seed=st.integers(0, 2**31),
)
@settings(max_examples=60, deadline=None)
def test_cgs_keeps_the_same_number_of_blocks_in_every_input_block_row(rows, cols, bi, bo, drop, seed):
    mask = cgs_block_mask('l', (rows * bi, cols * bo), (bi, bo), drop, seed)
    assert mask.shape == (rows, cols)
    kept = mask.sum(axis=1)
    assert np.all(kept == kept[0])
    assert kept[0] == max(1, round((1 - drop) * cols))


def test_masks_are_reproducible_and_seed_dependent():
    a = cgs_block_mask('l', (64, 64), (8, 8), 0.75, 7)
    b = cgs_block_mask('l', (64, 64), (8, 8), 0.75, 7)
    c = cgs_block_mask('l', (64, 64), (8, 8), 0.75, 8)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_block_that_does_not_divide_names_layer_shape_and_block():
    with pytest.raises(BlockShapeError, match=r"layer 'fc9'.*block 8x3.*kernel 64x32"):
        cgs_block_mask('fc9', (64, 32), (8, 3), 0.5, 0)


def test_bad_drop_ratio_and_unknown_method():
    with pytest.raises(ValueError, match='drop ratio'):
        cgs_block_mask('l', (8, 8), (2, 2), 1.0, 0)
    with pytest.raises(ValueError, match='unknown mask method'):
        make_block_mask('magnitude', 'l', (8, 8), (2, 2), 0.5, 0)


def test_expand():
    m = np.array([[1, 0], [0, 1]], dtype=bool)
    assert expand(m, (2, 3)).shape == (4, 6)
    assert expand(m, (2, 3))[:2, :3].all() and not expand(m, (2, 3))[:2, 3:].any()


def _tiny_model(quantizer=None, seed=3):
    import tensorflow as tf
    from qkeras import quantized_bits

    from keras_models.layers import BlockSparseQDense

    inp = tf.keras.Input((16,))
    out = BlockSparseQDense(8, block_shape=(4, 2), drop_rate=0.5, mask_seed=seed,
                            kernel_quantizer=quantizer or quantized_bits(4, 0, alpha=1),
                            bias_quantizer=quantized_bits(8, 3, alpha=1), name='bs')(inp)
    return tf.keras.Model(inp, out)


def test_dropped_weights_stay_exactly_zero_through_training():
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    model = _tiny_model()
    layer = model.get_layer('bs')
    dropped = ~expand(layer.get_block_mask(), layer.block_shape)
    assert np.all(layer.kernel.numpy()[dropped] == 0.0)  # zero from the start
    model.compile(optimizer=tf.keras.optimizers.Adam(0.05), loss='mse')
    x = np.random.default_rng(0).normal(size=(256, 16)).astype(np.float32)
    y = np.random.default_rng(1).normal(size=(256, 8)).astype(np.float32)
    before = layer.kernel.numpy().copy()
    model.fit(x, y, epochs=3, batch_size=16, verbose=0)
    after = layer.kernel.numpy()
    assert np.all(after[dropped] == 0.0)
    assert not np.array_equal(before[~dropped], after[~dropped])  # the kept weights did train


def test_mask_is_applied_after_quantization():
    """QKeras' binary maps 0 to +1: a mask applied before quantization would not survive."""
    import tensorflow as tf
    from qkeras import binary

    model = _tiny_model(quantizer=binary(alpha=1))
    layer = model.get_layer('bs')
    dropped = ~expand(layer.get_block_mask(), layer.block_shape)
    assert np.all(layer.kernel_quantizer_internal(tf.zeros((2, 2))).numpy() != 0)  # the pitfall is real
    # the effective kernel: response to unit inputs, minus the bias
    eye = np.eye(16, dtype=np.float32)
    effective = model.predict(eye, verbose=0) - model.predict(np.zeros((1, 16), np.float32), verbose=0)
    assert np.all(effective[dropped] == 0.0)
    assert np.all(np.abs(effective[~dropped]) == 1.0)


@pytest.mark.parametrize('suffix', ['.h5', '.keras'])
def test_save_load_round_trip_keeps_mask_and_outputs(tmp_path, suffix):
    import tensorflow as tf

    from keras_models.layers import load_model

    model = _tiny_model(seed=11)
    model.get_layer('bs').bias.assign(np.linspace(-1, 1, 8))
    path = tmp_path / f'm{suffix}'
    model.save(path)
    loaded = load_model(path)
    a, b = model.get_layer('bs'), loaded.get_layer('bs')
    assert np.array_equal(a.get_block_mask(), b.get_block_mask())
    assert (b.block_shape, b.drop_rate, b.mask_seed) == ((4, 2), 0.5, 11)
    x = np.random.default_rng(0).normal(size=(32, 16)).astype(np.float32)
    assert np.array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))
    # the saved mask wins over the seed: change the stored mask, reload, and it is the stored one
    b.block_mask.assign(np.ones_like(b.block_mask.numpy()))
    loaded.save(tmp_path / f'n{suffix}')
    assert load_model(tmp_path / f'n{suffix}').get_layer('bs').get_block_mask().all()
    tf.keras.backend.clear_session()


@given(
    rows=st.integers(1, 12), cols=st.integers(1, 12), drop=st.floats(0.0, 0.95), seed=st.integers(0, 2**31),
)
@settings(max_examples=60, deadline=None)
def test_balanced_masks_have_equal_fan_out_and_fan_in_within_one(rows, cols, drop, seed):
    mask = make_block_mask('cgs_balanced', 'l', (rows * 4, cols * 2), (4, 2), drop, seed)
    assert set(mask.sum(axis=1)) == {max(1, round((1 - drop) * cols))}
    per_col = mask.sum(axis=0)
    assert per_col.max() - per_col.min() <= 1
    assert per_col.max() - per_col.min() == (0 if mask.sum() % cols == 0 else 1)


def test_balanced_masks_are_random_and_reproducible():
    a, b, c = (make_block_mask('cgs_balanced', 'l', (128, 128), (8, 8), 0.75, s) for s in (1, 1, 2))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    # not the regular start pattern: some row's kept columns are not consecutive (mod 16)
    assert any(set(np.diff(np.sort(np.flatnonzero(r)))) != {1} for r in a)


@given(
    rows=st.integers(1, 12), cols=st.integers(1, 12), bi=st.sampled_from([1, 2, 4]), bo=st.sampled_from([1, 2, 4]),
    drop=st.floats(0.0, 0.95), seed=st.integers(0, 2**31),
)
@settings(max_examples=60, deadline=None)
def test_row_and_column_masks_keep_whole_lines_at_the_drop_rate(rows, cols, bi, bo, drop, seed):
    r = make_block_mask('rows', 'l', (rows * bi, cols * bo), (bi, bo), drop, seed)
    c = make_block_mask('columns', 'l', (rows * bi, cols * bo), (bi, bo), drop, seed)
    assert r.shape == c.shape == (rows, cols)
    kept_r, kept_c = r.any(axis=1), c.any(axis=0)
    assert np.array_equal(r, np.outer(kept_r, np.ones(cols, bool)))  # a kept row keeps every block
    assert np.array_equal(c, np.outer(np.ones(rows, bool), kept_c))
    assert kept_r.sum() == max(1, round((1 - drop) * rows)) and kept_c.sum() == max(1, round((1 - drop) * cols))


def test_row_and_column_masks_are_registered_seeded_and_refuse_bad_tiling():
    from keras_models.masks import MASK_METHODS

    assert {'cgs', 'cgs_balanced', 'rows', 'columns'} <= set(MASK_METHODS)
    for method in ('rows', 'columns'):
        a, b, c = (make_block_mask(method, 'l', (64, 64), (2, 2), 0.5, s) for s in (1, 1, 2))
        assert np.array_equal(a, b) and not np.array_equal(a, c)
        with pytest.raises(BlockShapeError, match=r"layer 'l': block 3x2"):
            make_block_mask(method, 'l', (64, 64), (3, 2), 0.5, 0)


@pytest.mark.parametrize('method', ['rows', 'columns'])
def test_row_and_column_masks_are_saved_with_the_model(tmp_path, method):
    import tensorflow as tf
    from qkeras import quantized_bits, ternary

    from keras_models.layers import BlockSparseQDense, load_model

    inp = tf.keras.Input((16,))
    out = BlockSparseQDense(8, block_shape=(2, 2), drop_rate=0.5, mask_method=method, mask_seed=4,
                            kernel_quantizer=ternary(alpha=1), bias_quantizer=quantized_bits(8, 3, alpha=1), name='bs')(inp)
    model = tf.keras.Model(inp, out)
    mask = model.get_layer('bs').get_block_mask()
    assert np.array_equal(mask, make_block_mask(method, 'bs', (16, 8), (2, 2), 0.5, 4))
    model.save(tmp_path / 'm.h5')
    loaded = load_model(tmp_path / 'm.h5').get_layer('bs')
    assert loaded.mask_method == method and np.array_equal(loaded.get_block_mask(), mask)
    tf.keras.backend.clear_session()
