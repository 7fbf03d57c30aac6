"""QConv2D with a fixed block mask over (input channels x output channels)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from qkeras import QConv2D

from .layers import _ZeroDroppedBlocks
from .masks import make_hierarchical_mask


class BlockSparseQConv2D(QConv2D):
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
        if levels:
            levels = [(tuple(int(b) for b in blk), float(d)) for blk, d in levels]
            block_shape, drop_rate = levels[-1]
        self.block_shape = tuple(int(b) for b in block_shape)
        self.drop_rate = float(drop_rate)
        self.levels = levels or [(self.block_shape, self.drop_rate)]
        self.mask_method = mask_method
        self.mask_seed = int(mask_seed)
        self._user_kernel_constraint = self.kernel_constraint
        self.kernel_constraint = _ZeroDroppedBlocks(self.kernel_constraint, self)

    def build(self, input_shape):
        if self.data_format != 'channels_last':
            raise ValueError(f"layer '{self.name}': data_format {self.data_format!r}; the flow streams pixels with their "
                             "channels last, use data_format='channels_last'")
        n_in = int(input_shape[-1])
        mask = make_hierarchical_mask(self.mask_method, self.name, (n_in, self.filters), self.levels, self.mask_seed)
        self.block_mask = self.add_weight(name='block_mask', shape=mask.shape, trainable=False, dtype='float32',
                                          initializer=tf.keras.initializers.Constant(mask.astype(np.float32)))
        super().build(input_shape)
        self.kernel.assign(self.kernel * self.element_mask())

    def element_mask(self):
        """(1, 1, C_in, C_out): the channel mask, broadcast over the kernel positions."""
        bi, bo = self.block_shape
        return tf.repeat(tf.repeat(self.block_mask, bi, axis=0), bo, axis=1)[None, None]

    def call(self, inputs):
        kernel = self.kernel_quantizer_internal(self.kernel) if self.kernel_quantizer else self.kernel
        outputs = tf.keras.backend.conv2d(inputs, kernel * self.element_mask(), strides=self.strides, padding=self.padding,
                                          data_format=self.data_format, dilation_rate=self.dilation_rate)
        if self.use_bias:
            bias = self.bias_quantizer_internal(self.bias) if self.bias_quantizer else self.bias
            outputs = tf.keras.backend.bias_add(outputs, bias, data_format=self.data_format)
        return outputs if self.activation is None else self.activation(outputs)

    def get_config(self):
        config = super().get_config()
        config['kernel_constraint'] = tf.keras.constraints.serialize(self._user_kernel_constraint)
        config.update(block_shape=list(self.block_shape), drop_rate=self.drop_rate, mask_method=self.mask_method,
                      mask_seed=self.mask_seed,
                      levels=[[list(b), d] for b, d in self.levels] if len(self.levels) > 1 else None)
        return config

    def get_block_mask(self) -> np.ndarray:
        return self.block_mask.numpy().astype(bool)
