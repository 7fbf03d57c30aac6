"""Users' own data: .npz files, built-in datasets, random golden vectors, and clear errors for bad data."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from user_models import small_mlp

from flow.config import FlowConfig
from flow.data.datasets import fashion_mnist, load, on_grid, random_inputs
from flow.infra.errors import BadInput
from flow.runtime.fixed import FixedType
from flow.steps import run_flow


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, '-m', 'flow.cli', *args], capture_output=True, text=True, cwd=cwd)


def _blobs(path: Path, n_in=16, n_classes=5, n=600, seed=0, split=True):
    """Gaussian class blobs (off the input grid on purpose)."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-2, 2, size=(n_classes, n_in))
    y = rng.integers(0, n_classes, size=n)
    x = (centres[y] + rng.normal(0, 0.6, size=(n, n_in))).astype(np.float32)
    if split:
        np.savez(path, x_train=x[: n * 3 // 4], y_train=y[: n * 3 // 4], x_test=x[n * 3 // 4 :], y_test=y[n * 3 // 4 :])
    else:
        np.savez(path, x=x, y=y)
    return x, y


def _tutorial_mlp(path: Path, data: Path, epochs=8, po2=False):
    """The 16-64-32-32-5 QKeras MLP of hls4ml's tutorials, with a final softmax, trained here;
    ``po2``: power-of-two kernels and a quantizing QActivation on the input."""
    import tensorflow as tf
    from qkeras import QActivation, QDense, quantized_bits, quantized_po2, quantized_relu

    tf.keras.utils.set_random_seed(0)
    kernel = quantized_po2(4) if po2 else quantized_bits(6, 0, alpha=1)
    q = dict(kernel_quantizer=kernel, bias_quantizer=quantized_bits(6, 0, alpha=1))
    inp = tf.keras.Input((16,), name='inputs')
    x = QActivation(quantized_bits(8, 3, alpha=1), name='in_q')(inp) if po2 else inp
    for i, units in enumerate((64, 32, 32), 1):
        x = QDense(units, name=f'fc{i}', **q)(x)
        x = QActivation(quantized_relu(6), name=f'relu{i}')(x)
    x = QDense(5, name='output', **q)(x)
    out = tf.keras.layers.Activation('softmax', name='softmax')(x)
    model = tf.keras.Model(inp, out)
    with np.load(data) as d:
        model.compile(optimizer='adam', loss='sparse_categorical_crossentropy', metrics=['accuracy'])
        model.fit(d['x_train'], d['y_train'], epochs=epochs, batch_size=32, verbose=0)
    model.save(path)


@pytest.mark.slow
@pytest.mark.parametrize('po2', [False, True])
def test_user_mlp_with_softmax_and_npz_data_runs_to_the_vendor_stop_exactly(tmp_path, po2):
    _blobs(tmp_path / 'd.npz')
    _tutorial_mlp(tmp_path / 'm.h5', tmp_path / 'd.npz', po2=po2)
    (tmp_path / 'flow.yaml').write_text('input_precision: ap_fixed<10,4>\nn_golden: 100\nreuse_factor: 4\n')
    res = _cli('--model', 'm.h5', '--data', 'd.npz', '--config', 'flow.yaml', '--build-dir', 'b', cwd=tmp_path)
    assert res.returncode == 3, res.stderr[-3000:]
    assert 'Vitis HLS not found' in res.stderr and 'Traceback' not in res.stderr
    assert 'oneDNN' not in res.stderr and 'WARNING' not in res.stderr  # no TensorFlow log lines without --verbose
    report = json.loads((tmp_path / 'b' / 'reports' / 'verify.json').read_text())
    assert report['reference_vs_csim'] == {'equal_vectors': 100, 'exact': True}
    assert report['golden'] == 'test split of the data' and report['accuracy']['csim'] > 0.6
    assert any('were rounded to the nearest value' in n for n in report['notes'])  # off-grid data, said once
    assert report['qkeras_vs_reference']['exact_layers'][:2] == (['in_q', 'fc1'] if po2 else ['fc1', 'relu1'])
    train = json.loads((tmp_path / 'b' / 'train' / 'train.json').read_text())
    assert train['data'].startswith('user data') and train['test_accuracy_qkeras'] > 0.6


def test_user_model_without_data_gets_random_golden_vectors_with_extremes(tmp_path):
    small_mlp(tmp_path / 'm.h5', n_in=12)
    cfg = FlowConfig.load(None, model=str(tmp_path / 'm.h5'), input_precision='ap_fixed<6,2>', n_golden=40)
    run_flow(cfg, tmp_path / 'b', to_step='verify')
    report = json.loads((tmp_path / 'b' / 'reports' / 'verify.json').read_text())
    assert report['golden'] == 'random vectors, no accuracy' and report['accuracy'] is None
    assert report['reference_vs_csim'] == {'equal_vectors': 40, 'exact': True}
    codes = np.load(tmp_path / 'b' / 'golden' / 'input_codes.npy')
    assert codes.shape == (40, 12) and (codes[0] == -32).all() and (codes[1] == 31).all()
    assert not (tmp_path / 'b' / 'golden' / 'labels.npy').exists()


def test_random_inputs_cover_the_extremes():
    t = FixedType(5, 2, signed=False)
    codes = random_inputs(t, (3, 2), 9, seed=1)
    assert codes.shape == (9, 3, 2) and codes.min() >= 0 and codes.max() <= 31
    assert (codes[0] == 0).all() and (codes[1] == 31).all() and set(codes[2].ravel()) == {0, 31}


def test_npz_with_x_y_is_split_by_the_seed(tmp_path):
    _blobs(tmp_path / 'd.npz', split=False, n=100)
    a, b, c = load(str(tmp_path / 'd.npz'), 0), load(str(tmp_path / 'd.npz'), 0), load(str(tmp_path / 'd.npz'), 1)
    assert len(a.x_test) == 20 and len(a.x_train) == 80
    assert np.array_equal(a.x_test, b.x_test) and not np.array_equal(a.x_test, c.x_test)


def test_off_grid_data_is_quantized_once_and_said():
    from flow.data.datasets import Split

    x = np.array([[0.1, 0.25, 9.0]])
    data, note = on_grid(Split(x, np.array([0]), x, np.array([0])), FixedType(6, 2))
    assert data.x_train.tolist() == [[0.125, 0.25, 1.9375]]  # nearest code; 9.0 saturates at the top of ap_fixed<6,2>
    assert note.startswith('4 of 6 input values were not on the input type ap_fixed<6,2>')
    assert on_grid(data, FixedType(6, 2))[1] is None


def test_fashion_mnist_from_the_debian_package():
    d = fashion_mnist()
    assert d.x_train.shape == (60000, 784) and d.x_test.shape == (10000, 784)
    assert set(np.unique(d.y_test)) == set(range(10))
    assert on_grid(d, FixedType(9, 1))[1] is None  # pixels k/256 lie on ap_fixed<9,1>


@pytest.fixture(scope='module')
def trained_user_build(tmp_path_factory):
    """A user model whose train step is done with good data (the bad-data tests must not lose it)."""
    root = tmp_path_factory.mktemp('userdata')
    small_mlp(root / 'm.h5', n_in=16, n_out=5)
    _blobs(root / 'good.npz')
    res = _cli('--model', 'm.h5', '--data', 'good.npz', '--build-dir', 'b', '--to-step', 'train', cwd=root)
    assert res.returncode == 0, res.stderr
    return root


def _write_bad(path: Path, kind: str):
    x = np.random.default_rng(0).normal(size=(50, 16))
    y = np.arange(50) % 5
    if kind == 'shape':
        np.savez(path, x=x[:, :12], y=y)
    elif kind == 'labels':
        np.savez(path, x=x, y=np.where(np.arange(50) == 7, 5, y))
    elif kind == 'nan':
        x[3, 4] = np.nan
        np.savez(path, x=x, y=y)
    elif kind == 'keys':
        np.savez(path, inputs=x, targets=y)
    elif kind == 'lengths':
        np.savez(path, x=x, y=y[:40])
    elif kind == 'not_npz':
        path.write_bytes(b'not a zip at all')


@pytest.mark.parametrize('kind, message', [
    ('shape', r'the model takes inputs of shape \(16,\) but x_train has samples of shape \(12,\)'),
    ('labels', r'y_\w+\[\d+\] = 5 is not a class of the model, which has 5 outputs \(labels 0..4\)'),
    ('nan', r'x_\w+\[\d+, 4\] is nan; the data must be finite'),
    ('keys', r"holds \['inputs', 'targets'\]; expected x_train, y_train, x_test, y_test \(or x, y"),
    ('lengths', r'x has 50 samples but y has 40'),
    ('not_npz', r'cannot read .*bad.npz as a .npz file'),
])
def test_bad_data_exits_2_naming_the_problem_and_keeps_finished_steps(trained_user_build, kind, message):
    import re

    root = trained_user_build
    before = json.loads((root / 'b' / 'manifest.json').read_text())['steps']
    _write_bad(root / 'bad.npz', kind)
    res = _cli('--model', 'm.h5', '--data', 'bad.npz', '--build-dir', 'b', '--to-step', 'train', cwd=root)
    assert res.returncode == 2 and 'Traceback' not in res.stderr, res.stderr
    errors = [l for l in res.stderr.splitlines() if l.startswith('bad input:')]
    assert len(errors) == 1 and re.search(message, errors[0]), res.stderr
    assert json.loads((root / 'b' / 'manifest.json').read_text())['steps'] == before


def test_changed_data_file_reruns_train(trained_user_build, tmp_path):
    import shutil

    root = tmp_path / 'r'
    shutil.copytree(trained_user_build, root)
    before = json.loads((root / 'b' / 'manifest.json').read_text())['steps']['train']
    res = _cli('--model', 'm.h5', '--data', str(root / 'good.npz'), '--build-dir', 'b', '--to-step', 'train', cwd=root)
    assert res.returncode == 0 and 'all steps up to train are done' in ' '.join(res.stderr.split())
    _blobs(root / 'good.npz', seed=5)
    res = _cli('--model', 'm.h5', '--data', 'good.npz', '--build-dir', 'b', '--to-step', 'train', cwd=root)
    assert res.returncode == 0
    after = json.loads((root / 'b' / 'manifest.json').read_text())['steps']['train']
    assert after['config'] != before['config']


def test_builtin_model_with_data_of_another_shape_is_refused_before_training(tmp_path):
    with pytest.raises(BadInput, match=r'takes inputs of shape \(64,\) but x_train has samples of shape \(784,\)'):
        run_flow(FlowConfig.load(None, data='fashion_mnist'), tmp_path, to_step='train')


def test_unknown_dataset_names_the_built_ins(tmp_path):
    res = _cli('--data', 'mnist', '--build-dir', str(tmp_path))
    assert res.returncode == 2
    assert "data 'mnist' is not a file nor a built-in dataset (digits, fashion_mnist, keywords)" in ' '.join(res.stderr.split())
