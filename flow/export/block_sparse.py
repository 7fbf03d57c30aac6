"""BlockSparseQDense (CGS, HCGS, row/column/element-wise masks, binary and low-bit kernels) ->
the packed kept blocks of ``flow.runtime.ref_block_sparse``."""

from __future__ import annotations

from flow.export.dense import QDENSE_KERNELS, _dense_types
from flow.export.quantizers import kernel_type
from flow.export.registry import UnsupportedModel, _quantizer_name, exporter
from flow.runtime.ref_block_sparse import BlockSparseDense, pack_blocks
import numpy as np


def _sparse_kernel(layer, where: str):
    """A block-sparse kernel: quantized_bits, binary or ternary (flow.export.quantizers.kernel_type), its
    values as the quantizer gives them (binary: 0 is +alpha; the caller masks them after)."""
    w_t = kernel_type(layer.kernel_quantizer_internal, where)
    return w_t, np.asarray(layer.kernel_quantizer_internal(layer.kernel.numpy())), {}


def _refuse_po2_block_sparse(layer):
    name = _quantizer_name(layer.kernel_quantizer_internal)
    if name in QDENSE_KERNELS:
        raise UnsupportedModel(f"layer '{layer.name}' kernel: {name} is not supported by the block-sparse template "
                               '(it multiplies fixed-point weights); use quantized_bits(bits, integer, alpha=1), binary or '
                               'ternary (alpha a power of two), or a QDense')


def _block_sparse_fields(layer, w_codes: np.ndarray, block_mask: np.ndarray) -> dict:
    """The packed kept blocks of a (n_in, n_out) kernel under its block mask (BlockSparseDense fields)."""
    values, index, k = pack_blocks(w_codes, block_mask, layer.block_shape)
    n_in, n_out = w_codes.shape
    return dict(n_in=n_in, n_out=n_out, block=layer.block_shape, kept_per_row=k, values=values, index=index,
                levels=[list(b) for b, _ in layer.levels] if len(layer.levels) > 1 else None)


@exporter('BlockSparseQDense')
def export_block_sparse_qdense(layer, in_t, ov):
    from keras_models.masks import expand

    _refuse_po2_block_sparse(layer)
    block_mask = layer.get_block_mask()
    kw, w_codes = _dense_types(layer, in_t, ov, kernel=_sparse_kernel, element_mask=expand(block_mask, layer.block_shape))
    return BlockSparseDense(name=layer.name, **_block_sparse_fields(layer, w_codes, block_mask), **kw)
