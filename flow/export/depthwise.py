"""Depthwise and depthwise-separable convolutions, channels last, io_stream: QDepthwiseConv2D ->
hls4ml's DepthwiseConv2D; QSeparableConv2D / QSeparableConv1D -> the two nodes hls4ml 1.3.0 splits
them into (SeparableToDepthwiseAndConv): '<name>_depthwise' (no bias) and '<name>_pointwise' (a 1x1
Conv with the layer's bias). QKeras does not quantize between the two, so the depthwise result type
is its exact accumulator: the pair computes what QKeras computes."""

from __future__ import annotations

import numpy as np

from flow.export.conv import _window_geometry
from flow.export.dense import _dense_types
from flow.export.quantizers import weight_type
from flow.export.registry import Overrides, UnsupportedModel, _no_override, exporter
from flow.runtime.ref_conv import Conv1D, Conv2D
from flow.runtime.ref_depthwise import DepthwiseConv1D, DepthwiseConv2D


def _quantized(q, values, where):
    """A kernel quantized by ``q`` (quantized_bits, else refused): its type and values."""
    w_t = weight_type(q, where)
    return w_t, np.asarray(q(values))


def depthwise_kernel(values=None):
    """``_dense_types``'s kernel function for a depthwise kernel (``values``: folded ones, else the layer's)."""
    def kernel(layer, where):
        v = layer.depthwise_kernel.numpy() if values is None else values
        w_t, q = _quantized(layer.depthwise_quantizer_internal, v, where.replace('kernel', 'depthwise kernel'))
        return w_t, q.reshape(q.shape[:-2] + (-1,)), {}  # (..., C, 1) -> (..., C): channel c's taps, depth_multiplier 1
    return kernel


def _pointwise_kernel(layer, where):
    return (*_quantized(layer.pointwise_quantizer_internal, layer.pointwise_kernel.numpy(),
                        where.replace('kernel', 'pointwise kernel')), {})


def _refuse_depth_multiplier(layer):
    if int(layer.get_config().get('depth_multiplier', 1)) != 1:
        raise UnsupportedModel(f"layer '{layer.name}' ({type(layer).__name__}): depth_multiplier "
                               f"{layer.get_config()['depth_multiplier']}; hls4ml 1.3.0's io_stream depthwise convolution "
                               'takes depth_multiplier=1 only: use 1 (and a 1x1 QConv2D for more channels)')


def depthwise_reference(layer, in_t, ov, kernel=None, bias=True, name=None):
    """The DepthwiseConv2D/1D reference of a depthwise(-separable) layer's depthwise half."""
    geometry = _window_geometry(layer, 'kernel_size')
    _refuse_depth_multiplier(layer)
    kw, w_codes = _dense_types(layer, in_t, ov, kernel=kernel or depthwise_kernel(), bias=bias)
    cls = DepthwiseConv1D if len(layer.input_shape) == 3 else DepthwiseConv2D
    return cls(name=name or layer.name, weight=w_codes.reshape(-1, w_codes.shape[-1]), **geometry, **kw)


@exporter('QDepthwiseConv2D')
def export_qdepthwise_conv2d(layer, in_t, ov):
    """QDepthwiseConv2D -> hls4ml's DepthwiseConv2D (one (kh, kw) filter per channel)."""
    return depthwise_reference(layer, in_t, ov)


@exporter('QSeparableConv2D', 'QSeparableConv1D')
def export_qseparable_conv(layer, in_t, ov):
    """hls4ml's two nodes: the depthwise half (no bias, result = its exact sum) and the 1x1 pointwise
    convolution with the bias (result: the exact sum, or the layer's ``result``)."""
    _no_override(layer, ov, 'accum', 'it is two hls4ml nodes, each with its exact accumulator')
    dw = depthwise_reference(layer, in_t, Overrides(), bias=False, name=f'{layer.name}_depthwise')
    (h, w), c = dw.out_hw, dw.weight.shape[1]
    pw_kw, pw_codes = _dense_types(layer, dw.out_type, ov, kernel=_pointwise_kernel)
    cls = Conv1D if isinstance(dw, DepthwiseConv1D) else Conv2D
    pw = cls(name=f'{layer.name}_pointwise', weight=pw_codes.reshape(-1, pw_codes.shape[-1]), in_shape=(h, w, c),
             filt=(1, 1), strides=(1, 1), pads=(0, 0, 0, 0), **pw_kw)
    return [dw, pw]
