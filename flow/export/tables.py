"""hls4ml's activation lookup tables, taken from the same C++ that fills them in the C simulation.

hls4ml fills its sigmoid/tanh/softmax tables when the C simulation starts, from C++ float math
(``std::exp``/``std::tanh`` on ``float``, i.e. glibc's ``expf``/``tanhf``) cast to the table
type. Those libm functions are not correctly rounded (measured here: ``expf`` differs from the
correctly rounded result on 0.06% of inputs, ``tanhf`` on 3.4%), so a numpy recomputation
cannot be proven equal entry for entry. The reference therefore stores the tables produced by a
tiny g++ program that calls hls4ml's own ``init_*_table`` functions from
``nnet_utils/nnet_activation.h`` with ``build_lib.sh``'s compiler flags; ``model_table`` is the
same computation written out in numpy (float32 steps, correctly rounded libm, exact ap_fixed
cast), used to check the C++ tables and to show where libm's last bit matters.

Host only (g++ and the hls4ml package); the board runtime only reads the stored tables.
Vitis HLS evaluates the same initialisation loop with its own compiler and math library when
it synthesizes the ROMs: the golden vectors checked on the board are what covers that step.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flow.infra import processes
from flow.runtime.fixed import FixedType
from flow.runtime.ref_activations import index_bits

FUNCTIONS = ('sigmoid', 'tanh', 'softmax_exp', 'softmax_inv')


@dataclass(frozen=True)
class TableSpec:
    """One table: ``function`` over ``size`` entries of ``table_type``. The softmax tables are
    addressed by the top bits of ``index_type`` (``inp_norm_t`` / ``inv_inp_t``)."""

    function: str
    size: int
    table_type: FixedType
    index_type: FixedType | None = None

    def __post_init__(self):
        if self.function not in FUNCTIONS:
            raise ValueError(f'unknown table function {self.function!r}; one of {FUNCTIONS}')


def hls4ml_templates() -> Path:
    """hls4ml's Vivado/Vitis templates folder (``nnet_utils/``, ``ap_types/``), without importing hls4ml."""
    spec = importlib.util.find_spec('hls4ml')
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError('hls4ml is not installed; the activation tables come from its C++ headers')
    return Path(list(spec.submodule_search_locations)[0]) / 'templates' / 'vivado'


def _accepts(flag: str) -> bool:
    res = processes.run(['g++', '-Werror', '-fsyntax-only', flag, '-xc++', '-', '-o', '/dev/null'], input='',
                        capture_output=True, text=True)
    return res.returncode == 0


@functools.lru_cache(maxsize=1)
def cxx_flags() -> tuple[str, ...]:
    """The flags hls4ml's build_lib.sh compiles the C simulation with (same detection)."""
    flags = ['-O3', '-fPIC', '-std=c++23' if _accepts('-std=c++23') else '-std=c++11']
    if _accepts('-fno-gnu-unique'):
        flags.append('-fno-gnu-unique')
    return tuple(flags)


def _config_struct(i: int, s: TableSpec) -> str:
    t = s.table_type.hls()
    return (f'struct cfg{i} {{\n  static const unsigned table_size = {s.size};\n'
            f'  static const unsigned exp_table_size = {s.size};\n  static const unsigned inv_table_size = {s.size};\n'
            f'  static constexpr float exp_scale = 1.0;\n'
            f'  typedef {t} table_t;\n  typedef {t} exp_table_t;\n  typedef {t} inv_table_t;\n}};\n')


def _init_call(i: int, s: TableSpec) -> str:
    if s.function == 'sigmoid':
        return f'nnet::init_sigmoid_table<cfg{i}, {s.size}>(t{i});'
    if s.function == 'tanh':
        return f'nnet::init_tanh_table<cfg{i}, {s.size}>(t{i});'
    if s.function == 'softmax_exp':  # the stable implementation: exp(-x) of x_max - x_i
        return f'nnet::init_exp_table<{s.index_type.hls()}, cfg{i}>(t{i}, true);'
    return f'nnet::init_invert_table<{s.index_type.hls()}, cfg{i}>(t{i});'


