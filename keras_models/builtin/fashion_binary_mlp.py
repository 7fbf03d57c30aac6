"""Fashion-MNIST with binary weights and CGS block sparsity (METHODS.md section 4): 784-128-64-10.

The hidden layers' kernels are QKeras ``binary`` (+-alpha, alpha a fixed power of two, so the
deployed weights are codes -1/0/+1 of an exact 2-bit type whose step is alpha) with half of their
8x8 blocks dropped (CGS: 8 of 16 output blocks kept per input block-row). The mask is applied
after the quantizer: ``binary`` maps 0 to +alpha, the dropped weights must stay 0. The 64x10 output
layer keeps 6-bit weights (the usual higher-precision last layer of a binary network).
"""

from __future__ import annotations

import tensorflow as tf
from qkeras import QActivation, QDense, binary, quantized_bits, quantized_relu

from keras_models.layers import BlockSparseQDense

DATASET = 'fashion_mnist'
INPUT_PRECISION = 'ap_fixed<9,1>'  # pixels k/256, k = 0..255: exactly on this grid
# PYNQ-Z2 (220 DSPs): 64 + 32 multipliers for the binary layers (50176 and 4096 kept weights over
# 784 and 128 cycles), 80 for hls4ml's Resource Dense: 176 (estimate step); 3-4 s an epoch here.
FLOW_DEFAULTS = {
    'input_precision': INPUT_PRECISION,
    'epochs': 20,  # warm-up + cosine, no distillation (bench_fashion_methods, 3 seeds)
    'distill': False,  # over 3 seeds distillation (T 4, alpha 0.5) cost these MLPs 0.1-0.9 points
    'batch_size': 128,
    'learning_rate': 3e-3,
    'rtl': False,  # da4ml's shift-add RTL of the 784x128 layer ran > 12 min here; `rtl: true` in a config turns it on
    'layers': {'fc1': {'reuse_factor': 784}, 'fc2': {'reuse_factor': 128}, 'logits': {'reuse_factor': 8, 'strategy': 'resource'}},
}


def build(seed: int = 0, block_shape=(8, 8), drop_rate: float = 0.5) -> tf.keras.Model:
    """alpha scales each layer so its pre-activations span quantized_relu(6, 2)'s [0, 4): 2^-3 for
    about 392 kept inputs in [0, 1), 2^-4 for 64 kept inputs in [0, 4)."""
    bq = quantized_bits(8, 3, alpha=1)
    inp = tf.keras.Input(shape=(784,), name='pixels')
    x = BlockSparseQDense(128, block_shape=block_shape, drop_rate=drop_rate, mask_seed=seed * 100 + 1,
                          kernel_quantizer=binary(alpha=2**-3), bias_quantizer=bq, name='fc1')(inp)
    x = QActivation(quantized_relu(6, 2), name='relu1')(x)
    x = BlockSparseQDense(64, block_shape=block_shape, drop_rate=drop_rate, mask_seed=seed * 100 + 2,
                          kernel_quantizer=binary(alpha=2**-4), bias_quantizer=bq, name='fc2')(x)
    x = QActivation(quantized_relu(6, 2), name='relu2')(x)
    out = QDense(10, kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=bq, name='logits')(x)
    return tf.keras.Model(inp, out, name='fashion_binary_mlp')
