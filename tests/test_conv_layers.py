"""BlockSparseQConv2D (training side) and the convolution reference: the channel mask at every kernel
position, kept through training and saving; reference == QKeras exactly; the index counted once."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flow.export import to_integer_model
from flow.runtime.fixed import FixedType


def _conv_model(shape=(6, 6, 8), filters=8, block=(4, 2), drop=0.5, levels=None, kernel_quantizer=None, **conv):
    import tensorflow as tf
    from qkeras import quantized_bits

    from keras_models.conv import BlockSparseQConv2D

    inp = tf.keras.Input(shape, name='x')
    x = BlockSparseQConv2D(filters, conv.pop('kernel_size', 3), block_shape=block, drop_rate=drop, levels=levels, mask_seed=3,
                           kernel_quantizer=kernel_quantizer or quantized_bits(4, 0, alpha=1),
                           bias_quantizer=quantized_bits(8, 3, alpha=1), name='conv', **conv)(inp)
    return tf.keras.Model(inp, tf.keras.layers.Flatten(name='f')(x))


def test_the_channel_mask_holds_at_every_kernel_position_through_training_and_saving(tmp_path):
    import tensorflow as tf

    from keras_models.layers import load_model

    model = _conv_model()
    conv = model.get_layer('conv')
    mask = conv.get_block_mask()
    assert mask.shape == (2, 4) and mask.sum(axis=1).tolist() == [2, 2]  # CGS: half of each block-row
    dropped = ~np.repeat(np.repeat(mask, 4, axis=0), 2, axis=1)  # (C_in, C_out)
    rng = np.random.default_rng(0)
    model.compile(optimizer=tf.keras.optimizers.Adam(0.05), loss='mse')
    model.fit(rng.normal(size=(32, 6, 6, 8)), rng.normal(size=(32, 128)), epochs=2, verbose=0)
    kernel = conv.kernel.numpy()
    assert np.all(kernel[:, :, dropped] == 0) and np.any(kernel[:, :, ~dropped] != 0)  # the constraint re-applies it
    model.save(tmp_path / 'm.h5')
    loaded = load_model(tmp_path / 'm.h5')
    assert np.array_equal(loaded.get_layer('conv').get_block_mask(), mask)
    x = rng.normal(size=(4, 6, 6, 8)).astype(np.float32)
    assert np.array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


@given(st.integers(0, 10_000))
@settings(max_examples=8, deadline=None)
def test_reference_equals_qkeras_on_random_geometries(seed):
    """Image sizes, kernels, strides, paddings, channels and blocks: the reference's codes are QKeras'
    outputs exactly (small integers: TensorFlow's float32 convolution is exact for them)."""
    rng = np.random.default_rng(seed)
    c, f = rng.choice([2, 4, 8]), rng.choice([2, 4, 6])
    kh, kw = rng.integers(1, 4, size=2)
    shape = (int(rng.integers(kh, 9)), int(rng.integers(kw, 9)), int(c))
    strides = (int(rng.integers(1, 3)) if kh > 1 else 1, int(rng.integers(1, 3)))
    block = (int(rng.choice([b for b in (1, 2) if c % b == 0])), int(rng.choice([b for b in (1, 2) if f % b == 0])))
    model = _conv_model(shape, int(f), block, float(rng.choice([0.0, 0.5, 0.75])), kernel_size=(int(kh), int(kw)),
                        strides=strides, padding=str(rng.choice(['valid', 'same'])))
    conv = model.get_layer('conv')
    conv.kernel.assign(rng.uniform(-1, 1, size=conv.kernel.shape))
    conv.bias.assign(rng.uniform(-2, 2, size=conv.bias.shape))
    in_t = FixedType(8, 3)
    im = to_integer_model(model, in_t)
    x = in_t.to_float(rng.integers(in_t.min_code, in_t.max_code + 1, size=(5, *shape)))
    assert np.array_equal(im.predict(x), model.predict(x, verbose=0))


def test_hcgs_and_binary_convolution_kernels():
    """Two HCGS levels over the channels and a binary kernel (alpha a power of two): the mask is the
    finest level's, the weights -alpha/0/+alpha, and the reference equals QKeras."""
    from qkeras import binary

    model = _conv_model((5, 5, 8), 8, (2, 2), levels=[((4, 4), 0.5), ((2, 2), 0.5)], kernel_quantizer=binary(alpha=0.25))
    im = to_integer_model(model, FixedType(8, 3))
    conv = im.layers[1]
    assert conv.kind == 'block_sparse_conv2d' and conv.levels == [[4, 4], [2, 2]]
    assert set(np.unique(conv.values)) <= {-1, 1} and conv.weight_type.hls() == 'ap_fixed<2,0>'
    x = FixedType(8, 3).to_float(np.random.default_rng(1).integers(-128, 128, size=(3, 5, 5, 8)))
    assert np.array_equal(im.predict(x), model.predict(x, verbose=0))


def test_the_footprint_counts_the_channel_index_once():
    """A 3x3 kernel repeats the channel mask 9 times in the (kh * kw * C, F) matrix the hardware walks;
    the stored index is the channel mask's: the same bits as a dense layer C -> F with that mask."""
    model = _conv_model((6, 6, 8), 8, (4, 2), 0.5)
    conv = to_integer_model(model, FixedType(8, 3)).layers[1]
    kept_blocks_per_position = 2 * 2  # 2 block-rows x 2 kept output blocks
    assert conv.n_kept_blocks == 9 * kept_blocks_per_position
    s = conv.storage()
    assert s['index_bits'] == kept_blocks_per_position * 2  # 4 output blocks: 2 bits each
    assert s['kept_weights'] == 9 * kept_blocks_per_position * 4 * 2
    assert s['shape'] == [72, 8]


@pytest.mark.parametrize('bad, match', [
    (dict(dilation_rate=2), r'dilation_rate \(2, 2\).*use dilation_rate=1'),
    (dict(kernel_size=(1, 3), strides=(2, 1)), r'a filter of height 1 with vertical stride 2'),
])
def test_convolutions_hls4ml_cannot_stream_are_refused(bad, match):
    from flow.export import UnsupportedModel

    with pytest.raises(UnsupportedModel, match=match):
        to_integer_model(_conv_model((6, 6, 8), 8, **bad), FixedType(8, 3))


def test_same_padded_and_overlapping_pooling_are_refused_with_the_fix():
    import tensorflow as tf

    from flow.export import UnsupportedModel

    for layer, match in ((tf.keras.layers.MaxPooling2D(2, padding='same', name='p'), r"padding 'same'; hls4ml's pooling would "
                          r"pad with zeros where Keras ignores the border: use padding='valid'"),
                         (tf.keras.layers.MaxPooling2D(2, strides=1, name='p'), r'strides \(1, 1\) differ from pool_size '
                          r"\(2, 2\); hls4ml's io_stream pooling takes non-overlapping windows only"),
                         (tf.keras.layers.AveragePooling2D(3, padding='same', name='p'), r"padding 'same' pads this "
                          r"input by \(1, 1, 1, 1\); hls4ml's io_stream pooling takes no padding")):
        inp = tf.keras.Input((4, 4, 2), name='x')
        model = tf.keras.Model(inp, tf.keras.layers.Flatten(name='f')(layer(inp)))
        with pytest.raises(UnsupportedModel, match=match):
            to_integer_model(model, FixedType(8, 3))
