"""Co-simulation: hls4ml C simulation of our template == the integer reference, bit for bit,
on random block-sparse layers (shapes, blocks, densities, bit widths, ReuseFactors)."""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flow.boards import get_board
from flow.config import FlowConfig
from flow.convert import compile_csim, convert_model
from flow.export import Overrides, to_integer_model
from flow.runtime.fixed import FixedType
from flow.verify import compare_reference_csim, csim_library
from user_models import random_weights

pytestmark = pytest.mark.csim


def build_keras(n_in, n_out, block, drop, wbits, wint, seed, with_head):
    import tensorflow as tf
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu

    from keras_models.layers import BlockSparseQDense

    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input((n_in,), name='x')
    x = BlockSparseQDense(n_out, block_shape=block, drop_rate=drop, mask_seed=seed, name='bs',
                          kernel_quantizer=quantized_bits(wbits, wint, alpha=1),
                          bias_quantizer=quantized_bits(8, 2, alpha=1))(inp)
    if with_head:
        x = QActivation(quantized_relu(5, 1), name='act')(x)
        x = QDense(3, kernel_quantizer=quantized_bits(5, 0, alpha=1), bias_quantizer=quantized_bits(8, 2, alpha=1), name='head')(x)
    return random_weights(tf.keras.Model(inp, x), seed, kernel=1.5, bias=3, kernel_scale=2**wint)


def check_cosim(tmp_path, model, in_type, cfg, n_vectors=64, seed=0):
    im = to_integer_model(model, in_type, {n: Overrides(lc.accum, lc.result) for n, lc in cfg.layers.items()})
    convert_model(model, im, cfg, get_board('pynq-z2'), tmp_path / 'hls')
    compile_csim(tmp_path / 'hls')
    lib = csim_library(tmp_path, im, cfg.project_name)
    rng = np.random.default_rng(seed)
    x_codes = rng.integers(in_type.min_code, in_type.max_code + 1, size=(n_vectors, im.input.shape[0]))
    x_codes[0] = in_type.max_code  # extremes drive the accumulator bound
    x_codes[1] = in_type.min_code
    compare_reference_csim(im, lib, in_type.to_float(x_codes), x_codes)  # raises naming layer/element
    return im, lib


@st.composite
def layer_cases(draw):
    n_in = draw(st.sampled_from([8, 12, 16, 32]))
    n_out = draw(st.sampled_from([4, 8, 16, 24]))
    bi = draw(st.sampled_from([d for d in (1, 2, 4, 8) if n_in % d == 0]))
    bo = draw(st.sampled_from([d for d in (1, 2, 4, 8) if n_out % d == 0]))
    drop = draw(st.sampled_from([0.0, 0.25, 0.5, 0.75]))
    wbits = draw(st.integers(2, 8))
    wint = draw(st.integers(0, 1))
    iw = draw(st.integers(4, 10))
    in_type = FixedType(iw, draw(st.integers(1, 3)))
    head = draw(st.booleans())
    seed = draw(st.integers(0, 10_000))
    rf_pick = draw(st.integers(0, 100))
    narrow = draw(st.booleans())  # also exercise a rounding/saturating result cast
    return n_in, n_out, (bi, bo), drop, wbits, wint, in_type, head, seed, rf_pick, narrow


@given(layer_cases())
@settings(max_examples=int(os.environ.get('COSIM_EXAMPLES', 6)), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_random_block_sparse_layers_match_reference_exactly(tmp_path_factory, case):
    n_in, n_out, block, drop, wbits, wint, in_type, head, seed, rf_pick, narrow = case
    from keras_models.masks import kept_per_row

    model = build_keras(n_in, n_out, block, drop, wbits, wint, seed, head)
    n_kept = n_in * kept_per_row(n_out // block[1], drop) * block[1]
    valid = [rf for rf in range(1, n_kept + 1) if n_kept % rf == 0]
    layers = {'bs': {'reuse_factor': valid[rf_pick % len(valid)]}}
    if narrow:
        layers['bs']['result'] = 'ap_fixed<8,3,AP_RND_CONV,AP_SAT>'
    if head:
        layers['head'] = {'reuse_factor': 1}
    cfg = FlowConfig.load(None, model='user.h5', layers=layers)
    check_cosim(tmp_path_factory.mktemp('cosim'), model, in_type, cfg, seed=seed)


def test_a_wrong_weight_is_reported_with_its_layer_and_element(tmp_path):
    """Change one weight in each of two layers of the reference: the outputs differ, and the
    verification must trace back to the first layer that differs, not the output layer."""
    model = build_keras(16, 8, (4, 4), 0.5, 4, 0, 5, True)
    in_type = FixedType(8, 2)
    cfg = FlowConfig.load(None, model='user.h5')
    im, lib = check_cosim(tmp_path, model, in_type, cfg)
    bs = im.layers[1]
    bs.values[0, 0, 0] += 1  # kept block 0, row 0, col 0 -> output element index[0] * 4
    im.layers[-1].bias[0] += 1  # makes every output differ
    x_codes = np.full((4, 16), in_type.max_code)
    from flow.verify import Mismatch

    with pytest.raises(Mismatch, match=rf"layer 'bs', sample 0, element \({int(bs.index[0]) * 4},\)"):
        compare_reference_csim(im, lib, in_type.to_float(x_codes), x_codes)
    assert im.sizes() == {'x': 16, 'bs': 8, 'act': 8, 'head': 3}


def test_reuse_factor_that_does_not_divide_kept_weights_is_refused(tmp_path):
    model = build_keras(16, 8, (4, 4), 0.5, 4, 0, 1, False)  # 16 x 8 at 50%: 64 kept weights
    cfg = FlowConfig.load(None, model='user.h5', layers={'bs': {'reuse_factor': 7}})
    im = to_integer_model(model, FixedType(8, 2))
    with pytest.raises(ValueError, match=r"layer 'bs': ReuseFactor 7 does not divide its 64 kept weights; nearest valid values: \[4, 8\]"):
        convert_model(model, im, cfg, get_board('pynq-z2'), tmp_path / 'hls')
