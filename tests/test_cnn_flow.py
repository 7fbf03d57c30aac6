"""Users' convolutional networks through build-bitstream: a plain QKeras CNN as users write it, with
their data, converted in io_stream and verified exactly; refusals for what hls4ml cannot stream."""

import json
import subprocess
import sys

import numpy as np
import pytest

from flow.config import FlowConfig
from flow.infra.errors import BadInput
from flow.export import to_integer_model
from flow.runtime.fixed import FixedType


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, '-m', 'flow.cli', *args], capture_output=True, text=True, cwd=cwd)


def _digits_images(path):
    """scikit-learn's 8x8 digits as users keep images: (n, 8, 8) floats, no channel axis."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = (d.images / 16.0).astype(np.float32), d.target
    np.savez(path, x_train=x[:1400], y_train=y[:1400], x_test=x[1400:], y_test=y[1400:])


def _mnist_style_cnn(path, data, epochs=12):
    """QConv2D with a fused quantized_relu, QConv2D + separate QActivation, MaxPooling2D, Flatten,
    Dropout, QDense, softmax: plain QKeras, no masks."""
    import tensorflow as tf
    from qkeras import QActivation, QConv2D, QDense, quantized_bits, quantized_relu

    tf.keras.utils.set_random_seed(0)
    q = dict(kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=quantized_bits(8, 3, alpha=1))
    inp = tf.keras.Input((8, 8, 1), name='image')
    x = QConv2D(8, (3, 3), padding='same', activation=quantized_relu(6, 2), name='conv1', **q)(inp)
    x = tf.keras.layers.MaxPooling2D((2, 2), name='pool1')(x)
    x = QConv2D(12, (3, 3), name='conv2', **q)(x)
    x = QActivation(quantized_relu(6, 2), name='relu2')(x)
    x = tf.keras.layers.Flatten(name='flatten')(x)
    x = tf.keras.layers.Dropout(0.2, name='drop')(x)
    x = QDense(10, name='dense', **q)(x)
    out = tf.keras.layers.Activation('softmax', name='softmax')(x)
    model = tf.keras.Model(inp, out)
    with np.load(data) as d:
        model.compile(optimizer=tf.keras.optimizers.Adam(3e-3), loss='sparse_categorical_crossentropy', metrics=['accuracy'])
        model.fit(d['x_train'][..., None], d['y_train'], epochs=epochs, batch_size=32, verbose=0)
    model.save(path)


@pytest.mark.slow
def test_plain_qkeras_cnn_with_user_data_runs_to_the_vendor_stop_exactly(tmp_path):
    _digits_images(tmp_path / 'd.npz')
    _mnist_style_cnn(tmp_path / 'm.h5', tmp_path / 'd.npz')
    (tmp_path / 'flow.yaml').write_text('input_precision: ap_fixed<9,1>\nn_golden: 64\nreuse_factor: 4\n')
    res = _cli('--model', 'm.h5', '--data', 'd.npz', '--config', 'flow.yaml', '--build-dir', 'b', cwd=tmp_path)
    assert res.returncode == 3, res.stderr[-3000:]
    assert 'Vitis HLS not found' in res.stderr and 'Traceback' not in res.stderr
    b = tmp_path / 'b'
    report = json.loads((b / 'reports' / 'verify.json').read_text())
    assert report['reference_vs_csim'] == {'equal_vectors': 64, 'exact': True}
    assert report['accelerator_testbench'].startswith('PASS: 64 samples')
    assert report['accuracy']['csim'] > 0.8
    assert any('reshaped (row-major) to the model input (8, 8, 1)' in n for n in report['notes'])
    assert report['qkeras_vs_reference']['exact_layers'][:4] == ['conv1', 'conv1_quantized_relu', 'pool1', 'conv2']
    convert = json.loads((b / 'manifest.json').read_text())['steps']['convert']['summary']
    assert convert['io_type'] == 'io_stream' and 'zp2d_conv1' in convert['layers']  # hls4ml's padding node
    est = json.loads((b / 'reports' / 'estimate.json').read_text())
    conv2 = est['layers']['conv2']
    assert conv2['ours']['cycles'] == 4 * 4 * 4  # 4x4 input pixels at II 4
    assert est['total']['ours']['interval'] == max(l['ours']['cycles'] for l in est['layers'].values())  # dataflow
    rtl = json.loads((b / 'reports' / 'rtl_resources.json').read_text())
    assert rtl['built'] is False and 'convolutional networks' in rtl['reason']
    assert (b / 'package').is_dir()


def test_io_types_a_layer_cannot_be_built_in_are_refused():
    import tensorflow as tf
    from qkeras import QConv2D, quantized_bits

    from flow.plan import check_io_type

    inp = tf.keras.Input((4, 4, 2), name='x')
    x = QConv2D(2, 3, kernel_quantizer=quantized_bits(4, 0, alpha=1), bias_quantizer=quantized_bits(6, 2, alpha=1),
                name='conv')(inp)
    model = tf.keras.Model(inp, tf.keras.layers.Flatten(name='f')(x))
    im = to_integer_model(model, FixedType(8, 3))
    check_io_type(im, FlowConfig.load(None, model='m.h5'))  # auto
    with pytest.raises(BadInput, match=r"layer 'conv' \(conv2d\) is built in io_stream only, the config says io_type: "
                                       r'io_parallel; set io_type: io_stream \(or auto\)'):
        check_io_type(im, FlowConfig.load(None, model='m.h5', io_type='io_parallel'))


def test_auto_streams_a_dense_model_whose_registers_would_not_fit_io_parallel():
    """io_type auto: a small MLP stays io_parallel; one whose layer outputs (io_parallel's registers)
    exceed a quarter of the board's flip-flops streams; PYNQ-Z2 has 106,400 FFs."""
    from qkeras import QDense, quantized_bits
    from user_models import chain

    from flow.infra.boards import get_board
    from flow.plan import PARALLEL_FF_SHARE, resolve_io_type

    board, auto = get_board('pynq-z2'), FlowConfig.load(None, model='m.h5')
    q = dict(kernel_quantizer=quantized_bits(4, 0, alpha=1), bias_quantizer=quantized_bits(8, 3, alpha=1))
    for n_in, want in ((256, 'io_parallel'), (2048, 'io_stream')):
        im = to_integer_model(chain(QDense(8, name='d', **q), n_in=n_in), FixedType(16, 6))
        bits = sum(size * layer.out_type.width for size, layer in zip(im.sizes().values(), im.layers))
        assert (bits * PARALLEL_FF_SHARE > board.resources.ff) == (want == 'io_stream')
        assert resolve_io_type(im, auto, board) == want
        assert resolve_io_type(im, FlowConfig.load(None, model='m.h5', io_type='io_parallel'), board) == 'io_parallel'


def test_per_layer_settings_must_name_layers_that_take_them():
    """A typo in a layer name, or a ReuseFactor on a layer without one (pooling), is refused before
    training instead of being ignored."""
    import tensorflow as tf
    from qkeras import QConv2D, quantized_bits

    from flow.export import UnsupportedModel, reference_for
    from flow.infra.boards import get_board
    from flow.plan import make_plan

    inp = tf.keras.Input((6, 6, 1), name='x')
    x = QConv2D(2, 3, kernel_quantizer=quantized_bits(4, 0, alpha=1), bias_quantizer=quantized_bits(6, 2, alpha=1),
                name='conv1')(inp)
    x = tf.keras.layers.MaxPooling2D(2, name='pool1')(x)
    model = tf.keras.Model(inp, tf.keras.layers.Flatten(name='f')(x))
    cfg = FlowConfig.load(None, model='m.h5', input_precision='ap_fixed<8,3>', layers={'conv3': {'reuse_factor': 4}})
    with pytest.raises(UnsupportedModel, match=r"per-layer settings name layers the model does not have: \['conv3'\]; "
                                               r"its layers: \['x', 'conv1', 'pool1', 'f'\]"):
        reference_for(model, cfg)
    cfg = FlowConfig.load(None, model='m.h5', input_precision='ap_fixed<8,3>', layers={'pool1': {'reuse_factor': 4}})
    with pytest.raises(BadInput, match=r"layer 'pool1' \(maxpool2d\): reuse_factor applies to dense, convolution and LSTM "
                                       r'layers only; remove it'):
        make_plan(reference_for(model, cfg), cfg, get_board('pynq-z2'))
