"""PYNQ driver for the block-sparse accelerator (numpy + pynq only; runs on the board).

    from sparsenet_overlay import SparseOverlay
    ol = SparseOverlay()                      # loads the package's bitstream
    y = ol.predict(x)                         # float in (on the input grid), float out
    report = ol.check_golden()                # bit-exact check against the golden vectors

Inputs are packed to the AXI4-Stream format (stream.py), split into DMA transfers that fit the
DMA's length register, sent and received through pynq's own AxiDMA driver, unpacked, and
returned as fresh arrays (never the DMA buffers, which are freed after each transfer).

Inputs are a batch of shape (n, n_in), or one sample of shape (n_in,) which gives one output of
shape (n_out,); a model whose input has more dimensions also takes a batch in its own input shape
or one sample in it: a sequence (n, frames, features) or (frames, features), sent time-major; an
image (n, H, W, C) or (H, W, C), and (n, H, W) or (H, W) when it has one channel, sent row-major
(pixel after pixel, channels fastest), as the reference reads flat rows. Where a shape reads both
ways, a flat batch wins: a one-row (1, W) image with one channel is a batch of one. Anything else
is refused before a transfer, naming the model's input shape: a transposed batch
or the wrong model's inputs would otherwise run and return plausible-looking outputs. Codes
(predict_codes) must be integers within the input type's range; floats (predict) must lie on
its grid. Zero samples give an empty (0, n_out) result without a transfer.
"""

from __future__ import annotations

