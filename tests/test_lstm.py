"""BlockSparseQLSTM (keras_models/lstm.py) and its integer reference (flow/runtime/ref_lstm.py).

The reference must equal the Keras layer code for code wherever float32 is exact (the flow's
qkeras_comparable says where: these models are all within its bound, and the tests assert it);
masks are shared by the four gates and survive quantization; the layer, its masks and its
reference survive save/load; types the reference cannot compute exactly are refused by name.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from flow.export import Overrides, UnsupportedModel, to_integer_model
from flow.runtime.fixed import FixedType
from flow.runtime.ref_block_sparse import index_bits
from flow.runtime.reference import IntegerModel
from flow.stages.verify import qkeras_comparable

IN_T = FixedType(8, 3, rounding='RND_CONV', overflow='SAT')


def qb(bits, integer):
    from qkeras import quantized_bits

    return quantized_bits(bits, integer, alpha=1)


def lstm(units, name, bits=None, **kw):
    """A BlockSparseQLSTM; ``bits``: (kernel, sigmoid, tanh, (cell bits, integer), (hidden bits, integer))."""
    from qkeras import quantized_sigmoid, quantized_tanh

    from keras_models.lstm import BlockSparseQLSTM

    if bits:
        kb, sb, tb, (cb, ci), (hb, hi) = bits
        kw.update(kernel_quantizer=qb(kb, 0), recurrent_quantizer=qb(kb, 0), recurrent_activation=quantized_sigmoid(sb),
                  activation=quantized_tanh(tb), cell_quantizer=qb(cb, ci), state_quantizer=qb(hb, hi))
    return BlockSparseQLSTM(units, name=name, **kw)


def build(shape, *layers, seed=0):
    """Input -> layers, random weights: kernels uniform in [-1.5, 1.5] (saturating quantizers too),
    biases in [-2, 2], so gates, cell and hidden state all reach their clips and saturations."""
    import tensorflow as tf

    from keras_models.lstm import BlockSparseQLSTM

    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input(shape, name='x')
    x = inp
    for layer in layers:
        x = layer(x)
    model = tf.keras.Model(inp, x)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        names = ('kernel', 'recurrent_kernel') if isinstance(layer, BlockSparseQLSTM) else ('kernel',)
        if hasattr(layer, 'kernel'):
            for n in names:
                v = getattr(layer, n)
                v.assign(rng.uniform(-1.5, 1.5, v.shape))
            layer.bias.assign(rng.uniform(-2, 2, layer.bias.shape))
    return model


def codes_for(shape, n, seed, t=IN_T):
    rng = np.random.default_rng(seed)
    x = rng.integers(t.min_code, t.max_code + 1, (n, *shape))
    x[0], x[1] = t.min_code, t.max_code  # the extremes
    return x


def keras_codes(model, im, x_codes):
    """Every reference layer's output as Keras computes it, in codes of the reference's type
    (asserting the float is on that grid: an off-grid value would be a mismatch anyway)."""
    import tensorflow as tf

    names = [l.name for l in im.layers[1:]]
    probe = tf.keras.Model(model.inputs, [model.get_layer(n).output for n in names])
    outs = probe.predict(im.in_type.to_float(x_codes).astype(np.float32), verbose=0)
    outs = outs if isinstance(outs, list) else [outs]
    out = {}
    for layer, o in zip(im.layers[1:], outs):
        scaled = o.astype(np.float64) * 2.0**layer.out_type.frac
        assert np.array_equal(scaled, np.rint(scaled)), f'{layer.name}: Keras output off the {layer.out_type.hls()} grid'
        out[layer.name] = scaled.astype(np.int64)
    return out


def assert_exact(model, x_codes, in_t=IN_T):
    im = to_integer_model(model, in_t)
    exact, why = qkeras_comparable(im)
    assert exact == [l.name for l in im.layers[1:]], why  # verify must call these exact
    ref = im.trace(x_codes)
    ker = keras_codes(model, im, x_codes)
    for name, k in ker.items():
        diff = np.argwhere(k != ref[name])
        assert not len(diff), f'{name}: Keras {k[tuple(diff[0])]} != reference {ref[name][tuple(diff[0])]} at {diff[0]}'
    return im, ref


def _divisors(n):
    return [d for d in (1, 2, 4, 8) if n % d == 0]


# no shrinking: each example builds a TensorFlow model (the failing draw is printed as drawn)
@settings(max_examples=5, suppress_health_check=[HealthCheck.too_slow], phases=[Phase.explicit, Phase.generate])
@given(st.data())
def test_reference_equals_keras(data):
    """One layer, random shapes, blocks, bit widths, sequence lengths, both output kinds."""
    n_in = data.draw(st.sampled_from([4, 6, 8]), 'n_in')
    units = data.draw(st.sampled_from([2, 4, 8]), 'units')
    steps = data.draw(st.integers(1, 7), 'steps')
    block = (data.draw(st.sampled_from(_divisors(n_in))), data.draw(st.sampled_from(_divisors(units))))
    rblock = (data.draw(st.sampled_from(_divisors(units))), data.draw(st.sampled_from(_divisors(units))))
    bits = (data.draw(st.integers(2, 8), 'kernel bits'), data.draw(st.integers(2, 8), 'sigmoid bits'),
            data.draw(st.integers(2, 8), 'tanh bits'),
            (data.draw(st.integers(4, 12), 'cell bits'), data.draw(st.integers(0, 3), 'cell integer')),
            (data.draw(st.integers(3, 10), 'hidden bits'), data.draw(st.integers(0, 1), 'hidden integer')))
    seq = data.draw(st.booleans(), 'return_sequences')
    layer = lstm(units, 'lstm', bits, block_shape=block, recurrent_block_shape=rblock, drop_rate=0.5,
                 mask_seed=data.draw(st.integers(0, 99)), return_sequences=seq)
    import tensorflow as tf

    tail = [tf.keras.layers.Flatten(name='flat')] if seq else []  # the flow's models end on a vector
    model = build((steps, n_in), layer, *tail, seed=data.draw(st.integers(0, 99)))
    x = codes_for((steps, n_in), 64, 1)
    _, ref = assert_exact(model, x)
    assert ref['lstm'].shape == ((64, steps, units) if seq else (64, units))


def test_saturation_is_exercised():
    """The cell state saturates (a 2-integer-bit cell over 8 steps): the reference equals Keras
    there too, so its rounding and overflow modes are the layer's."""
    layer = lstm(4, 'lstm', (6, 4, 4, (6, 1), (6, 0)), block_shape=(2, 2), return_sequences=True)
    import tensorflow as tf

    model = build((8, 4), layer, tf.keras.layers.Flatten(name='flat'), seed=3)
    x = codes_for((8, 4), 128, 2)
    im, ref = assert_exact(model, x)
    c_t = im.layers[1].cell_type
    h = ref['lstm']
    assert h.min() < 0 < h.max()
    # the cell saturates: re-run the reference's recurrence with a wide cell type and compare
    wide_cell = {'cell_type': FixedType(16, 8, rounding='RND_CONV', overflow='SAT'), 'cell_sum_type': FixedType(50, 20)}
    wide = IntegerModel([im.layers[0], type(im.layers[1])(**{**im.layers[1].__dict__, **wide_cell})])
    assert not np.array_equal(wide.predict_codes(x), h), f'{c_t.hls()} never saturated: the test would not see a wrong mode'


