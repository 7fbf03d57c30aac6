"""Board-runtime tests: run in their own environment (.venv-board: numpy + pynq, no TensorFlow,
no hls4ml). The packages under test are built by the host flow in its environment (.venv)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HOST_CLI = Path(os.environ.get('HOST_BUILD_BITSTREAM', REPO / '.venv' / 'bin' / 'build-bitstream'))
FIXTURES = Path(__file__).parent / 'fixtures'
sys.path.insert(0, str(Path(__file__).parent))


def build_package(root: Path, board: str) -> Path:
    """The host flow for ``board`` (it stops with exit 3 before Vitis HLS), returning the build."""
    if not HOST_CLI.exists():
        pytest.fail(f'{HOST_CLI} not found: run scripts/setup first (the host flow builds the packages)')
    res = subprocess.run([str(HOST_CLI), '--board', board, '--build-dir', str(root), '--epochs', '10', '--n-golden', '96'],
                         capture_output=True, text=True)
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
