"""HCGS built-in: spoken keywords (flow/data/keywords.py: 49 frames x 40 log-mel bands, ten words) with
an MLP whose hidden layers carry two-level hierarchical block masks (Kadetotad et al.) and the
papers' sign-magnitude weights: 1960-256-128-10.

fc1: 40x32 blocks, 1 of 4 kept per input block-row, then 8x8 sub-blocks, 2 of 4 kept inside each
kept block (8x fewer weights; ``coarse_drop_rate`` 0, 0.5, 0.875 make it 2x, 4x, 16x); fc2: 32x32
then 8x8, half and half (4x). The finest masks are CGS
masks, so the block-sparse template computes them; the footprint reports the index per level.
"""

from __future__ import annotations

import tensorflow as tf
from qkeras import QActivation, QDense, quantized_bits, quantized_relu

from keras_models.layers import BlockSparseQDense
from keras_models.quantizers import sign_magnitude

DATASET = 'keywords'
INPUT_PRECISION = 'ap_fixed<9,3>'  # features clipped to [-4, 4 - 1/64] (flow/data/keywords.py), steps of 1/64
FLOW_DEFAULTS = {
    'input_precision': INPUT_PRECISION,
    'epochs': 30,
    'batch_size': 32,
    'learning_rate': 2e-3,
    # its accuracy was measured with these (the warm-up + cosine and distillation recipes were not tried on it)
    'lr_schedule': 'constant',
    'distill': False,
    'rtl': False,  # da4ml's fully parallel 1960x256 logic takes long; the C simulation is the exact check here
    # PYNQ-Z2 (220 DSPs): 64 + 64 multipliers for the HCGS layers, 40 for hls4ml's Resource Dense
    'layers': {'fc1': {'reuse_factor': 980}, 'fc2': {'reuse_factor': 128}, 'logits': {'reuse_factor': 32, 'strategy': 'resource'}},
}


def build(seed: int = 0, weight_bits: int = 4, coarse_drop_rate: float = 0.75) -> tf.keras.Model:
    """``coarse_drop_rate``: the share of fc1's 40x32 blocks dropped per block-row (of 8), before the
    8x8 level drops half of what is left."""
    kq, bq = sign_magnitude(weight_bits), quantized_bits(8, 3, alpha=1)
    inp = tf.keras.Input(shape=(49, 40), name='features')
    x = tf.keras.layers.Flatten(name='flatten')(inp)
    x = BlockSparseQDense(256, levels=[((40, 32), coarse_drop_rate), ((8, 8), 0.5)], mask_seed=seed * 100 + 1,
                          kernel_quantizer=kq, bias_quantizer=bq, name='fc1')(x)
    x = QActivation(quantized_relu(6, 2), name='relu1')(x)
    x = BlockSparseQDense(128, levels=[((32, 32), 0.5), ((8, 8), 0.5)], mask_seed=seed * 100 + 2,
                          kernel_quantizer=kq, bias_quantizer=bq, name='fc2')(x)
    x = QActivation(quantized_relu(6, 2), name='relu2')(x)
    out = QDense(10, kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=bq, name='logits')(x)
    return tf.keras.Model(inp, out, name='keywords_hcgs_mlp')
