"""The keywords dataset: synthesized (espeak-ng) and the Speech Commands folder loader."""

import time

import numpy as np
import pytest
from scipy.io import wavfile

from flow.data import datasets
from flow.data import keywords
from flow.infra.errors import BadInput

SMALL = keywords.Settings(voices=('en-us', 'en+m3', 'en+f2'), words=('yes', 'no', 'up'), speeds=(160,), pitches=(50,))
needs_espeak = pytest.mark.skipif(not keywords.shutil.which('espeak-ng'), reason='espeak-ng not installed')


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(keywords.CACHE_ENV, str(tmp_path / 'cache'))
    return tmp_path / 'cache'


@needs_espeak
def test_synthesized_deterministic_cached_split_by_voice(cache, tmp_path, monkeypatch):
    a = keywords.synthesize(SMALL)
    assert a.x_train.shape[1:] == (49, 40) and a.x_train.dtype == np.float32
    assert len(a.x_train) + len(a.x_test) == 3 * 3
    assert set(a.y_train) | set(a.y_test) <= {0, 1, 2}
    assert a.x_train.min() >= -4 and a.x_train.max() < 4
    t0 = time.perf_counter()
    b = keywords.synthesize(SMALL)  # from the cache
    assert time.perf_counter() - t0 < 1.0
    for name in ('x_train', 'y_train', 'x_test', 'y_test'):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    monkeypatch.setenv(keywords.CACHE_ENV, str(tmp_path / 'fresh'))  # regenerated: same seed, same arrays
    c = keywords.synthesize(SMALL)
    assert np.array_equal(a.x_train, c.x_train) and np.array_equal(a.x_test, c.x_test)
    test = keywords.test_voices(SMALL)
    assert len(test) == 1 and test[0] in SMALL.voices and f'test voices {test[0]}' in a.source
    assert keywords.cache_dir(SMALL) != keywords.cache_dir(keywords.Settings(**{**SMALL.__dict__, 'noise': 0.02}))
    assert keywords.cache_dir(SMALL) != keywords.cache_dir(keywords.Settings(**{**SMALL.__dict__, 'seed': 1}))


def test_espeak_missing(monkeypatch):
    monkeypatch.setattr(keywords.shutil, 'which', lambda name: None)
    with pytest.raises(BadInput, match='apt-get install espeak-ng'):
        keywords.synthesize(SMALL)


def _folder(root, words=('yes', 'no'), extra=('cat', '_background_noise_')):
    rng = np.random.default_rng(0)
    for word in (*words, *extra):
        (root / word).mkdir(parents=True)
        for spk in ('aa', 'bb', 'cc'):
            wavfile.write(root / word / f'{spk}_nohash_0.wav', 16000, (rng.normal(0, 3000, 16000)).astype(np.int16))
    (root / 'validation_list.txt').write_text('yes/bb_nohash_0.wav\nno/bb_nohash_0.wav\n')
    (root / 'testing_list.txt').write_text('yes/cc_nohash_0.wav\n')
    return root


def test_speech_commands_lists(tmp_path):
    root = _folder(tmp_path / 'sc')
    s = datasets.load(f'speech_commands:{root}')
    assert s.x_train.shape == (3, 49, 40) and s.x_test.shape == (3, 49, 40)
    assert sorted(s.y_train) == [0, 1, 1] and sorted(s.y_test) == [0, 0, 1]  # other words ignored


def test_speech_commands_errors(tmp_path):
    with pytest.raises(BadInput, match='not found'):
        datasets.load(f'speech_commands:{tmp_path / "nope"}')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(BadInput, match='validation_list.txt'):
        datasets.load(f'speech_commands:{tmp_path / "empty"}')
    root = _folder(tmp_path / 'bad')
    (root / 'no' / 'aa_nohash_0.wav').write_bytes(b'not a wav')
    with pytest.raises(BadInput, match='cannot read'):
        datasets.load(f'speech_commands:{root}')


@needs_espeak
def test_unknown_voice_and_registry(cache):
    assert 'keywords' in datasets.DATASETS
    bad = keywords.Settings(voices=('no-such-voice',), words=('yes',), speeds=(160,), pitches=(50,))
    with pytest.raises(BadInput, match="no-such-voice"):
        keywords.synthesize(bad)
    assert not list(cache.glob('*/keywords.npz'))  # nothing half-written is cached
