"""Fixed random block masks, drawn once before training (numpy only).

A mask is a boolean array over blocks of the Keras kernel (n_in x n_out): shape
(n_in / block_in, n_out / block_out). A method is one function registered in ``MASK_METHODS``:
block-wise CGS (element-wise with 1x1 blocks), balanced CGS, and row-/column-wise structured
sparsity (whole inputs / outputs dropped); HCGS adds its hierarchical generator here without
touching the layer or the flow.
"""

from __future__ import annotations

import numpy as np

MASK_METHODS = {}


class BlockShapeError(ValueError):
    pass


def register_mask(name):
    def deco(fn):
        MASK_METHODS[name] = fn
        return fn

    return deco


def check_tiling(layer_name: str, shape: tuple[int, int], block: tuple[int, int]) -> tuple[int, int]:
    """Blocks per (input, output) axis; a clear error when the block does not divide the kernel."""
    (n_in, n_out), (bi, bo) = shape, block
    if bi <= 0 or bo <= 0 or n_in % bi or n_out % bo:
        raise BlockShapeError(
            f"layer '{layer_name}': block {bi}x{bo} (in x out) does not divide its kernel {n_in}x{n_out}; "
            f'pick a block whose sides divide {n_in} and {n_out}'
        )
    return n_in // bi, n_out // bo


def kept_per_row(n_cols: int, drop: float) -> int:
    """Kept blocks per input block-row: round((1 - drop) * n_cols), at least one."""
    if not 0.0 <= drop < 1.0:
        raise ValueError(f'drop ratio {drop} must be in [0, 1)')
    return max(1, int(round((1.0 - drop) * n_cols)))


@register_mask('cgs')
def cgs_block_mask(layer_name, shape, block, drop, seed) -> np.ndarray:
    """CGS (Kadetotad et al., ICCAD 2016): drop blocks at random with ratio ``drop``, the same
    number kept in every input block-row (every block-column of W = out x in), so each input
    block feeds the same number of output blocks and the hardware schedule is static."""
    rows, cols = check_tiling(layer_name, shape, block)
    k = kept_per_row(cols, drop)
    rng = np.random.default_rng(seed)
    mask = np.zeros((rows, cols), dtype=bool)
    for r in range(rows):
        mask[r, rng.choice(cols, size=k, replace=False)] = True
    return mask


@register_mask('cgs_balanced')
def cgs_balanced_block_mask(layer_name, shape, block, drop, seed) -> np.ndarray:
    """CGS with equal fan-in as well as equal fan-out: every input block-row keeps the same number
    of blocks and every output block-column as many as the others, give or take one (exactly as
    many when the column count divides the kept blocks), otherwise uniformly at random. The
    output-stationary engine (flow/runtime/schedule.py, ``gather``) then needs little or no zero padding."""
    rows, cols = check_tiling(layer_name, shape, block)
    k = kept_per_row(cols, drop)
    rng = np.random.default_rng(seed)
    mask = np.zeros((rows, cols), dtype=bool)
    for r in range(rows):  # a regular start: row r keeps columns r*k .. r*k+k-1 (mod cols)
        mask[r, (r * k + np.arange(k)) % cols] = True
    # degree-preserving swaps ((r1,c1),(r2,c2) -> (r1,c2),(r2,c1)) walk to a random balanced mask
    kept = np.argwhere(mask)
    for _ in range(20 * len(kept) if len(kept) > 1 else 0):
        a, b = rng.choice(len(kept), 2, replace=False)
        (r1, c1), (r2, c2) = kept[a], kept[b]
        if not mask[r1, c2] and not mask[r2, c1]:
            mask[r1, c1] = mask[r2, c2] = False
            mask[r1, c2] = mask[r2, c1] = True
            kept[a], kept[b] = (r1, c2), (r2, c1)
    return mask[rng.permutation(rows)][:, rng.permutation(cols)]


def _kept_lines(n: int, drop: float, seed) -> np.ndarray:
    """A random set of round((1 - drop) * n) of n lines (at least one), as a boolean vector."""
    k = kept_per_row(n, drop)
    keep = np.zeros(n, dtype=bool)
    keep[np.random.default_rng(seed).choice(n, size=k, replace=False)] = True
    return keep


@register_mask('rows')
def row_mask(layer_name, shape, block, drop, seed) -> np.ndarray:
    """Row-wise structured sparsity (Yin et al., Asilomar 2017): whole input block-rows dropped at
    random (ratio ``drop``), i.e. inputs the layer never reads; kept rows keep every block. With
    block (1, bo) single inputs are dropped. The packed format then stores a kept-row bitmap."""
    rows, cols = check_tiling(layer_name, shape, block)
    return np.repeat(_kept_lines(rows, drop, seed)[:, None], cols, axis=1)


@register_mask('columns')
def column_mask(layer_name, shape, block, drop, seed) -> np.ndarray:
    """Column-wise structured sparsity: whole output block-columns (groups of output neurons)
    dropped at random; those outputs are the bias alone, never computed. Every input block-row
    keeps the same blocks, so the index cost is CGS's (one output-block index per kept block)."""
    rows, cols = check_tiling(layer_name, shape, block)
    return np.repeat(_kept_lines(cols, drop, seed)[None, :], rows, axis=0)


def make_block_mask(method: str, layer_name, shape, block, drop, seed) -> np.ndarray:
    if method not in MASK_METHODS:
        raise ValueError(f"layer '{layer_name}': unknown mask method {method!r}; known: {sorted(MASK_METHODS)}")
    return MASK_METHODS[method](layer_name, shape, block, drop, seed)


def make_hierarchical_mask(method: str, layer_name, shape, levels, seed) -> np.ndarray:
    """HCGS (Kadetotad et al., JSSC 2020): ``levels`` = [(block, drop), ...], coarsest first. Level 1
    draws a ``method`` mask over the kernel's level-1 blocks; every further level tiles each kept
    block of the level above into its own sub-blocks and draws a ``method`` mask inside it (with
    'cgs': the same number kept per input sub-block-row, at random, each kept block its own
    draw). Returns the mask over the finest level's blocks. One level is ``method`` itself (CGS is
    HCGS with one level); with 'cgs' at every level each finest block-row keeps the product of the
    kept counts, so the finest mask is a CGS mask and the same reference and template serve it."""
    (block, drop), *rest = [(tuple(int(b) for b in blk), float(d)) for blk, d in levels]
    mask = make_block_mask(method, layer_name, shape, block, drop, seed)
    for depth, (sub, sub_drop) in enumerate(rest, start=2):
        if block[0] % sub[0] or block[1] % sub[1]:
            raise BlockShapeError(f"layer '{layer_name}': HCGS level {depth} block {sub[0]}x{sub[1]} does not divide level "
                                  f'{depth - 1} block {block[0]}x{block[1]}; pick sub-blocks whose sides divide it')
        fi, fo = block[0] // sub[0], block[1] // sub[1]
        fine = np.zeros((mask.shape[0] * fi, mask.shape[1] * fo), dtype=bool)
        for r, c in np.argwhere(mask):  # an independent, reproducible draw per kept block
            child = int(np.random.SeedSequence([int(seed), depth, int(r), int(c)]).generate_state(1)[0])
            fine[r * fi:(r + 1) * fi, c * fo:(c + 1) * fo] = make_block_mask(method, layer_name, block, sub, sub_drop, child)
        mask, block = fine, sub
    return mask


def expand(block_mask: np.ndarray, block: tuple[int, int]) -> np.ndarray:
    """Block mask -> element mask of the kernel's shape."""
    return np.kron(block_mask, np.ones(block, dtype=block_mask.dtype))
