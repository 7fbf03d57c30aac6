import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

import numpy as np
import pytest

from flow.config import FlowConfig


@pytest.fixture(scope='session')
def default_build(tmp_path_factory):
    """The embedded default flow, run once through the last step that needs no vendor tool."""
    from flow.steps import run_flow

    root = tmp_path_factory.mktemp('default_build')
    cfg = FlowConfig.load(None, epochs=15, n_golden=64)
    ctx = run_flow(cfg, root, to_step='estimate')
    return ctx


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
