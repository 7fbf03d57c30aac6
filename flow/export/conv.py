"""Convolutions and pooling, channels last, in io_stream: QConv2D, BlockSparseQConv2D, MaxPooling2D."""

from __future__ import annotations

import numpy as np

from flow.export.block_sparse import _block_sparse_fields, _refuse_po2_block_sparse, _sparse_kernel
from flow.export.dense import QDENSE_KERNELS, _dense_types, exact_values_copy
from flow.export.registry import UnsupportedModel, _no_override, _quantizer_name, deploy_rewrite, exporter
from flow.runtime.ref_conv import BlockSparseConv2D, Conv2D, MaxPool2D, same_padding


def _window_geometry(layer, window: str, paddings=('valid', 'same')) -> dict:
    """PatchGeometry fields of a Keras Conv2D/pooling layer (``window``: its kernel_size/pool_size)."""
    c = layer.get_config()
    where = f"layer '{layer.name}' ({type(layer).__name__})"
    if c.get('data_format', 'channels_last') != 'channels_last':
        raise UnsupportedModel(f"{where}: data_format {c['data_format']!r}; the accelerator streams pixels with their "
                               "channels last: use data_format='channels_last'")
    if tuple(c.get('dilation_rate', (1, 1))) != (1, 1) or c.get('groups', 1) != 1:
        raise UnsupportedModel(f'{where}: dilation_rate {tuple(c.get("dilation_rate"))} / groups {c.get("groups", 1)}; '
                               "hls4ml's line buffer computes undilated, ungrouped windows: use dilation_rate=1, groups=1")
    if c['padding'] not in paddings:  # pooling: hls4ml pads with zeros where Keras ignores the border
        raise UnsupportedModel(f"{where}: padding {c['padding']!r}; hls4ml's pooling would pad with zeros where Keras "
                               'ignores the border: use padding=' + ' or '.join(repr(p) for p in paddings))
    in_shape = tuple(int(d) for d in layer.input_shape[1:])
    filt = tuple(int(k) for k in c[window])
    strides = tuple(int(k) for k in (c.get('strides') or filt))
    if window == 'kernel_size' and filt[0] == 1 and strides[0] > 1:
        # hls4ml 1.3.0's io_stream line buffer for one-row filters (compute_output_buffer_1d) never
        # skips rows: it would compute every row (measured in the C simulation)
        raise UnsupportedModel(f"{where}: a filter of height 1 with vertical stride {strides[0]}; hls4ml's line buffer "
                               'ignores the vertical stride of one-row filters: use strides (1, w) and a MaxPooling2D, '
                               'or a filter height of 2 or more')
    pads = (0, 0, 0, 0)
    if c['padding'] == 'same':
        pads = same_padding(in_shape[0], filt[0], strides[0]) + same_padding(in_shape[1], filt[1], strides[1])
    return dict(in_shape=in_shape, filt=filt, strides=strides, pads=pads)


@exporter('QConv2D')  # takes (height, width, channels): io_stream
def export_qconv2d(layer, in_t, ov):
    """QConv2D -> hls4ml's Conv2D: the kernel as a (kh * kw * C, F) matrix applied to every patch."""
    geometry = _window_geometry(layer, 'kernel_size')
    if _quantizer_name(layer.kernel_quantizer_internal) in QDENSE_KERNELS:
        raise UnsupportedModel(f"layer '{layer.name}' kernel: quantized_po2 convolutions are not supported; use "
                               'quantized_bits(bits, integer, alpha=1)')
    kw, w_codes = _dense_types(layer, in_t, ov)
    return Conv2D(name=layer.name, weight=w_codes.reshape(-1, layer.filters), **geometry, **kw)


deploy_rewrite('QConv2D')(exact_values_copy)  # an auto_po2 kernel as its exact values


@exporter('BlockSparseQConv2D')
def export_block_sparse_qconv2d(layer, in_t, ov):
    """BlockSparseQConv2D: the (kh * kw * C, F) matrix is block-sparse with the channel mask
    repeated for every kernel position; packed like a BlockSparseQDense kernel."""
    from keras_models.masks import expand

    geometry = _window_geometry(layer, 'kernel_size')
    _refuse_po2_block_sparse(layer)
    block_mask = layer.get_block_mask()
    kw, w_codes = _dense_types(layer, in_t, ov, kernel=_sparse_kernel,
                               element_mask=expand(block_mask, layer.block_shape)[None, None])
    positions = geometry['filt'][0] * geometry['filt'][1]
    fields = _block_sparse_fields(layer, w_codes.reshape(-1, layer.filters), np.tile(block_mask, (positions, 1)))
    return BlockSparseConv2D(name=layer.name, **fields, **geometry, **kw)


@exporter('MaxPooling2D')
def export_maxpool2d(layer, in_t, ov):
    """MaxPooling2D -> hls4ml's Pooling2D (max): exact in the input's type ('same' padding would pad
    with zeros in hls4ml, not ignore the border as Keras does)."""
    _no_override(layer, ov, 'result', 'the largest input is exact in the input type')
    _no_override(layer, ov, 'accum', 'hls4ml compares the inputs in the input type')
    geometry = _window_geometry(layer, 'pool_size', paddings=('valid',))
    if geometry['strides'] != geometry['filt']:
        raise UnsupportedModel(f"layer '{layer.name}' (MaxPooling2D): strides {geometry['strides']} differ from pool_size "
                               f"{geometry['filt']}; hls4ml's io_stream pooling takes non-overlapping windows only: use "
                               'strides=None (the pool size)')
    return MaxPool2D(name=layer.name, out_type=in_t, **geometry)
