"""Reference for the coarse-grain block-sparse dense layer (CGS, and row/column/element-wise
structured sparsity), in a packed storage format: only kept blocks, plus one output-block index
per kept block.

Packed format:
- the kernel (n_in x n_out, Keras orientation) is tiled into blocks of ``block_in x block_out``;
- ``values[b]`` is kept block ``b`` (row-major ``block_in x block_out``), blocks ordered by input
  block-row, then by output block; ``index[b]`` is its output block number;
- its input block-row comes from ``kept_per_row`` (``block_rows``): an int when every input
  block-row keeps that many blocks (CGS: the row is implicit, ``b // kept_per_row``, no further
  index), or one count per input block-row when they differ (row-wise masks drop whole
  block-rows: count 0). The unequal case stores extra index bits (``row_index_bits``).

This packed format is the reference's (and the footprint's); the HLS template stores the gather
schedule derived from it (``flow/runtime/schedule.py``: per-multiplier weight banks, run and segment tables),
which only ever reads inputs of kept blocks and computes outputs of kept blocks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .ref_layers import DA, HlsWeight, ReuseFactors, _Accumulating, register_kind


def block_rows(kept_per_row, n_kept: int) -> np.ndarray:
    """The input block-row of each kept block (packed order)."""
    if np.ndim(kept_per_row) == 0:
        return np.arange(n_kept) // int(kept_per_row)
    counts = np.asarray(kept_per_row, dtype=np.int64)
    if counts.sum() != n_kept:
        raise ValueError(f'kept_per_row counts sum to {int(counts.sum())}, but there are {n_kept} kept blocks')
    return np.repeat(np.arange(len(counts)), counts)


def pack_blocks(weight: np.ndarray, block_mask: np.ndarray, block: tuple[int, int]):
    """(n_in, n_out) weights + (n_in/bi, n_out/bo) bool block mask -> (values, index, kept_per_row);
    ``kept_per_row`` is an int when every block-row keeps as many blocks, else a list of counts."""
    bi, bo = block
    n_in, n_out = weight.shape
    rows, cols = block_mask.shape
    if (rows * bi, cols * bo) != (n_in, n_out):
        raise ValueError(f'block mask {block_mask.shape} x block {block} does not tile weights {weight.shape}')
    kept = block_mask.sum(axis=1)
    if kept.sum() == 0:
        raise ValueError('the block mask keeps no block; keep at least one (a lower drop rate)')
    rr, cc = np.nonzero(block_mask)  # row-major: ordered by row, then column
    tiles = weight.reshape(rows, bi, cols, bo).transpose(0, 2, 1, 3)  # (rows, cols, bi, bo)
    equal = bool(np.all(kept == kept[0]))
    return tiles[rr, cc].copy(), cc.astype(np.int64), int(kept[0]) if equal else [int(k) for k in kept]


def index_bits(n_out: int, block_out: int) -> int:
    """Bits of one stored index: enough to name any of the n_out / block_out output blocks."""
    return max(1, int(np.ceil(np.log2(n_out // block_out))))


def row_index_bits(kept_per_row, n_cols: int) -> int:
    """Index bits that locate kept blocks' input block-rows, beyond the per-block output index:
    none when every block-row keeps as many (an int); when only some block-rows keep blocks, all
    of them as many (row-wise masks), a kept-row bitmap (1 bit per block-row) plus that count;
    otherwise a count per block-row (0 .. n_cols)."""
    if np.ndim(kept_per_row) == 0:
        return 0
    counts = np.asarray(kept_per_row, dtype=np.int64)
    count_bits = max(1, int(n_cols).bit_length())
    if len(set(counts[counts > 0].tolist())) == 1:
        return len(counts) + count_bits
    return len(counts) * count_bits


def level_index_bits(rows, cols, block, levels, n_out: int) -> list[int]:
    """Index bits per level (HCGS) of the kept blocks at block-rows ``rows``, block-columns ``cols``
    (of ``block``): each kept block of a level stores which output block of its parent it is (the
    whole kernel's for level 1), the input side implicit by equal fan-out. ``levels``: the block
    shapes, coarsest first, ending with ``block``; None is one level (CGS: one output-block index
    per kept block)."""
    first_in, first_out = np.asarray(rows) * block[0], np.asarray(cols) * block[1]  # each kept block's first element
    bits, parent_out = [], n_out
    for bi, bo in [tuple(b) for b in (levels or [block])]:
        kept = len({(int(r) // bi, int(c) // bo) for r, c in zip(first_in, first_out)})
        bits.append(kept * index_bits(parent_out, bo))
        parent_out = bo
    return bits


def unpack_blocks(values, index, kept_per_row, shape, block):
    """Inverse of pack_blocks: the dense (n_in, n_out) matrix with zeros in dropped blocks."""
    bi, bo = block
    n_in, n_out = shape
    tiles = np.zeros((n_in // bi, n_out // bo, bi, bo), dtype=values.dtype)
    tiles[block_rows(kept_per_row, len(index)), index] = values
    return tiles.transpose(0, 2, 1, 3).reshape(n_in, n_out)


@register_kind
@dataclass
class BlockSparseDense(_Accumulating):
    kind = 'block_sparse_dense'
    strategies = (DA,)  # or none: our template (nnet_block_sparse_dense.h) on the gather schedule
    n_in: int = 0
    n_out: int = 0
    block: tuple = (1, 1)
    kept_per_row: int | list = 1  # int: every input block-row keeps as many; list: a count per block-row
    # HCGS: the block shape of every level, coarsest first, ending with ``block`` (None: one level, CGS)
    levels: list | None = None
    values: np.ndarray = field(default=None, repr=False)  # (n_kept_blocks, bi, bo) codes
    index: np.ndarray = field(default=None, repr=False)  # (n_kept_blocks,) output block numbers
    # a dense layer (QDense) whose zero blocks were found in its kernel (flow/export/found.py): what was
    # found (block, density, dense_bits vs sparse_bits, an N:M pattern); None for a block-sparse layer
    found: dict | None = None

    def forward(self, x, in_type):
        pf = self._check_accum(in_type)
        bi, bo = self.block
        n = x.shape[0]
        xb = x.reshape(n, self.n_in // bi, bi)[:, self.block_rows(), :]  # (n, kept, bi): only kept blocks' inputs
        prod = np.einsum('nki,kio->nko', xb, self.values.astype(np.int64))
        acc = np.zeros((n, self.n_out // bo, bo), dtype=np.int64)
        np.add.at(acc, (slice(None), self.index), prod)
        return self._finish(acc.reshape(n, self.n_out), pf)

    def block_rows(self) -> np.ndarray:
        return block_rows(self.kept_per_row, self.n_kept_blocks)

    @property
    def n_kept_blocks(self) -> int:
        return len(self.index)

    @property
    def index_bits(self) -> int:
        return index_bits(self.n_out, self.block[1])

    @property
    def weight_code_bits(self) -> int:
        return self.weight_type.width

    def block_mask(self) -> np.ndarray:
        """(n_in / bi, n_out / bo) bool: the kept blocks."""
        mask = np.zeros((self.n_in // self.block[0], self.n_out // self.block[1]), dtype=bool)
        mask[self.block_rows(), self.index] = True
        return mask

    def level_index_bits(self) -> list[int]:
        return level_index_bits(self.block_rows(), self.index, self.block, self.levels, self.n_out)

    def storage(self):
        """Kept weights at their width, the index of every level (``level_index_bits``), plus
        ``row_index_bits`` (0 when every input block-row keeps as many blocks: the row is implicit)."""
        levels = self.level_index_bits()
        index = sum(levels) + row_index_bits(self.kept_per_row, self.n_out // self.block[1])
        return {'shape': [self.n_in, self.n_out], 'kept_weights': int(self.values.size),
                'weight_bits': int(self.values.size) * self.weight_code_bits,
                'index_bits': index, 'index_bits_per_level': levels, 'bias_bits': self.n_out * self.bias_type.width}

    def dense_weight(self) -> np.ndarray:
        return unpack_blocks(self.values, self.index, self.kept_per_row, (self.n_in, self.n_out), self.block)

    # --- deployment facts -------------------------------------------------------------------------
    def reuse_factors(self, strategy):
        if strategy == DA:
            return ReuseFactors([1], f'{DA} computes every product at once')
        # the gather schedule pads with zero weights, so any ReuseFactor up to one cycle per kept weight
        return ReuseFactors(range(1, int(self.values.size) + 1), f'its {int(self.values.size)} kept weights')

    def schedule(self, rf: int):
        """The gather schedule the template stores (memoized: conversion, estimate and rtl read it)."""
        from .schedule import gather

        cache = self.__dict__.setdefault('_schedules', {})
        if rf not in cache:
            cache[rf] = gather(self, rf)
        return cache[rf]

    def hls_weights(self, rf):
        s = self.schedule(rf)
        return {'weight': HlsWeight(s.weights, self.weight_type), 'bias': HlsWeight(self.bias, self.bias_type)}

    def engine_estimate(self, rf, in_type, steps=1):
        """The generated kernel of the gather schedule: its live multipliers (a bank of zeros only is
        none) and stored slots (padding included). No stored index: the kernel's case tables and
        gates are logic (``lut_estimate``; the footprint counts the method's one index per kept block)."""
        from .costs import bram18
        from .static_engine import static_engine

        wbits, s = self.weight_code_bits, self.schedule(rf)
        ours = {'multipliers': len(static_engine(s).multipliers), 'cycles': rf,
                'weight_memory_bits': s.slots * wbits,  # padding is stored too
                'bram18': bram18(s.n_mult * wbits, rf) if rf > 1 else 0, 'index_bits': 0, 'padding': s.padding}
        if in_type is not None:
            logic = s.logic_estimate(self, in_type)
            ours['lut_estimate'], ours['ff_estimate'] = logic['lut'], logic['ff']
        return ours

    def scalars(self):
        return {
            **super().scalars(),
            'n_in': self.n_in,
            'n_out': self.n_out,
            'block': list(self.block),
            'kept_per_row': self.kept_per_row,
            'levels': [list(b) for b in self.levels] if self.levels else None,
            'found': self.found,
        }

    def arrays(self):
        return {'values': self.values, 'index': self.index, 'bias': self.bias}

    @classmethod
    def from_json(cls, d, arrays):
        layer = super().from_json(d, arrays)
        layer.block = tuple(layer.block)
        return layer
