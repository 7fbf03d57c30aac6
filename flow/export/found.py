"""Sparsity trained by other tools, found in a dense layer's quantized kernel.

TFMOT's ``prune_low_magnitude(block_size=...)`` (and its ``sparsity_m_by_n``), hls4ml's Optimization
API and PQuantML save an ordinary (Q)Dense whose kernel simply holds zeros. ``find_blocks`` looks for
the block shape (bi, bo), bi | n_in and bo | n_out, whose all-zero blocks, dropped, store the fewest
bits in the block-sparse format (``flow.runtime.ref_block_sparse``: kept blocks x bi x bo x weight bits
plus the index, counted exactly as ``BlockSparseDense.storage()`` counts it); the exporter deploys the
layer block-sparse when that is fewer bits than the dense kernel. Numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flow.runtime.ref_block_sparse import index_bits, row_index_bits

MAX_BLOCK_SIDE = 64  # candidate sides: the dim's divisors up to this, and the whole dim (whole rows/columns)
N_M_GROUPS = (4, 8, 16)  # N:M patterns (TFMOT sparsity_m_by_n) looked for along the input axis


def candidate_sides(n: int) -> list[int]:
    """The block sides tried along an axis of ``n``: its divisors up to MAX_BLOCK_SIDE (the powers of two
    among them) and ``n`` itself (a whole input row / output column is a block)."""
    return sorted({d for d in range(1, min(n, MAX_BLOCK_SIDE) + 1) if n % d == 0} | {n})


def block_mask_of(nonzero: np.ndarray, block: tuple[int, int]) -> np.ndarray:
    """(n_in / bi, n_out / bo): True where the block holds a non-zero."""
    (bi, bo), (n_in, n_out) = block, nonzero.shape
    return nonzero.reshape(n_in // bi, bi, n_out // bo, bo).any(axis=(1, 3))


def kept_per_row_of(mask: np.ndarray):
    """``pack_blocks``'s kept_per_row: an int when every block-row keeps as many, else the counts."""
    counts = mask.sum(axis=1)
    return int(counts[0]) if np.all(counts == counts[0]) else [int(c) for c in counts]


def sparse_bits(mask: np.ndarray, block: tuple[int, int], n_out: int, weight_bits: int) -> int:
    """Weight and index bits of the kept blocks of ``mask``, as ``BlockSparseDense.storage()`` counts
    them (one level: one output-block index per kept block, plus ``row_index_bits``)."""
    bi, bo = block
    kept = int(mask.sum())
    return (kept * bi * bo * weight_bits + kept * index_bits(n_out, bo)
            + row_index_bits(kept_per_row_of(mask), n_out // bo))


def n_m_pattern(nonzero: np.ndarray) -> str | None:
    """'N:M' when every group of M consecutive inputs of every output has at most N non-zeros, N <= M/2,
    and most groups are not empty (TFMOT's sparsity_m_by_n keeps N of every M along the input axis;
    block pruning leaves empty groups instead); the sparsest such pattern, the smallest M on ties;
    None otherwise."""
    n_in = nonzero.shape[0]
    best = None
    for m in N_M_GROUPS:
        if n_in % m:
            continue
        counts = nonzero.reshape(n_in // m, m, -1).sum(axis=1)
        n = int(counts.max())
        if np.mean(counts == 0) >= 0.5:
            continue  # mostly empty groups: zero blocks (or rows), not N of every M
        if 0 < n <= m // 2 and (best is None or n / m < best[0] / best[1]):
            best = (n, m)
    return f'{best[0]}:{best[1]}' if best else None


@dataclass
class Found:
    block: tuple[int, int]
    mask: np.ndarray  # over (n_in / bi, n_out / bo) blocks, True: kept
    dense_bits: int  # the dense kernel: n_in x n_out x weight bits
    sparse_bits: int  # kept blocks' weights + index bits
    n_m: str | None  # 'N:M' when the zeros form that pattern
    forced: bool  # block_shape given in the config

    @property
    def worth_it(self) -> bool:
        return self.forced or (self.sparse_bits < self.dense_bits and not self.mask.all())

    def summary(self, n_in: int, n_out: int) -> dict:
        """What the reference layer carries (``found``) and the reports show (JSON scalars only)."""
        bi, bo = self.block
        kept = int(self.mask.sum())
        unit, pattern = describe(self.block, n_in, n_out, self.n_m)
        return {'block': [bi, bo], 'blocks': int(self.mask.size), 'kept_blocks': kept,
                'zero_block_fraction': 1 - kept / self.mask.size, 'density': kept * bi * bo / (n_in * n_out),
                'unit': unit, 'pattern': pattern, 'n_m': self.n_m,
                'dense_bits': self.dense_bits, 'sparse_bits': self.sparse_bits, 'forced': self.forced,
                'deployed_sparse': self.worth_it}


def describe(block: tuple[int, int], n_in: int, n_out: int, n_m: str | None) -> tuple[str, str]:
    """(what a block is, the pattern in words: which pruning leaves it)."""
    bi, bo = block
    if block == (1, 1):
        unit = 'weights'
    elif block == (1, n_out):
        unit = 'inputs (whole kernel rows)'
    elif block == (n_in, 1):
        unit = 'output neurons (whole kernel columns)'
    else:
        unit = f'{bi}x{bo} blocks'
    if n_m:
        return unit, f'{n_m} along the inputs: TFMOT sparsity_m_by_n-style'
    if block == (1, 1):
        return unit, 'unstructured: magnitude pruning'
    if bo == n_out or bi == n_in:
        return unit, 'structured pruning of ' + ('inputs' if bo == n_out else 'output neurons')
    return unit, 'TFMOT block_size-style block pruning'


def find_blocks(codes: np.ndarray, weight_bits: int, forced: tuple[int, int] | None = None) -> Found | None:
    """Of the block shapes with an all-zero block, the one that stores the (n_in, n_out) kernel ``codes``
    in the fewest bits once those are dropped (``forced``: that shape, whatever it saves); None when no
    block is zero, or none has a non-zero (the block-sparse format keeps at least one block). On
    equal bits the larger block wins. ``Found.worth_it``: fewer bits than the dense kernel."""
    nonzero = np.asarray(codes) != 0
    n_in, n_out = nonzero.shape
    if not nonzero.any():
        return None
    dense = n_in * n_out * weight_bits
    shapes = [tuple(forced)] if forced else [(bi, bo) for bi in candidate_sides(n_in) for bo in candidate_sides(n_out)]
    rows = {}  # bi -> (n_in / bi, n_out): the input block-rows' non-zeros, shared by every bo
    best = None
    for bi, bo in shapes:
        if bi not in rows:
            rows[bi] = nonzero.reshape(n_in // bi, bi, n_out).any(axis=1)
        mask = rows[bi].reshape(n_in // bi, n_out // bo, bo).any(axis=2)
        if not forced and mask.all():
            continue  # drops nothing
        bits = sparse_bits(mask, (bi, bo), n_out, weight_bits)
        if best is None or (bits, -bi * bo) < (best[0], -best[1][0] * best[1][1]):
            best = (bits, (bi, bo), mask)
    if best is None:
        return None
    bits, block, mask = best
    return Found(block, mask, dense, bits, n_m_pattern(nonzero), forced is not None)
