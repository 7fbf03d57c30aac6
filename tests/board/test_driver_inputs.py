"""The driver's inputs: what it cannot run exactly (a wrong shape, dtype, range or argument) is
refused before any transfer with an error naming what was expected; what it runs equals the
integer reference code for code, for any batch size, in fresh arrays."""

import re
import sys

import numpy as np
import pytest
from conftest import load_package
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp


@pytest.fixture(scope='module')
def board(built, tmp_path_factory):
    mod, dev, bit = load_package(built('pynq-z2'), tmp_path_factory.mktemp('overlay'))
    return mod, mod.SparseOverlay(bitfile_name=str(bit), download=False, device=dev), dev


def int_dtypes(t):
    """The integer dtypes that hold every code of ``t``."""
    return [d for d in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint64)
            if np.iinfo(d).min <= t.min_code and t.max_code <= np.iinfo(d).max]


def codes(data, t, shape, dtypes=None):
    dtype = data.draw(st.sampled_from(dtypes or int_dtypes(t)), label='dtype')
    return data.draw(hnp.arrays(dtype, shape, elements=st.integers(t.min_code, t.max_code)), label='codes')


def sends(dev):
    return [n for ch, n in dev.transfers if ch == 'mm2s']


BAD_BATCH = st.one_of(st.integers(max_value=0), st.booleans(), st.floats(), st.sampled_from(
    [np.float64(4.0), np.bool_(True), np.int64(-5), '8', [4], 4 + 0j]))


def test_the_reported_cases(board):
    _, ol, dev = board
    x, expected, _ = ol.golden()
    dev.transfers.clear()
    with pytest.raises(ValueError, match=re.escape('expected codes of shape (n, 64), or (64,) for one sample; got (256, 32)')):
        ol.predict_codes(np.zeros((256, 32), dtype=np.int64))
    with pytest.raises(ValueError, match=re.escape('expected inputs of shape (n, 64), or (64,) for one sample; got (64, 96)')):
        ol.predict(ol.format.in_type.to_float(x).T)
    with pytest.raises(TypeError, match=re.escape('codes must be an integer array (got float64); use predict() for float')):
        ol.predict_codes(x + 0.7)
    with pytest.raises(ValueError, match='batch_size must be a positive int or None, got -5'):
        ol.predict_codes(x, batch_size=-5)
    assert sends(dev) == []
    empty = ol.predict_codes(x[:0])
    assert empty.shape == (0, 10) and empty.dtype == np.int64 and sends(dev) == []
    one = ol.predict_codes(x[3])  # one sample of shape (n_in,): one output of shape (n_out,)
    assert one.shape == (10,) and np.array_equal(one, expected[3])


@given(data=st.data())
def test_valid_inputs_give_the_integer_reference_exactly(board, data):
    _, ol, dev = board
    f, t = ol.format, ol.format.in_type
    single = data.draw(st.booleans(), label='single')
    x = codes(data, t, (f.n_in,) if single else (data.draw(st.integers(0, 40), label='n'), f.n_in))
    batch = data.draw(st.one_of(st.none(), st.integers(1, 50), st.sampled_from([np.int32(3), 10**12])), label='batch_size')
    via_float = data.draw(st.booleans(), label='via_float')
    as_list = x.size and data.draw(st.booleans(), label='as_list')  # [] would be shape (0,): not a batch
    dev.transfers.clear()
    arg = t.to_float(x) if via_float else x
    out = (ol.predict if via_float else ol.predict_codes)(arg.tolist() if as_list else arg, batch_size=batch)
    x2 = x.astype(np.int64).reshape(-1, f.n_in)
    expected = ol.reference.predict_codes(x2) if len(x2) else np.zeros((0, f.n_out), dtype=np.int64)
    got = f.out_type.from_float_exact(out, 'output') if via_float else out  # float outputs are exact dyadics
    assert out.shape == ((f.n_out,) if single else (len(x2), f.n_out))
    assert got.dtype == np.int64 and np.array_equal(got.reshape(-1, f.n_out), expected)
    per = min(batch or ol.max_batch, ol.max_batch)
    assert len(sends(dev)) == -(-len(x2) // per)  # zero samples: no transfer at all
    assert dev.buffers == {}
    assert type(out) is np.ndarray and not np.shares_memory(out, x)  # fresh: neither a DMA buffer nor the input
    again = ol.predict_codes(x, batch_size=batch)
    assert not np.shares_memory(out, again) and np.array_equal(again.reshape(-1, f.n_out), expected)


def wrong_shapes(n_in):
    def wrong(s):
        return s != (n_in,) and not (len(s) == 2 and s[1] == n_in)

    near = st.sampled_from([(n_in, 5), (n_in, 1), (5, n_in + 1), (5, n_in - 1), (n_in + 1,), (2 * n_in,), (1, n_in, 1),
                            (2, 3, n_in), (), (0,), (n_in, 0), (0, 0)])
    return st.one_of(near, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=n_in + 2)).filter(wrong)


