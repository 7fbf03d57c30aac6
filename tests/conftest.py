import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
if os.environ.get('PYTEST_XDIST_WORKER'):
    # Under pytest-xdist (scripts/test runs one worker per core) each worker's TensorFlow and BLAS
    # keep to one thread, so that the workers do not oversubscribe the cores; the environment
    # reaches the flow's own subprocesses (python -m flow.cli) too. Set before TensorFlow loads.
    for var in ('TF_NUM_INTRAOP_THREADS', 'TF_NUM_INTEROP_THREADS', 'OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS'):
        os.environ.setdefault(var, '1')

# Teachers for distillation (flow/training.py) are cached by content; the tests start from an empty
# cache of their own, so a result never depends on what an earlier run left.
import atexit
import shutil
import tempfile

os.environ['SPARSE_FLOW_TEACHER_CACHE'] = _teachers = tempfile.mkdtemp(prefix='sparse-flow-teachers-')
atexit.register(shutil.rmtree, _teachers, True)

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
    """The embedded default flow, run once through the last step that needs no vendor tool.

    Under pytest-xdist (scripts/test) it is still run once per test session: the first worker that
    needs it runs it in the folder the workers share while the others wait on a lock, and each
    worker gets a copy of its own, since tests run later steps in it."""
    from flow.steps import run_flow

    cfg = FlowConfig.load(None, epochs=15, n_golden=64)
    if not os.environ.get('PYTEST_XDIST_WORKER'):
        return run_flow(cfg, tmp_path_factory.mktemp('default_build'), to_step='estimate')

    import fcntl
    import shutil

    from flow.infra.build_dir import BuildDir
    from flow.steps import Context

    shared = tmp_path_factory.getbasetemp().parent  # this session's, shared by its workers
    built, done = shared / 'default_build', shared / 'default_build.done'
    with open(shared / 'default_build.lock', 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():  # none built yet, or a worker's attempt failed: (re)build
            shutil.rmtree(built, ignore_errors=True)
            run_flow(cfg, built, to_step='estimate')
            done.touch()
    root = tmp_path_factory.mktemp('default_build')
    shutil.copytree(built, root, dirs_exist_ok=True)
    return Context(cfg, BuildDir(root))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