def test_stacked_with_dense_head():
    """LSTM(return_sequences) -> LSTM -> QDense, and LSTM(return_sequences) -> Flatten -> BlockSparseQDense."""
    from qkeras import QDense

    from keras_models.layers import BlockSparseQDense

    head = QDense(3, kernel_quantizer=qb(4, 0), bias_quantizer=qb(8, 3), name='fc')
    model = build((5, 6), lstm(8, 'l1', block_shape=(2, 4), return_sequences=True),
                  lstm(4, 'l2', block_shape=(4, 2), recurrent_block_shape=(2, 2)), head, seed=1)
    im, ref = assert_exact(model, codes_for((5, 6), 64, 3))
    assert [l.kind for l in im.layers[1:]] == ['block_sparse_lstm', 'block_sparse_lstm', 'dense']
    assert ref['fc'].shape == (64, 3)

    import tensorflow as tf

    bs = BlockSparseQDense(4, block_shape=(4, 2), kernel_quantizer=qb(4, 0), bias_quantizer=qb(8, 3), name='fc')
    model = build((3, 4), lstm(4, 'l1', block_shape=(2, 2), return_sequences=True), tf.keras.layers.Flatten(name='flat'),
                  bs, seed=2)
    im, ref = assert_exact(model, codes_for((3, 4), 64, 4))
    assert ref['fc'].shape == (64, 4)


