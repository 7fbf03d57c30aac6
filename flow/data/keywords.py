"""Spoken keywords: the ten Speech Commands words as log-mel features of 49 frames x 40 bands.

Two sources with the same features:

* ``keywords``: the words synthesized with espeak-ng (Debian package ``espeak-ng``) over voices,
  speeds and pitches plus seeded background noise; generated once and cached under
  ``$SPARSE_FLOW_KEYWORDS_CACHE`` (default ``~/.cache/sparse-fpga-flow/keywords``) in a folder
  named by a content hash of the settings, so a changed setting never reuses old clips. The
  split is by voice: test voices are never trained on.
* ``speech_commands:/folder``: the real Speech Commands layout on disk
  (``<word>/<speaker>_nohash_<n>.wav``, ``validation_list.txt``, ``testing_list.txt``); the ten
  words only; validation and testing files form the test split. Nothing is downloaded.

Features: 1 s at 16 kHz (the word centred), 25 ms Hann frames every 20 ms (49 frames), a 512-point
power spectrum, 40 HTK mel bands over 20..8000 Hz, then ``clip(log10(power + 1e-6) / 1.5, -4,
4 - 1/64)``: silence maps to -4 and a full-scale word stays below 4, so the features fit an
``ap_fixed<W,3>`` input type with no scaling left to the user. The filterbank is a few lines of
numpy rather than librosa: librosa 0.11 pulls numba/llvmlite (a JIT compile on first use) and
pooch (a downloader) into a pinned environment for one matrix product.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from flow.infra.errors import BadInput

WORDS = ('yes', 'no', 'up', 'down', 'left', 'right', 'on', 'off', 'stop', 'go')
RATE, FRAME, HOP, NFFT, BANDS = 16000, 400, 320, 512, 40
N_FRAMES = 1 + (RATE - FRAME) // HOP  # 49
FEATURE_VERSION = 1  # bump when the feature code changes: it is part of the cache key
CACHE_ENV = 'SPARSE_FLOW_KEYWORDS_CACHE'


@dataclass(frozen=True)
class Settings:
    voices: tuple = tuple(f'{b}{v}' for b in ('en-us', 'en', 'en-gb-x-rp')
                          for v in ('', '+m1', '+m2', '+m3', '+m4', '+f1', '+f2', '+f3'))
    speeds: tuple = (130, 160, 190)  # words per minute
    pitches: tuple = (35, 50, 65)  # espeak-ng 0..99
    noise: float = 0.01  # Gaussian background, standard deviation relative to full scale
    test_fraction: float = 0.25  # of the voices, drawn by the seed
    seed: int = 0
    words: tuple = field(default=WORDS)


SMALL = Settings(voices=('en-us', 'en+m3', 'en+f2', 'en-gb-x-rp'), speeds=(160,), pitches=(50,))


def _mel_filters() -> np.ndarray:
    mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)  # noqa: E731  HTK mel scale
    hz = 700.0 * (10 ** (np.linspace(mel(20.0), mel(RATE / 2), BANDS + 2) / 2595.0) - 1.0)
    bins = np.fft.rfftfreq(NFFT, 1.0 / RATE)
    lo, mid, hi = hz[:-2, None], hz[1:-1, None], hz[2:, None]
    return np.maximum(0.0, np.minimum((bins - lo) / (mid - lo), (hi - bins) / (hi - mid)))


MEL = _mel_filters()


def features(wave: np.ndarray) -> np.ndarray:
    """(49, 40) scaled log-mel features of a 1 s clip at 16 kHz (float in [-1, 1])."""
    idx = np.arange(N_FRAMES)[:, None] * HOP + np.arange(FRAME)
    spec = np.abs(np.fft.rfft(wave[idx] * np.hanning(FRAME), NFFT)) ** 2
    return np.clip(np.log10(spec @ MEL.T + 1e-6) / 1.5, -4.0, 4.0 - 1 / 64).astype(np.float32)


def centred(wave: np.ndarray) -> np.ndarray:
    """The sound (above 2% of the peak) centred in 1 s, cut symmetrically if longer."""
    loud = np.flatnonzero(np.abs(wave) > 0.02 * (np.abs(wave).max() or 1.0))
    wave = wave[loud[0]:loud[-1] + 1] if len(loud) else wave
    if len(wave) > RATE:
        start = (len(wave) - RATE) // 2
        return wave[start:start + RATE]
    out = np.zeros(RATE)
    start = (RATE - len(wave)) // 2
    out[start:start + len(wave)] = wave
    return out


def espeak() -> str:
    exe = shutil.which('espeak-ng')
    if exe is None:
        raise BadInput('espeak-ng not found on PATH: the keywords dataset is synthesized with the Debian package '
                       'espeak-ng (scripts/setup installs it; or apt-get install espeak-ng)')
    return exe


def check_voices(exe: str, voices) -> None:
    """espeak-ng falls back to a default voice, silently, for a name it does not know: check the
    names against its own lists so a typo never becomes a duplicate voice."""
    def column(args, col):
        rows = subprocess.run([exe, *args], capture_output=True, text=True).stdout.splitlines()[1:]
        return {row.split()[col] for row in rows if len(row.split()) > col}

    rows = subprocess.run([exe, '--voices'], capture_output=True, text=True).stdout.splitlines()[1:]
    languages = {t.lstrip('(') for row in rows for i, t in enumerate(row.split()) if i == 1 or t.startswith('(')}
    variants = {f.split('/', 1)[1] for f in column(['--voices=variant'], 4) if '/' in f}
    for voice in voices:
        lang, _, variant = voice.partition('+')
        if lang not in languages or (variant and variant not in variants):
            raise BadInput(f'espeak-ng has no voice {voice!r} (language {lang!r}, variant {variant or "none"!r}); '
                           'list them with `espeak-ng --voices` and `espeak-ng --voices=variant` and fix the keywords settings')


def _clip(job) -> np.ndarray:
    """Features of one synthesized clip; the noise comes from the clip's own seed, so the result
    does not depend on which worker runs it or in what order."""
    from scipy.signal import resample_poly

    exe, word, voice, speed, pitch, noise, seed = job
    out = subprocess.run([exe, '-v', voice, '-s', str(speed), '-p', str(pitch), '--stdout', word],
                         capture_output=True, check=False)
    if out.returncode != 0 or not out.stdout:
        raise BadInput(f'espeak-ng failed for voice {voice!r} ({out.stderr.decode(errors="replace").strip()}); '
                       'list the voices with `espeak-ng --voices=en` and fix the keywords settings')
    # --stdout streams a 44-byte header with a placeholder length (scipy warns on it): read it raw
    rate = int.from_bytes(out.stdout[24:28], 'little')
    wave = np.frombuffer(out.stdout[44:], '<i2').astype(np.float64) / 32768.0
    g = np.gcd(RATE, rate)
    wave = centred(resample_poly(wave, RATE // g, rate // g))
    wave *= 0.5 / (np.abs(wave).max() or 1.0)  # same loudness for every voice; noise sets the SNR
    wave += np.random.default_rng(seed).normal(0.0, noise, RATE)
    return features(wave)


def cache_dir(settings: Settings) -> Path:
    version = subprocess.run([espeak(), '--version'], capture_output=True, text=True).stdout.strip()
    key = json.dumps({'settings': asdict(settings), 'features': FEATURE_VERSION, 'espeak': version}, sort_keys=True)
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / '.cache' / 'sparse-fpga-flow' / 'keywords')
    return root / hashlib.sha256(key.encode()).hexdigest()[:16]


def test_voices(settings: Settings) -> list:
    n = max(1, int(round(settings.test_fraction * len(settings.voices))))
    order = np.random.default_rng(settings.seed).permutation(len(settings.voices))
    return [settings.voices[i] for i in sorted(order[:n])]


def synthesize(settings: Settings = Settings()):
    """The Split for these settings, from the cache or generated (once) with a progress bar."""
    from flow.data.split import Split
    from flow.infra.progress import bar

    exe = espeak()
    folder = cache_dir(settings)
    path = folder / 'keywords.npz'
    if not path.is_file():
        check_voices(exe, settings.voices)
        jobs, meta = [], []
        for v in settings.voices:
            for w, word in enumerate(settings.words):
                for s in settings.speeds:
                    for p in settings.pitches:
                        meta.append((v, w))
                        jobs.append((exe, word, v, s, p, settings.noise, [settings.seed, len(jobs)]))
        x = np.empty((len(jobs), N_FRAMES, BANDS), np.float32)
        t0 = time.perf_counter()
        with bar('keywords', len(jobs)) as progress, ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            task = progress.add_task(f'synthesizing {len(jobs)} keyword clips (espeak-ng)', total=len(jobs), info='')
            for i, f in enumerate(pool.map(_clip, jobs, chunksize=8)):
                x[i] = f
                progress.update(task, advance=1)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f'.keywords.{os.getpid()}.npz'  # atomic: a killed run leaves no half file
        np.savez(tmp, x=x, voice=np.array([m[0] for m in meta]), y=np.array([m[1] for m in meta], np.int64),
                 seconds=time.perf_counter() - t0)
        (folder / 'settings.json').write_text(json.dumps(asdict(settings), indent=1))
        os.replace(tmp, path)
    with np.load(path) as d:
        x, y, voice = d['x'], d['y'], d['voice']
    test = np.isin(voice, test_voices(settings))
    return Split(x[~test], y[~test], x[test], y[test],
                 f'espeak-ng keywords, {len(settings.voices)} voices (test voices {", ".join(test_voices(settings))}), '
                 f'49x40 log-mel; cached in {folder}')


def keywords(seed: int = 0):
    return synthesize(Settings(seed=seed))


def speech_commands(folder: str, seed: int = 0):
    """The ten words from a Speech Commands folder; validation and testing lists are the test split."""
    from scipy.io import wavfile

    from flow.data.split import Split

    root = Path(folder).expanduser()
    if not root.is_dir():
        raise BadInput(f'Speech Commands folder {root} not found; give the unpacked dataset as speech_commands:/path/to/folder')
    held = set()
    for name in ('validation_list.txt', 'testing_list.txt'):
        if not (root / name).is_file():
            raise BadInput(f'{root} has no {name}: not a Speech Commands folder (it needs <word>/*.wav, '
                           'validation_list.txt and testing_list.txt)')
        held |= {line.strip() for line in (root / name).read_text().splitlines() if line.strip()}
    xs, ys, test = [], [], []
    for w, word in enumerate(WORDS):
        for wav in sorted((root / word).glob('*.wav')):
            try:
                rate, wave = wavfile.read(wav)
            except Exception as e:  # scipy raises ValueError or struct errors for a broken file
                raise BadInput(f'cannot read {wav} as a wav file ({e}); remove or replace it') from e
            if rate != RATE or wave.ndim != 1:
                raise BadInput(f'{wav}: {rate} Hz, shape {wave.shape}; Speech Commands clips are mono 16 kHz')
            wave = wave.astype(np.float64) / (32768.0 if wave.dtype == np.int16 else 1.0)
            padded = np.zeros(RATE)  # the dataset's clips are at most 1 s, the word already roughly centred
            padded[:min(RATE, len(wave))] = wave[:RATE]
            xs.append(features(padded))
            ys.append(w)
            test.append(f'{word}/{wav.name}' in held)
    if not xs:
        raise BadInput(f'{root} has no wav files under any of {", ".join(WORDS)}/: not a Speech Commands folder')
    x, y, test = np.stack(xs), np.array(ys, np.int64), np.array(test)
    if test.all() or not test.any():
        raise BadInput(f'{root}: the validation/testing lists leave {"no training" if test.all() else "no test"} clips')
    return Split(x[~test], y[~test], x[test], y[test], f'Speech Commands {root.resolve()} (ten words, 49x40 log-mel)')
