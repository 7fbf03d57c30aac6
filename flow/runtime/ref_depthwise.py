"""Reference for depthwise convolutions (hls4ml's DepthwiseConv2D / DepthwiseConv1D, io_stream).

Each channel has its own (kh, kw) filter: out[c] = cast(bias[c] + sum over the window of x[., ., c] * w[., ., c]).
hls4ml's kernel (DepthwiseDenseLatency) casts each product to accum_t and sums per channel; with the
exact accumulator the reference sizes, that is the exact sum. A separable convolution is, in hls4ml
1.3.0, this layer followed by a 1x1 Conv (its SeparableToDepthwiseAndConv pass splits the node).
numpy only (runs on the board).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .ref_conv import Convolution, OneDimensional
from .ref_layers import LATENCY, Dense, HlsWeight, ReuseFactors, register_kind


@register_kind
@dataclass
class DepthwiseConv2D(Convolution, Dense):
    """``weight``: the (kh * kw, C) codes, column c the filter of channel c (depth_multiplier 1)."""

    kind = 'depthwise_conv2d'
    strategies = (LATENCY,)  # hls4ml's DepthwiseDenseLatency (its Resource variants transpose the weights)

    def forward(self, x, in_type):
        pf = self._check_accum(in_type)
        p = self.windows(x)  # (n, oh, ow, kh, kw, C)
        n, oh, ow = p.shape[:3]
        s = (p.reshape(n, oh, ow, self.positions, -1) * self.weight.astype(np.int64)).sum(axis=3)
        return self._finish(s, pf)

    def dense_weight(self):
        """The (kh * kw * C, C) matrix of the patch product: each channel's taps on the diagonal."""
        positions, c = self.weight.shape
        w = np.zeros((positions, c, c), dtype=np.int64)
        w[:, np.arange(c), np.arange(c)] = self.weight
        return w.reshape(positions * c, c)

    def reuse_factors(self, strategy):
        n = self.weight.size
        return ReuseFactors(range(1, n + 1), f'its {n} products (one per tap and channel)')

    def hls_weights(self, rf):
        # hls4ml's depthwise weight is the Keras (kh, kw, C, 1) kernel, flattened in that order
        return {'weight': HlsWeight(self.weight, self.weight_type), 'bias': HlsWeight(self.bias, self.bias_type)}

    def storage(self):
        positions, c = self.weight.shape  # every tap of every channel's filter
        return {'shape': [positions, c], 'kept_weights': positions * c, 'weight_bits': positions * c * self.weight_code_bits,
                'index_bits': 0, 'bias_bits': c * self.bias_type.width}


@register_kind
@dataclass
class DepthwiseConv1D(OneDimensional, DepthwiseConv2D):
    """hls4ml's DepthwiseConv1D (the depthwise half of a SeparableConv1D): ``weight`` (k, C)."""

    kind = 'depthwise_conv1d'
