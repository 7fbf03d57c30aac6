"""Fashion-MNIST with 3-bit weights and 8x structured compression (METHODS.md section 4, after
Yin et al.'s MNIST network: 3-bit weights, 8x structured compression): 784-128-64-10.

Every layer's kernel is ``quantized_bits(3, 0, alpha=1)`` (-1 .. 0.75 in steps of 1/4). The two
hidden layers keep 1/8 of their 4x4 blocks (CGS, drop 0.875: 4 of 32, and 2 of 16, output
blocks per input block-row), so they store 8x fewer weights than dense, plus one 3-bit or 4-bit
output-block index per 16 kept weights; the 64x10 output layer is dense. Against the dense
float32 network the weight memory shrinks about 70x (7.7x from sparsity over the whole net,
32/3 from precision), index bits included (reports/footprint).
"""

from __future__ import annotations

import tensorflow as tf
from qkeras import QActivation, QDense, quantized_bits, quantized_relu

from keras_models.layers import BlockSparseQDense

DATASET = 'fashion_mnist'
INPUT_PRECISION = 'ap_fixed<9,1>'  # pixels k/256, k = 0..255: exactly on this grid
# PYNQ-Z2: 64 + 64 multipliers for the sparse layers (12544 and 1024 kept weights over 196 and 16
# cycles), 80 for hls4ml's Resource Dense.
FLOW_DEFAULTS = {
    'input_precision': INPUT_PRECISION,
    'epochs': 20,  # warm-up + cosine, no distillation (bench_fashion_methods, 3 seeds)
    'distill': False,  # over 3 seeds distillation (T 4, alpha 0.5) cost these MLPs 0.1-0.9 points
    'batch_size': 128,
    'learning_rate': 3e-3,
    'rtl': False,  # da4ml's shift-add RTL of the 784x128 layer ran > 12 min here; `rtl: true` in a config turns it on
    'layers': {'fc1': {'reuse_factor': 196}, 'fc2': {'reuse_factor': 16}, 'logits': {'reuse_factor': 8, 'strategy': 'resource'}},
}


def build(seed: int = 0, block_shape=(4, 4), drop_rate: float = 0.875, weight_bits: int = 3) -> tf.keras.Model:
    """Latent kernels start uniform in [-0.5, 0.5]: Glorot's +-0.08 would all quantize to 0."""
    kq = quantized_bits(weight_bits, 0, alpha=1)
    bq = quantized_bits(8, 3, alpha=1)
    init = tf.keras.initializers.RandomUniform(-0.5, 0.5, seed=seed)
    inp = tf.keras.Input(shape=(784,), name='pixels')
    x = BlockSparseQDense(128, block_shape=block_shape, drop_rate=drop_rate, mask_seed=seed * 100 + 1,
                          kernel_quantizer=kq, bias_quantizer=bq, kernel_initializer=init, name='fc1')(inp)
    x = QActivation(quantized_relu(6, 2), name='relu1')(x)
    x = BlockSparseQDense(64, block_shape=block_shape, drop_rate=drop_rate, mask_seed=seed * 100 + 2,
                          kernel_quantizer=kq, bias_quantizer=bq, kernel_initializer=init, name='fc2')(x)
    x = QActivation(quantized_relu(6, 2), name='relu2')(x)
    out = QDense(10, kernel_quantizer=kq, bias_quantizer=bq, kernel_initializer=init, name='logits')(x)
    return tf.keras.Model(inp, out, name='fashion_lowbit_mlp')
