"""Convolutions and pooling, channels last, in io_stream: QConv2D, BlockSparseQConv2D, QConv1D,
BlockSparseQConv1D, MaxPooling2D."""

from __future__ import annotations

import numpy as np

from flow.export.block_sparse import _block_sparse_fields, _refuse_po2_block_sparse, _sparse_kernel
from flow.export.dense import QDENSE_KERNELS, _dense_types, _found_blocks, auto_po2, block_sparse_copy, exact_values_copy
from flow.export.registry import UnsupportedModel, _no_override, _quantizer_name, deploy_rewrite, exporter
from flow.runtime.ref_block_sparse import pack_blocks
from flow.runtime.ref_conv import BlockSparseConv1D, BlockSparseConv2D, Conv1D, Conv2D, MaxPool2D, same_padding


def _window_geometry(layer, window: str, paddings=('valid', 'same')) -> dict:
    """PatchGeometry fields of a Keras Conv2D/pooling layer (``window``: its kernel_size/pool_size);
    a 1-D layer (input (W, C)) as height 1 (``OneDimensional``)."""
    c = layer.get_config()
    if len(layer.input_shape) == 3:
        return _window_geometry_1d(layer, c, window, paddings)
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


def _window_geometry_1d(layer, c: dict, window: str, paddings) -> dict:
    where = f"layer '{layer.name}' ({type(layer).__name__})"
    if c.get('data_format', 'channels_last') != 'channels_last':
        raise UnsupportedModel(f"{where}: data_format {c['data_format']!r}; the accelerator streams positions with their "
                               "channels last: use data_format='channels_last'")
    if tuple(c.get('dilation_rate', (1,))) != (1,) or c.get('groups', 1) != 1:
        raise UnsupportedModel(f'{where}: dilation_rate {tuple(c.get("dilation_rate"))} / groups {c.get("groups", 1)}; '
                               "hls4ml's line buffer computes undilated, ungrouped windows: use dilation_rate=1, groups=1")
    if c['padding'] not in paddings:  # 'causal': hls4ml 1.3.0 pads only 'same'
        raise UnsupportedModel(f"{where}: padding {c['padding']!r}; hls4ml 1.3.0 builds " + ' or '.join(map(repr, paddings))
                               + " only: use one of them (a causal filter: give the sequences k - 1 leading zeros and use padding='valid')")
    w, ch = (int(d) for d in layer.input_shape[1:])
    k = int(c[window][0])
    s = int((c.get('strides') or c[window])[0])
    pads = (0, 0, *same_padding(w, k, s)) if c['padding'] == 'same' else (0, 0, 0, 0)
    return dict(in_shape=(1, w, ch), filt=(1, k), strides=(1, s), pads=pads)


def _refuse_po2_conv(layer):
    if _quantizer_name(layer.kernel_quantizer_internal) in QDENSE_KERNELS:
        raise UnsupportedModel(f"layer '{layer.name}' kernel: quantized_po2 convolutions are not supported; use "
                               'quantized_bits(bits, integer, alpha=1)')


@exporter('QConv1D')  # takes (width, channels): io_stream
def export_qconv1d(layer, in_t, ov):
    """QConv1D -> hls4ml's Conv1D: the kernel as a (k * C, F) matrix applied to every window."""
    geometry = _window_geometry(layer, 'kernel_size')
    _refuse_po2_conv(layer)
    kw, w_codes = _dense_types(layer, in_t, ov)
    return _dense_or_found(layer, w_codes, geometry, kw, ov, Conv1D, BlockSparseConv1D)


@exporter('BlockSparseQConv1D')
def export_block_sparse_qconv1d(layer, in_t, ov):
    """BlockSparseQConv1D: as BlockSparseQConv2D with one row of taps."""
    return _block_sparse_conv(layer, in_t, ov, BlockSparseConv1D)


