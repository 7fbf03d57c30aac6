"""SST built-in: a Fashion-MNIST MLP (784-128-64-10, as the other Fashion-MNIST built-ins) whose
hidden layers are (8, 2) structured sparse ternary codes (1 bit per weight stored; Boo and Sung) with a power-of-two scale per neuron."""

from __future__ import annotations

import tensorflow as tf
from qkeras import QActivation, QDense, quantized_bits, quantized_relu

from keras_models.sst import SSTQDense

DATASET = 'fashion_mnist'
INPUT_PRECISION = 'ap_ufixed<8,0>'  # pixels k/256, k = 0..255: exactly on this grid
BATCH_SIZE = 128
EPOCHS = 20  # warm-up + cosine, no distillation (bench_fashion_methods, 3 seeds)
PRUNE_FRACTION = 0.3  # gradual pruning from 8 to 2 non-zeros per group over this share of the training steps
# ReuseFactor = groups per output (784/8 and 128/8): every decoder then reads the same group of 8
# inputs in a cycle (nnet_sst_dense.h); 0 multipliers in the SST layers, 80 in the head.
FLOW_DEFAULTS = {
    'input_precision': INPUT_PRECISION,
    'epochs': EPOCHS,
    'batch_size': BATCH_SIZE,
    'distill': False,  # over 3 seeds distillation (T 4, alpha 0.5) cost these MLPs 0.1-0.9 points
    # the SST engines (Verilated exact, synthesized: about 5 minutes here), not da4ml's fully parallel 784-input network
    'rtl': 'engines',
    'layers': {'fc1': {'reuse_factor': 98}, 'fc2': {'reuse_factor': 16}, 'logits': {'reuse_factor': 16, 'strategy': 'resource'}},
}


def build(seed: int = 0, group: int = 8, nonzeros: int = 2, hidden=(128, 64),
          prune_fraction: float = PRUNE_FRACTION) -> tf.keras.Model:
    # gradual pruning over prune_fraction of however many steps training takes (flow.training tells the
    # layer); prune_steps is the same share of the default schedule, for a fit that does not
    prune_steps = round(prune_fraction * EPOCHS * 60000 / BATCH_SIZE)
    bq = quantized_bits(8, 3, alpha=1)
    inp = tf.keras.Input(shape=(784,), name='pixels')
    x = inp
    for k, units in enumerate(hidden, start=1):
        x = SSTQDense(units, group=group, nonzeros=nonzeros, prune_steps=prune_steps, prune_fraction=prune_fraction,
                      bias_quantizer=bq, name=f'fc{k}')(x)
        x = QActivation(quantized_relu(6, 2), name=f'relu{k}')(x)
    out = QDense(10, kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=bq, name='logits')(x)
    return tf.keras.Model(inp, out, name='fashion_sst_mlp')