@given(data=st.data())
def test_wrong_shapes_are_refused_naming_the_expected_shape(board, data):
    _, ol, dev = board
    n_in = ol.format.n_in
    shape = data.draw(wrong_shapes(n_in), label='shape')
    call = data.draw(st.sampled_from(['predict_codes', 'predict', 'check_reference']), label='call')
    x = np.zeros(shape, dtype=np.float64 if call == 'predict' else np.int64)  # valid values: only the shape is wrong
    dev.transfers.clear()
    with pytest.raises(ValueError, match=re.escape(f'of shape (n, {n_in}), or ({n_in},) for one sample; got {shape}')):
        getattr(ol, call)(x)
    assert sends(dev) == []


@given(data=st.data())
def test_non_integer_codes_are_refused_naming_the_dtype(board, data):
    _, ol, dev = board
    f, t = ol.format, ol.format.in_type
    x = codes(data, t, (data.draw(st.integers(0, 6), label='n'), f.n_in), [np.int64])
    kind = data.draw(st.sampled_from(['float16', 'float32', 'float64', 'bool', 'complex128', 'object', 'str', 'list']))
    frac = data.draw(st.sampled_from([0.0, 0.5, 0.7]), label='fraction')  # 3.0 is refused too: it is not an integer array
    bad = {'bool': x != 0, 'object': x.astype(object), 'str': x.astype(str), 'list': (x + frac).tolist()}.get(kind)
    bad = (x + frac).astype(kind) if bad is None else bad
    dtype = np.asarray(bad).dtype
    if kind == 'list' and not len(x):
        dtype = None  # [] has no columns: refused for its shape
    dev.transfers.clear()
    with pytest.raises(TypeError if dtype is not None else ValueError,
                       match=re.escape(f'codes must be an integer array (got {dtype}); use predict() for float inputs')
                       if dtype is not None else 'expected codes of shape'):
        ol.predict_codes(bad)
    assert sends(dev) == []


@given(data=st.data())
def test_codes_outside_the_input_type_are_refused_naming_its_range(board, data):
    _, ol, dev = board
    f, t = ol.format, ol.format.in_type
    dtype = data.draw(st.sampled_from([np.int16, np.int32, np.int64, np.uint64]), label='dtype')
    x = codes(data, t, (data.draw(st.integers(1, 8), label='n'), f.n_in), [np.int64])
    info = np.iinfo(dtype)
    low = st.integers(max(info.min, -(2**63)), t.min_code - 1) if info.min < t.min_code else st.nothing()
    value = data.draw(st.one_of(low, st.integers(t.max_code + 1, info.max)), label='value')
    idx = data.draw(st.tuples(st.integers(0, len(x) - 1), st.integers(0, f.n_in - 1)), label='index')
    x = (x if info.min < 0 else np.clip(x, 0, None)).astype(dtype)
    x[idx] = value
    dev.transfers.clear()
    with pytest.raises(ValueError, match=re.escape(f'code {value} at index {idx} is outside the range of the input type '
                                                   f'{t.hls()}, [{t.min_code}, {t.max_code}]')):
        ol.predict_codes(x)
    with pytest.raises(ValueError, match=re.escape(f'not representable in {t.hls()}')):  # floats: off the range or grid
        ol.predict(t.to_float(x.astype(np.float64)) + data.draw(st.sampled_from([0.0, 2.0 ** -(t.frac + 1)])))
    assert sends(dev) == []


