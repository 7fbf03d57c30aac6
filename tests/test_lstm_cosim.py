"""Co-simulation of the block-sparse LSTM template (hls_templates/nnet_block_sparse_lstm.h):
hls4ml C simulation == the integer reference (flow/runtime/ref_lstm.py) on every output code,
over random shapes, blocks, bit widths, sequence lengths, ReuseFactors, return_sequences, a
stacked LSTM with a dense head; a corrupted emitted weight is caught by the conversion check;
one small user LSTM model runs the flow to 'estimate' bit-exact."""

import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flow.infra.boards import get_board
from flow.plan import make_plan
from flow.config import FlowConfig
from flow.stages.convert import ConversionMismatch, check_against_reference, compile_csim, convert_model
from flow.export import to_integer_model
from flow.runtime.fixed import FixedType
from flow.stages.verify import compare_reference_csim, csim_library
from test_lstm import build  # random weights that reach every clip and saturation

pytestmark = pytest.mark.csim

IN_T = FixedType(8, 3, rounding='RND_CONV', overflow='SAT')


def qb(bits, integer):
    from qkeras import quantized_bits

    return quantized_bits(bits, integer, alpha=1)


def lstm(units, name, kbits=6, sbits=8, tbits=8, cell=(12, 3), hidden=(8, 0), **kw):
    from qkeras import quantized_sigmoid, quantized_tanh

    from keras_models.lstm import BlockSparseQLSTM

    return BlockSparseQLSTM(units, name=name, kernel_quantizer=qb(kbits, 0), recurrent_quantizer=qb(kbits, 0),
                            recurrent_activation=quantized_sigmoid(sbits), activation=quantized_tanh(tbits),
                            cell_quantizer=qb(*cell), state_quantizer=qb(*hidden), **kw)


def dense_head(n, name='head'):
    from qkeras import QDense

    return QDense(n, kernel_quantizer=qb(5, 0), bias_quantizer=qb(8, 2), name=name)


def convert(tmp_path, model, cfg, in_type=IN_T):
    im = to_integer_model(model, in_type)
    hls_model = convert_model(model, im, cfg, get_board('pynq-z2'), tmp_path / 'hls')
    return im, hls_model


def check_cosim(tmp_path, model, cfg, in_type=IN_T, n_vectors=24, seed=0):
    im, _ = convert(tmp_path, model, cfg, in_type)
    compile_csim(tmp_path / 'hls')
    lib = csim_library(tmp_path, im, cfg.project_name)
    rng = np.random.default_rng(seed)
    n = int(np.prod(im.input.shape))  # T x F codes per sample, flat as the C simulation takes them
    x_codes = rng.integers(in_type.min_code, in_type.max_code + 1, size=(n_vectors, n))
    x_codes[0], x_codes[1] = in_type.max_code, in_type.min_code
    compare_reference_csim(im, lib, in_type.to_float(x_codes), x_codes)  # raises naming layer/element
    return im, lib


def n_kept_blocks(im, name):
    layer = next(l for l in im.layers if l.name == name)
    return max(len(layer.index), len(layer.recurrent_index))


