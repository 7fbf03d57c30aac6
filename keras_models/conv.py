"""QConv2D and QConv1D with a fixed block mask over (input channels x output channels)."""

from __future__ import annotations

import tensorflow as tf
from qkeras import QConv1D, QConv2D

from .block_masked import BlockMasked


class BlockSparseQConv2D(BlockMasked, QConv2D):
    """QConv2D whose kernel (kh, kw, C_in, C_out) keeps only the blocks of a fixed random mask over
    (C_in / block_in x C_out / block_out) channel blocks, the same mask at every kernel position.

    Per pixel a convolution is a dense product of the (kh * kw * C_in) patch with the kernel seen
    as a (kh * kw * C_in, C_out) matrix; this mask makes that matrix block-sparse with the channel
    mask repeated for every kernel position, so the flow deploys it with the block-sparse dense
    kernel (one stored channel index serves all kernel positions). The mask comes from the same
    registry as BlockSparseQDense (``mask_method``: 'cgs', 'cgs_balanced', 'rows' = whole input
    channels, 'columns' = whole filters, which then cost no multiplier; ``levels`` for HCGS), is
    drawn once from ``mask_seed`` at build, saved as a non-trainable weight, applied after the
    kernel quantizer and re-applied after every optimizer step (the kernel constraint).
    """

    def __init__(self, filters, kernel_size, block_shape=(4, 4), drop_rate=0.5, mask_method='cgs', mask_seed=0,
                 levels=None, **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        self._init_block_mask(block_shape, drop_rate, mask_method, mask_seed, levels)

    def build(self, input_shape):
        if self.data_format != 'channels_last':
            raise ValueError(f"layer '{self.name}': data_format {self.data_format!r}; the flow streams pixels with their "
                             "channels last, use data_format='channels_last'")
        self._add_block_mask((int(input_shape[-1]), self.filters))
        super().build(input_shape)
        self.kernel.assign(self.kernel * self.element_mask())

    def element_mask(self):
        """(1, 1, C_in, C_out): the channel mask, broadcast over the kernel positions."""
        return self._element_mask_2d()[None, None]

    def call(self, inputs):
        kernel = self.kernel_quantizer_internal(self.kernel) if self.kernel_quantizer else self.kernel
        outputs = tf.keras.backend.conv2d(inputs, kernel * self.element_mask(), strides=self.strides, padding=self.padding,
                                          data_format=self.data_format, dilation_rate=self.dilation_rate)
        if self.use_bias:
            bias = self.bias_quantizer_internal(self.bias) if self.bias_quantizer else self.bias
            outputs = tf.keras.backend.bias_add(outputs, bias, data_format=self.data_format)
        return outputs if self.activation is None else self.activation(outputs)


class BlockSparseQConv1D(BlockMasked, QConv1D):
    """QConv1D whose kernel (k, C_in, C_out) keeps only the blocks of a fixed mask over
    (C_in / block_in x C_out / block_out) channel blocks, the same mask at every tap: BlockSparseQConv2D
    for sequences (same masks, ``mask_method``, ``levels``, seed, and kernel constraint)."""

    def __init__(self, filters, kernel_size, block_shape=(4, 4), drop_rate=0.5, mask_method='cgs', mask_seed=0,
                 levels=None, **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        self._init_block_mask(block_shape, drop_rate, mask_method, mask_seed, levels)

    def build(self, input_shape):
        if self.data_format != 'channels_last':
            raise ValueError(f"layer '{self.name}': data_format {self.data_format!r}; the flow streams positions with their "
                             "channels last, use data_format='channels_last'")
        self._add_block_mask((int(input_shape[-1]), self.filters))
        super().build(input_shape)
        self.kernel.assign(self.kernel * self.element_mask())

    def element_mask(self):
        """(1, C_in, C_out): the channel mask, broadcast over the taps."""
        return self._element_mask_2d()[None]

    def call(self, inputs):
        kernel = self.kernel_quantizer_internal(self.kernel) if self.kernel_quantizer else self.kernel
        outputs = tf.keras.backend.conv1d(inputs, kernel * self.element_mask(), strides=self.strides[0],
                                          padding=self.padding, data_format=self.data_format,
                                          dilation_rate=self.dilation_rate[0])
        if self.use_bias:
            bias = self.bias_quantizer_internal(self.bias) if self.bias_quantizer else self.bias
            outputs = tf.keras.backend.bias_add(outputs, bias, data_format=self.data_format)
        return outputs if self.activation is None else self.activation(outputs)
