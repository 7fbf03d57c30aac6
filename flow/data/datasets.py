"""Data for training and golden vectors: built-in datasets by name (no download) or the user's
``.npz`` file, checked against the model when loaded, and put on the input type's grid explicitly.

One registry entry per built-in dataset (``DATASETS``). A user file holds ``x_train, y_train,
x_test, y_test`` or ``x, y`` (split by the seed), or ``x`` alone; ``y`` are integer class labels or
float targets (``flow.data.targets``).
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from flow.data import keywords
from flow.data.split import Split
from flow.data.targets import fit_targets
from flow.infra.errors import BadInput
from flow.runtime.fixed import FixedType

FASHION_MNIST_DIR = Path('/usr/share/datasets/fashion-mnist')  # Debian's dataset-fashion-mnist
TEST_FRACTION = 0.2


def digits(seed: int = 0) -> Split:
    """scikit-learn's 8x8 digits (ships inside scikit-learn): pixels 0..16 scaled to k/16."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    xtr, xte, ytr, yte = train_test_split(x, d.target, test_size=TEST_FRACTION, random_state=seed, stratify=d.target)
    return Split(xtr, ytr, xte, yte, "scikit-learn digits (8x8 pixels k/16)")


def fashion_mnist(seed: int = 0) -> Split:
    """Fashion-MNIST from Debian's dataset-fashion-mnist: 28x28 pixels k/256, flattened to 784."""
    def idx(name: str) -> np.ndarray:
        path = FASHION_MNIST_DIR / f'{name}.gz'
        if not path.is_file():
            raise BadInput(f'{path} not found: Fashion-MNIST comes from the Debian package dataset-fashion-mnist '
                           '(scripts/setup installs it; or apt-get install dataset-fashion-mnist)')
        with gzip.open(path, 'rb') as f:
            data = f.read()
        ndim = data[3]
        dims = np.frombuffer(data, '>u4', count=ndim, offset=4).astype(int)
        return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)

    def images(name):
        return (idx(name).reshape(-1, 28 * 28) / 256.0).astype(np.float32)

    return Split(images('train-images-idx3-ubyte'), idx('train-labels-idx1-ubyte').astype(np.int64),
                 images('t10k-images-idx3-ubyte'), idx('t10k-labels-idx1-ubyte').astype(np.int64),
                 'Fashion-MNIST (Debian dataset-fashion-mnist, 28x28 pixels k/256)')


DATASETS = {'digits': digits, 'fashion_mnist': fashion_mnist, 'keywords': keywords.keywords}
# Datasets read from a folder: ``name:/path`` (the folder is the user's; nothing is downloaded).
FOLDER_DATASETS = {'speech_commands': keywords.speech_commands}


def is_builtin(spec: str) -> bool:
    return spec in DATASETS


def load(spec: str, seed: int = 0) -> Split:
    """A built-in dataset by name, or a user's ``.npz`` file."""
    if spec in DATASETS:
        return DATASETS[spec](seed)
    name, sep, folder = spec.partition(':')
    if sep and name in FOLDER_DATASETS:
        return FOLDER_DATASETS[name](folder, seed)
    path = Path(spec)
    if not path.is_file():
        raise BadInput(f'data {spec!r} is neither a built-in dataset ({", ".join(sorted(DATASETS))}) nor a file')
    return load_npz(path, seed)