@exporter('QConv2D')  # takes (height, width, channels): io_stream
def export_qconv2d(layer, in_t, ov):
    """QConv2D -> hls4ml's Conv2D: the kernel as a (kh * kw * C, F) matrix applied to every patch."""
    geometry = _window_geometry(layer, 'kernel_size')
    _refuse_po2_conv(layer)
    kw, w_codes = _dense_types(layer, in_t, ov)
    return _dense_or_found(layer, w_codes, geometry, kw, ov, Conv2D, BlockSparseConv2D)


def _dense_or_found(layer, w_codes, geometry, kw, ov, dense_cls, sparse_cls):
    """hls4ml's convolution, or, when whole (input x output) channel blocks of the quantized kernel are zero
    at every kernel position (pruned by another tool), the block-sparse convolution with the blocks found
    (``flow/export/found.py`` on the channels' non-zeros, each kept block costing its weights at every
    position and its index once, as ``BlockSparseConv2D.storage`` counts); the deploy rewrite below hands
    hls4ml the matching BlockSparseQConv2D/1D."""
    positions = geometry['filt'][0] * geometry['filt'][1]
    matrix = w_codes.reshape(-1, layer.filters)
    n_chan, n_out = matrix.shape[0] // positions, layer.filters
    channels = (matrix.reshape(positions, n_chan, n_out) != 0).any(axis=0).astype(np.int64)
    found = None if auto_po2(layer) else _found_blocks(layer, channels, kw['weight_type'].width * positions, ov)
    if found is None or not found.worth_it:
        report = found is not None and found.n_m is not None
        return dense_cls(name=layer.name, weight=matrix, found=found.summary(n_chan, n_out) if report else None,
                         **geometry, **kw)
    values, index, k = pack_blocks(matrix, np.tile(found.mask, (positions, 1)), found.block)
    return sparse_cls(name=layer.name, n_in=matrix.shape[0], n_out=n_out, block=found.block, kept_per_row=k, values=values,
                      index=index, found=found.summary(n_chan, n_out), **geometry, **kw)


@deploy_rewrite('QConv2D', 'QConv1D')
def qconv_as_block_sparse(layer, ref):
    """A QConv2D/QConv1D exported block-sparse -> BlockSparseQConv2D/1D with its config, weights and the
    found channel mask; an auto_po2 kernel -> its exact values (``exact_values_copy``); None when it
    stays as it is."""
    if not isinstance(ref, (BlockSparseConv1D, BlockSparseConv2D)):
        return exact_values_copy(layer, ref)
    from keras_models.conv import BlockSparseQConv1D, BlockSparseQConv2D

    cls = BlockSparseQConv1D if isinstance(ref, BlockSparseConv1D) else BlockSparseQConv2D
    mask = ref.block_mask()[: ref.in_shape[2] // ref.block[0]]  # every kernel position repeats it
    return block_sparse_copy(layer, cls, ref.block, mask)


@exporter('BlockSparseQConv2D')
def export_block_sparse_qconv2d(layer, in_t, ov):
    """BlockSparseQConv2D: the (kh * kw * C, F) matrix is block-sparse with the channel mask
    repeated for every kernel position; packed like a BlockSparseQDense kernel."""
    return _block_sparse_conv(layer, in_t, ov, BlockSparseConv2D)


def _block_sparse_conv(layer, in_t, ov, cls):
    from keras_models.masks import expand

    geometry = _window_geometry(layer, 'kernel_size')
    _refuse_po2_block_sparse(layer)
    block_mask = layer.get_block_mask()
    mask = expand(block_mask, layer.block_shape)
    kw, w_codes = _dense_types(layer, in_t, ov, kernel=_sparse_kernel, element_mask=mask.reshape((1,) * (len(layer.kernel.shape) - 2) + mask.shape))
    positions = geometry['filt'][0] * geometry['filt'][1]
    fields = _block_sparse_fields(layer, w_codes.reshape(-1, layer.filters), np.tile(block_mask, (positions, 1)))
    return cls(name=layer.name, **fields, **geometry, **kw)


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
