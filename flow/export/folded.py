"""QKeras' convolutions with batch normalization folded in: QConv2DBatchnorm and
QDepthwiseConv2DBatchnorm, at inference exactly as QKeras computes them (both ``folding_mode``s use
the moving statistics once not training): inv = gamma * rsqrt(moving_variance + epsilon) in float32,
kernel' = kernel_quantizer(inv * kernel), bias' = bias_quantizer(inv * (bias - moving_mean) + beta)
(``get_folded_weights``, the same TensorFlow ops as ``call``). The reference is the plain convolution
with those quantized values, and hls4ml is handed a QConv2D / QDepthwiseConv2D holding them (a deploy
rewrite): its own Conv2DBatchnorm folds in numpy (1/sqrt, not TensorFlow's rsqrt), which can land a
weight on the other side of a rounding boundary."""

from __future__ import annotations

import numpy as np

from flow.export.conv import _refuse_po2_conv, _window_geometry
from flow.export.dense import _dense_types
from flow.export.depthwise import depthwise_kernel, depthwise_reference
from flow.export.quantizers import weight_type
from flow.export.registry import deploy_rewrite, exporter
from flow.runtime.ref_conv import Conv2D


def _folded(layer):
    """The folded (kernel, bias) as QKeras computes them, before quantization (float32)."""
    kernel, bias = layer.get_folded_weights()
    return np.asarray(kernel), np.asarray(bias)


@exporter('QConv2DBatchnorm')
def export_qconv2d_batchnorm(layer, in_t, ov):
    """-> hls4ml's Conv2D with the folded, quantized kernel and bias."""
    geometry = _window_geometry(layer, 'kernel_size')
    _refuse_po2_conv(layer)
    kernel, bias = _folded(layer)

    def folded_kernel(layer, where):
        q = layer.kernel_quantizer_internal
        return weight_type(q, f'{where} (folded with its batch normalization)'), np.asarray(q(kernel)), {}

    kw, w_codes = _dense_types(layer, in_t, ov, kernel=folded_kernel, bias=bias)
    return Conv2D(name=layer.name, weight=w_codes.reshape(-1, layer.filters), **geometry, **kw)


@exporter('QDepthwiseConv2DBatchnorm')
def export_qdepthwise_conv2d_batchnorm(layer, in_t, ov):
    """-> hls4ml's DepthwiseConv2D with the folded, quantized kernel and bias."""
    kernel, bias = _folded(layer)
    return depthwise_reference(layer, in_t, ov, kernel=depthwise_kernel(kernel), bias=bias)


def _plain_layer(layer, cls, ref, kernel_attr: str):
    """``cls`` (QConv2D / QDepthwiseConv2D) with ``layer``'s convolution settings, a bias, and the
    reference's quantized folded weights (on the quantizers' grids: quantizing them again is the identity)."""
    import inspect

    keep = set(inspect.signature(cls.__init__).parameters) | {'name', 'trainable', 'dtype', 'groups'}  # not the batch norm's
    config = {k: v for k, v in layer.get_config().items() if k in keep}
    config['use_bias'] = True
    new = cls.from_config(config)
    kernel = ref.weight_type.to_float(ref.weight).reshape(getattr(layer, kernel_attr).shape)
    bias = ref.bias_type.to_float(ref.bias)

    def load():
        getattr(new, kernel_attr).assign(kernel.astype(np.float32))
        new.bias.assign(bias.astype(np.float32))

    return new, load


@deploy_rewrite('QConv2DBatchnorm')
def qconv2d_batchnorm_as_qconv2d(layer, ref):
    from qkeras import QConv2D

    return _plain_layer(layer, QConv2D, ref, 'kernel')


@deploy_rewrite('QDepthwiseConv2DBatchnorm')
def qdepthwise_batchnorm_as_qdepthwise(layer, ref):
    from qkeras import QDepthwiseConv2D

    return _plain_layer(layer, QDepthwiseConv2D, ref, 'depthwise_kernel')