def load_npz(path: Path, seed: int = 0) -> Split:
    """``x_train, y_train, x_test, y_test``, or ``x, y`` (split by the seed), or ``x`` alone (every
    sample a golden vector, in file order: no targets). ``y``: integer labels or float targets, told
    apart against the model (``flow.data.targets.fit_targets``)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as e:  # numpy raises several types for a file that is not an .npz
        raise BadInput(f'cannot read {path} as a .npz file ({e}); save it with numpy.savez') from e
    task = None
    if {'x_train', 'y_train', 'x_test', 'y_test'} <= set(arrays):
        split = Split(*(arrays[k] for k in ('x_train', 'y_train', 'x_test', 'y_test')))
    elif {'x', 'y'} <= set(arrays):
        x, y = arrays['x'], arrays['y']
        _same_length(path, 'x', x, 'y', y)
        order = np.random.default_rng(seed).permutation(len(x))
        n_test = max(1, int(round(TEST_FRACTION * len(x))))
        te, tr = order[:n_test], order[n_test:]
        split = Split(x[tr], y[tr], x[te], y[te])
    elif 'x' in arrays and not {'y', 'y_train', 'y_test'} & set(arrays):
        x = arrays['x']
        _same_length(path, 'x', x, 'x', x)
        split, task = Split(x[:0], None, x, None), 'inputs only'
    else:
        raise BadInput(f'{path} holds {sorted(arrays)}; expected x_train, y_train, x_test, y_test (or x, y, split by the '
                       'seed; or x alone: inputs without targets)')
    if task is None:
        _same_length(path, 'x_train', split.x_train, 'y_train', split.y_train)
        _same_length(path, 'x_test', split.x_test, 'y_test', split.y_test)
    for name in ('x_train', 'x_test', 'y_train', 'y_test'):
        v = getattr(split, name)
        if v is None or not len(v):
            continue
        if not np.issubdtype(v.dtype, np.number) or np.issubdtype(v.dtype, np.complexfloating):
            raise BadInput(f'{path}: {name} has dtype {v.dtype}; expected real numbers')
        bad = ~np.isfinite(v.astype(np.float64))
        if bad.any():
            i = tuple(int(k) for k in np.argwhere(bad)[0])
            raise BadInput(f'{path}: {name}{list(i)} is {v[i]}; the data must be finite (no NaN or inf)')
    return replace(split, x_train=split.x_train.astype(np.float64), x_test=split.x_test.astype(np.float64), task=task,
                   source=f'user data {path.resolve()}')


def _same_length(path, xn, x, yn, y) -> None:
    if len(x) != len(y):
        raise BadInput(f'{path}: {xn} has {len(x)} samples but {yn} has {len(y)}')
    if len(x) == 0:
        raise BadInput(f'{path}: {xn} is empty')


def fit_shape(data: Split, input_shape: tuple) -> tuple[Split, str | None]:
    """Samples with the model's number of values in another shape (flat 784 pixels for a (28, 28, 1)
    image model, (28, 28) images without their channel axis) are reshaped row-major, with a note."""
    shapes = {name: tuple(getattr(data, name).shape[1:]) for name in ('x_train', 'x_test')}
    size = int(np.prod(input_shape))
    if all(s == tuple(input_shape) or int(np.prod(s)) != size for s in shapes.values()):
        return data, None
    moved = {name: getattr(data, name).reshape(-1, *input_shape) for name, s in shapes.items() if int(np.prod(s)) == size}
    note = f'samples of shape {shapes["x_train"]} were reshaped (row-major) to the model input {tuple(input_shape)}'
    return replace(data, **moved), note


def check_fits(data: Split, input_shape: tuple, where: str) -> None:
    """The data's inputs against the model, before any training (the targets: ``fit_targets``)."""
    for name in ('x_train', 'x_test'):
        shape = tuple(getattr(data, name).shape[1:])
        if len(getattr(data, name)) and shape != tuple(input_shape):
            raise BadInput(f'{where}: the model takes inputs of shape {tuple(input_shape)} but {name} has samples of shape '
                           f'{shape} ({data.source})')


def on_grid(data: Split, in_type: FixedType) -> tuple[Split, str | None]:
    """The data on the input type's grid: values off it (or out of its range) are rounded to the
    nearest code (saturating) once, here; the returned note says how many, or None if none were."""
    rnd = FixedType(in_type.width, in_type.integer, in_type.signed, 'RND_CONV', 'SAT')
    out, moved, total = {}, 0, 0
    for name in ('x_train', 'x_test'):
        x = np.asarray(getattr(data, name), dtype=np.float64)
        q = in_type.to_float(rnd.quantize_float(x))
        moved += int(np.count_nonzero(q != x))
        total += x.size
        out[name] = q
    if not moved:
        return data, None
    note = (f'{moved} of {total} input values were not on the input type {in_type.hls()} '
            '(grid or range) and were rounded to the nearest value, saturating')
    return replace(data, **out), note


def random_inputs(in_type: FixedType, shape: tuple, n: int, seed: int) -> np.ndarray:
    """Golden input codes without data: the extremes first (all-min, all-max, alternating both
    ways, zeros) so the accumulator bounds are exercised, then uniform random codes."""
    size = int(np.prod(shape))
    lo, hi = in_type.min_code, in_type.max_code
    alt = np.where(np.arange(size) % 2 == 0, lo, hi)
    extremes = np.stack([np.full(size, lo), np.full(size, hi), alt, lo + hi - alt, np.zeros(size, dtype=np.int64)])
    rest = np.random.default_rng(seed).integers(lo, hi + 1, size=(max(0, n - len(extremes)), size))
    return np.concatenate([extremes, rest])[:n].reshape(n, *shape).astype(np.int64)


def for_model(spec: str | None, seed: int, in_type: FixedType, input_shape: tuple,
              output_shape: tuple) -> tuple[Split | None, list[str]]:
    """The data a model is trained and verified on (None: random golden vectors), checked against
    the model (inputs; labels or targets: ``fit_targets`` says which) and on its input grid, with
    notes for the report."""
    if spec is None:
        return None, ['no data: golden vectors are random codes on the input grid (extremes included), no accuracy']
    data, reshaped = fit_shape(load(spec, seed), input_shape)
    check_fits(data, input_shape, f'data {spec!r}')
    data, task = fit_targets(data, output_shape, f'data {spec!r}')
    if data.task == 'inputs only':
        task = 'x without targets: golden vectors are its samples in file order, no accuracy or error'
    data, note = on_grid(data, in_type)
    return data, [n for n in (reshaped, task, note) if n]
