"""The AXI4-Stream accelerator top around an io_stream hls4ml model (hls_templates/accel/
axi_top_stream.cpp.in): the same stream format and TLAST behaviour as the io_parallel top, the
model fed with nnet::array packs. Each model is converted directly with hls4ml (io_stream, every
layer's precision wide enough that nothing saturates), and the accelerator's C simulation must
equal hls4ml's own C simulation (``hls_model.predict``) code for code, several samples per DMA
transfer."""

import ctypes
import math
import re

import numpy as np
import pytest

pytestmark = pytest.mark.csim

PROJECT = 'myproject'
WIDE = 'ap_fixed<24,12>'


def q4():
    from qkeras import quantized_bits

    return quantized_bits(4, 0, alpha=1)


def cnn():
    from qkeras import QActivation, QConv2D, QDense, quantized_relu
    from tensorflow import keras

    inp = keras.Input((6, 6, 2), name='input_1')
    x = QConv2D(3, (3, 3), padding='same', kernel_quantizer=q4(), bias_quantizer=q4(), name='conv')(inp)
    x = QActivation(quantized_relu(6, 2), name='relu')(x)
    x = keras.layers.MaxPooling2D(2, name='pool')(x)
    x = keras.layers.Flatten(name='flat')(x)
    x = QDense(4, kernel_quantizer=q4(), bias_quantizer=q4(), name='fc')(x)
    return keras.Model(inp, x)


def mlp():
    from qkeras import QActivation, QDense, quantized_relu
    from tensorflow import keras

    inp = keras.Input((10,), name='input_1')
    x = QDense(6, kernel_quantizer=q4(), bias_quantizer=q4(), name='fc1')(inp)
    x = QActivation(quantized_relu(6, 2), name='relu')(x)
    x = QDense(3, kernel_quantizer=q4(), bias_quantizer=q4(), name='fc2')(x)
    return keras.Model(inp, x)


def randomize(model, rng):
    """Weights and biases off zero (biases start at 0), so every path carries a signal."""
    for layer in model.layers:
        w = layer.get_weights()
        if w:
            layer.set_weights([rng.uniform(-1, 1, v.shape).astype(np.float32) for v in w])


def build(model, in_precision: str, out_dir, rng):
    """hls4ml io_stream project + its own C simulation + the accelerator's (testbench, bridge)."""
    import hls4ml

    from flow.stages.accel import compile_host, write_sources
    from flow.runtime.fixed import FixedType
    from flow.runtime.stream import StreamFormat

    randomize(model, rng)
    cfg = hls4ml.utils.config_from_keras_model(model, granularity='name', backend='Vitis')
    for name, layer in cfg['LayerName'].items():
        prec = layer['Precision']
        prec['result'] = in_precision if name == model.layers[0].name else WIDE
        if 'accum' in prec:
            prec['accum'] = WIDE
    hls_model = hls4ml.converters.convert_from_keras_model(model, hls_config=cfg, output_dir=str(out_dir), project_name=PROJECT,
                                                           backend='Vitis', io_type='io_stream')
    hls_model.write()
    hls_model.compile()
    in_type, out_type = FixedType.parse(in_precision), FixedType.parse(WIDE)
    n_in, n_out = int(np.prod(model.input_shape[1:])), int(np.prod(model.output_shape[1:]))
    fmt = StreamFormat(n_in, n_out, in_type, out_type)
    write_sources(out_dir, PROJECT, fmt, io_type='io_stream')
    compile_host(out_dir, PROJECT)
    return hls_model, fmt


def pack_sizes(hls_dir) -> dict:
    """input_t::size and result_t::size as hls4ml wrote them in defines.h."""
    text = (hls_dir / 'firmware' / 'defines.h').read_text()
    sizes = {}
    for name in ('input_t', 'result_t'):
        m = re.search(rf'typedef nnet::array<[^;]*>,\s*([0-9*]+)>\s*{name};', text)
        assert m, f'{name} is not an nnet::array pack in defines.h'
        sizes[name] = math.prod(int(f) for f in m.group(1).split('*'))  # hls4ml writes e.g. "2*1"
    return sizes


def check(hls_model, fmt, hls_dir, input_shape, rng, n=24):
    from flow.stages.accel import golden_words, run_testbench

    codes = rng.integers(fmt.in_type.min_code, fmt.in_type.max_code + 1, size=(n, *input_shape))
    x = fmt.in_type.to_float(codes)
    y = np.asarray(hls_model.predict(np.ascontiguousarray(x))).reshape(n, fmt.n_out)
    y_codes = fmt.out_type.from_float_exact(y, 'hls4ml output')
    assert len(np.unique(y_codes.argmax(1))) > 1 and np.abs(y_codes).max() > 0, 'a degenerate model proves little'
    assert np.abs(y_codes).max() < fmt.out_type.max_code // 4, 'outputs near saturation: widen the precision'
    x_codes = codes.reshape(n, -1)  # the stream carries the sample flat, row-major: pixel after pixel, channels fastest

    # the testbench: one transfer of n samples, TLAST only on the last input word; every output
    # word and TLAST (on the last output word only) compared exactly
    tb_data = hls_dir / 'tb_data_stream'
    tb_data.mkdir()
    golden_words(fmt, x_codes, y_codes, tb_data)
    assert run_testbench(hls_dir, PROJECT, tb_data) == f'PASS: {n} samples, {n * fmt.out_words} output words bit-exact'

    # the bridge (what the emulated board runs): TLAST in the middle of a transfer marks the end
    # of that sample's result and nothing else
    lib = ctypes.CDLL(str(hls_dir / f'lib{PROJECT}_axi.so'))
    run = lib[f'{PROJECT}_axi_run']
    run.restype = ctypes.c_long
    run.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_ulong]
    data = np.ascontiguousarray(fmt.pack_inputs(x_codes))
    n_words, cap = n * fmt.in_words, n * fmt.out_words
    out, last = np.zeros(cap * fmt.word_bytes, np.uint8), np.zeros(cap, np.uint8)
    k = n // 3  # TLAST on the last word of sample k
    got = run(data.ctypes.data, n_words, (k + 1) * fmt.in_words - 1, out.ctypes.data, last.ctypes.data, cap)
    assert got == cap
    assert np.array_equal(fmt.unpack_outputs(out, n), y_codes)
    assert np.flatnonzero(last).tolist() == [(k + 1) * fmt.out_words - 1]


def test_cnn_image_through_the_stream_top(tmp_path):
    rng = np.random.default_rng(7)
    model = cnn()
    hls_model, fmt = build(model, 'ap_fixed<8,4>', tmp_path / 'cnn', rng)
    assert (fmt.n_in, fmt.n_out, fmt.in_words, fmt.out_words) == (72, 4, 9, 2)  # 8-bit lanes in, 32-bit lanes out
    assert pack_sizes(tmp_path / 'cnn') == {'input_t': 2, 'result_t': 4}  # one pixel's channels; the whole output
    check(hls_model, fmt, tmp_path / 'cnn', (6, 6, 2), rng)


def test_flat_mlp_through_the_stream_top(tmp_path):
    rng = np.random.default_rng(11)
    model = mlp()
    hls_model, fmt = build(model, 'ap_fixed<10,5>', tmp_path / 'mlp', rng)
    assert (fmt.n_in, fmt.n_out, fmt.in_words, fmt.out_words) == (10, 3, 3, 2)  # padding lanes in both directions
    assert pack_sizes(tmp_path / 'mlp') == {'input_t': 10, 'result_t': 3}
    check(hls_model, fmt, tmp_path / 'mlp', (10,), rng)