@given(batch=BAD_BATCH, call=st.sampled_from(['predict_codes', 'predict', 'check_golden']))
def test_bad_batch_sizes_are_refused(board, batch, call):
    _, ol, dev = board
    x, _, _ = ol.golden()
    args = {'predict_codes': (x,), 'predict': (ol.format.in_type.to_float(x),), 'check_golden': ()}[call]
    dev.transfers.clear()
    with pytest.raises((TypeError, ValueError), match=re.escape('batch_size must be a positive int or None, got ')):
        getattr(ol, call)(*args, batch_size=batch)
    assert sends(dev) == []


@given(sizes=st.one_of(st.integers(), st.just('16'), st.lists(st.one_of(st.integers(1, 4), BAD_BATCH), min_size=1, max_size=4)),
       repeats=st.one_of(st.integers(1, 2), BAD_BATCH))
def test_bad_benchmark_arguments_are_refused_before_any_run(board, sizes, repeats):
    _, ol, dev = board
    good = isinstance(sizes, list) and all(type(b) is int and b > 0 for b in sizes) and type(repeats) is int and repeats > 0
    dev.transfers.clear()
    if good:
        assert [r['batch'] for r in ol.benchmark(sizes, repeats)] == sizes
        return
    refused = '|'.join(['batch_sizes must be a sequence of positive ints', 'each of batch_sizes must be a positive int',
                        'repeats must be a positive int'])
    with pytest.raises((TypeError, ValueError), match=refused):
        ol.benchmark(sizes, repeats)
    assert sends(dev) == []


def test_compare_refuses_outputs_it_would_have_to_reshape(board):
    mod, ol, _ = board
    _, expected, labels = ol.golden()
    compare = mod.runtime.driver.compare
    with pytest.raises(ValueError, match=re.escape(f'shape {expected.T.shape} cannot be compared with expected outputs')):
        compare(expected.T, expected)
    with pytest.raises(ValueError, match='expected 96 labels'):
        compare(expected, expected, labels[:-1])
    with pytest.raises(ValueError, match='no samples to compare'):
        ol.check_reference(np.zeros((0, ol.format.n_in), dtype=np.int64))


def test_a_dma_too_small_for_one_sample_is_explained(board, monkeypatch):
    _, ol, dev = board
    monkeypatch.setattr(ol, 'max_transfer_bytes', ol.format.word_bytes)  # before: batches of 0 samples
    with pytest.raises(RuntimeError, match='exceeds the DMA length register'):
        ol.predict_codes(np.zeros((2, ol.format.n_in), dtype=np.int64))


def test_a_sequence_model_takes_its_own_input_shape(board):
    """A model whose input is (frames, features) (an LSTM): batches (n, frames, features) and one
    (frames, features) sample run time-major, exactly as flat rows; a wrong shape is refused."""
    _, ol, dev = board
    x, expected, _ = ol.golden()
    shape = ol.reference.input.shape
    ol.reference.input.shape = (8, 8)  # the same 64 codes per sample, as 8 frames x 8 features
    try:
        assert np.array_equal(ol.predict_codes(x.reshape(-1, 8, 8)), expected)
        assert np.array_equal(ol.predict_codes(x[5].reshape(8, 8)), expected[5])
        assert np.array_equal(ol.predict(ol.format.in_type.to_float(x).reshape(-1, 8, 8)),
                              ol.format.out_type.to_float(expected))
        dev.transfers.clear()
        with pytest.raises(ValueError, match=re.escape("or (n, 8, 8) / (8, 8) in the model's input shape; got (3, 4, 16)")):
            ol.predict_codes(x[:3].reshape(3, 4, 16))
        assert sends(dev) == []
    finally:
        ol.reference.input.shape = shape


