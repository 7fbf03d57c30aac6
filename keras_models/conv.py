"""QConv2D and QConv1D with a fixed block mask over (input channels x output channels)."""

from __future__ import annotations

import tensorflow as tf
from qkeras import QConv1D, QConv2D

from .block_masked import BlockMasked, bias_and_activation


class _ChannelBlockMasked(BlockMasked):
    """A QKeras convolution whose kernel (taps..., C_in, C_out) keeps only the blocks of a fixed mask
    over (C_in / block_in x C_out / block_out) channel blocks, the same mask at every kernel position;
    a subclass says how it convolves (``_convolve``)."""

    def __init__(self, filters, kernel_size, block_shape=(4, 4), drop_rate=0.5, mask_method='cgs', mask_seed=0,
                 levels=None, **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        self._init_block_mask(block_shape, drop_rate, mask_method, mask_seed, levels)

    def build(self, input_shape):
        if self.data_format != 'channels_last':
            raise ValueError(f"layer '{self.name}': data_format {self.data_format!r}; the flow streams pixels (positions) "
                             "with their channels last, use data_format='channels_last'")
        self._add_block_mask((int(input_shape[-1]), self.filters))
        super().build(input_shape)
        self.kernel.assign(self.kernel * self.element_mask())

    def element_mask(self):
        """(1, ..., C_in, C_out): the channel mask, broadcast over the kernel positions."""
        return self._element_mask_2d()[(None,) * len(self.kernel_size)]

    def call(self, inputs):
        kernel = self.kernel_quantizer_internal(self.kernel) if self.kernel_quantizer else self.kernel
        return bias_and_activation(self, self._convolve(inputs, kernel * self.element_mask()))


class BlockSparseQConv2D(_ChannelBlockMasked, QConv2D):
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

    def _convolve(self, inputs, kernel):
        return tf.keras.backend.conv2d(inputs, kernel, strides=self.strides, padding=self.padding,
                                       data_format=self.data_format, dilation_rate=self.dilation_rate)


class BlockSparseQConv1D(_ChannelBlockMasked, QConv1D):
    """QConv1D whose kernel (k, C_in, C_out) keeps only the blocks of a fixed mask over
    (C_in / block_in x C_out / block_out) channel blocks, the same mask at every tap: BlockSparseQConv2D
    for sequences (same masks, ``mask_method``, ``levels``, seed, and kernel constraint)."""

    def _convolve(self, inputs, kernel):
        return tf.keras.backend.conv1d(inputs, kernel, strides=self.strides[0], padding=self.padding,
                                       data_format=self.data_format, dilation_rate=self.dilation_rate[0])
