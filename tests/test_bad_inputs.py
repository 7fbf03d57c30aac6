"""Bad input gets a clear error naming the problem and the fix."""

import subprocess
import sys

import pytest

from flow.config import FlowConfig
from flow.export import UnsupportedModel, check_deployable, to_integer_model
from flow.runtime.fixed import FixedType
from user_models import chain


def test_unsupported_layer_is_refused_with_its_name():
    import tensorflow as tf

    with pytest.raises(UnsupportedModel, match=r"layer 'norm' \(LayerNormalization\): not supported"):
        check_deployable(chain(tf.keras.layers.LayerNormalization(name='norm')))


@pytest.mark.parametrize('kwargs, message', [
    (dict(alpha=1, use_stochastic_rounding=True), 'stochastic rounding'),
    (dict(alpha='auto'), "alpha='auto'"),
    (dict(alpha=1, keep_negative=False), 'keep_negative=False'),
])
def test_inexact_quantizer_settings_are_refused(kwargs, message):
    from qkeras import QDense, quantized_bits

    layer = QDense(4, kernel_quantizer=quantized_bits(4, 0, **kwargs), bias_quantizer=quantized_bits(8, 3, alpha=1), name='d')
    with pytest.raises(UnsupportedModel, match=rf"layer 'd' kernel: .*{message}"):
        to_integer_model(chain(layer), FixedType(8, 2))


def test_missing_quantizer_and_fused_or_unconvertible_activations_are_refused():
    import tensorflow as tf
    from qkeras import QActivation, QDense, quantized_bits

    with pytest.raises(UnsupportedModel, match="layer 'd' kernel: no quantizer"):
        to_integer_model(chain(QDense(4, bias_quantizer=quantized_bits(8, 3, alpha=1), name='d')), FixedType(8, 2))
    q = dict(kernel_quantizer=quantized_bits(4, 0, alpha=1), bias_quantizer=quantized_bits(8, 3, alpha=1))
    with pytest.raises(UnsupportedModel, match=r"layer 'd' \(activation='elu'\): activation 'elu' is not supported"):
        to_integer_model(chain(QDense(4, activation='elu', name='d', **q)), FixedType(8, 2))
    with pytest.raises(UnsupportedModel, match=r"hls4ml 1.3.0 refuses QActivation\('tanh'\).*use_real_tanh=True"):
        to_integer_model(chain(QDense(4, name='d', **q), QActivation('tanh', name='t')), FixedType(8, 2))
    with pytest.raises(UnsupportedModel, match=r"layer 'plain' \(LeakyReLU\): not supported; supported layers are"):
        to_integer_model(chain(tf.keras.layers.LeakyReLU(name='plain')), FixedType(8, 2))


def test_block_that_does_not_divide_is_refused_when_the_layer_is_built():
    from keras_models.layers import BlockSparseQDense
    from keras_models.masks import BlockShapeError

    with pytest.raises(BlockShapeError, match=r"layer 'fc': block 3x4 \(in x out\) does not divide its kernel 8x8"):
        chain(BlockSparseQDense(8, block_shape=(3, 4), name='fc'))


def test_config_errors():
    with pytest.raises(ValueError, match='extra'):
        FlowConfig.load(None, resue_factor=4)
    with pytest.raises(ValueError, match='cannot parse fixed-point type'):
        FlowConfig.load(None, layers={'fc1': {'accum': 'float32'}})
    with pytest.raises(ValueError, match='pattern'):
        FlowConfig.load(None, project_name='my_project')  # '_' breaks hls4ml report paths


def _cli(*args):
    return subprocess.run([sys.executable, '-m', 'flow.cli', *args], capture_output=True, text=True)


def test_cli_unknown_board_lists_known_ones(tmp_path):
    res = _cli('--board', 'zedboard', '--build-dir', str(tmp_path))
    assert res.returncode == 2
    text = ' '.join(res.stderr.split())
    assert "unknown board 'zedboard'" in text and 'pynq-z2 (Pynq-Z2' in text and 'kv260' in text


def test_cli_unknown_model_fails_naming_the_built_ins(tmp_path):
    res = _cli('--model', 'no_such_model', '--build-dir', str(tmp_path), '--to-step', 'train')
    assert res.returncode == 2
    from keras_models import BUILTIN

    names = ', '.join(sorted(BUILTIN))
    assert f"model 'no_such_model' is not a file nor a built-in model ({names})" in ' '.join(res.stderr.split())


def test_cli_lists_boards_and_models():
    res = _cli('--list-boards')
    assert res.returncode == 0 and 'xc7z020clg400-1' in res.stdout and 'Ultra96' in res.stdout
    from keras_models import BUILTIN

    assert _cli('--list-models').stdout.split() == list(BUILTIN) and 'digits_mlp' in BUILTIN


def test_corrupt_manifest_is_reported(tmp_path):
    (tmp_path / 'manifest.json').write_text('{not json')
    res = _cli('--build-dir', str(tmp_path))
    assert res.returncode == 2 and 'manifest.json is not valid JSON' in ' '.join(res.stderr.split())


def test_config_file_that_does_not_parse_names_the_line(tmp_path):
    (tmp_path / 'bad.yaml').write_text('n_golden: 8\nlayers: {fc1: [\n')
    res = _cli('--config', str(tmp_path / 'bad.yaml'), '--build-dir', str(tmp_path / 'b'))
    assert res.returncode == 2 and 'Traceback' not in res.stderr
    assert 'bad.yaml: not valid YAML at line 3' in ' '.join(res.stderr.split())
