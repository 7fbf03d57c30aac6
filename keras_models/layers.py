"""QKeras layers with fixed block-sparse masks."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from qkeras import QDense
from qkeras.utils import _add_supported_quantized_objects

from .block_masked import BlockMasked, bias_and_activation  # noqa: F401  (re-exported)

try:  # the flow hides TensorFlow/Keras warnings unless --verbose
    from flow.infra.quiet import quiet_python

    quiet_python()
except ImportError:
    pass


class BlockSparseQDense(BlockMasked, QDense):
    """QDense whose kernel is restricted to a fixed random block mask.

    The block mask (n_in/block_in x n_out/block_out) is drawn once from ``mask_seed`` when the
    layer is built and stored as a non-trainable weight, so a saved model carries the exact mask.
    The mask is applied after the kernel quantizer: a quantizer may map 0 to a non-zero code
    (QKeras ``binary`` maps 0 to +1), and the hardware must see exact zeros in dropped blocks.
    Kernels: ``quantized_bits``, ``binary`` or ``ternary`` (alpha a fixed power of two; flow.export.quantizers).
    ``mask_method`` names a generator of keras_models.masks: 'cgs' (block-wise; element-wise with
    block_shape (1, 1)), 'cgs_balanced', 'rows' (whole inputs dropped), 'columns' (whole outputs).
    ``levels`` (HCGS): [(block, drop), ...] coarsest first, e.g. [((32, 32), 0.75), ((4, 4), 0.75)]
    for 16x; the last level is ``block_shape``/``drop_rate`` (one level: CGS). The stored mask is
    over the finest blocks (keras_models.masks.make_hierarchical_mask).
    """

    def __init__(self, units, block_shape=(8, 8), drop_rate=0.75, mask_method='cgs', mask_seed=0, levels=None, **kwargs):
        super().__init__(units, **kwargs)
        self._init_block_mask(block_shape, drop_rate, mask_method, mask_seed, levels)

    def build(self, input_shape):
        self._add_block_mask((int(input_shape[-1]), self.units))
        super().build(input_shape)
        self.kernel.assign(self.kernel * self.element_mask())

    def element_mask(self):
        return self._element_mask_2d()

    def call(self, inputs):
        kernel = self.kernel_quantizer_internal(self.kernel) if self.kernel_quantizer else self.kernel
        return bias_and_activation(self, tf.keras.backend.dot(inputs, kernel * self.element_mask()))


def custom_objects() -> dict:
    """Everything ``tf.keras.models.load_model`` needs for models of this project."""
    objects = {}
    _add_supported_quantized_objects(objects)
    objects['BlockSparseQDense'] = BlockSparseQDense
    from .quantizers import sign_magnitude
    from .sst import SSTQDense

    objects['sign_magnitude'] = sign_magnitude

    objects['SSTQDense'] = SSTQDense
    from .lstm import BlockSparseQLSTM

    objects['BlockSparseQLSTM'] = BlockSparseQLSTM
    from .conv import BlockSparseQConv1D, BlockSparseQConv2D

    objects['BlockSparseQConv2D'] = BlockSparseQConv2D
    objects['BlockSparseQConv1D'] = BlockSparseQConv1D
    return objects


def load_model(path):
    return tf.keras.models.load_model(path, custom_objects=custom_objects(), compile=False)