@st.composite
def lstm_cases(draw):
    steps = draw(st.integers(1, 6))
    n_in = draw(st.sampled_from([2, 4, 6, 8]))
    units = draw(st.sampled_from([2, 4, 6, 8]))
    block = (draw(st.sampled_from([d for d in (1, 2) if n_in % d == 0])), draw(st.sampled_from([d for d in (1, 2) if units % d == 0])))
    rblock = (draw(st.sampled_from([d for d in (1, 2) if units % d == 0])), draw(st.sampled_from([d for d in (1, 2) if units % d == 0])))
    drop = draw(st.sampled_from([0.0, 0.5]))
    kbits, sbits, tbits = draw(st.integers(3, 8)), draw(st.integers(3, 8)), draw(st.integers(3, 8))
    cell = (draw(st.integers(6, 12)), draw(st.integers(1, 3)))
    hidden = (draw(st.integers(4, 8)), draw(st.integers(0, 1)))
    seq = draw(st.booleans())
    head = draw(st.booleans())
    in_type = FixedType(draw(st.integers(4, 8)), draw(st.integers(1, 3)), rounding='RND_CONV', overflow='SAT')
    rf_pick = draw(st.integers(0, 100))
    seed = draw(st.integers(0, 10_000))
    levels = {}  # or HCGS: a level above each kernel's blocks (multiples of them that tile it), drop 0 or 0.5
    if draw(st.booleans()):
        def outer(rows, cols, b):
            fi = draw(st.sampled_from([d for d in range(1, rows // b[0] + 1) if (rows // b[0]) % d == 0]))
            fo = draw(st.sampled_from([d for d in range(1, cols // b[1] + 1) if (cols // b[1]) % d == 0]))
            return (b[0] * fi, b[1] * fo)
        d1 = draw(st.sampled_from([0.0, 0.5]))
        levels = {'levels': [(outer(n_in, units, block), d1), (block, drop)],
                  'recurrent_levels': [(outer(units, units, rblock), d1), (rblock, drop)]}
    return steps, n_in, units, block, rblock, drop, (kbits, sbits, tbits, cell, hidden), seq, head, in_type, rf_pick, seed, levels


@given(lstm_cases())
@settings(max_examples=int(os.environ.get('COSIM_EXAMPLES', 3)), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_random_lstms_match_reference_exactly(tmp_path_factory, case):
    """Random shapes, blocks, densities, HCGS levels, bit widths, sequence lengths, ReuseFactors; the
    last h or every h (then Flatten); with or without a dense head."""
    import tensorflow as tf

    steps, n_in, units, block, rblock, drop, (kb, sb, tb, cell, hidden), seq, head, in_type, rf_pick, seed, levels = case
    layers = [lstm(units, 'lstm', kb, sb, tb, cell, hidden, block_shape=block, recurrent_block_shape=rblock,
                   drop_rate=drop, mask_seed=seed, return_sequences=seq, **levels)]
    if seq:
        layers.append(tf.keras.layers.Flatten(name='flat'))
    if head:
        layers.append(dense_head(3))
    model = build((steps, n_in), *layers, seed=seed)
    most = n_kept_blocks(to_integer_model(model, in_type), 'lstm')
    cfg = FlowConfig.load(None, model='user.h5', layers={'lstm': {'reuse_factor': 1 + rf_pick % most}})
    check_cosim(tmp_path_factory.mktemp('lstm'), model, cfg, in_type, seed=seed)


def test_stacked_lstms_with_a_dense_head_match_reference(tmp_path):
    """LSTM (every h) -> LSTM (last h) -> dense: the second takes the first's (T, units) sequence;
    time-multiplexed MACs (ReuseFactor 3 and 2, neither divides the kept blocks)."""
    model = build((4, 6), lstm(8, 'lstm1', block_shape=(2, 2), drop_rate=0.5, return_sequences=True),
                  lstm(4, 'lstm2', kbits=5, block_shape=(2, 2), recurrent_block_shape=(1, 2), drop_rate=0.5),
                  dense_head(3), seed=3)
    cfg = FlowConfig.load(None, model='user.h5', layers={'lstm1': {'reuse_factor': 3}, 'lstm2': {'reuse_factor': 2}})
    im, lib = check_cosim(tmp_path, model, cfg, seed=3)
    assert im.sizes() == {'x': 24, 'lstm1': 32, 'lstm2': 4, 'head': 3}
    # a wrong reference bias of lstm2 is traced to lstm2 (lstm1 still agrees), element by element
    from flow.stages.verify import Mismatch

    bias = im.layers[2].bias.copy()
    im.layers[2].bias[:] *= -1  # the same magnitudes: within the accumulator
    x_codes = np.full((2, 24), IN_T.max_code)
    with pytest.raises(Mismatch, match=r"layer 'lstm2', sample 0, element \(\d+,\) \(unit \d+, after the last time step\)"):
        compare_reference_csim(im, lib, IN_T.to_float(x_codes), x_codes)
    # a wrong lstm1 is named with its time step: a sequence layer's outputs are (step, unit)
    im.layers[2].bias[:] = bias
    im.layers[1].bias[:] *= -1
    with pytest.raises(Mismatch, match=r"layer 'lstm1', sample 0, element \(0, (\d+)\) \(time step 0, unit \1\)"):
        compare_reference_csim(im, lib, IN_T.to_float(x_codes), x_codes)


def test_every_h_as_the_output_matches_reference(tmp_path):
    """LSTM (every h) -> Flatten as the last layer: hls4ml removes the final Flatten (the array is
    the same in io_parallel); one time step, so the sequence is a single h."""
    import tensorflow as tf

    model = build((1, 2), lstm(2, 'lstm', kbits=3, sbits=3, tbits=3, cell=(6, 1), hidden=(4, 0), block_shape=(1, 1),
                               drop_rate=0.0, return_sequences=True), tf.keras.layers.Flatten(name='flat'))
    check_cosim(tmp_path, model, FlowConfig.load(None, model='user.h5'), FixedType(4, 1, rounding='RND_CONV', overflow='SAT'))


def test_the_largest_reuse_factor_matches_reference(tmp_path):
    """8 inputs x 8 units at 50%: 8 kept 2x2 blocks of W, 16 kept 2x1 blocks of U; RF 16 is the
    most (the W lanes idle for half of the cycles). RF 1: the every-h test; RFs that divide
    nothing: the stacked test; random RFs: the random test."""
    model = build((3, 8), lstm(8, 'lstm', block_shape=(2, 2), recurrent_block_shape=(2, 1), drop_rate=0.5), seed=1)
    cfg = FlowConfig.load(None, model='user.h5', layers={'lstm': {'reuse_factor': 16}})
    check_cosim(tmp_path, model, cfg)


def test_reuse_factor_beyond_the_kept_blocks_is_refused(tmp_path):
    model = build((3, 8), lstm(8, 'lstm', block_shape=(2, 2), drop_rate=0.5))  # 8 kept blocks per kernel
    cfg = FlowConfig.load(None, model='user.h5', layers={'lstm': {'reuse_factor': 9}})
    with pytest.raises(ValueError, match=r"layer 'lstm' \(block_sparse_lstm\): ReuseFactor 9 is not one it can be built with: 1 \.\. 8"):
        convert(tmp_path, model, cfg)


@pytest.mark.parametrize('weight', ['weight', 'recurrent_weight', 'bias'])
def test_a_corrupted_emitted_table_is_a_conversion_mismatch(tmp_path, weight):
    """Every table hls4ml would write for the LSTM (the schedules' weight banks, the bias) is compared
    with the reference's exactly."""
    model = build((3, 4), lstm(4, 'lstm', block_shape=(2, 2), drop_rate=0.5))
    cfg = FlowConfig.load(None, model='user.h5')
    im, hls_model = convert(tmp_path, model, cfg)
    var = hls_model.graph['lstm'].get_weights(weight)
    var.data = np.array(var.data, copy=True)
    var.data.flat[0] = var.data.flat[0] + 2.0**-6
    with pytest.raises(ConversionMismatch, match=rf"layer 'lstm': hls4ml's {weight} values are not the reference's"):
        check_against_reference(hls_model, im, make_plan(im, cfg, get_board('pynq-z2')))


def test_a_different_generated_kernel_is_a_conversion_mismatch(tmp_path):
    """The step MAC hls4ml writes (nnet_code_gen.h) must be the reference's schedules': one moved
    gate is caught."""
    from flow.hls.lstm_emit import CODE_ATTR

    model = build((3, 4), lstm(4, 'lstm', block_shape=(2, 2), drop_rate=0.5))
    cfg = FlowConfig.load(None, model='user.h5', layers={'lstm': {'reuse_factor': 2}})
    im, hls_model = convert(tmp_path, model, cfg)
    plan = make_plan(im, cfg, get_board('pynq-z2'))
    check_against_reference(hls_model, im, plan)
    node = hls_model.graph['lstm']
    code = str(node.get_attr(CODE_ATTR))
    assert 'switch (t)' in code and '[t]' not in code  # case tables of the cycle, no table read at t
    from hls4ml.model.types import Source

    node.set_attr(CODE_ATTR, Source(code.replace('z[0] = acc_t(z[0] +', 'z[1] = acc_t(z[1] +', 1)))
    with pytest.raises(ConversionMismatch, match=r"layer 'lstm': hls4ml's generated LSTM kernel is not the one"):
        check_against_reference(hls_model, im, plan)


@pytest.mark.parametrize('cls', ['LSTM', 'GRU'])
def test_a_keras_recurrent_layer_is_refused_pointing_to_the_block_sparse_lstm(cls):
    import tensorflow as tf

    from flow.export import UnsupportedModel

    inp = tf.keras.Input((3, 4), name='x')
    model = tf.keras.Model(inp, getattr(tf.keras.layers, cls)(4, name='rnn')(inp))
    with pytest.raises(UnsupportedModel, match=rf"layer 'rnn' \({cls}\): not supported.*keras_models\.lstm\.BlockSparseQLSTM"):
        to_integer_model(model, IN_T)


def test_a_wrong_lstm_type_is_a_conversion_mismatch(tmp_path):
    model = build((3, 4), lstm(4, 'lstm', block_shape=(2, 2), drop_rate=0.5))
    cfg = FlowConfig.load(None, model='user.h5')
    im, hls_model = convert(tmp_path, model, cfg)
    node = hls_model.graph['lstm']
    from hls4ml.model.types import FixedPrecisionType, NamedType

    node.set_attr('cell_t', NamedType('lstm_cell_t', FixedPrecisionType(12, 4)))
    with pytest.raises(ConversionMismatch, match=r"layer 'lstm': hls4ml chose cell_t type"):
        check_against_reference(hls_model, im, make_plan(im, cfg, get_board('pynq-z2')))


def test_user_lstm_model_runs_the_flow_bit_exact(tmp_path):
    """A saved user model (LSTM -> every h -> Flatten -> dense) with (n, T, F) sequence data, through
    the flow to 'estimate': C simulation == reference, the accelerator streams T x F codes per
    sample and its testbench passes; no da4ml network (the report says why), the LSTM's engine
    Verilated exact on the golden sequences and synthesized."""
    import tensorflow as tf

    from flow.steps import run_flow

    steps, feats = 4, 3
    model = build((steps, feats), lstm(4, 'lstm', block_shape=(1, 2), drop_rate=0.5, return_sequences=True),
                  tf.keras.layers.Flatten(name='flat'), dense_head(3), seed=7)
    model.save(tmp_path / 'user.h5')
    rng = np.random.default_rng(7)
    x = rng.integers(-16, 16, size=(40, steps, feats)) / 8.0  # on the ap_fixed<8,3> grid
    np.savez(tmp_path / 'seq.npz', x_train=x[:24], y_train=rng.integers(0, 3, 24), x_test=x[24:], y_test=rng.integers(0, 3, 16))
    cfg = FlowConfig.load(None, model=str(tmp_path / 'user.h5'), dataset=str(tmp_path / 'seq.npz'), epochs=0,
                          n_golden=16, input_precision='ap_fixed<8,3>', rtl=True, layers={'lstm': {'reuse_factor': 2}})
    ctx = run_flow(cfg, tmp_path / 'b', to_step='estimate')
    report = json.loads((ctx.root / 'reports' / 'verify.json').read_text())
    assert report['reference_vs_csim'] == {'equal_vectors': 16, 'exact': True}
    assert report['accelerator_testbench'].startswith('PASS: 16 samples,')
    assert report['rtl']['built'] is False and 'da4ml builds no recurrent layer' in report['rtl']['reason']
    assert report['rtl']['engines']['lstm']['exact'] and report['rtl']['equal_vectors'] == 16
    assert report['rtl']['engines']['lstm']['cycles_per_sample'] == (16 * steps * (2 + 4) + 1) / 16
    assert np.load(ctx.root / 'golden' / 'input_codes.npy').shape == (16, steps * feats)
    fmt = json.loads((ctx.root / 'golden' / 'stream_format.json').read_text())
    assert fmt['n_in'] == steps * feats and fmt['n_out'] == 3
    est = json.loads((ctx.root / 'reports' / 'estimate.json').read_text())['layers']['lstm']
    assert est['ours']['cycles'] == steps * est['ours']['cycles_per_step'] and est['ours']['cycles_per_step'] >= 2


def test_estimate_follows_the_generated_step_mac():
    """8 inputs x 8 units: W 2x2 blocks (8 kept), U 2x1 blocks (16 kept); RF 4: the live multipliers
    of both kernels' schedules (4 gates each), 5 steps of input copy + RF + pipeline depth + state
    cycles; the weight ROMs are the schedules' banks (padding included), no index stored."""
    from flow.runtime.lstm_engine import lstm_engine
    from flow.runtime.ref_lstm import LSTM_INPUT_COPY, LSTM_MAC_DEPTH, LSTM_STATE_CYCLES
    from flow.stages.estimate import layer_estimate

    model = build((5, 8), lstm(8, 'lstm', block_shape=(2, 2), recurrent_block_shape=(2, 1), drop_rate=0.5), seed=1)
    im = to_integer_model(model, IN_T)
    layer = im.layers[1]
    assert (len(layer.index), len(layer.recurrent_index)) == (8, 16)
    est = layer_estimate(layer, 4, in_type=IN_T, in_size=5 * 8)
    ours, eng = est['ours'], lstm_engine(layer, 4)
    # 32 + 32 kept weights per gate in 4 cycles: 8 + 8 multipliers per gate (fewer where a bank is all zeros)
    assert ours['multipliers'] == eng.multipliers <= 4 * (8 + 8)
    assert ours['step_cycles'] == {'input_copy': LSTM_INPUT_COPY, 'mac': 4,
                                   'pipeline_depth': LSTM_MAC_DEPTH + eng.adder_levels(), 'state': LSTM_STATE_CYCLES}
    assert ours['cycles'] == 5 * ours['cycles_per_step'] == 5 * sum(ours['step_cycles'].values())
    assert est['hls4ml_dense']['cycles'] == 5 * 4
    assert ours['index_bits'] == 0
    assert ours['weight_memory_bits'] == (eng.w_slots + eng.u_slots) * 6
    assert eng.w_slots >= layer.values.size and eng.u_slots >= layer.recurrent_values.size


def test_hcgs_lstm_with_sign_magnitude_weights_matches_reference(tmp_path):
    """The paper's configuration in small: two-level HCGS masks on both kernels (shared by the four
    gates), sign-magnitude weights (no zero code), a dense head: C simulation == reference."""
    from keras_models.quantizers import sign_magnitude

    q = sign_magnitude(3)
    layer = lstm(16, 'lstm', levels=[((8, 8), 0.5), ((2, 2), 0.5)], mask_seed=4)
    layer.kernel_quantizer_internal = layer.recurrent_quantizer_internal = q
    model = build((4, 16), layer, dense_head(3), seed=4)
    cfg = FlowConfig.load(None, model='user.h5', layers={'lstm': {'reuse_factor': 3}})
    im, _ = check_cosim(tmp_path, model, cfg)
    ref = next(l for l in im.layers if l.name == 'lstm')
    assert ref.levels == ref.recurrent_levels == [[8, 8], [2, 2]] and ref.weight_type == FixedType(4, 2)
