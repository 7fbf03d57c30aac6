"""The integer reference: hand-worked layers, packing, exact accumulators, save/load."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flow.export import exact_accum_type
from flow.runtime.fixed import FixedType
from flow.runtime.ref_block_sparse import BlockSparseDense, pack_blocks, unpack_blocks
from flow.runtime.ref_layers import Dense, Input, ReLU
from flow.runtime.reference import IntegerModel, first_mismatch

IN = FixedType(6, 2)  # frac 4
W = FixedType(4, 1)  # frac 3
B = FixedType(8, 4)  # frac 4


def test_dense_hand_worked():
    # x = [0.5, -1.0] (codes 8, -16); w = [[0.25, -0.5], [0.125, 0.75]] (codes 2,-4 / 1,6); b = [0.25, 0] (4, 0)
    # out0 = 0.5*0.25 + -1*0.125 + 0.25 = 0.25 ; out1 = 0.5*-0.5 + -1*0.75 + 0 = -1.0
    acc = FixedType(12, 5)  # frac 7
    layer = Dense('d', out_type=acc, weight_type=W, bias_type=B, accum_type=acc,
                  weight=np.array([[2, -4], [1, 6]]), bias=np.array([4, 0]))
    out = layer.forward(np.array([[8, -16]]), IN)
    assert out.tolist() == [[int(0.25 * 2**7), int(-1.0 * 2**7)]]
    # a narrower result type truncates (TRN) and wraps (WRAP), as ap_fixed does
    layer.out_type = FixedType(4, 1)  # frac 3, range [-1, 0.875]
    assert layer.forward(np.array([[8, -16]]), IN).tolist() == [[2, -8]]


def test_relu_rounds_half_to_even_and_saturates():
    relu = ReLU('r', out_type=FixedType(3, 1, signed=False, rounding='RND_CONV', overflow='SAT'))  # step 0.25, max 1.75
    x_t = FixedType(8, 4)  # frac 4: codes are 1/16ths
    # 0.125 -> tie between 0 and 0.25 -> 0 (even); 0.375 -> 0.5 (even: code 2); 3.0 -> 1.75 (sat); -1 -> 0
    assert relu.forward(np.array([[2, 6, 48, -16]]), x_t).tolist() == [[0, 2, 7, 0]]


def test_accumulator_is_checked():
    layer = Dense('d', out_type=FixedType(16, 8), weight_type=W, bias_type=B, accum_type=FixedType(16, 10),
                  weight=np.ones((2, 2), dtype=np.int64), bias=np.zeros(2, dtype=np.int64))
    with pytest.raises(ValueError, match='fewer fractional bits'):
        layer.forward(np.zeros((1, 2), dtype=np.int64), IN)
    layer.accum_type = FixedType(16, 8, overflow='SAT')
    with pytest.raises(ValueError, match='saturating accumulator'):
        layer.forward(np.zeros((1, 2), dtype=np.int64), IN)


@given(st.integers(1, 6), st.integers(1, 6), st.sampled_from([1, 2, 4]), st.sampled_from([1, 2, 4]),
       st.floats(0, 0.9), st.integers(0, 1000))
@settings(max_examples=40, deadline=None)
def test_block_sparse_equals_dense_on_unpacked_weights(rows, cols, bi, bo, drop, seed):
    from keras_models.masks import cgs_block_mask, expand

    rng = np.random.default_rng(seed)
    n_in, n_out = rows * bi, cols * bo
    mask = cgs_block_mask('l', (n_in, n_out), (bi, bo), drop, seed)
    w = rng.integers(-8, 8, size=(n_in, n_out)) * expand(mask, (bi, bo))
    b = rng.integers(-128, 128, size=n_out)
    values, index, k = pack_blocks(w, mask, (bi, bo))
    assert values.size == mask.sum() * bi * bo  # only kept blocks are stored
    assert np.array_equal(unpack_blocks(values, index, k, (n_in, n_out), (bi, bo)), w)
    acc = exact_accum_type(w, W, b, B, IN)
    kw = dict(out_type=acc, weight_type=W, bias_type=B, accum_type=acc, bias=b)
    sparse = BlockSparseDense('s', n_in=n_in, n_out=n_out, block=(bi, bo), kept_per_row=k, values=values, index=index, **kw)
    dense = Dense('d', weight=w, **kw)
    x = rng.integers(IN.min_code, IN.max_code + 1, size=(16, n_in))
    assert np.array_equal(sparse.forward(x, IN), dense.forward(x, IN))


@given(st.integers(0, 10_000))
@settings(max_examples=30, deadline=None)
def test_exact_accumulator_never_overflows_and_is_minimal(seed):
    rng = np.random.default_rng(seed)
    n_in, n_out = int(rng.integers(1, 20)), int(rng.integers(1, 6))
    w = rng.integers(W.min_code, W.max_code + 1, size=(n_in, n_out))
    b = rng.integers(B.min_code, B.max_code + 1, size=n_out)
    acc = exact_accum_type(w, W, b, B, IN)
    shift, bshift = acc.frac - IN.frac - W.frac, acc.frac - B.frac
    for o in range(n_out):  # the extreme inputs of each output: extreme codes signed like its weights
        for hi, lo in ((IN.max_code, IN.min_code), (IN.min_code, IN.max_code)):
            s = int((np.where(w[:, o] >= 0, hi, lo) * w[:, o]).sum() << shift) + (int(b[o]) << bshift)
            assert acc.min_code <= s <= acc.max_code
    # minimal: the magnitude bound it was sized for needs every one of its bits
    x_max = max(-IN.min_code, IN.max_code)
    worst = max(int(np.abs(w[:, o]).sum() * x_max << shift) + (abs(int(b[o])) << bshift) for o in range(n_out))
    assert worst == 0 or worst > (acc.max_code >> 1)


def _model():
    acc = FixedType(12, 5)
    return IntegerModel([
        Input('x', out_type=IN, shape=(2,)),
        Dense('d', out_type=acc, weight_type=W, bias_type=B, accum_type=acc, weight=np.array([[2, -4], [1, 6]]), bias=np.array([4, 0])),
        ReLU('r', out_type=FixedType(6, 2, signed=False, rounding='RND_CONV', overflow='SAT')),
    ])


def test_save_load_round_trip(tmp_path):
    m = _model()
    m.save(tmp_path)
    loaded = IntegerModel.load(tmp_path)
    x = np.array([[8, -16], [31, 31], [-32, 5]])
    assert [l.to_json() for l in loaded.layers] == [l.to_json() for l in m.layers]
    assert np.array_equal(loaded.predict_codes(x), m.predict_codes(x))


def test_input_codes_out_of_range_are_refused():
    with pytest.raises(ValueError, match='outside'):
        _model().predict_codes(np.array([[40, 0]]))
    with pytest.raises(ValueError, match='not representable'):
        _model().predict(np.array([[0.01, 0.0]]))


def test_first_mismatch_names_layer_sample_and_element():
    a = {'d': np.zeros((3, 4), dtype=np.int64), 'r': np.zeros((3, 4), dtype=np.int64)}
    b = {'d': a['d'].copy(), 'r': a['r'].copy()}
    assert first_mismatch(a, b) is None
    b['r'][2, 1] = 5
    b['d'][1, 3] = -1
    assert first_mismatch(a, b) == ('d', 1, (3,), 0, -1)
