"""What a user's ``y`` is, read from the data and the model's output: integer class labels
(classification, accuracy reported) or float targets shaped like the output (regression or an
autoencoder: the error is reported, never an accuracy); and the errors themselves."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from flow.data.split import Split
from flow.infra.errors import BadInput


def _integral(y) -> bool:
    return np.issubdtype(y.dtype, np.integer) or (np.issubdtype(y.dtype, np.floating) and bool(np.all(y == np.round(y))))


def task_of(y: np.ndarray, n_outputs: int) -> str:
    """Classification: a 1-D array of integral values for a model with several outputs (argmax is its
    class). Everything else is regression: float values, targets with a shape per sample, or one
    output (whose argmax would always be 0)."""
    return 'classification' if y.ndim == 1 and n_outputs > 1 and _integral(y) else 'regression'


def fit_targets(data: Split, output_shape: tuple, where: str) -> tuple[Split, str | None]:
    """``data`` with its task set from ``y`` (``task_of``) and its targets checked against the model's
    output: class labels in range, or one target per output value (reshaped row-major); a note says
    which it took when the data did not say (a user's file)."""
    if data.task == 'inputs only':
        return data, None
    n_out = int(np.prod(output_shape))
    task = data.task or task_of(data.y_test, n_out)
    said = data.task is not None
    if task == 'classification':
        for name in ('y_train', 'y_test'):
            y = getattr(data, name)
            out = (y < 0) | (y >= n_out)
            if out.any():
                i = int(np.argmax(out))
                raise BadInput(f'{where}: {name}[{i}] = {y[i]} is not a class of the model, which has {n_out} outputs '
                               f'(labels 0..{n_out - 1}) ({data.source})')
        fixed = {n: getattr(data, n).astype(np.int64) for n in ('y_train', 'y_test')}
        note = f'y holds integer labels: classification over the {n_out} outputs (accuracy of the argmax)'
        return replace(data, task=task, **fixed), None if said else note
    fixed = {}
    for name in ('y_train', 'y_test'):
        y = getattr(data, name)
        if len(y) and int(np.prod(y.shape[1:])) != n_out:
            raise BadInput(f'{where}: {name} has targets of shape {tuple(y.shape[1:])} but the model has {n_out} outputs; '
                           f'give integer class labels 0..{n_out - 1} (1-D) or float targets of shape {tuple(output_shape)} '
                           f'per sample ({data.source})')
        fixed[name] = y.astype(np.float64).reshape(len(y), *output_shape)
    note = ('y holds float targets (or the model has one output): regression, the error against the targets is reported '
            '(mean squared and absolute), not an accuracy')
    return replace(data, task=task, **fixed), None if said else note


def regression_error(predicted, targets) -> dict:
    """Mean squared, mean absolute and largest absolute error, over every output value."""
    d = np.asarray(predicted, dtype=np.float64).reshape(len(targets), -1) - np.asarray(targets, np.float64).reshape(len(targets), -1)
    return {'mse': float(np.mean(d**2)), 'mae': float(np.mean(np.abs(d))), 'max_abs': float(np.max(np.abs(d)))}
