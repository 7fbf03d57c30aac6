"""Unquantized Keras layers (Dense, Conv2D, ReLU): float weights cast as hls4ml casts them (its writer's
decimal literal into ap_fixed), reference == C simulation, the float model's deviation reported."""

import subprocess
from pathlib import Path

import numpy as np
import pytest

from flow.export import Overrides, UnsupportedModel, to_integer_model
from flow.export.float_layers import hls_codes
from flow.runtime.fixed import FixedType
from user_models import chain, random_weights

CPP = r'''
#include <cstdio>
#include "ap_fixed.h"
template <class D> void show(D d, bool sign) {
    ap_uint<64> bits = d.range();
    long long out = (long long)bits.to_uint64();
    if (sign && ((out >> (D::width - 1)) & 1)) out -= (1LL << D::width);
    printf("%lld\n", out);
}
int main() {
%s
}
'''


def _hls4ml_literals(values, t: FixedType):
    """What hls4ml's writer prints for these weights (WeightVariable's precision_fmt)."""
    from hls4ml.model.types import FixedPrecisionType, WeightVariable

    p = FixedPrecisionType(t.width, t.integer, t.signed, f'AP_{t.rounding}', f'AP_{t.overflow}')
    return list(WeightVariable('w', 'w_t', p, np.asarray(values, dtype=np.float32)))


@pytest.mark.csim
def test_cast_equals_ap_fixed_reading_hls4ml_literals(tmp_path):
    """Random float32 weights, and ones a hair below a grid point or on a half (where the printed
    decimal and the rounding mode decide), in types of several rounding modes: the codes are what
    Xilinx's ap_fixed makes of hls4ml's own printed literal."""
    import hls4ml

    rng = np.random.default_rng(0)
    types = [FixedType(16, 6), FixedType(8, 3, rounding='RND'), FixedType(10, 2, rounding='RND_CONV', overflow='SAT'),
             FixedType(12, 4, rounding='RND_ZERO', overflow='SAT'), FixedType(6, 6), FixedType(9, 1, signed=False, overflow='SAT')]
    cases, calls = [], []
    for t in types:
        grid = rng.integers(t.min_code, t.max_code, size=8) * 2.0**-t.frac
        values = np.concatenate([rng.uniform(t.to_float(t.min_code), t.to_float(t.max_code), 24), grid,
                                 np.nextafter(grid.astype(np.float32), np.float32(-np.inf)),  # a hair below
                                 grid + 2.0**-(t.frac + 1)]).astype(np.float32)  # halves
        if t.overflow == 'SAT':
            values = np.concatenate([values, np.float32([1e3, -1e3])])
        for v, lit in zip(values, _hls4ml_literals(values, t)):
            cases.append((t, v))
            calls.append(f'    show<{t.hls()}>({lit}, {str(t.signed).lower()});')
    (tmp_path / 't.cpp').write_text(CPP.replace('%s', '\n'.join(calls)))
    ap_types = Path(hls4ml.__file__).parent / 'templates' / 'vivado' / 'ap_types'
    subprocess.run(['g++', '-O0', '-std=c++14', f'-I{ap_types}', 't.cpp', '-o', 't'], cwd=tmp_path, check=True)
    out = subprocess.run([str(tmp_path / 't')], capture_output=True, text=True, check=True).stdout.split()
    assert len(out) == len(cases)
    for (t, v), got in zip(cases, out):
        assert int(hls_codes(np.float32([v]), t, 'w')[0]) == int(got), f'{v!r} -> {t.hls()}: ap_fixed {got}'


def test_cast_truncates_toward_minus_infinity_like_hls4ml():
    t = FixedType(16, 6)  # 10 fraction bits, AP_TRN
    lsb = 2.0**-10
    w = np.float32([0.5, 0.5 + lsb * 0.99, -lsb * 0.01, np.nextafter(np.float32(0.5), np.float32(0))])
    assert hls_codes(w, t, 'w').tolist() == [512, 512, -1, 511]


def test_weight_outside_a_wrapping_type_is_refused_in_one_line():
    with pytest.raises(UnsupportedModel, match=r"layer 'fc' kernel: the float weight 40.0 is outside the range of "
                                               r'ap_fixed<16,6>, which hls4ml would wrap; give the layer a wider weight'):
        hls_codes(np.float32([1.0, 40.0]), FixedType(16, 6), "layer 'fc' kernel")
    assert hls_codes(np.float32([40.0]), FixedType(16, 6, overflow='SAT'), 'w').tolist() == [32767]


