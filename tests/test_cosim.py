"""Co-simulation: hls4ml C simulation of our template == the integer reference, bit for bit,
on random block-sparse layers (shapes, blocks, densities, bit widths, ReuseFactors)."""

import os
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flow.infra.boards import get_board
from flow.config import FlowConfig
from flow.stages.convert import compile_csim, convert_model
from flow.export import Overrides, to_integer_model
from flow.runtime.fixed import FixedType
from flow.stages.verify import compare_reference_csim, csim_library
from user_models import random_weights

pytestmark = pytest.mark.csim


def build_keras(n_in, n_out, block, drop, wbits, wint, seed, with_head, outer=None):
    """``outer``: an HCGS level above the block, ((block_in, block_out), drop), or None (CGS)."""
    import tensorflow as tf
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu

    from keras_models.layers import BlockSparseQDense

    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input((n_in,), name='x')
    x = BlockSparseQDense(n_out, block_shape=block, drop_rate=drop, mask_seed=seed, name='bs',
                          levels=[outer, (block, drop)] if outer else None,
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
    bi = draw(st.sampled_from([d for d in (1, 2, 3, 4, 8) if n_in % d == 0]))  # 3: runs of non-power-of-2 length
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
    outer = None  # or an HCGS level above the blocks: multiples of them that tile the kernel
    if draw(st.booleans()):
        fi = draw(st.sampled_from([d for d in range(1, n_in // bi + 1) if (n_in // bi) % d == 0]))
        fo = draw(st.sampled_from([d for d in range(1, n_out // bo + 1) if (n_out // bo) % d == 0]))
        outer = ((bi * fi, bo * fo), draw(st.sampled_from([0.0, 0.5])))
    return n_in, n_out, (bi, bo), drop, wbits, wint, in_type, head, seed, rf_pick, narrow, outer


@given(layer_cases())
@settings(max_examples=int(os.environ.get('COSIM_EXAMPLES', 6)), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_random_block_sparse_layers_match_reference_exactly(tmp_path_factory, case):
    """Random CGS and two-level HCGS layers (shapes, blocks, densities, bit widths, ReuseFactors)."""
    n_in, n_out, block, drop, wbits, wint, in_type, head, seed, rf_pick, narrow, outer = case
    model = build_keras(n_in, n_out, block, drop, wbits, wint, seed, head, outer)
    n_kept = int(to_integer_model(model, in_type).layers[1].values.size)
    # any ReuseFactor 1..n_kept: most do not divide the layer's work and force zero padding
    layers = {'bs': {'reuse_factor': 1 + rf_pick % n_kept}}
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
    from flow.stages.verify import Mismatch

    with pytest.raises(Mismatch, match=rf"layer 'bs', sample 0, element \({int(bs.index[0]) * 4},\)"):
        compare_reference_csim(im, lib, in_type.to_float(x_codes), x_codes)
    assert im.sizes() == {'x': 16, 'bs': 8, 'act': 8, 'head': 3}


@pytest.mark.parametrize('rf', [7, 64])
def test_reuse_factors_that_force_padding_or_the_most_match_reference(tmp_path, rf):
    """16 x 8 at 50%, 4x4 blocks: 64 kept weights. RF 7 pads; RF 64 is one multiplier per column."""
    model = build_keras(16, 8, (4, 4), 0.5, 4, 0, 1, False)
    cfg = FlowConfig.load(None, model='user.h5', layers={'bs': {'reuse_factor': rf}})
    check_cosim(tmp_path, model, FixedType(8, 2), cfg)


def test_time_multiplexed_outputs_match_reference(tmp_path):
    """32 x 16 at 50%, 2x4 blocks, RF 24: multipliers work through several outputs (running sums,
    partial sums held between runs, outputs written inside the loop), with a rounding, saturating cast."""
    from flow.runtime.static_engine import static_engine

    model = build_keras(32, 16, (2, 4), 0.5, 4, 0, 3, False)
    narrow = 'ap_fixed<8,3,AP_RND_CONV,AP_SAT>'
    cfg = FlowConfig.load(None, model='user.h5', layers={'bs': {'reuse_factor': 24, 'result': narrow}})
    im, _ = check_cosim(tmp_path, model, FixedType(8, 2), cfg)
    eng = static_engine(im.layers[1].schedule(24))
    assert len(eng.running()) < len(eng.timed_outputs()) == 16 and eng.handoffs()


def test_outputs_of_several_chains_match_reference(tmp_path):
    """64 x 32 at 75%, 4x4 blocks, RF 16: two lanes compute some outputs at once, so the kernel sums
    their chains' running sums (read where a chain ends, or from its hold) and casts the sum once."""
    from flow.runtime.static_engine import static_engine

    model = build_keras(64, 32, (4, 4), 0.75, 4, 0, 3, False)
    cfg = FlowConfig.load(None, model='user.h5', layers={'bs': {'reuse_factor': 16, 'result': 'ap_fixed<8,3,AP_RND_CONV,AP_SAT>'}})
    im, _ = check_cosim(tmp_path, model, FixedType(8, 2), cfg)
    finals = static_engine(im.layers[1].schedule(16)).finals()
    assert {k for _, parts in finals.values() for k, _ in parts} == {'r', 'h'}


def test_reuse_factor_beyond_the_kept_weights_is_refused(tmp_path):
    model = build_keras(16, 8, (4, 4), 0.5, 4, 0, 1, False)  # 16 x 8 at 50%: 64 kept weights
    cfg = FlowConfig.load(None, model='user.h5', layers={'bs': {'reuse_factor': 65}})
    im = to_integer_model(model, FixedType(8, 2))
    with pytest.raises(ValueError, match=r"layer 'bs' \(block_sparse_dense\): ReuseFactor 65 is not one it can be built "
                                         r'with: 1 \.\. 64 \(its 64 kept weights\)'):
        convert_model(model, im, cfg, get_board('pynq-z2'), tmp_path / 'hls')


def _config_struct(parameters_h: str, index: int) -> dict:
    body = parameters_h[parameters_h.index(f'struct config{index} :'):]
    body = body[:body.index('};')]
    return {m[0]: int(m[1]) for m in re.findall(r'static const unsigned (\w+) = (\d+);', body)}


def _array(firmware: Path, var: str) -> np.ndarray:
    """An array as hls4ml writes it for synthesis (weights/<var>.h)."""
    text = (firmware / 'weights' / f'{var}.h').read_text()
    m = re.search(rf'{var}\[(\d+)\] = \{{([^}}]*)\}};', text)
    values = np.array([float(v) for v in m[2].split(',')])
    assert len(values) == int(m[1])
    return values


def test_generated_firmware_holds_the_gather_schedule(tmp_path):
    """The emitted config, weight banks and per-layer kernel are gather(reference, rf)'s (read back
    here from the written firmware, not through the flow's own checks)."""
    from flow.hls.block_sparse_emit import emit_kernel
    from flow.runtime.schedule import gather

    rf = 7  # 64 kept weights: forces padding
    model = build_keras(16, 8, (4, 4), 0.5, 4, 0, 1, False)
    cfg = FlowConfig.load(None, model='user.h5', layers={'bs': {'reuse_factor': rf}})
    im = to_integer_model(model, FixedType(8, 2))
    hls_model = convert_model(model, im, cfg, get_board('pynq-z2'), tmp_path / 'hls')
    layer, node = im.layers[1], hls_model.graph['bs']
    sched = gather(layer, rf)
    assert sched.padding > 0
    firmware = tmp_path / 'hls' / 'firmware'
    parameters = (firmware / 'parameters.h').read_text()
    c = _config_struct(parameters, node.index)
    assert (c['n_lanes'], c['n_mult'], c['reuse_factor'], c['n_slots']) == (sched.n_lanes, sched.n_mult, rf, sched.n_mult * rf)
    kernel = f'block_sparse_dense_{node.index}'
    assert f'nnet::{kernel}<data_T, res_T, CONFIG_T>(data, res, weights, biases);' in parameters
    w = _array(firmware, node.get_weights('weight').name)
    assert len(w) == sched.n_mult * rf
    assert (w * 2**layer.weight_type.frac == sched.weights.reshape(-1)).all()  # bank m = words m*rf .. m*rf+rf-1
    assert not list((firmware / 'weights').glob('rs*.h')) and not list((firmware / 'weights').glob('sb*.h'))
    code_gen = (firmware / 'nnet_utils' / 'nnet_code_gen.h').read_text()
    assert emit_kernel(sched, kernel, "layer 'bs'") in code_gen
    call = re.search(r'nnet::block_sparse_dense<[^>]*>\(\w+, \w+, (\w+), (\w+)\);',
                     (firmware / f'{cfg.project_name}.cpp').read_text())
    assert call.groups() == (node.get_weights('weight').name, node.get_weights('bias').name)


def test_a_drift_between_the_emitted_schedule_and_the_reference_is_caught_at_conversion(tmp_path):
    """One reference weight off by one: the weight banks hls4ml would write are no longer
    gather(reference)'s, and conversion stops before any C simulation."""
    from flow.stages.convert import ConversionMismatch

    model = build_keras(16, 8, (4, 4), 0.5, 4, 0, 1, False)
    cfg = FlowConfig.load(None, model='user.h5', layers={'bs': {'reuse_factor': 7}})
    im = to_integer_model(model, FixedType(8, 2))
    im.layers[1].values[0, 0, 0] += 1
    with pytest.raises(ConversionMismatch, match=r"layer 'bs': hls4ml's weight values are not the reference's \(84 vs 84 values"):
        convert_model(model, im, cfg, get_board('pynq-z2'), tmp_path / 'hls')


def test_a_generated_kernel_that_is_not_the_references_is_caught_at_conversion(tmp_path, monkeypatch):
    """The node's kernel C++ (its case tables and source lists) drifting from gather(reference)'s:
    conversion stops, even when every weight is right."""
    from flow.hls import block_sparse_dense
    from flow.stages.convert import ConversionMismatch

    model = build_keras(16, 8, (4, 4), 0.5, 4, 0, 1, False)
    cfg = FlowConfig.load(None, model='user.h5', layers={'bs': {'reuse_factor': 7}})
    im = to_integer_model(model, FixedType(8, 2))
    good = block_sparse_dense.emit_kernel
    monkeypatch.setattr(block_sparse_dense, 'emit_kernel', lambda *a: good(*a).replace('x0 = data[', 'x0 = data[1 + ', 1))
    with pytest.raises(ConversionMismatch, match=r"layer 'bs': hls4ml's generated kernel is not the one of the reference's"):
        convert_model(model, im, cfg, get_board('pynq-z2'), tmp_path / 'hls')


def test_quantizers_with_more_integer_bits_than_bits_match_reference_exactly(tmp_path):
    """quantized_bits(bits, integer >= bits) is legal QKeras (a published anomaly-detection autoencoder
    ends in quantized_bits(10, 10)): multiples of 2^(integer + 1 - bits), which hls4ml 1.3.0 types as
    int<bits>, so conversion gives the weights the reference's ap_fixed<bits, integer + 1>."""
    import tensorflow as tf
    from qkeras import QActivation, QDense, quantized_bits

    tf.keras.utils.set_random_seed(0)
    inp = tf.keras.Input((12,), name='x')
    x = QDense(8, kernel_quantizer=quantized_bits(6, 7, alpha=1), bias_quantizer=quantized_bits(8, 9, alpha=1), name='d1')(inp)
    x = QActivation(quantized_bits(6, 8), name='a1')(x)
    x = QDense(4, kernel_quantizer=quantized_bits(4, 4, alpha=1), bias_quantizer=quantized_bits(8, 2, alpha=1), name='d2')(x)
    model = random_weights(tf.keras.Model(inp, x), 0, kernel=100, bias=300)
    in_type = FixedType(8, 3)
    im, _ = check_cosim(tmp_path, model, in_type, FlowConfig.load(None, model='user.h5', input_precision=in_type.hls()))
    d1 = {layer.name: layer for layer in im.layers}['d1']
    assert d1.weight_type.frac == -2 and np.any(d1.weight != 0)  # a step of 4: codes x 4
    x = np.random.default_rng(1).integers(in_type.min_code, in_type.max_code + 1, size=(32, 12))
    got = im.predict_codes(x)
    want = model.predict(in_type.to_float(x), verbose=0)  # QKeras: the same values (sums of exact products)
    assert np.array_equal(im.out_type.to_float(got), want)
