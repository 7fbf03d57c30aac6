"""Depthwise-separable keyword CNN (DS-CNN, the MLPerf Tiny KWS shape scaled down for a PYNQ-Z2) on
spoken keywords (flow/data/keywords.py: 49 frames x 40 log-mel bands, ten words), CGS on the pointwise
convolutions.

49x40x1 -> QConv2D 24 (4x10, strides 3x2) -> ReLU -> 3 x [QDepthwiseConv2D 3x3 same -> ReLU ->
BlockSparseQConv2D 24 1x1 (4x4 channel blocks) -> ReLU] -> GlobalAveragePooling2D -> QDense 10.

The first convolution's geometry makes a 16x16 map (4 frames x 10 bands, strided 3 frames and 2 bands,
the windows cover every frame and band), so the global average divides by 256, a shift: hls4ml's
pooling then equals QKeras' mean exactly (a map of another size would differ by its rounding). Weights
are 4-bit (quantized_bits(4, 0)), the head 6-bit; each pointwise convolution keeps ``1 - drop_rate``
of its 4 x 4 channel blocks (the same number in every input block-row).
"""

from __future__ import annotations

import tensorflow as tf
from qkeras import QActivation, QConv2D, QDense, QDepthwiseConv2D, quantized_bits, quantized_relu

from keras_models.conv import BlockSparseQConv2D

DATASET = 'keywords'  # (n, 49, 40) samples, reshaped (row-major) to the model's 49x40x1 input
INPUT_PRECISION = 'ap_fixed<9,3>'  # features clipped to [-4, 4 - 1/64] (flow/data/keywords.py), steps of 1/64
N_BLOCKS = 3
# PYNQ-Z2 (220 DSPs) by the estimate step: conv1 96 multipliers (960 products over RF 10), each depthwise 9
# (216 over RF 24), each pointwise 8 (288 kept over RF 36), logits 30 (240 over RF 8): 177; the slowest layer,
# conv1, reads 1960 input pixels at II 10 (interval 19600 cycles, 0.2 ms at 100 MHz). 100 epochs at a constant
# learning rate of 1e-3, 2-3 s an epoch here: 92.8%, 94.8%, 96.5% on seeds 0, 1, 2 (each seed its own 540 clips of
# held-out voices; QKeras = reference). At 3e-3 seed 1 never learned (10%: the network, without BatchNormalization,
# went dead); He-initialized, seeds 0 and 1 did not; with warm-up + cosine, seed 1 did not (README, bench_builtin_cnns).
FLOW_DEFAULTS = {
    'input_precision': INPUT_PRECISION,
    'io_type': 'io_stream',
    'epochs': 100,
    'batch_size': 32,
    'learning_rate': 1e-3,
    # warm-up + cosine at 3e-3 trained seeds 0 and 2 (86.1%, 98.1%) but not seed 1; distillation was not tried
    'lr_schedule': 'constant',
    'distill': False,
    'layers': {'conv1': {'reuse_factor': 10}, 'logits': {'reuse_factor': 8},
               **{f'dw{i}': {'reuse_factor': 24} for i in range(1, N_BLOCKS + 1)},
               **{f'pw{i}': {'reuse_factor': 36} for i in range(1, N_BLOCKS + 1)}},
}


def build(seed: int = 0, channels: int = 24, drop_rate: float = 0.5, bits: int = 4) -> tf.keras.Model:
    """``channels``: of every convolution (a multiple of 4, the channel block); ``drop_rate``: the share of
    the pointwise convolutions' 4x4 channel blocks dropped (0.5: 3 of 6 kept per block-row with 24 channels)."""
    kq, bq = quantized_bits(bits, 0, alpha=1), quantized_bits(8, 3, alpha=1)
    inp = tf.keras.Input(shape=(49, 40, 1), name='features')
    x = QConv2D(channels, (4, 10), strides=(3, 2), kernel_quantizer=kq, bias_quantizer=bq, name='conv1')(inp)
    x = QActivation(quantized_relu(6, 2), name='relu1')(x)
    for i in range(1, N_BLOCKS + 1):
        x = QDepthwiseConv2D(3, padding='same', depthwise_quantizer=kq, bias_quantizer=bq, name=f'dw{i}')(x)
        x = QActivation(quantized_relu(6, 2), name=f'dw{i}_relu')(x)
        x = BlockSparseQConv2D(channels, 1, block_shape=(4, 4), drop_rate=drop_rate, mask_seed=seed * 100 + i,
                               kernel_quantizer=kq, bias_quantizer=bq, name=f'pw{i}')(x)
        x = QActivation(quantized_relu(6, 2), name=f'pw{i}_relu')(x)
    x = tf.keras.layers.GlobalAveragePooling2D(name='pool')(x)
    out = QDense(10, kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=bq, name='logits')(x)
    return tf.keras.Model(inp, out, name='keywords_dscnn')
