"""Pooling and shape layers in io_stream, channels last: AveragePooling1D/2D, MaxPooling1D,
GlobalAverage/GlobalMaxPooling1D/2D, ZeroPadding1D/2D, UpSampling1D/2D (nearest) and Reshape,
each as hls4ml 1.3.0 converts it (MaxPooling2D: conv.py)."""

from __future__ import annotations

import math

from flow.export.conv import _window_geometry
from flow.export.registry import UnsupportedModel, _no_override, _result, exporter
from flow.runtime.ref_conv import same_padding
from flow.runtime.ref_layers import Flatten
from flow.runtime.ref_pool import (AvgPool1D, AvgPool2D, GlobalAvgPool, GlobalMaxPool, MaxPool1D, Reshape, UpSample,
                                   ZeroPad, avg_types)


def _where(layer) -> str:
    return f"layer '{layer.name}' ({type(layer).__name__})"


def _channels_last(layer) -> None:
    fmt = layer.get_config().get('data_format') or 'channels_last'
    if fmt != 'channels_last':
        raise UnsupportedModel(f"{_where(layer)}: data_format {fmt!r}; the accelerator streams pixels with their channels "
                               "last: use data_format='channels_last'")


def _pool_geometry(layer) -> dict:
    """PatchGeometry of a pooling layer, 1-D as a one-row image: hls4ml's io_stream pooling asserts
    no padding and windows that do not overlap."""
    c = layer.get_config()
    if len(layer.input_shape) == 3:  # 1-D: (steps, channels)
        _channels_last(layer)
        _, w, ch = (int(d) if d else d for d in layer.input_shape)
        k = int(c['pool_size'][0])
        s = int((c.get('strides') or c['pool_size'])[0])
        pads = (0, 0) if c['padding'] == 'valid' else same_padding(w, k, s)
        geometry = dict(in_shape=(1, w, ch), filt=(1, k), strides=(1, s), pads=(0, 0) + pads)
    else:
        geometry = _window_geometry(layer, 'pool_size')
    one_d = len(layer.input_shape) == 3
    if any(geometry['pads']):
        pads = geometry['pads'][2:] if one_d else geometry['pads']
        raise UnsupportedModel(f"{_where(layer)}: padding 'same' pads this input by {pads}; "
                               "hls4ml's io_stream pooling takes no padding (and would count zeros where Keras ignores the "
                               "border): use padding='valid', or an input size divisible by the pool size")
    if geometry['strides'] != geometry['filt']:
        strides = geometry['strides'][1:] if one_d else geometry['strides']
        raise UnsupportedModel(f"{_where(layer)}: strides {strides} differ from pool_size "
                               f"{tuple(c['pool_size'])}; hls4ml's io_stream pooling takes non-overlapping windows only: use "
                               'strides=None (the pool size)')
    return geometry


@exporter('AveragePooling2D', 'AveragePooling1D')
def export_avgpool(layer, in_t, ov):
    """AveragePooling1D/2D -> hls4ml's Pooling1D/2D (average): the window's sum in accum_t divided
    by its size, truncated toward zero; by default exact for windows of 2^k values (accum and
    result keep k more fraction bits)."""
    _no_override(layer, ov, 'accum', "the accumulator is chosen to hold every window's sum exactly")
    geometry = _pool_geometry(layer)
    accum, out = avg_types(in_t, geometry['filt'][0] * geometry['filt'][1])
    cls = AvgPool1D if len(layer.input_shape) == 3 else AvgPool2D
    return cls(name=layer.name, out_type=_result(ov) or out, accum_type=accum, **geometry)


@exporter('MaxPooling1D')
def export_maxpool1d(layer, in_t, ov):
    """MaxPooling1D -> hls4ml's Pooling1D (max): exact in the input's type."""
    _no_override(layer, ov, 'result', 'the largest input is exact in the input type')
    _no_override(layer, ov, 'accum', 'hls4ml compares the inputs in the input type')
    return MaxPool1D(name=layer.name, out_type=in_t, **_pool_geometry(layer))


def _global_shape(layer) -> tuple:
    _channels_last(layer)
    return tuple(int(d) for d in layer.input_shape[1:])


