"""bench/bench_tfmot_vs_cgs.py's TFMOT arm: gradual block pruning (PolynomialDecay) to a CGS layer's drop
rate with its block shape reaches that sparsity, and the export finds exactly TFMOT's blocks."""

from pathlib import Path

import numpy as np
import pytest

from flow.export import to_integer_model
from flow.runtime.fixed import FixedType

BENCH = Path(__file__).resolve().parents[1] / 'bench'


@pytest.fixture
def build_tfmot(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))  # the benches import each other by module name
    from bench_tfmot_vs_cgs import build_tfmot

    return build_tfmot


def test_tfmot_gradual_block_pruning_is_found_as_pruned(build_tfmot, tmp_path):
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu

    from keras_models.layers import BlockSparseQDense, load_model

    tf.keras.utils.set_random_seed(0)
    bq = quantized_bits(8, 3, alpha=1)
    inp = tf.keras.Input((128,))
    x = BlockSparseQDense(64, block_shape=(8, 4), drop_rate=0.75, kernel_quantizer=quantized_bits(4, 0, alpha=1),
                          bias_quantizer=bq, name='fc1')(inp)
    x = QActivation(quantized_relu(6, 2), name='relu1')(x)
    cgs = tf.keras.Model(inp, QDense(10, kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=bq, name='logits')(x))
    steps = 31  # 256 blocks: a schedule that stopped short of its final sparsity would keep more than 64
    model = build_tfmot(cgs, steps)
    assert [type(l).__name__ for l in model.layers[1:]] == ['PruneLowMagnitude', 'QActivation', 'QDense']
    model.compile('adam', tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    xs, ys = rng.integers(0, 8, (steps * 8, 128)) / 4, rng.integers(0, 10, steps * 8)
    model.fit(xs, ys, epochs=1, batch_size=8, verbose=0, callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    tfmot_density = float(np.mean(model.layers[1].pruning_vars[0][1].numpy()))
    assert tfmot_density == 0.25  # TFMOT reached the CGS layer's drop rate
    tfmot.sparsity.keras.strip_pruning(model).save(tmp_path / 'm.h5')

    fc1 = to_integer_model(load_model(tmp_path / 'm.h5'), FixedType(8, 3)).layers[1]
    assert fc1.kind == 'block_sparse_dense' and fc1.found['block'] == [8, 4] and fc1.found['pattern'].startswith('TFMOT')
    assert fc1.found['density'] == tfmot_density