def test_masks_shared_by_gates_and_survive_quantization():
    """A binary kernel quantizer maps 0 to +1: the mask, applied after it, must still give exact
    zeros, in the same blocks of all four gates; the reference stores one index per kept block."""
    import tensorflow as tf

    layer = lstm(8, 'lstm', block_shape=(2, 4), recurrent_block_shape=(4, 2), drop_rate=0.5, kernel_quantizer='binary',
                 recurrent_quantizer='binary')
    build((3, 8), layer)
    w, r, _ = (np.asarray(t) for t in layer.quantized_weights())
    for q, block_mask, (bi, bo) in ((w, layer.get_block_mask(), (2, 4)), (r, layer.get_recurrent_block_mask(), (4, 2))):
        assert 0 < block_mask.mean() < 1
        one_gate = np.kron(block_mask, np.ones((bi, bo), bool))
        for g in range(4):
            gate = q[:, g * 8:(g + 1) * 8]
            assert np.all(gate[~one_gate] == 0) and np.all(gate[one_gate] != 0), f'gate {g}'

    model = build((3, 8), lstm(8, 'lstm', block_shape=(2, 4), recurrent_block_shape=(4, 2), drop_rate=0.5))
    ref = to_integer_model(model, IN_T).layers[1]
    keras_layer = model.get_layer('lstm')
    kw, kr = keras_layer.get_block_mask(), keras_layer.get_recurrent_block_mask()
    assert len(ref.index) == kw.sum() and len(ref.recurrent_index) == kr.sum()  # once per mask, not per gate
    assert ref.values.shape == (4, kw.sum(), 2, 4) and ref.recurrent_values.shape == (4, kr.sum(), 4, 2)
    assert not np.any(ref.kernel()[~np.tile(np.kron(kw, np.ones((2, 4), bool)), (1, 4))])
    assert not np.any(ref.recurrent_kernel()[~np.tile(np.kron(kr, np.ones((4, 2), bool)), (1, 4))])
    st_ = ref.storage()
    assert st_['shape'] == [16, 32]
    assert st_['kept_weights'] == 4 * (kw.sum() * 8 + kr.sum() * 8)
    assert st_['index_bits'] == kw.sum() * index_bits(8, 4) + kr.sum() * index_bits(8, 2)
    assert st_['weight_bits'] == st_['kept_weights'] * 6 and st_['bias_bits'] == 32 * 8
    assert tf.reduce_all(keras_layer.element_mask()[:, :8] == keras_layer.element_mask()[:, 24:])


def test_save_load_round_trip(tmp_path):
    """The Keras model (masks, quantizers, weights) and the reference (IntegerModel.save/load)."""
    from qkeras import QDense

    from flow.stages.verify import qkeras_outputs
    from keras_models.layers import load_model

    model = build((4, 6), lstm(4, 'l1', block_shape=(2, 2), return_sequences=True, mask_seed=7),
                  lstm(4, 'l2', block_shape=(2, 2), mask_method='cgs_balanced'),
                  QDense(2, kernel_quantizer=qb(4, 0), bias_quantizer=qb(8, 3), name='fc'), seed=5)
    model.save(tmp_path / 'm.h5')
    loaded = load_model(tmp_path / 'm.h5')
    x = codes_for((4, 6), 32, 6)
    xf = IN_T.to_float(x).astype(np.float32)
    assert np.array_equal(model.predict(xf, verbose=0), loaded.predict(xf, verbose=0))
    for name in ('l1', 'l2'):
        a, b = model.get_layer(name), loaded.get_layer(name)
        assert np.array_equal(a.get_block_mask(), b.get_block_mask())
        assert np.array_equal(a.get_recurrent_block_mask(), b.get_recurrent_block_mask())
        assert a.get_config() == b.get_config()
    im = to_integer_model(loaded, IN_T)
    im.save(tmp_path)
    back = IntegerModel.load(tmp_path)
    assert [l.to_json() for l in back.layers] == [l.to_json() for l in im.layers]
    assert np.array_equal(back.predict_codes(x), im.predict_codes(x))
    # the board's runtime (the files the package ships, numpy only) loads and runs it too
    from shipped_runtime import predict_with_shipped_runtime

    assert np.array_equal(predict_with_shipped_runtime(tmp_path / 'board_run', im, x), im.predict_codes(x))
    # the verify step's QKeras view (a flat input reshaped to the sequence) gives the same codes
    q = qkeras_outputs(loaded, im, IN_T.to_float(x).reshape(len(x), -1))
    assert np.array_equal(q['fc'] * 2.0**im.out_type.frac, im.predict_codes(x))


