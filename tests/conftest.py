import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

import numpy as np
import pytest
from hypothesis import settings

# Property tests run a bounded number of examples in CI; HYPOTHESIS_PROFILE=thorough for more.
settings.register_profile('ci', deadline=None)
settings.register_profile('thorough', deadline=None, max_examples=40)
settings.load_profile(os.environ.get('HYPOTHESIS_PROFILE', 'ci'))

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
