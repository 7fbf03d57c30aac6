"""Training recipes (flow/training.py): float twins, the learning-rate schedule, the distillation loss,
the teacher cache, and the flow's train step with distillation on."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from flow import training
from flow.training import NoTwin, Recipe, WarmupCosine, distill_loss, float_twin
from keras_models import BUILTIN, get

KEPT = training._KEPT


@pytest.mark.parametrize('name', sorted(BUILTIN))
def test_float_twin_of_every_builtin(name):
    model = get(name).build(0)
    twin = float_twin(model)
    assert all(type(l).__name__ in KEPT for l in twin.layers), [type(l).__name__ for l in twin.layers]
    assert twin.input_shape == model.input_shape and twin.output_shape == model.output_shape
    # the same topology, layer by layer: units / filters of every weighted layer kept
    for q, f in zip(model.layers, twin.layers):
        for attr in ('units', 'filters', 'kernel_size', 'strides', 'padding', 'return_sequences'):
            if hasattr(q, attr) and hasattr(f, attr):
                assert getattr(q, attr) == getattr(f, attr), (q.name, attr)


def test_float_twin_kernel_initializer_reaches_every_kernel():
    """keywords_dscnn's twin He-initialized: its convolutions, depthwise filters and head (bench_builtin_cnns)."""
    twin = float_twin(get('keywords_dscnn').build(0), kernel_initializer='he_uniform')
    kernels = [getattr(l, 'depthwise_initializer', None) or l.kernel_initializer for l in twin.layers
               if hasattr(l, 'kernel_initializer') or hasattr(l, 'depthwise_initializer')]
    assert len(kernels) == 8 and all(type(k).__name__ == 'HeUniform' for k in kernels)
    assert type(float_twin(get('keywords_dscnn').build(0)).layers[1].kernel_initializer).__name__ == 'GlorotUniform'


def test_float_twin_names_are_positional():
    """Two models that differ only in names, masks and quantizers have one twin (one cached teacher)."""
    a, b = get('fashion_binary_mlp').build(0), get('fashion_lowbit_mlp').build(1)
    assert float_twin(a).to_json() == float_twin(b).to_json()


def test_float_twin_refuses_an_unknown_layer_in_one_line():
    class Mystery(tf.keras.layers.Layer):
        pass

    inp = tf.keras.Input((4,))
    model = tf.keras.Model(inp, tf.keras.layers.Dense(3)(Mystery(name='odd')(inp)))
    with pytest.raises(NoTwin) as e:
        float_twin(model)
    assert "'odd'" in str(e.value) and 'Mystery' in str(e.value) and '\n' not in str(e.value)


def test_warmup_cosine_values():
    lr = WarmupCosine(1.0, warmup_steps=10, total_steps=110)
    got = [float(lr(s)) for s in (0, 4, 9, 10, 60, 110, 200)]
    want = [0.1, 0.5, 1.0, 1.0, 0.5, 0.0, 0.0]
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert training.learning_rate(Recipe(epochs=3, learning_rate=0.01, lr_schedule='constant'), 5) == 0.01


def test_distill_loss_is_the_formula():
    T, alpha = 3.0, 0.25
    labels = np.array([2, 0])
    teacher = np.array([[1.0, -2.0, 3.0], [0.5, 0.0, -1.0]], np.float32)
    student = np.array([[0.2, 0.1, 2.0], [-1.0, 1.5, 0.3]], np.float32)

    def log_softmax(z):
        z = z - z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    ce = -log_softmax(student)[np.arange(2), labels]
    p = np.exp(log_softmax(teacher / T))
    kl = (p * (log_softmax(teacher / T) - log_softmax(student / T))).sum(axis=1)
    want = alpha * ce + (1 - alpha) * T ** 2 * kl
    y = np.concatenate([labels[:, None].astype(np.float32), teacher], axis=1)
    np.testing.assert_allclose(distill_loss(T, alpha)(tf.constant(y), tf.constant(student)).numpy(), want, rtol=1e-5)


def _tiny(seed=0):
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu

    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input((8,), name='x')
    h = QActivation(quantized_relu(4, 2), name='r')(QDense(6, kernel_quantizer=quantized_bits(4, 0, alpha=1), name='h')(inp))
    return tf.keras.Model(inp, QDense(3, kernel_quantizer=quantized_bits(4, 0, alpha=1), name='out')(h))


@pytest.fixture
def tiny_data():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (64, 8)).astype(np.float32)
    return x, (x[:, :3].argmax(axis=1)).astype(np.int64)


def test_teacher_cached_and_keyed(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv(training.CACHE_ENV, str(tmp_path))
    x, y = tiny_data
    recipe = Recipe(epochs=1, seed=0)
    _, folder, cached = training.float_teacher(_tiny(), x, y, recipe, progress=False)
    assert not cached and (folder / 'teacher.h5').is_file() and folder.parent == tmp_path
    stamp = (folder / 'teacher.h5').stat().st_mtime_ns

    def no_training(*a, **k):
        raise AssertionError('a cached teacher was trained again')

    with monkeypatch.context() as m:
        m.setattr(training, 'fit', no_training)
        t, again, cached = training.float_teacher(_tiny(1), x, y, recipe, progress=False)  # other student weights
    assert cached and again == folder and (folder / 'teacher.h5').stat().st_mtime_ns == stamp
    assert len(t.evaluate(x, y, verbose=0)) == 2  # compiled: a bench evaluates it
    _, other, _ = training.float_teacher(_tiny(), x, y, recipe.replace(seed=1), progress=False)
    assert other != folder
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([folder.name, other.name])  # no temporary left


def test_student_does_not_depend_on_the_cache(tiny_data, tmp_path, monkeypatch):
    """The teacher from the cache is the teacher trained: the student comes out the same, weight for weight."""
    monkeypatch.setenv(training.CACHE_ENV, str(tmp_path))
    x, y = tiny_data
    weights = []
    for expect_cached in (False, True):
        model = _tiny()
        info = training.fit(model, x, y, Recipe(epochs=2, batch_size=16, distill=True), progress=False)
        assert info['teacher_cached'] is expect_cached
        weights.append(model.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


def test_no_twin_trains_without_distillation(tiny_data):
    x, y = tiny_data
    inp = tf.keras.Input((8,))
    model = tf.keras.Model(inp, tf.keras.layers.Dense(3, activation='softmax')(inp))  # probabilities, not logits
    notes = []
    info = training.fit(model, x, y, Recipe(epochs=1, distill=True), progress=False, note=notes.append)
    assert info['distilled_from'] is None and len(notes) == 1 and 'logits' in notes[0]


def test_flow_train_step_distils(tmp_path):
    from flow.config import FlowConfig
    from flow.steps import run_flow

    cfg = FlowConfig.load(None, epochs=1, n_golden=8, distill=True, lr_schedule='warmup_cosine')  # digits_mlp turns both off
    run_flow(cfg, tmp_path / 'build', to_step='train')
    summary = json.loads((tmp_path / 'build' / 'train' / 'train.json').read_text())
    folder = Path(summary['recipe']['distilled_from'])
    assert folder.parent == Path(os.environ[training.CACHE_ENV]) and (folder / 'teacher.h5').is_file()
    assert summary['test_accuracy_qkeras'] is not None and not math.isnan(summary['test_accuracy_qkeras'])
    off = FlowConfig.load(None, epochs=1, n_golden=8, lr_schedule='warmup_cosine')
    from flow.steps import fingerprints

    assert fingerprints(off)['train'] != fingerprints(cfg)['train']
