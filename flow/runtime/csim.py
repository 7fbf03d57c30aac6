"""Call a compiled hls4ml C simulation (its bridge shared library) with ctypes: numpy only.

Used by the verify step and by the off-board emulated PYNQ device, neither of which may load
TensorFlow. Values cross the bridge as doubles, which hold every code of width <= 53 exactly.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np


class _TraceData(ctypes.Structure):
    _fields_ = [('name', ctypes.c_char_p), ('data', ctypes.c_void_p)]


class CSimLibrary:
    def __init__(self, so_path: Path, top: str, n_in: int, n_out: int, weights_dir: Path | None = None):
        so_path = Path(so_path)
        if not so_path.is_file():
            raise FileNotFoundError(f'C simulation library {so_path} not found; rerun the csim_compile step')
        # The library reads its weights from an absolute path baked in at compile time and
        # calls exit(1) when they are missing, which would kill this process: check first.
        if weights_dir is not None and not Path(weights_dir).is_dir():
            raise FileNotFoundError(f'C simulation weights {weights_dir} missing (build folder moved?); rerun csim_compile')
        self.lib = ctypes.CDLL(str(so_path.resolve()))
        self.n_in, self.n_out = n_in, n_out
        arr = np.ctypeslib.ndpointer(dtype=np.float64, flags='C_CONTIGUOUS')
        self._top = getattr(self.lib, f'{top}_double')
        self._top.argtypes = [arr, arr]
        self._top.restype = None

    def run(self, x: np.ndarray) -> np.ndarray:
        """One call of the top function per row of ``x`` (float64 values on the input grid)."""
        x = np.ascontiguousarray(x, dtype=np.float64).reshape(-1, self.n_in)
        out = np.zeros((len(x), self.n_out), dtype=np.float64)
        for i in range(len(x)):
            row = np.ascontiguousarray(x[i])
            res = np.zeros(self.n_out, dtype=np.float64)
            self._top(row, res)
            out[i] = res
        return out

    def trace(self, x: np.ndarray, sizes: dict[str, int]) -> dict[str, np.ndarray]:
        """Per-layer outputs (float values) of the layers compiled with tracing (TraceOutput: True).

        ``sizes`` maps layer name -> output size, for the layers to return."""
        x = np.ascontiguousarray(x, dtype=np.float64).reshape(-1, self.n_in)
        found = {name: np.zeros((len(x), n), dtype=np.float64) for name, n in sizes.items()}
        seen = set()
        entries = (_TraceData * 256)()
        self.lib.allocate_trace_storage(ctypes.c_size_t(ctypes.sizeof(ctypes.c_double)))
        try:
            for i in range(len(x)):  # the storage holds one sample per layer
                self.run(x[i : i + 1])
                self.lib.collect_trace_output(entries)
                for e in entries:
                    if not e.name:
                        break
                    name = e.name.decode()
                    if name in found:
                        seen.add(name)
                        found[name][i] = np.ctypeslib.as_array(ctypes.cast(e.data, ctypes.POINTER(ctypes.c_double)), shape=(sizes[name],))
            return {name: v for name, v in found.items() if name in seen}  # the input is not traced
        finally:
            self.lib.free_trace_storage()