def as_image_model(ol, shape):
    """The digits MLP's 64 input codes read as one image of ``shape`` (the digits are 8x8 images):
    the reference takes that shape and flattens it before its first dense layer, as a CNN's
    Flatten does; the accelerator is unchanged (it takes the flat row-major sample)."""
    ref = ol.reference
    Flatten = sys.modules[type(ref.input).__module__].Flatten  # the package's own reference layers
    saved = (ref.input.shape, list(ref.layers))
    ref.input.shape = shape
    ref.layers.insert(1, Flatten('flatten', ref.in_type))
    return saved


def restore(ol, saved):
    ol.reference.input.shape, ol.reference.layers[:] = saved[0], saved[1]


@pytest.mark.parametrize('shape', [(8, 8, 1), (4, 4, 4), (2, 8, 4)])
def test_an_image_model_takes_images(board, shape):
    """(n, H, W, C) batches and one (H, W, C) image, and (n, H, W) / (H, W) with one channel, run
    row-major (pixel after pixel, channels fastest), exactly as flat rows; predict, predict_codes
    and check_reference alike; other shapes are refused naming the model's input shape."""
    _, ol, dev = board
    x, expected, _ = ol.golden()
    saved = as_image_model(ol, shape)
    try:
        assert ol.input_shape == shape
        t, u = ol.format.in_type, ol.format.out_type
        forms = [shape] + ([shape[:2]] if shape[2] == 1 else [])
        for form in forms:
            batch = x.reshape(-1, *form)
            assert np.array_equal(ol.predict_codes(batch), expected)
            assert np.array_equal(ol.predict_codes(batch, batch_size=7), expected)
            assert np.array_equal(ol.predict_codes(x[5].reshape(form)), expected[5])
            assert np.array_equal(ol.predict(t.to_float(batch)), u.to_float(expected))
            assert np.array_equal(ol.predict(t.to_float(x[9]).reshape(form).tolist()), u.to_float(expected[9]))
            assert ol.check_reference(batch[:20]).passed
        assert np.array_equal(ol.predict_codes(x[:0].reshape(0, *shape)), np.zeros((0, 10), dtype=np.int64))
        assert ol.check_reference(x.reshape(-1, *shape)).passed  # the reference takes images too
        h, w, c = shape
        candidates = [(3, w, h, c), (3, h * w, c), (h, w, c, 1), (3, c, h, w), (3, h + 1, w, c), (3, h, w), (h, w), (w, h, c),
                      (3, h, w, c + 1), (h * w * c, 1)]
        wrong = [b for b in candidates if b not in forms and b[1:] not in forms]
        assert len(wrong) >= 5, wrong
        dims = ', '.join(map(str, shape))
        one_channel = f', or (n, {h}, {w}) / ({h}, {w}) for its one channel' if c == 1 else ''
        dev.transfers.clear()
        for bad in wrong:
            for call, arg in (('predict_codes', np.zeros(bad, dtype=np.int64)), ('predict', np.zeros(bad))):
                with pytest.raises(ValueError, match=re.escape(
                        f"of shape (n, 64), or (64,) for one sample, or (n, {dims}) / {shape} in the model's input shape"
                        f'{one_channel}; got {bad}')):
                    getattr(ol, call)(arg)
        assert sends(dev) == []
    finally:
        restore(ol, saved)


def test_a_flat_model_refuses_images(board):
    _, ol, dev = board
    x, _, _ = ol.golden()
    dev.transfers.clear()
    for bad in ((3, 8, 8, 1), (3, 8, 8), (8, 8, 1)):
        with pytest.raises(ValueError, match=re.escape(f'expected codes of shape (n, 64), or (64,) for one sample; got {bad}')):
            ol.predict_codes(x[:3].reshape(bad) if bad[0] == 3 else x[0].reshape(bad))
    assert sends(dev) == []
