"""Fixed random block masks, drawn once before training (numpy only).

A mask is a boolean array over blocks of the Keras kernel (n_in x n_out): shape
(n_in / block_in, n_out / block_out). A method is one function registered in ``MASK_METHODS``;
HCGS adds its hierarchical generator here without touching the layer or the flow.
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


def make_block_mask(method: str, layer_name, shape, block, drop, seed) -> np.ndarray:
    if method not in MASK_METHODS:
        raise ValueError(f"layer '{layer_name}': unknown mask method {method!r}; known: {sorted(MASK_METHODS)}")
    return MASK_METHODS[method](layer_name, shape, block, drop, seed)


def expand(block_mask: np.ndarray, block: tuple[int, int]) -> np.ndarray:
    """Block mask -> element mask of the kernel's shape."""
    return np.kron(block_mask, np.ones(block, dtype=block_mask.dtype))
