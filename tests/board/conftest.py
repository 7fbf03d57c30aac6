"""Board-runtime tests: run in their own environment (.venv-board: numpy + pynq, no TensorFlow,
no hls4ml). The packages under test are built by the host flow in its environment (.venv)."""

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings

REPO = Path(__file__).resolve().parents[2]
HOST_CLI = Path(os.environ.get('HOST_BUILD_BITSTREAM', REPO / '.venv' / 'bin' / 'build-bitstream'))
FIXTURES = Path(__file__).parent / 'fixtures'
FIXTURE_FOR_PS = {'processing_system7': 'sparsenet.hwh', 'zynq_ultra_ps_e': 'sparsenet_zynqmp.hwh'}
sys.path.insert(0, str(Path(__file__).parent))

from emulated_device import EmulatedDevice, dma_base  # noqa: E402

# Property tests run a bounded number of examples in CI (a valid example runs the C simulation);
# HYPOTHESIS_PROFILE=thorough for more. No example database (failures print their example).
settings.register_profile('ci', deadline=None, max_examples=40, database=None)
settings.register_profile('thorough', deadline=None, max_examples=300, database=None)
settings.load_profile(os.environ.get('HYPOTHESIS_PROFILE', 'ci'))


def build_package(root: Path, board: str) -> Path:
    """The host flow for ``board`` (it stops with exit 3 before Vitis HLS), returning the build."""
    if not HOST_CLI.exists():
        pytest.fail(f'{HOST_CLI} not found: run scripts/setup first (the host flow builds the packages)')
    config = root.with_name(root.name + '.yaml')
    config.write_text('rtl: false\n')  # the package needs no RTL level (tests/test_rtl.py covers it); saves CI minutes
    res = subprocess.run([str(HOST_CLI), '--board', board, '--build-dir', str(root), '--epochs', '10', '--n-golden', '96',
                          '--config', str(config)], capture_output=True, text=True)
    assert res.returncode == 3, res.stderr[-3000:]
    return root


@pytest.fixture(scope='session')
def built(tmp_path_factory):
    cache = {}

    def get(board: str) -> Path:
        if board not in cache:
            cache[board] = build_package(tmp_path_factory.mktemp(board), board)
        return cache[board]

    return get


def package_dir(build: Path) -> Path:
    (pkg,) = [p for p in (build / 'package').iterdir() if p.is_dir()]
    return pkg


def module_dir(build: Path) -> Path:
    (mod,) = [p for p in package_dir(build).iterdir() if p.is_dir()]
    return mod


def stream_numbers(build: Path) -> dict:
    return json.loads((build / 'hls' / 'stream_format.json').read_text())


def overlay_files(tmp_path, ps):
    """The test-only bitstream stand-in: the PS type's fixture .hwh and an empty .bit next to it."""
    shutil.copy(FIXTURES / FIXTURE_FOR_PS[ps], tmp_path / 'sparsenet.hwh')
    (tmp_path / 'sparsenet.bit').write_bytes(b'')
    return tmp_path / 'sparsenet.bit'


def forget_package():
    """Drop the imported package, as a fresh kernel would not have it."""
    for name in [m for m in sys.modules if m.startswith('sparsenet_overlay')]:
        del sys.modules[name]


def load_package(build, tmp_path):
    pkg = package_dir(build)
    sys.path.insert(0, str(pkg))
    forget_package()
    mod = importlib.import_module('sparsenet_overlay')
    sys.path.remove(str(pkg))
    fmt = stream_numbers(build)
    ps = json.loads((module_dir(build) / 'manifest.json').read_text())['board']['ps']
    bit = overlay_files(tmp_path, ps)
    dev = EmulatedDevice(build / 'hls' / 'libsparsenet_axi.so', 'sparsenet_axi', dma_base(bit.with_suffix('.hwh')),
                         fmt['in_words'], fmt['out_words'])
    return mod, dev, bit
