"""Verilator simulation of a generated engine (flow/rtl/engine.py): samples fed back to back,
output codes and clock cycles counted.

The testbench is C++ of ours (Verilator ``--exe --build``): it reads the input codes from a file,
starts a sample whenever the engine is ready, collects each result when ``done`` rises, and
writes the output codes, the total cycles and the first sample's latency.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flow.infra import processes
from flow.rtl import tools
from flow.rtl.simulate import VerilatorFailed
from flow.runtime.fixed import FixedType

HARNESS = r"""
#include "V{top}.h"
#include "verilated.h"
#include <cstdint>
#include <cstdio>
#include <vector>

// Ports up to 64 bits are integers, wider ones VlWide word arrays: one bit setter/getter for both.
template <typename T> static void put(T &p, int bit, bool v) {{ if (v) p |= (T)1 << bit; else p &= ~((T)1 << bit); }}
template <std::size_t N> static void put(VlWide<N> &p, int bit, bool v) {{
    if (v) p[bit / 32] |= 1u << (bit % 32); else p[bit / 32] &= ~(1u << (bit % 32)); }}
template <typename T> static bool get(const T &p, int bit) {{ return (p >> bit) & 1; }}
template <std::size_t N> static bool get(const VlWide<N> &p, int bit) {{ return (p[bit / 32] >> (bit % 32)) & 1; }}

int main(int argc, char **argv) {{
    const int n_in = {n_in}, wx = {wx}, n_out = {n_out}, wy = {wy};
    const bool out_signed = {out_signed};
    FILE *f = std::fopen(argv[1], "rb");
    std::vector<int64_t> x;
    int64_t v;
    while (std::fread(&v, sizeof v, 1, f) == 1) x.push_back(v);
    std::fclose(f);
    const size_t n = x.size() / n_in;
    std::vector<int64_t> y(n * n_out);
    VerilatedContext ctx;
    V{top} top{{&ctx}};
    auto edge = [&] {{ top.clk = 1; top.eval(); top.clk = 0; top.eval(); }};
    top.clk = 0; top.start = 0; top.rst = 1; top.eval(); edge(); edge(); top.rst = 0; top.eval();
    size_t fed = 0, got = 0;
    int64_t cycles = 0, latency = -1;
    const int64_t limit = (int64_t)(n + 2) * ({interval} + 8);
    while (got < n) {{
        const bool feed = fed < n && top.ready;
        if (feed) for (int i = 0; i < n_in; i++) for (int b = 0; b < wx; b++) put(top.x, i * wx + b, (x[fed * n_in + i] >> b) & 1);
        top.start = feed;
        top.eval();
        edge();
        cycles++;
        fed += feed;
        if (top.done) {{
            if (latency < 0) latency = cycles;
            for (int o = 0; o < n_out; o++) {{
                int64_t c = 0;
                for (int b = 0; b < wy; b++) c |= (int64_t)get(top.y, o * wy + b) << b;
                if (out_signed && ((c >> (wy - 1)) & 1)) c -= (int64_t)1 << wy;
                y[got * n_out + o] = c;
            }}
            got++;
        }}
        if (cycles > limit) {{ std::fprintf(stderr, "engine did not finish: %zu of %zu samples after %lld cycles\n", got, n, (long long)cycles); return 2; }}
    }}
    f = std::fopen(argv[2], "wb");
    std::fwrite(y.data(), sizeof(int64_t), y.size(), f);
    std::fwrite(&cycles, sizeof cycles, 1, f);
    std::fwrite(&latency, sizeof latency, 1, f);
    std::fclose(f);
    top.final();
    return 0;
}}
"""


@dataclass
class EngineRun:
    codes: np.ndarray  # (n, n_out) output codes
    cycles: int  # clock cycles for all samples, back to back
    latency: int  # cycles from the first start to its result

    @property
    def cycles_per_sample(self) -> float:
        return self.cycles / len(self.codes)


class EngineSim:
    """``verilog`` (module ``top``) built by Verilator under ``path``; ``interval``: the cycles it takes
    per input vector (the testbench gives up well after that)."""

    def __init__(self, verilog: str, top: str, path: Path, n_in: int, in_t: FixedType, n_out: int, out_t: FixedType,
                 interval: int):
        self.verilog, self.top, self.path = verilog, top, Path(path)
        self.n_in, self.in_t, self.n_out, self.out_t, self.interval = n_in, in_t, n_out, out_t, interval

    @property
    def source(self) -> Path:
        return self.path / f'{self.top}.v'

    def write(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self.source.write_text(self.verilog)
        (self.path / 'harness.cpp').write_text(HARNESS.format(
            top=self.top, n_in=self.n_in, wx=self.in_t.width, n_out=self.n_out, wy=self.out_t.width,
            out_signed='true' if self.out_t.signed else 'false', interval=self.interval))

    def compile(self, jobs: int = 2) -> None:
        self.write()
        cmd = ['verilator', '--cc', '--exe', '--build', '-j', str(jobs), '-Wno-fatal', '-Wno-lint', '-Wno-style',
               '--top-module', self.top, '-O1', '--Mdir', 'obj', '-o', 'sim', '-CFLAGS', '-O1',
               self.source.name, 'harness.cpp']
        res = processes.run(cmd, cwd=self.path, env=tools.verilator_env(), capture_output=True, text=True)
        if res.returncode != 0:
            raise VerilatorFailed(f'Verilator build of {self.top} failed (in {self.path}):\n{(res.stderr or res.stdout)[-3000:]}')

    def run(self, x_codes: np.ndarray) -> EngineRun:
        x = np.asarray(x_codes, dtype=np.int64).reshape(len(x_codes), -1)
        if x.shape[1] != self.n_in:
            raise ValueError(f'engine {self.top} takes {self.n_in} inputs, got {x.shape[1]}')
        # the testbench takes the input bits as they are: two's complement of the code
        (self.path / 'in.bin').write_bytes(np.ascontiguousarray(x & ((1 << self.in_t.width) - 1)).tobytes())
        res = processes.run([str(self.path / 'obj' / 'sim'), 'in.bin', 'out.bin'], cwd=self.path,
                            capture_output=True, text=True)
        if res.returncode != 0:
            raise VerilatorFailed(f'simulation of {self.top} failed: {(res.stderr or res.stdout)[-2000:]}')
        out = np.fromfile(self.path / 'out.bin', dtype=np.int64)
        return EngineRun(out[:-2].reshape(len(x), self.n_out), int(out[-2]), int(out[-1]))
