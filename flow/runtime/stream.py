"""The AXI4-Stream format between the DMA and the accelerator, defined once.

Each sample's fixed-point codes are packed into ``word_bits``-wide stream words, one code per
lane of ``lane_bits`` (8, 16 or 32: the smallest that holds the type), two's complement and
sign-extended, lane 0 in the least significant bits, words little-endian in memory (as the DMA
moves them). A sample's input starts a new word; the accelerator answers each sample with
``out_words`` words and asserts TLAST on the last word of the sample whose last input word had
TLAST, so one DMA transfer carries a whole batch.

The host flow writes the C++ packing from these numbers (hls_templates/axi_top.cpp.in), and the
board driver packs with this module: the same definition on both sides.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .fixed import FixedType

LANE_CHOICES = (8, 16, 32)


def lane_bits_for(t: FixedType) -> int:
    for bits in LANE_CHOICES:
        if t.width <= bits:
            return bits
    raise ValueError(f'{t.hls()} is wider than 32 bits; the stream format carries at most 32-bit codes')


@dataclass(frozen=True)
class StreamFormat:
    n_in: int
    n_out: int
    in_type: FixedType
    out_type: FixedType
    word_bits: int = 64

    def __post_init__(self):
        if self.word_bits % 32 or self.word_bits < 32:
            raise ValueError(f'stream word width {self.word_bits} must be a multiple of 32 bits')
        lane_bits_for(self.in_type), lane_bits_for(self.out_type)  # raises for codes over 32 bits

    @property
    def word_bytes(self) -> int:
        return self.word_bits // 8

    @property
    def in_lane_bits(self) -> int:
        return lane_bits_for(self.in_type)

    @property
    def out_lane_bits(self) -> int:
        return lane_bits_for(self.out_type)

    @property
    def in_lanes(self) -> int:
        return self.word_bits // self.in_lane_bits

    @property
    def out_lanes(self) -> int:
        return self.word_bits // self.out_lane_bits

    @property
    def in_words(self) -> int:
        return -(-self.n_in // self.in_lanes)

    @property
    def out_words(self) -> int:
        return -(-self.n_out // self.out_lanes)

    def to_dict(self) -> dict:
        d = asdict(self)
        d['in_type'], d['out_type'] = self.in_type.to_dict(), self.out_type.to_dict()
        d.update(in_lane_bits=self.in_lane_bits, out_lane_bits=self.out_lane_bits, in_words=self.in_words,
                 out_words=self.out_words, word_order='little-endian', lane_order='lane 0 in the LSBs')
        return d

    @classmethod
    def from_dict(cls, d: dict) -> StreamFormat:
        return cls(d['n_in'], d['n_out'], FixedType.from_dict(d['in_type']), FixedType.from_dict(d['out_type']), d['word_bits'])

    # --- packing ---------------------------------------------------------------------------------

    def pack_inputs(self, codes: np.ndarray) -> np.ndarray:
        """(n, n_in) input codes -> bytes (uint8) of n * in_words stream words."""
        return _pack(np.asarray(codes), self.n_in, self.in_lanes, self.in_lane_bits, self.in_words, self.word_bytes, self.in_type)

    def unpack_outputs(self, data: np.ndarray, n: int) -> np.ndarray:
        """Bytes of n * out_words stream words -> (n, n_out) output codes."""
        return _unpack(np.asarray(data, dtype=np.uint8), n, self.n_out, self.out_lanes, self.out_lane_bits, self.out_words,
                       self.word_bytes, self.out_type)

    def pack_outputs(self, codes: np.ndarray) -> np.ndarray:
        return _pack(np.asarray(codes), self.n_out, self.out_lanes, self.out_lane_bits, self.out_words, self.word_bytes, self.out_type)

    def unpack_inputs(self, data: np.ndarray, n: int) -> np.ndarray:
        return _unpack(np.asarray(data, dtype=np.uint8), n, self.n_in, self.in_lanes, self.in_lane_bits, self.in_words,
                       self.word_bytes, self.in_type)


_DTYPES = {8: np.int8, 16: np.int16, 32: np.int32}


def _pack(codes, n_elem, lanes, lane_bits, words, word_bytes, t: FixedType) -> np.ndarray:
    if codes.ndim != 2 or codes.shape[1] != n_elem:
        raise ValueError(f'expected codes of shape (n, {n_elem}), got {codes.shape}')
    if codes.size and (codes.min() < t.min_code or codes.max() > t.max_code):
        raise ValueError(f'codes outside the range of {t.hls()}')
    n = codes.shape[0]
    lanes_arr = np.zeros((n, words * lanes), dtype=_DTYPES[lane_bits])
    lanes_arr[:, :n_elem] = codes  # two's complement, sign-extended to the lane
    return lanes_arr.astype(f'<i{lane_bits // 8}').view(np.uint8).reshape(n * words * word_bytes)


def _unpack(data, n, n_elem, lanes, lane_bits, words, word_bytes, t: FixedType) -> np.ndarray:
    need = n * words * word_bytes
    if data.size < need:
        raise ValueError(f'{data.size} bytes received, {need} expected for {n} samples')
    lanes_arr = data[:need].view(f'<i{lane_bits // 8}').reshape(n, words * lanes)[:, :n_elem].astype(np.int64)
    if not t.signed:
        lanes_arr &= (1 << t.width) - 1
    return lanes_arr
