"""PYNQ driver for the block-sparse accelerator (numpy + pynq only; runs on the board).

    from sparsenet_overlay import SparseOverlay
    ol = SparseOverlay()                      # loads the package's bitstream
    y = ol.predict(x)                         # float in (on the input grid), float out
    report = ol.check_golden()                # bit-exact check against the golden vectors

Inputs are packed to the AXI4-Stream format (stream.py), split into DMA transfers that fit the
DMA's length register, sent and received through pynq's own AxiDMA driver, unpacked, and
returned as fresh arrays (never the DMA buffers, which are freed after each transfer).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pynq

from .reference import IntegerModel, first_mismatch
from .stream import StreamFormat

PACKAGE_DIR = Path(__file__).resolve().parents[1]


@dataclass
class GoldenReport:
    passed: bool
    n_vectors: int
    first_mismatch: dict | None = None
    accuracy: float | None = None

    def __str__(self):
        if self.passed:
            return f'PASS: {self.n_vectors} golden vectors bit-exact'
        m = self.first_mismatch
        return (f"FAIL: sample {m['sample']}, output {m['element']}: expected code {m['expected']}, got {m['actual']} "
                f'({self.n_vectors} vectors checked)')


@dataclass
class Timing:
    batches: list = field(default_factory=list)  # (samples, seconds) per predict call

    @property
    def last_latency_s(self) -> float:
        return self.batches[-1][1] if self.batches else float('nan')

    @property
    def samples_per_s(self) -> float:
        n, t = sum(b[0] for b in self.batches), sum(b[1] for b in self.batches)
        return n / t if t else float('nan')


class SparseOverlay(pynq.Overlay):
    """The deployment package's overlay: PS + AXI DMA (simple mode) + the accelerator."""

    def __init__(self, bitfile_name=None, package_dir=None, dma_name='axi_dma_0', download=True, device=None, **kwargs):
        self.package_dir = Path(package_dir or PACKAGE_DIR)
        self.manifest = json.loads((self.package_dir / 'manifest.json').read_text())
        if bitfile_name is None:
            bitfile_name = self.package_dir / 'overlay' / self.manifest['overlay']['bitfile']
            if not Path(bitfile_name).is_file():
                raise FileNotFoundError(
                    f'{bitfile_name} is not in this package ({self.manifest["overlay"].get("status", "not built")}); '
                    'build it with `build-bitstream --from-step hls_synth` on a machine with Vitis HLS and Vivado'
                )
        super().__init__(str(bitfile_name), download=download, device=device, **kwargs)
        self.dma = getattr(self, dma_name)
        self.format = StreamFormat.from_dict(self.manifest['stream_format'])
        self.reference = IntegerModel.load(self.package_dir / 'data' / 'reference')
        # the DMA length register is c_sg_length_width bits wide: transfers must stay below it
        width = int(self.dma.description['parameters'].get('C_SG_LENGTH_WIDTH', 26))
        self.max_transfer_bytes = (1 << width) - 1
        self.timing = Timing()

    @property
    def max_batch(self) -> int:
        f = self.format
        per_sample = max(f.in_words, f.out_words) * f.word_bytes
        return self.max_transfer_bytes // per_sample

    def predict_codes(self, x_codes: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """Input codes (n, n_in) -> output codes (n, n_out), a fresh array."""
        x_codes = np.asarray(x_codes, dtype=np.int64).reshape(-1, self.format.n_in)
        batch = min(batch_size or self.max_batch, self.max_batch)
        out = np.empty((len(x_codes), self.format.n_out), dtype=np.int64)
        t0 = time.perf_counter()
        for start in range(0, len(x_codes), batch):
            chunk = x_codes[start : start + batch]
            out[start : start + len(chunk)] = self._transfer(chunk)
        self.timing.batches.append((len(x_codes), time.perf_counter() - t0))
        return out

    def predict(self, x: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """Float inputs exactly on the input grid -> float outputs."""
        codes = self.format.in_type.from_float_exact(x, 'input')
        return self.format.out_type.to_float(self.predict_codes(codes, batch_size))

    def _transfer(self, chunk: np.ndarray) -> np.ndarray:
        f = self.format
        data = f.pack_inputs(chunk)
        n_out_bytes = len(chunk) * f.out_words * f.word_bytes
        inbuf = pynq.allocate(shape=(data.size,), dtype=np.uint8, target=self.device)
        outbuf = pynq.allocate(shape=(n_out_bytes,), dtype=np.uint8, target=self.device)
        try:
            inbuf[:] = data
            self.dma.recvchannel.transfer(outbuf)
            self.dma.sendchannel.transfer(inbuf)
            self.dma.sendchannel.wait()
            self.dma.recvchannel.wait()
            received = self.dma.recvchannel.transferred
            if received != n_out_bytes:
                raise RuntimeError(f'DMA received {received} bytes, expected {n_out_bytes} ({len(chunk)} samples)')
            return f.unpack_outputs(np.array(outbuf), len(chunk))  # np.array: a copy, not the DMA buffer
        finally:
            inbuf.freebuffer()
            outbuf.freebuffer()

    # --- checks ------------------------------------------------------------------------------------

    def golden(self):
        d = self.package_dir / 'data' / 'golden'
        return np.load(d / 'input_codes.npy'), np.load(d / 'output_codes.npy'), np.load(d / 'labels.npy')

    def check_golden(self, batch_size: int | None = None) -> GoldenReport:
        x, expected, labels = self.golden()
        return compare(self.predict_codes(x, batch_size), expected, labels)

    def check_reference(self, x_codes: np.ndarray) -> GoldenReport:
        """Fresh inputs: the board against the integer reference, computed here on the ARM."""
        return compare(self.predict_codes(x_codes), self.reference.predict_codes(np.asarray(x_codes, dtype=np.int64)))

    def benchmark(self, batch_sizes=(1, 16, 256, 4096), repeats: int = 3) -> list[dict]:
        """Latency and throughput per batch size (best of ``repeats``), on golden inputs tiled."""
        x, _, _ = self.golden()
        rows = []
        for b in batch_sizes:
            xb = np.resize(x, (b, x.shape[1]))
            best = min(self._timed(xb) for _ in range(repeats))
            rows.append({'batch': b, 'latency_s': best, 'samples_per_s': b / best})
        return rows

    def _timed(self, xb) -> float:
        t0 = time.perf_counter()
        self.predict_codes(xb)
        return time.perf_counter() - t0


def compare(actual: np.ndarray, expected: np.ndarray, labels=None) -> GoldenReport:
    """Exact comparison of output codes; the first mismatch by sample and element."""
    acc = float(np.mean(actual.argmax(1) == labels)) if labels is not None else None
    m = first_mismatch({'output': expected}, {'output': actual})
    if m is None:
        return GoldenReport(True, len(expected), accuracy=acc)
    _, s, (e,), exp, act = m
    return GoldenReport(False, len(expected), {'sample': s, 'element': e, 'expected': exp, 'actual': act}, acc)