def test_refusals():
    """Types the reference cannot compute exactly, and structures the flow cannot deploy."""
    from qkeras import QDense, quantized_sigmoid

    model = build((3, 4), lstm(4, 'lstm', block_shape=(2, 2)))
    ref = to_integer_model(model, IN_T).layers[1]
    with pytest.raises(ValueError, match=r"layer 'lstm'.*more than accumulator ap_fixed<\d+,-?\d+> holds.*re-export"):
        ref.check(FixedType(16, 11))  # a wider input than the accumulator was sized for
    with pytest.raises(ValueError, match=r"layer 'lstm'.*fewer fractional bits"):
        ref.check(FixedType(16, 2))
    with pytest.raises(UnsupportedModel, match=r"layer 'lstm': setting 'accum' does not apply"):
        to_integer_model(model, IN_T, {'lstm': Overrides(accum='ap_fixed<24,8>')})
    narrow = type(ref)(**{**ref.__dict__, 'cell_sum_type': FixedType(8, 4)})
    with pytest.raises(ValueError, match=r'ap_fixed<8,4> cannot hold f \* c \+ i \* g exactly'):
        narrow.check(IN_T)

    real = build((3, 4), lstm(4, 'lstm', block_shape=(2, 2), recurrent_activation=quantized_sigmoid(8, use_real_sigmoid=True)))
    with pytest.raises(UnsupportedModel, match=r"recurrent_activation must be quantized_sigmoid\(bits\) in its hard form"):
        to_integer_model(real, IN_T)
    dense_on_seq = build((3, 4), lstm(6, 'lstm', block_shape=(2, 2), return_sequences=True),
                         QDense(2, kernel_quantizer=qb(4, 0), bias_quantizer=qb(8, 3), name='fc'))
    with pytest.raises(UnsupportedModel, match=r"layer 'fc' \(dense\) gets a \(3, 6\) tensor.* put a Flatten before it"):
        to_integer_model(dense_on_seq, IN_T)
    seq_out = build((3, 4), lstm(4, 'lstm', block_shape=(2, 2), return_sequences=True))
    with pytest.raises(UnsupportedModel, match='add a Flatten'):
        to_integer_model(seq_out, IN_T)
    with pytest.raises(ValueError, match='fixed number of time steps'):
        import tensorflow as tf

        lstm(4, 'lstm')(tf.keras.Input((None, 4)))


def test_float32_bound_reported():
    """A layer whose per-step values exceed float32's 2^24 LSBs is reported inexact (verify then
    gives its largest deviation instead of demanding equality); shrinking the input makes it exact."""
    from qkeras import quantized_sigmoid, quantized_tanh

    wide_in = FixedType(16, 4, rounding='RND_CONV', overflow='SAT')
    kw = dict(kernel_quantizer=qb(12, 0), recurrent_quantizer=qb(12, 0), bias_quantizer=qb(16, 3), block_shape=(4, 4),
              drop_rate=0.0, recurrent_activation=quantized_sigmoid(8), activation=quantized_tanh(8),
              cell_quantizer=qb(12, 3), state_quantizer=qb(8, 0))
    model = build((2, 8), lstm(4, 'lstm', **kw))
    im = to_integer_model(model, wide_in)
    exact, why = qkeras_comparable(im)
    assert exact == [] and "layer 'lstm'" in why and '2^24' in why
    assert im.layers[1].float32_bound(wide_in) > 2**24
    im = to_integer_model(model, IN_T)
    assert qkeras_comparable(im)[0] == ['lstm'] and im.layers[1].float32_bound(IN_T) <= 2**24


def test_training_keeps_dropped_weights_zero():
    """A few optimizer steps: the kept weights train, the dropped ones stay exactly 0.0 (latent)."""
    import tensorflow as tf

    from qkeras import QDense

    layer = lstm(8, 'lstm', block_shape=(2, 4), recurrent_block_shape=(4, 4), drop_rate=0.5)
    model = build((4, 8), layer, QDense(3, kernel_quantizer=qb(6, 0), bias_quantizer=qb(8, 3), name='fc'))
    # build() drew random values into the dropped blocks too: the constraint must zero them at the first step
    before = layer.kernel.numpy().copy()
    model.compile(tf.keras.optimizers.Adam(0.05), tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    model.fit(rng.normal(size=(64, 4, 8)).astype(np.float32), rng.integers(0, 3, 64), epochs=2, batch_size=16, verbose=0)
    wm, rm = (np.asarray(m, bool) for m in (layer.element_mask(), layer.recurrent_element_mask()))
    k, r = layer.kernel.numpy(), layer.recurrent_kernel.numpy()
    assert np.all(k[~wm] == 0.0) and np.all(r[~rm] == 0.0)
    assert np.any(k[wm] != before[wm])  # the kept weights did train


def test_float32_exact_at_the_edge():
    """A 16-bit cell state (frac 15) under 8-bit gates: f * c + i * g needs 23 fraction bits and up to
    16711680 LSBs, just under float32's 2^24, and the straight-through difference of the saturating
    cell cast stays within it too: the reference calls it exact, and Keras agrees code for code."""
    import tensorflow as tf

    layer = lstm(4, 'lstm', (6, 8, 8, (16, 0), (8, 0)), block_shape=(2, 2), return_sequences=True)
    model = build((8, 4), layer, tf.keras.layers.Flatten(name='flat'), seed=3)
    im, _ = assert_exact(model, codes_for((8, 4), 256, 2))
    assert 2**23 < im.layers[1].float32_bound(IN_T) <= 2**24
