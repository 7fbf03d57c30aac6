"""Fashion-MNIST CNN with CGS block-sparse convolution and dense layers, deployed in io_stream.

28x28x1 -> QConv2D 8 3x3 -> ReLU -> MaxPool 2 -> BlockSparseQConv2D 16 3x3 (4x2 channel blocks)
-> ReLU -> MaxPool 2 -> Flatten (400) -> BlockSparseQDense 64 (8x8 blocks) -> ReLU -> QDense 10.

Weights are 4-bit (quantized_bits(4, 0)); the two middle layers keep ``1 - drop_rate`` of their
blocks (CGS: the same number in every input block-row; the convolution's channel mask is the same
at every kernel position). The first convolution has one input channel, so it stays dense (72
weights). The accelerator streams the image pixel by pixel through hls4ml's line buffers; our
block-sparse kernel does each pixel's channel mixing over the kept blocks only.
"""

from __future__ import annotations

import tensorflow as tf
from qkeras import QActivation, QConv2D, QDense, quantized_bits, quantized_relu

from keras_models.conv import BlockSparseQConv2D
from keras_models.layers import BlockSparseQDense

DATASET = 'fashion_mnist'  # flat 784-pixel samples, reshaped (row-major) to the model's 28x28x1 input
INPUT_PRECISION = 'ap_fixed<9,1>'  # pixels k/256, k = 0..255: exactly on this grid
# PYNQ-Z2 (220 DSPs) by the estimate step: conv1 36 multipliers (RF 2), conv2 72 (576 kept weights per
# pixel over RF 8), fc1 64 (12800 kept over RF 200), logits 40 (RF 16): 212; the slowest layer, conv1,
# reads 784 pixels at II 2 per image (interval 1568 cycles). 20 epochs with warm-up + cosine and no
# distillation, the best of bench_fashion_cnn's recipes over 3 seeds (10 epochs distilled: -3.64 points
# at 4x; 20 distilled: -3.41; 20 without: -3.00); about 10 s an epoch here.
FLOW_DEFAULTS = {
    'input_precision': INPUT_PRECISION,
    'io_type': 'io_stream',
    'epochs': 20,
    # no da4ml network for a CNN, but conv2's and fc1's engines are Verilated on every golden image's patches
    # and synthesized (about 1.5 minutes; auto would skip them at 53,504 engine weight bits)
    'rtl': True,
    'batch_size': 128,
    'learning_rate': 3e-3,
    'layers': {'conv1': {'reuse_factor': 2}, 'conv2': {'reuse_factor': 8}, 'fc1': {'reuse_factor': 200},
               'logits': {'reuse_factor': 16}},
}


def build(seed: int = 0, drop_rate: float = 0.5, bits: int = 4) -> tf.keras.Model:
    """``drop_rate``: the share of blocks dropped in conv2 and fc1 (0.5, 0.75, 0.875: 2x, 4x, 8x; conv2's
    8 -> 16 channels in 4x2 blocks are 2 x 8 blocks, so each block-row can keep 4, 2 or 1 of 8)."""
    kq, bq = quantized_bits(bits, 0, alpha=1), quantized_bits(8, 3, alpha=1)
    inp = tf.keras.Input(shape=(28, 28, 1), name='image')
    x = QConv2D(8, 3, kernel_quantizer=kq, bias_quantizer=bq, name='conv1')(inp)
    x = QActivation(quantized_relu(6, 2), name='relu1')(x)
    x = tf.keras.layers.MaxPooling2D(2, name='pool1')(x)
    x = BlockSparseQConv2D(16, 3, block_shape=(4, 2), drop_rate=drop_rate, mask_seed=seed * 100 + 1, kernel_quantizer=kq,
                           bias_quantizer=bq, name='conv2')(x)
    x = QActivation(quantized_relu(6, 2), name='relu2')(x)
    x = tf.keras.layers.MaxPooling2D(2, name='pool2')(x)
    x = tf.keras.layers.Flatten(name='flatten')(x)
    x = BlockSparseQDense(64, block_shape=(8, 8), drop_rate=drop_rate, mask_seed=seed * 100 + 2, kernel_quantizer=kq,
                          bias_quantizer=bq, name='fc1')(x)
    x = QActivation(quantized_relu(6, 2), name='relu3')(x)
    out = QDense(10, kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=bq, name='logits')(x)
    return tf.keras.Model(inp, out, name='fashion_cgs_cnn')
