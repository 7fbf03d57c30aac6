"""Data as users have it: inputs only, float targets (regressors, autoencoders), one output, and
models without weights (a lone activation)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from flow.config import FlowConfig
from flow.data.datasets import for_model, load
from flow.data.targets import regression_error, task_of
from flow.infra.errors import BadInput
from flow.runtime.fixed import FixedType
from flow.steps import run_flow

IN_T = FixedType(10, 4)


def _on_grid(t: FixedType, x):
    """Codes of x rounded to t's grid as the data is (half to even, saturating)."""
    return FixedType(t.width, t.integer, t.signed, 'RND_CONV', 'SAT').quantize_float(x)


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, '-m', 'flow.cli', *args], capture_output=True, text=True, cwd=cwd)


@pytest.mark.parametrize('y, n_out, task', [
    (np.array([0, 3, 1]), 5, 'classification'),
    (np.array([0.0, 3.0, 1.0]), 5, 'classification'),  # integral floats are labels (as saved by many tools)
    (np.array([0.5, 3.0, 1.0]), 5, 'regression'),
    (np.array([0, 1, 1]), 1, 'regression'),  # one output: its argmax is always 0, so y are targets
    (np.zeros((3, 5), dtype=np.int64), 5, 'regression'),  # shaped like the output
])
def test_task_is_read_from_y_and_the_output(y, n_out, task):
    assert task_of(y, n_out) == task


def test_regression_error_counts_every_output_value():
    e = regression_error(np.array([[1.0, 2.0], [0.0, 0.0]]), np.array([[1.0, 0.0], [0.0, -1.0]]))
    assert e == {'mse': 5 / 4, 'mae': 3 / 4, 'max_abs': 2.0}


def test_x_alone_gives_golden_inputs_in_file_order(tmp_path):
    x = np.random.default_rng(0).uniform(-1, 1, (30, 4))
    np.savez(tmp_path / 'd.npz', x=x)
    data, notes = for_model(str(tmp_path / 'd.npz'), 0, IN_T, (4,), (3,))
    assert data.task == 'inputs only' and data.y_test is None and len(data.x_train) == 0
    assert np.array_equal(data.x_test, IN_T.to_float(_on_grid(IN_T, x)))  # rounded to the grid, same order
    assert any('x without targets' in n for n in notes)


def test_autoencoder_targets_shaped_like_the_output(tmp_path):
    x = np.random.default_rng(0).uniform(-1, 1, (30, 2, 4))  # targets reshaped row-major to the flat output
    np.savez(tmp_path / 'd.npz', x=x.reshape(30, 8), y=x)
    data, notes = for_model(str(tmp_path / 'd.npz'), 0, IN_T, (8,), (8,))
    assert data.task == 'regression' and data.y_test.shape == (6, 8) and data.y_test.dtype == np.float64
    assert any('regression' in n for n in notes)


def test_targets_that_fit_no_output_are_refused_naming_both_shapes(tmp_path):
    np.savez(tmp_path / 'd.npz', x=np.zeros((10, 4)), y=np.zeros((10, 3)))
    with pytest.raises(BadInput, match=r'y_train has targets of shape \(3,\) but the model has 5 outputs; give integer '
                                       r'class labels 0..4 \(1-D\) or float targets of shape \(5,\)'):
        for_model(str(tmp_path / 'd.npz'), 0, IN_T, (4,), (5,))


def test_labels_out_of_range_stay_a_classification_error(tmp_path):
    np.savez(tmp_path / 'd.npz', x=np.zeros((10, 4)), y=np.arange(10))
    with pytest.raises(BadInput, match=r'= \d is not a class of the model, which has 5 outputs'):
        for_model(str(tmp_path / 'd.npz'), 0, IN_T, (4,), (5,))


def test_builtin_datasets_stay_classification():
    assert load('digits').task == 'classification'


def test_builtin_model_refuses_float_targets_before_training(tmp_path):
    np.savez(tmp_path / 'd.npz', x=np.zeros((20, 64)), y=np.linspace(0, 1, 200).reshape(20, 10))
    with pytest.raises(BadInput, match=r'has regression targets, but the built-in models are classifiers'):
        run_flow(FlowConfig.load(None, data=str(tmp_path / 'd.npz'), epochs=1), tmp_path / 'b', to_step='train')


