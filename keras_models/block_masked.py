"""The fixed block mask shared by the block-sparse layers (dense, conv), and a QDense's tail."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from .masks import make_hierarchical_mask


def bias_and_activation(layer, output):
    """A QDense's tail: the quantized bias, then the activation (as QDense.call does)."""
    if layer.use_bias:
        bias = layer.bias_quantizer_internal(layer.bias) if layer.bias_quantizer else layer.bias
        output = tf.keras.backend.bias_add(output, bias, data_format='channels_last')
    return output if layer.activation is None else layer.activation(output)


class _ZeroDroppedBlocks(tf.keras.constraints.Constraint):
    """Applies the layer's other kernel constraint, then zeroes the dropped blocks. Keras runs it
    after every optimizer step, so dropped weights stay exactly 0.0 (they never train)."""

    def __init__(self, inner, layer):
        self.inner, self.layer = inner, layer

    def __call__(self, w):
        if self.inner is not None:
            w = self.inner(w)
        return w * self.layer.element_mask()


class BlockMasked:
    """The fixed block mask shared by BlockSparseQDense and BlockSparseQConv2D: its settings, the
    non-trainable weight that saves it with the model, the kernel constraint that keeps dropped
    weights at 0.0, and its config. ``levels`` (HCGS): [(block, drop), ...] coarsest first; the last
    level is ``block_shape``/``drop_rate`` (one level: CGS)."""

    def _init_block_mask(self, block_shape, drop_rate, mask_method, mask_seed, levels):
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

    def _add_block_mask(self, shape: tuple[int, int]) -> None:
        """Draw the mask over the (n_in, n_out) kernel matrix and store it as a weight."""
        mask = make_hierarchical_mask(self.mask_method, self.name, shape, self.levels, self.mask_seed)
        self.block_mask = self.add_weight(name='block_mask', shape=mask.shape, trainable=False, dtype='float32',
                                          initializer=tf.keras.initializers.Constant(mask.astype(np.float32)))

    def _element_mask_2d(self):
        """(n_in, n_out): the block mask expanded to elements (the kernel matrix's in x out axes)."""
        bi, bo = self.block_shape
        return tf.repeat(tf.repeat(self.block_mask, bi, axis=0), bo, axis=1)

    def get_config(self):
        config = super().get_config()
        config['kernel_constraint'] = tf.keras.constraints.serialize(self._user_kernel_constraint)
        config.update(block_shape=list(self.block_shape), drop_rate=self.drop_rate, mask_method=self.mask_method,
                      mask_seed=self.mask_seed,
                      levels=[[list(b), d] for b, d in self.levels] if len(self.levels) > 1 else None)
        return config

    def get_block_mask(self) -> np.ndarray:
        return self.block_mask.numpy().astype(bool)