import json
import numbers
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
    def input_shape(self) -> tuple:
        """One sample's input shape in the model: (n_in,), (frames, features) or an image's (H, W, C)."""
        return tuple(int(d) for d in self.reference.input.shape)

    @property
    def max_batch(self) -> int:
        f = self.format
        per_sample = max(f.in_words, f.out_words) * f.word_bytes
        if per_sample > self.max_transfer_bytes:  # a batch of 0 would send nothing
            raise RuntimeError(f'one sample ({per_sample} bytes) exceeds the DMA length register '
                               f'({self.max_transfer_bytes} bytes)')
        return self.max_transfer_bytes // per_sample

    def predict_codes(self, x_codes: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """Input codes (n, n_in) -> output codes (n, n_out), a fresh array; (n_in,) -> (n_out,).

        ``batch_size``: samples per DMA transfer (None: as many as the DMA takes; larger is capped)."""
        x, single = self._input_codes(x_codes)
        batch = min(_positive_int(batch_size, 'batch_size', none_ok=True) or self.max_batch, self.max_batch)
        t0 = time.perf_counter()
        # assembled only from what the accelerator sent back: no row can be left unwritten
        chunks = [self._transfer(x[start : start + batch]) for start in range(0, len(x), batch)]
        out = np.concatenate(chunks) if chunks else np.zeros((0, self.format.n_out), dtype=np.int64)
        self.timing.batches.append((len(x), time.perf_counter() - t0))
        return out[0] if single else out

    def predict(self, x: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """Float inputs exactly on the input grid, (n, n_in) or (n_in,) -> float outputs."""
        x = np.asarray(x)
        self._check_shape(x, 'inputs')
        if x.dtype.kind not in 'iuf':
            raise TypeError(f'inputs must be a real-valued array (got {x.dtype})')
        codes = self.format.in_type.from_float_exact(x, 'input')
        return self.format.out_type.to_float(self.predict_codes(codes, batch_size))

    def _check_shape(self, x: np.ndarray, what: str) -> bool:
        """True for one sample, False for a batch: flat, (n, n_in) or (n_in,), or in the model's own
        input shape (a sequence: (n, frames, features) or (frames, features); an image: (n, H, W, C)
        or (H, W, C), also (n, H, W) or (H, W) with one channel), taken in C order as the reference
        reads flat rows; anything else is refused, naming the shapes it takes."""
        n_in, shape = self.format.n_in, self.input_shape
        if x.ndim == 2 and x.shape[1] == n_in:
            return False
        if x.shape == (n_in,):
            return True
        forms = model_shapes(shape)
        for form in forms:
            if x.shape[1:] == form:
                return False
            if x.shape == form:
                return True
        model = ''
        if forms:
            model = f', or (n, {", ".join(map(str, shape))}) / {shape} in the model\'s input shape'
        if len(forms) > 1:
            h, w = forms[1]
            model += f', or (n, {h}, {w}) / ({h}, {w}) for its one channel'
        raise ValueError(f'expected {what} of shape (n, {n_in}), or ({n_in},) for one sample{model}; got {x.shape}')

    def _input_codes(self, x_codes) -> tuple[np.ndarray, bool]:
        """Validated (n, n_in) int64 codes, and whether one 1-D sample was given."""
        x = np.asarray(x_codes)
        single = self._check_shape(x, 'codes')
        if not np.issubdtype(x.dtype, np.integer):  # a cast would truncate 3.7 to 3
            raise TypeError(f'codes must be an integer array (got {x.dtype}); use predict() for float inputs')
        t = self.format.in_type
        bad = (x < t.min_code) | (x > t.max_code)  # checked before the int64 cast, which could wrap uint64
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f'code {x[idx]} at index {idx} is outside the range of the input type {t.hls()}, '
                             f'[{t.min_code}, {t.max_code}]')
        return x.astype(np.int64).reshape(-1, self.format.n_in), single

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
        labels = np.load(d / 'labels.npy') if (d / 'labels.npy').is_file() else None  # random vectors have none
        return np.load(d / 'input_codes.npy'), np.load(d / 'output_codes.npy'), labels

    def check_golden(self, batch_size: int | None = None) -> GoldenReport:
        x, expected, labels = self.golden()
        return compare(self.predict_codes(x, batch_size), expected, labels)

    def check_reference(self, x_codes: np.ndarray) -> GoldenReport:
        """Fresh inputs: the board against the integer reference, computed here on the ARM."""
        x, _ = self._input_codes(x_codes)  # the same validated (n, n_in) codes for both sides
        return compare(self.predict_codes(x), self.reference.predict_codes(x))

    def benchmark(self, batch_sizes=(1, 16, 256, 4096), repeats: int = 3) -> list[dict]:
        """Latency and throughput per batch size (best of ``repeats``), on golden inputs tiled."""
        if isinstance(batch_sizes, (str, bytes)) or not np.iterable(batch_sizes):
            raise TypeError(f'batch_sizes must be a sequence of positive ints, got {batch_sizes!r}')
        sizes = [_positive_int(b, 'each of batch_sizes') for b in batch_sizes]  # all checked before any run
        repeats = _positive_int(repeats, 'repeats')
        x, _, _ = self.golden()
        x = x.reshape(len(x), -1)  # flat rows, whatever shape the golden inputs were saved in
        rows = []
        for b in sizes:
            xb = np.resize(x, (b, x.shape[1]))
            best = min(self._timed(xb) for _ in range(repeats))
            rows.append({'batch': b, 'latency_s': best, 'samples_per_s': b / best})
        return rows

    def _timed(self, xb) -> float:
        t0 = time.perf_counter()
        self.predict_codes(xb)
        return time.perf_counter() - t0


def model_shapes(shape: tuple) -> list[tuple]:
    """The per-sample shapes a model of input ``shape`` takes besides flat (n_in,): its own shape
    when it has more than one dimension, and (H, W) for a one-channel (H, W, 1) image."""
    shape = tuple(int(d) for d in shape)
    if len(shape) < 2:
        return []
    if len(shape) == 3 and shape[2] == 1:
        return [shape, shape[:2]]
    return [shape]


def _positive_int(value, what: str, none_ok: bool = False) -> int | None:
    """``value`` as an int >= 1; bools and floats are refused rather than cast (-5 made no transfer)."""
    if value is None and none_ok:
        return None
    expected = 'a positive int' + (' or None' if none_ok else '')
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f'{what} must be {expected}, got {value!r} ({type(value).__name__})')
    if value < 1:
        raise ValueError(f'{what} must be {expected}, got {value}')
    return int(value)


def compare(actual: np.ndarray, expected: np.ndarray, labels=None) -> GoldenReport:
    """Exact comparison of output codes; the first mismatch by sample and element."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    if actual.shape != expected.shape:  # never reshaped into agreement
        raise ValueError(f'outputs of shape {actual.shape} cannot be compared with expected outputs of shape {expected.shape}')
    if not len(expected):  # a PASS over nothing would prove nothing
        raise ValueError('no samples to compare')
    if labels is not None and np.shape(labels) != expected.shape[:1]:
        raise ValueError(f'expected {expected.shape[0]} labels, got shape {np.shape(labels)}')
    acc = float(np.mean(actual.argmax(1) == labels)) if labels is not None else None
    m = first_mismatch({'output': expected}, {'output': actual})
    if m is None:
        return GoldenReport(True, len(expected), accuracy=acc)
    _, s, (e,), exp, act = m
    return GoldenReport(False, len(expected), {'sample': s, 'element': e, 'expected': exp, 'actual': act}, acc)
