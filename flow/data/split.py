"""A dataset split as the flow uses it: train and test arrays, what the targets are, and where they came from."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# What ``y`` holds: integer class labels, float targets shaped like the output (a regressor, an
# autoencoder), or nothing (the user's inputs only: golden vectors, no accuracy or error)
TASKS = ('classification', 'regression', 'inputs only')


@dataclass
class Split:
    x_train: np.ndarray
    y_train: np.ndarray | None
    x_test: np.ndarray
    y_test: np.ndarray | None
    source: str = ''
    task: str | None = 'classification'  # one of TASKS; None: read from y against the model (flow.data.targets)