def _float_mlp(seed=0, n_in=8):
    import tensorflow as tf

    return random_weights(chain(tf.keras.layers.Dense(6, activation='relu', name='fc1'),
                                tf.keras.layers.Dense(5, name='fc2'), tf.keras.layers.ReLU(name='relu2'),
                                tf.keras.layers.Dense(3, name='out'), n_in=n_in), seed, kernel=0.5, bias=0.5)


def test_float_dense_takes_the_config_precision_and_reports_why_float_differs():
    model = _float_mlp()
    im = to_integer_model(model, FixedType(8, 3), {'fc2': Overrides(weight='ap_fixed<8,2>', result='ap_fixed<12,4>')})
    layers = {l.name: l for l in im.layers}
    assert layers['fc1'].weight_type == FixedType(16, 6) and layers['fc1'].out_type == FixedType(16, 6)
    assert layers['fc2'].weight_type == FixedType(8, 2) and layers['fc2'].bias_type == FixedType(8, 2)
    assert layers['fc2'].out_type == FixedType(12, 4)
    assert layers['relu2'].kind == 'relu' and layers['relu2'].out_type == FixedType(12, 4)
    want = hls_codes(model.get_layer('fc2').kernel.numpy(), FixedType(8, 2), 'w')
    assert np.array_equal(layers['fc2'].weight, want)
    assert 'float weights are cast to ap_fixed<8,2>' in layers['fc2'].inexact_in_float()
    wide = to_integer_model(model, FixedType(8, 3), default_precision='ap_fixed<20,8>')
    assert wide.layers[1].weight_type == FixedType(20, 8)


def test_weight_precision_on_a_quantized_layer_is_refused(tmp_path):
    from user_models import small_mlp

    with pytest.raises(UnsupportedModel, match=r"layer 'fc1': weight/bias precision applies to unquantized Keras layers"):
        to_integer_model(small_mlp(), FixedType(8, 3), {'fc1': Overrides(weight='ap_fixed<8,2>')})


def test_relu_with_a_bound_is_refused():
    import tensorflow as tf

    with pytest.raises(UnsupportedModel, match=r"layer 'r' \(ReLU\): max_value/negative_slope/threshold are ignored"):
        to_integer_model(chain(tf.keras.layers.ReLU(max_value=6.0, name='r')), FixedType(8, 3))


@pytest.mark.slow
@pytest.mark.csim
def test_float_mlp_flow_is_exact_and_reports_the_float_deviation_in_lsb(tmp_path):
    import json

    from flow.config import FlowConfig
    from flow.steps import run_flow

    _float_mlp().save(tmp_path / 'm.h5')
    cfg = FlowConfig.load(None, model=str(tmp_path / 'm.h5'), input_precision='ap_fixed<8,3>', n_golden=64,
                          layers={'fc2': {'weight': 'ap_fixed<8,2>'}})
    run_flow(cfg, tmp_path / 'b', to_step='verify')
    report = json.loads((tmp_path / 'b' / 'reports' / 'verify.json').read_text())
    assert report['reference_vs_csim'] == {'equal_vectors': 64, 'exact': True}
    q = report['qkeras_vs_reference']
    assert not q['all_layers_exact'] and q['exact_layers'] == [] and 'float weights are cast' in q['reason']
    assert q['max_deviation_lsb']['out'] > 0  # the float model differs, said in LSBs


@pytest.mark.csim
def test_float_conv2d_cosim(tmp_path):
    import tensorflow as tf

    from flow.config import FlowConfig
    from test_conv_cosim import check_cosim

    inp = tf.keras.Input((5, 5, 2), name='x')
    x = tf.keras.layers.Conv2D(3, (3, 3), padding='same', name='conv')(inp)
    x = tf.keras.layers.ReLU(name='relu')(x)
    x = tf.keras.layers.Flatten(name='flat')(x)
    model = random_weights(tf.keras.Model(inp, tf.keras.layers.Dense(2, name='head')(x)), 3, kernel=0.7, bias=0.5)
    cfg = FlowConfig.load(None, model='m.h5', layers={'conv': {'result': 'ap_fixed<14,6>'}})
    im, _ = check_cosim(tmp_path, model, FixedType(8, 3), cfg)
    assert im.layers[1].kind == 'conv2d' and im.layers[1].float_weights