def program(specs: list[TableSpec]) -> str:
    """C++ that fills each table with hls4ml's own init function and prints its raw codes."""
    parts = ['#include <cstdio>\n#include "nnet_utils/nnet_activation.h"\n',
             'template <class T> void dump(const T *t, unsigned n) {\n'
             '  for (unsigned i = 0; i < n; i++) {\n    ap_uint<T::width> bits = t[i].range();\n'
             '    printf("%llu\\n", (unsigned long long)bits.to_uint64());\n  }\n}\n']
    for i, s in enumerate(specs):
        parts.append(_config_struct(i, s))
        parts.append(f'static cfg{i}::table_t t{i}[{s.size}];\n')
    parts.append('int main() {\n')
    for i, s in enumerate(specs):
        parts.append(f'  {_init_call(i, s)}\n  dump(t{i}, {s.size});\n')
    parts.append('  return 0;\n}\n')
    return ''.join(parts)


def _signed(raw: np.ndarray, t: FixedType) -> np.ndarray:
    raw = raw.astype(np.int64)
    return np.where(raw > t.max_code, raw - (1 << t.width), raw) if t.signed else raw


_CACHE: dict[TableSpec, np.ndarray] = {}  # per process: one g++ run costs about 1.5 s


def cpp_tables(specs: list[TableSpec]) -> list[np.ndarray]:
    """Every entry of each table as hls4ml's C++ computes it (codes in ``table_type``); one g++ run."""
    specs = list(specs)
    missing = [s for s in dict.fromkeys(specs) if s not in _CACHE]
    if missing:
        if shutil.which('g++') is None:
            raise RuntimeError("g++ not found: activation tables are filled by hls4ml's C++, as in the C simulation")
        from flow.infra.processes import compiler_errors

        tpl = hls4ml_templates()
        with tempfile.TemporaryDirectory(prefix='tables-') as tmp:
            src, exe = Path(tmp) / 'tables.cpp', Path(tmp) / 'tables'
            src.write_text(program(missing))
            res = processes.run(['g++', *cxx_flags(), f'-I{tpl}', f'-I{tpl / "ap_types"}', str(src), '-o', str(exe)],
                                capture_output=True, text=True)
            if res.returncode:
                raise compiler_errors(res, 'the activation table generator')
            res = processes.run([str(exe)], capture_output=True, text=True)
            if res.returncode:
                raise RuntimeError(f'the activation table generator failed (exit {res.returncode}): {res.stderr.strip()[-500:]}')
            out = res.stdout.split()
        raw = np.array([int(v) for v in out], dtype=np.uint64)
        if len(raw) != sum(s.size for s in missing):
            raise RuntimeError(f'table generator printed {len(raw)} codes, expected {sum(s.size for s in missing)}')
        at = 0
        for s in missing:
            _CACHE[s] = _signed(raw[at : at + s.size], s.table_type)
            at += s.size
    return [_CACHE[s].copy() for s in specs]


# --- the same computation in numpy --------------------------------------------------------------


def exact_code(v: float, t: FixedType) -> int:
    """ap_fixed's conversion of a float/double: the exact value, quantized with t's rounding
    mode, then t's overflow mode (infinity counts as 2**1024, as ap_fixed's decoder reads it)."""
    if v == 0 or math.isnan(v):
        return 0
    if math.isinf(v):
        num, den = (1 << 1024) * (1 if v > 0 else -1), 1
    else:
        num, den = v.as_integer_ratio()  # den is a power of two
    if t.frac >= 0:
        num <<= t.frac
    else:
        den <<= -t.frac
    q, rem = divmod(num, den)  # floor
    if rem:
        up = {'TRN': False, 'TRN_ZERO': num < 0, 'RND': 2 * rem >= den, 'RND_MIN_INF': 2 * rem > den,
              'RND_ZERO': 2 * rem > den or (2 * rem == den and num < 0),
              'RND_INF': 2 * rem > den or (2 * rem == den and num > 0),
              'RND_CONV': 2 * rem > den or (2 * rem == den and q % 2 == 1)}[t.rounding]
        q += up
    if t.overflow == 'WRAP':
        q &= (1 << t.width) - 1
    else:
        q = min(max(q, t.min_code - 1), t.max_code + 1)  # keeps "over"/"under" for the saturating modes
    return int(t._overflow(np.array([q], dtype=np.int64))[0])