def _regressor(path, n_in=6):
    """A one-output QKeras regressor with random weights."""
    import tensorflow as tf
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu
    from user_models import random_weights

    bq = quantized_bits(8, 3, alpha=1)
    inp = tf.keras.Input((n_in,), name='x')
    h = QDense(8, kernel_quantizer=quantized_bits(4, 0, alpha=1), bias_quantizer=bq, name='fc1')(inp)
    h = QActivation(quantized_relu(6, 2), name='relu1')(h)
    out = QDense(1, kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=bq, name='out')(h)
    model = random_weights(tf.keras.Model(inp, out), 0)
    model.save(path)
    return model


@pytest.mark.slow
@pytest.mark.csim
def test_single_output_regressor_with_float_targets_reports_errors_not_accuracy(tmp_path):
    model = _regressor(tmp_path / 'm.h5')
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, (100, 6))
    y = model.predict(x, verbose=0)[:, 0] + rng.normal(0, 0.1, 100)
    np.savez(tmp_path / 'd.npz', x=x, y=y)
    (tmp_path / 'flow.yaml').write_text('input_precision: ap_fixed<10,4>\nrtl: false\n')
    res = _cli('--model', 'm.h5', '--data', 'd.npz', '--config', 'flow.yaml', '--build-dir', 'b', cwd=tmp_path)
    assert res.returncode == 3 and 'Traceback' not in res.stderr, res.stderr[-3000:]
    assert 'regression: hardware vs targets MSE' in ' '.join(res.stderr.split())
    report = json.loads((tmp_path / 'b' / 'reports' / 'verify.json').read_text())
    assert report['task'] == 'regression' and report['accuracy'] is None
    assert report['reference_vs_csim'] == {'equal_vectors': 20, 'exact': True}
    targets = np.load(tmp_path / 'b' / 'golden' / 'targets.npy')
    hw = FixedType.from_dict(json.loads((tmp_path / 'b' / 'golden' / 'golden.json').read_text())['output_type']).to_float(
        np.load(tmp_path / 'b' / 'golden' / 'output_codes.npy'))
    assert report['error']['hardware_vs_targets'] == regression_error(hw, targets)
    assert report['error']['hardware_vs_float_model']['max_abs'] == 0  # every layer exact in QKeras here
    train = json.loads((tmp_path / 'b' / 'train' / 'train.json').read_text())
    assert train['task'] == 'regression' and train['test_accuracy_qkeras'] is None and train['test_error_qkeras']['mse'] > 0
    assert not (tmp_path / 'b' / 'golden' / 'labels.npy').exists()


@pytest.mark.slow
@pytest.mark.csim
def test_model_without_weights_and_inputs_only_data_is_exact(tmp_path):
    """A lone QActivation (hls4ml's activation tests) once divided by zero in the footprint."""
    import tensorflow as tf
    from qkeras import QActivation, quantized_tanh

    inp = tf.keras.Input((8,), name='x')
    tf.keras.Model(inp, QActivation(quantized_tanh(6), name='act')(inp)).save(tmp_path / 'm.h5')
    x = np.random.default_rng(1).uniform(-3, 3, (25, 8))
    np.savez(tmp_path / 'd.npz', x=x)
    cfg = FlowConfig.load(None, model=str(tmp_path / 'm.h5'), data=str(tmp_path / 'd.npz'), input_precision='ap_fixed<8,3>')
    run_flow(cfg, tmp_path / 'b', to_step='verify')
    fp = json.loads((tmp_path / 'b' / 'reference' / 'footprint.json').read_text())
    assert fp['total']['total_bits'] == 0 and fp['total']['ratio_vs_float32'] is None
    report = json.loads((tmp_path / 'b' / 'reports' / 'verify.json').read_text())
    assert report['task'] == 'inputs only' and report['accuracy'] is None and report['error'] is None
    assert report['reference_vs_csim'] == {'equal_vectors': 25, 'exact': True}
    assert report['qkeras_vs_reference']['all_layers_exact']
    t = FixedType(8, 3)
    assert np.array_equal(np.load(tmp_path / 'b' / 'golden' / 'input_codes.npy'), _on_grid(t, x))  # in file order
