"""HCGS built-in, the method's own use: a keyword-spotting LSTM (Kadetotad et al.'s chip runs
LSTMs for speech). 49 frames x 40 log-mel bands -> BlockSparseQLSTM(32) -> 10-way QDense.

Both LSTM kernels carry two-level HCGS masks, 75% / 75% (16x fewer weights), one mask per kernel
shared by the four gates; 6-bit sign-magnitude weights (the papers' quantizer: no zero code, the
zeros come from the mask); hard sigmoid / tanh, 12-bit cell and 8-bit hidden state.
"""

from __future__ import annotations

import tensorflow as tf
from qkeras import QDense, quantized_bits

from keras_models.lstm import BlockSparseQLSTM
from keras_models.quantizers import sign_magnitude

DATASET = 'keywords'
INPUT_PRECISION = 'ap_fixed<9,3>'  # features clipped to [-4, 4 - 1/64] (flow/data/keywords.py), steps of 1/64
FLOW_DEFAULTS = {
    'input_precision': INPUT_PRECISION,
    'epochs': 30,
    'batch_size': 32,
    'learning_rate': 3e-3,
    # its accuracy was measured with these (the warm-up + cosine and distillation recipes were not tried on it)
    'lr_schedule': 'constant',
    'distill': False,
    'rtl': True,  # the LSTM's engine (no da4ml form: a loop with state), Verilated exact and synthesized: about 5 minutes here
    # PYNQ-Z2 (220 DSPs, multipliers counted as DSPs): 20 and 16 kept 2x2 blocks at RF 16 -> 2 + 1 lanes of
    # 4 gates x 4 products (48), the 3 x 32 cell/hidden products (96), the head at RF 8 (40): 184
    'layers': {'lstm': {'reuse_factor': 16}, 'logits': {'reuse_factor': 8, 'strategy': 'resource'}},
}


def build(seed: int = 0, units: int = 32, weight_bits: int = 6) -> tf.keras.Model:
    q = sign_magnitude(weight_bits)
    inp = tf.keras.Input(shape=(49, 40), name='features')
    levels = [((8, 8), 0.75), ((2, 2), 0.75)]  # 8x8 blocks, 1 of 4 kept per block-row; 2x2 inside, 1 of 4
    x = BlockSparseQLSTM(units, levels=levels, recurrent_levels=levels, mask_seed=seed * 100 + 1,
                         kernel_quantizer=q, recurrent_quantizer=q, name='lstm')(inp)
    out = QDense(10, kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=quantized_bits(8, 3, alpha=1),
                 name='logits')(x)
    return tf.keras.Model(inp, out, name='keywords_hcgs_lstm')
