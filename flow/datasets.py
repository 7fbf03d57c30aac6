"""Datasets that need no download. Each loader returns float inputs already on a fixed-point grid."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Split:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def digits(seed: int = 0) -> Split:
    """scikit-learn's 8x8 digits (ships inside scikit-learn): pixels 0..16 scaled to k/16."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    xtr, xte, ytr, yte = train_test_split(x, d.target, test_size=0.2, random_state=seed, stratify=d.target)
    return Split(xtr, ytr, xte, yte)


DATASETS = {'digits': digits}


def load(name: str, seed: int = 0) -> Split:
    if name not in DATASETS:
        raise KeyError(f'unknown dataset {name!r}; known: {sorted(DATASETS)}')
    return DATASETS[name](seed)