@exporter('GlobalAveragePooling2D', 'GlobalAveragePooling1D')
def export_global_avgpool(layer, in_t, ov):
    """GlobalAveragePooling1D/2D -> hls4ml's GlobalPooling1D/2D (average): per channel the sum over
    every pixel divided by their count, truncated toward zero (exact for a count of 2^k)."""
    _no_override(layer, ov, 'accum', "the accumulator is chosen to hold every channel's sum exactly")
    shape = _global_shape(layer)
    accum, out = avg_types(in_t, math.prod(shape[:-1]))
    return GlobalAvgPool(name=layer.name, out_type=_result(ov) or out, accum_type=accum, in_shape=shape,
                         keepdims=bool(layer.get_config().get('keepdims', False)))


@exporter('GlobalMaxPooling2D', 'GlobalMaxPooling1D')
def export_global_maxpool(layer, in_t, ov):
    """GlobalMaxPooling1D/2D -> hls4ml's GlobalPooling1D/2D (max): exact in the input's type."""
    _no_override(layer, ov, 'result', 'the largest input is exact in the input type')
    _no_override(layer, ov, 'accum', 'hls4ml compares the inputs in the input type')
    return GlobalMaxPool(name=layer.name, out_type=in_t, accum_type=in_t, in_shape=_global_shape(layer),
                         keepdims=bool(layer.get_config().get('keepdims', False)))


def _no_cast(layer, ov) -> None:
    _no_override(layer, ov, 'result', 'it passes codes on in the input type')
    _no_override(layer, ov, 'accum', 'it computes nothing')


@exporter('ZeroPadding2D', 'ZeroPadding1D')
def export_zeropad(layer, in_t, ov):
    """ZeroPadding1D/2D -> hls4ml's ZeroPadding1D/2D: zeros streamed around the input."""
    _no_cast(layer, ov)
    shape = _global_shape(layer)
    p = layer.get_config()['padding']  # Keras keeps ((top, bottom), (left, right)) / (left, right)
    pads = tuple(int(v) for pair in p for v in pair) if len(shape) == 3 else tuple(int(v) for v in p)
    return ZeroPad(name=layer.name, out_type=in_t, in_shape=shape, pads=pads)


@exporter('UpSampling2D', 'UpSampling1D')
def export_upsample(layer, in_t, ov):
    """UpSampling1D/2D -> hls4ml's Resize (nearest): every pixel repeated."""
    _no_cast(layer, ov)
    c = layer.get_config()
    if c.get('interpolation', 'nearest') != 'nearest':
        raise UnsupportedModel(f"{_where(layer)}: interpolation {c['interpolation']!r}; hls4ml's io_stream resize "
                               "repeats pixels only: use interpolation='nearest'")
    shape = _global_shape(layer)
    size = tuple(int(v) for v in c['size']) if len(shape) == 3 else (int(c['size']),)
    return UpSample(name=layer.name, out_type=in_t, in_shape=shape, size=size)


@exporter('Reshape')
def export_reshape(layer, in_t, ov):
    """Reshape: to one axis, a Flatten; to more, the same codes regrouped (hls4ml's repack_stream in
    io_stream), where the stream's words can be regrouped: the input's last axis and the new last
    axis divide one another."""
    _no_cast(layer, ov)
    in_shape = tuple(int(d) for d in layer.input_shape[1:])
    shape = tuple(int(d) for d in layer.output_shape[1:])
    if len(shape) == 1:
        return Flatten(name=layer.name, out_type=in_t)
    before = [type(n.inbound_layers).__name__ for n in layer.inbound_nodes if not isinstance(n.inbound_layers, list)]
    if set(before) & {'Flatten', 'Reshape'}:
        raise UnsupportedModel(f"{_where(layer)}: a Reshape right after a {before[0]}; hls4ml regroups the stream's words "
                               'of the tensor before that one: merge the two into one Reshape')
    a, b = in_shape[-1], shape[-1]
    if a % b and b % a:
        raise UnsupportedModel(f"{_where(layer)}: {in_shape} -> {shape}; hls4ml's io_stream regroups words of {a} values "
                               f'into words of {b} (repack_stream), which needs one to divide the other: choose a target '
                               f'shape whose last axis divides {a} or is a multiple of it')
    return Reshape(name=layer.name, out_type=in_t, in_shape=in_shape, shape=shape)