def _f32(v) -> np.ndarray:
    return np.asarray(v, dtype=np.float64).astype(np.float32)


def _expf(x: np.ndarray) -> np.ndarray:
    """Correctly rounded float exp (glibc's expf is within 0.502 ulp of this)."""
    return _f32(np.exp(x.astype(np.float64)))


def _tanhf(x: np.ndarray) -> np.ndarray:
    return _f32(np.tanh(x.astype(np.float64)))


def _real_from_index(size: int, t: FixedType) -> np.ndarray:
    """softmax_real_val_from_idx: the index in the top ceillog2(size) bits of t, as float."""
    n = index_bits(size)
    raw = np.arange(size, dtype=np.int64) << (t.width - n)
    codes = np.where(raw > t.max_code, raw - (1 << t.width), raw) if t.signed else raw
    return _f32(t.to_float(codes))


def model_values(s: TableSpec) -> np.ndarray:
    """The float (before the cast to the table type) of every entry, step by step as
    nnet_activation.h computes it, with correctly rounded exp/tanh."""
    i = np.arange(s.size, dtype=np.float64)
    if s.function in ('sigmoid', 'tanh'):
        half = 8.0 if s.function == 'sigmoid' else 4.0
        in_val = _f32(2 * half * (i - float(s.size) / 2.0) / float(s.size))  # double math, stored in a float
        if s.function == 'tanh':
            return _tanhf(in_val)  # std::tanh(float)
        e = _expf(-in_val)
        return _f32(1.0 / (np.float32(1) + e).astype(np.float64))  # 1 + float is float, 1.0 / float is double
    if s.function == 'softmax_exp':
        return _expf(-(_real_from_index(s.size, s.index_type) * np.float32(1.0)))  # exp_scale = 1
    with np.errstate(divide='ignore'):
        return np.float32(1) / _real_from_index(s.size, s.index_type)  # int / float: float division


def model_table(s: TableSpec) -> np.ndarray:
    """The table recomputed in numpy: ``model_values`` cast exactly to the table type."""
    return np.array([exact_code(float(v), s.table_type) for v in model_values(s)], dtype=np.int64)


# How far (in float ulps) libm's result may be from the correctly rounded one: glibc's
# libm-test-ulps (x86_64) list 1 ulp for expf and 2 for tanhf (measured here: tanhf(-0.24f) is
# 2 ulps off); sigmoid rounds twice after expf; 1/x is an IEEE division (correctly rounded).
LIBM_ULPS = {'sigmoid': 2, 'tanh': 2, 'softmax_exp': 1, 'softmax_inv': 0}


def libm_differences(s: TableSpec, table: np.ndarray) -> int:
    """Entries where ``table`` differs from the correctly rounded model (libm's last bit); raises
    when an entry is not the cast of a float within LIBM_ULPS of the model: that would mean the
    model of the C++ is wrong, not libm."""
    values = model_values(s)
    model = np.array([exact_code(float(v), s.table_type) for v in values], dtype=np.int64)
    diff = np.flatnonzero(model != table)
    for i in diff:
        near = [values[i]]
        for direction in (np.float32(np.inf), np.float32(-np.inf)):
            v = values[i]
            for _ in range(LIBM_ULPS[s.function]):
                v = np.nextafter(v, direction)
                near.append(v)
        if int(table[i]) not in {exact_code(float(v), s.table_type) for v in near}:
            raise RuntimeError(
                f'{s.function} table ({s.size} x {s.table_type.hls()}) entry {i}: the C++ gives code {int(table[i])}, '
                f'the numpy model {int(model[i])}, more than libm rounding explains'
            )
    return len(diff)


def hls4ml_tables(specs: list[TableSpec]) -> list[np.ndarray]:
    """The tables as the C simulation fills them, each checked against the numpy model."""
    tables = cpp_tables(specs)
    for s, t in zip(specs, tables):
        libm_differences(s, t)
    return tables
