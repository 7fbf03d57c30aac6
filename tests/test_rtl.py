"""The RTL level: da4ml logic from the integer reference, Verilated, equal to the reference on
every output code; yosys resources; the rtl step in the flow."""

import json
from dataclasses import dataclass

import numpy as np
import pytest

from flow.export import exact_accum_type
from flow.rtl import tools
from flow.rtl.build import first_rtl_mismatch, layer_designs
from flow.rtl.logic import NoLogic, cast, network_comb
from flow.rtl.simulate import RTLDesign
from flow.rtl.synth import parse_stat
from flow.runtime.fixed import FixedType
from flow.runtime.ref_activations import HardSigmoid, HardTanh, Sigmoid
from flow.runtime.ref_block_sparse import BlockSparseDense, pack_blocks
from flow.runtime.ref_layers import BatchNorm, Dense, DensePo2, Input, Linear, RefLayer, ReLU
from flow.runtime.reference import IntegerModel

pytestmark = [pytest.mark.rtl, pytest.mark.skipif(bool(tools.missing()), reason=f'RTL tools missing: {tools.missing()}')]

BIAS_T = FixedType(8, 3)


def _accumulating(cls, name, w, w_t, in_t, out_t, rng, **kw):
    bias = rng.integers(BIAS_T.min_code, BIAS_T.max_code + 1, w.shape[1])
    acc = exact_accum_type(w, w_t, bias, BIAS_T, in_t)
    return cls(name, out_t or acc, weight_type=w_t, bias_type=BIAS_T, accum_type=acc, bias=bias, **kw)


def block_sparse(name, n_in, n_out, block, kept, wbits, in_t, rng, out_t=None):
    """Random CGS layer: ``kept`` blocks of every input block-row, ``wbits``-bit weights."""
    rows, cols = n_in // block[0], n_out // block[1]
    mask = np.zeros((rows, cols), bool)
    for r in range(rows):
        mask[r, rng.choice(cols, kept, replace=False)] = True
    w = rng.integers(-(1 << (wbits - 1)), 1 << (wbits - 1), (n_in, n_out)) * np.kron(mask, np.ones(block, int))
    values, index, kpr = pack_blocks(w, mask, block)
    return _accumulating(BlockSparseDense, name, w, FixedType(wbits, 1), in_t, out_t, rng, n_in=n_in, n_out=n_out,
                         block=block, kept_per_row=kpr, values=values, index=index)


def dense(name, n_in, n_out, wbits, in_t, rng, out_t=None):
    w = rng.integers(-(1 << (wbits - 1)), 1 << (wbits - 1), (n_in, n_out))
    return _accumulating(Dense, name, w, FixedType(wbits, 1), in_t, out_t, rng, weight=w)


def rtl_equals_reference(im: IntegerModel, folder, rng, n=200):
    """Random input codes (extremes first) through the Verilated network == the reference."""
    t = im.in_type
    x = rng.integers(t.min_code, t.max_code + 1, (n, int(np.prod(im.input.shape))))
    x[0], x[1] = t.max_code, t.min_code
    design = RTLDesign(network_comb(im), 'net', folder, 'xc7z020clg400-1', 10.0)
    design.write()
    design.compile()
    got = design.run(x, t, im.out_type)
    expected = im.predict_codes(x)
    assert np.array_equal(got, expected), f'first difference at {np.argwhere(got != expected)[0]}'


CASES = {  # name -> (input type, layers(in_t, rng)); covers every dense-like kind and the casts
    'cgs_relu_dense': (FixedType(6, 2), lambda t, rng: [
        block_sparse('fc1', 16, 16, (4, 4), 2, 4, t, rng),
        r1 := ReLU('relu1', FixedType(6, 2, False, 'RND_CONV', 'SAT')),
        dense('fc2', 16, 5, 6, r1.out_type, rng)]),
    'cgs_blocks_2x8_3bit_rounded_result': (FixedType(8, 3), lambda t, rng: [
        block_sparse('fc1', 8, 32, (2, 8), 1, 3, t, rng, out_t=FixedType(9, 4, True, 'RND', 'SAT')),
        Linear('q', FixedType(5, 2, True, 'RND_CONV', 'SAT_SYM'))]),
    'po2_and_batchnorm': (FixedType(6, 3), lambda t, rng: [
        _accumulating(DensePo2, 'p', w := np.where(rng.random((12, 6)) < 0.3, 0, 1 << rng.integers(0, 4, (12, 6)))
                      * rng.choice([-1, 1], (12, 6)), FixedType(8, 4), t, None, rng, weight=w, exponent_bits=3),
        ReLU('r', FixedType(8, 4, False)),
        _accumulating(BatchNorm, 'bn', np.diag(s := rng.integers(-8, 8, 6)), FixedType(5, 3), FixedType(8, 4, False),
                      FixedType(10, 5, True, 'TRN', 'SAT'), rng, scale=s)]),
    'cgs_hard_sigmoid_hard_tanh': (FixedType(7, 3), lambda t, rng: [
        block_sparse('fc1', 16, 8, (8, 2), 2, 5, t, rng, out_t=FixedType(8, 3, True, 'RND', 'SAT')),
        HardSigmoid('hs', FixedType(8, 1, False, 'RND', 'SAT'), slope=13, slope_type=FixedType(8, 2), shift=32,
                    shift_type=FixedType(8, 2)),
        HardTanh('ht', FixedType(6, 1, True, 'RND_CONV', 'SAT'), slope=1, slope_type=FixedType(2, 0), shift=1,
                 shift_type=FixedType(2, 0))]),
}


@pytest.mark.parametrize('case', CASES)
@pytest.mark.parametrize('seed', [0, 1])
def test_rtl_simulation_equals_reference(tmp_path, case, seed):
    in_t, make = CASES[case]
    rng = np.random.default_rng(seed)
    layers = make(in_t, rng)
    im = IntegerModel([Input('x', in_t, shape=(layers[0].dense_weight().shape[0],)), *layers])
    rtl_equals_reference(im, tmp_path / 'net', rng)


def test_pipelined_network_is_exact_and_measured_per_stage(tmp_path, monkeypatch):
    """da4ml's latency cutoff splits the network into stages; one sample per cycle through Verilator
    equals the reference, and yosys gives the logic depth into every stage's register, each below
    the combinational network's depth, the pipeline registers counted as FFs."""
    from flow.rtl.synth import synthesize

    monkeypatch.setenv('SPARSE_FLOW_CACHE', str(tmp_path / 'cache'))
    in_t, make = CASES['cgs_relu_dense']
    rng = np.random.default_rng(0)
    layers = make(in_t, rng)
    im = IntegerModel([Input('x', in_t, shape=(16,)), *layers])
    comb = network_comb(im)
    x = rng.integers(in_t.min_code, in_t.max_code + 1, (100, 16))
    x[0], x[1] = in_t.max_code, in_t.min_code
    pipe = RTLDesign(comb, 'net', tmp_path / 'pipe', 'xc7z020clg400-1', 10.0, latency_cutoff=2)
    assert pipe.stages > 1 and len(pipe.registers()) == pipe.stages
    pipe.write()
    pipe.compile()
    assert np.array_equal(pipe.run(x, in_t, im.out_type), im.predict_codes(x))
    got = synthesize(pipe.path, 'net', 'xc7', tuple(pipe.registers()))
    depths = [got['depth_into'][r] for r in pipe.registers()]
    comb_design = RTLDesign(comb, 'net', tmp_path / 'comb', 'xc7z020clg400-1', 10.0)
    comb_design.write()
    flat = synthesize(comb_design.path, 'net', 'xc7')
    assert all(d > 0 for d in depths) and max(depths) == got['logic_depth'] < flat['logic_depth']
    assert got['ff'] > 0 == flat['ff']


def test_the_latency_cutoff_follows_the_board_clock():
    from flow.infra.boards import get_board

    z2 = get_board('pynq-z2')
    fast = z2.model_copy(update={'pl_clock_mhz': 2 * z2.pl_clock_mhz})
    assert 1 <= fast.adder_levels_per_stage < z2.adder_levels_per_stage
    assert fast.logic_depth_budget < z2.logic_depth_budget
    assert get_board('zcu104').adder_levels_per_stage > z2.adder_levels_per_stage  # UltraScale+ adds faster


@pytest.mark.parametrize('out_t', [FixedType(6, 2, False, 'RND_CONV', 'SAT'), FixedType(5, 3, True, 'RND_CONV', 'WRAP'),
                                   FixedType(4, 1, True, 'RND', 'SAT_SYM'), FixedType(7, 2, True, 'TRN', 'SAT')])
def test_casts_are_exact_on_every_input_code(tmp_path, out_t):
    """Rounding (half-even included) and overflow of ap_fixed, exhaustively over a 10-bit input."""
    from da4ml.trace import FixedVariableArrayInput, comb_trace

    in_t = FixedType(10, 4)
    inp = FixedVariableArrayInput((64,))
    design = RTLDesign(comb_trace(inp, cast(inp.quantize(1, 3, 6), out_t, 'test')), 'cast', tmp_path, 'xc7z020', 10.0)
    design.write()
    design.compile()
    codes = np.resize(np.arange(in_t.min_code, in_t.max_code + 1), (16, 64))
    assert np.array_equal(design.run(codes, in_t, out_t), out_t.from_codes(codes, in_t.frac))


def test_a_mismatch_names_the_first_layer_and_element(tmp_path):
    """RTL built from a reference with one bias off by one LSB, checked against the true one."""
    rng = np.random.default_rng(3)
    t = FixedType(6, 2)
    good = IntegerModel([Input('x', t, shape=(16,)), block_sparse('fc1', 16, 8, (4, 4), 1, 4, t, rng),
                         ReLU('relu1', FixedType(6, 2, False, 'RND_CONV', 'SAT'))])
    good.layers.append(dense('fc2', 8, 4, 5, good.layers[-1].out_type, rng))
    bad = IntegerModel([*good.layers[:3], Dense(**{**good.layers[3].__dict__, 'bias': good.layers[3].bias + np.eye(4, dtype=int)[2]})])
    x = rng.integers(t.min_code, t.max_code + 1, (50, 16))
    design = RTLDesign(network_comb(bad), 'net', tmp_path / 'net', 'xc7z020', 10.0)
    design.write()
    design.compile()
    out = design.run(x, t, bad.out_type)
    assert not np.array_equal(out, good.predict_codes(x))
    msg = first_rtl_mismatch(good, good.trace(x), layer_designs(bad, tmp_path / 'layers', 'xc7z020', 10.0, 'p'), out)
    assert "layer 'fc2', sample 0, element (2,)" in msg, msg


def test_layers_and_types_without_logic_are_refused_by_name():
    @dataclass
    class Mixing(RefLayer):  # neither a constant matrix-vector product nor elementwise
        kind = 'mixing_test'

        def forward(self, x, in_type):
            return x[:, ::-1]

    t = FixedType(8, 3)
    with pytest.raises(NoLogic, match=r"layer 'mix' \(mixing_test\) has no da4ml form"):
        network_comb(IntegerModel([Input('x', t, shape=(4,)), Mixing('mix', t)]))
    with pytest.raises(NoLogic, match=r"layer 'q': type .* rounds RND_ZERO"):
        network_comb(IntegerModel([Input('x', t, shape=(4,)), Linear('q', FixedType(6, 2, True, 'RND_ZERO'))]))
    table = Sigmoid('sg', FixedType(8, 1, False), table_size=1024, table_type=FixedType(18, 8), table=np.zeros(1024, int))
    with pytest.raises(NoLogic, match=r"layer 'sg' \(sigmoid\) is a lookup table"):
        network_comb(IntegerModel([Input('x', t, shape=(4,)), table]))


def test_rtl_step_without_tools_or_switched_off(default_build, tmp_path, monkeypatch):
    import shutil

    from flow.config import FlowConfig
    from flow.steps import ToolMissing, run_flow

    root = tmp_path / 'b'
    shutil.copytree(default_build.root, root)
    cfg = FlowConfig.load(None, epochs=15, n_golden=64)
    monkeypatch.setattr(tools, 'missing', lambda: ['yosys (apt-get install yosys, or rerun scripts/setup)'])
    with pytest.raises(ToolMissing, match=r'the RTL level needs yosys .*--from-step rtl'):
        run_flow(cfg, root, from_step='rtl', to_step='estimate')
    assert json.loads((root / 'manifest.json').read_text())['steps']['estimate']['status'] == 'done'
    monkeypatch.undo()
    run_flow(cfg.model_copy(update={'rtl': False}), root, from_step='rtl', to_step='rtl')
    level = json.loads((root / 'reports' / 'verify.json').read_text())['rtl']
    assert level == {'built': False, 'reason': 'rtl: false in the config'}


def test_yosys_stat_is_grouped_into_resources():
    stat = '''
   Number of cells:               1700
     CARRY4                        297
     FDRE                           12
     LUT2                          811
     LUT6                           62
     DSP48E1                         2
     RAMB36E1                        1
     RAMB18E1                        3
     MUXF7                           7
'''
    assert parse_stat(stat) == {'lut': 873, 'ff': 12, 'carry': 297, 'dsp': 2, 'muxf': 7, 'bram18': 5}


def test_default_flow_reports_rtl_level_and_measured_resources(default_build):
    root = default_build.root
    level = json.loads((root / 'reports' / 'verify.json').read_text())['rtl']
    assert level['exact'] and level['equal_vectors'] == 64
    res = json.loads((root / 'reports' / 'rtl_resources.json').read_text())
    assert res['built'] and res['family'] == 'xc7'
    assert set(res['layers']) == {'fc1', 'relu1', 'fc2', 'relu2', 'logits'}
    assert all(r['dsp'] == 0 and r['ff'] == 0 for r in res['layers'].values())  # each layer alone: combinational, multiplier-free
    # the network pipelined at the board's cutoff, measured whole: FFs are its pipeline registers
    pipe, net = res['pipeline'], res['network']
    assert pipe['stages'] > 1 and len(pipe['stage_logic_depth']) == pipe['stages'] == pipe['latency_cycles'] - 1
    assert net['lut'] > 0 and net['ff'] > 0 and net['dsp'] == 0
    assert net['logic_depth'] == pipe['max_stage_logic_depth'] == max(pipe['stage_logic_depth'])
    assert net['logic_depth'] < sum(r['logic_depth'] for r in res['layers'].values())  # no longer one combinational path
    assert pipe['timing_plausible'] == (pipe['max_stage_logic_depth'] <= pipe['logic_depth_budget'])
    assert res['fits'] == (all(v['margin'] >= 0 for v in res['fit'].values()) and pipe['timing_plausible'])
    assert (root / 'rtl' / 'network' / 'src' / 'sparsenet.v').is_file()
    # the block-sparse layers' time-multiplexed engines, at their ReuseFactors (16), on the golden vectors
    assert set(res['engines']) == set(level['engines']) == {'fc1', 'fc2'}
    for name, e in res['engines'].items():
        assert level['engines'][name]['exact'] and e['organisation'] == 'gather' and e['reuse_factor'] == 16
        assert e['cycles_per_sample'] == (64 * 16 + 3) / 64  # back to back: one sample every RF cycles
        assert 0 < e['dsp'] <= e['multipliers'] and e['lut'] > 0 and e['ff'] > 0  # a multiplier of zeros only is no DSP
    assert (root / 'rtl' / 'engines' / 'fc1' / 'sparsenet_fc1_engine.v').is_file()
    est = json.loads((root / 'reports' / 'estimate.json').read_text())['total']
    assert est['fit']['dsp']['source'] == 'estimated'
    assert est['fit']['lut'] == {**est['fit']['lut'], 'source': 'measured',
                                 'used': sum(e['lut'] for e in res['engines'].values())}
    assert est['fully_parallel_measured']['fit']['lut']['used'] == res['network']['lut']
    # the manifest still vouches for verify.json after the rtl step amended it
    from flow.infra.build_dir import BuildDir
    BuildDir(root).check_files('verify', 'verify')


def test_a_failed_synthesis_stops_the_others_at_once(monkeypatch):
    """yosys runs two at a time in worker threads: a failure (or an interrupt) in the main thread
    cancels the jobs not started and kills the tools still running, so nothing outlives the step."""
    import time
    from types import SimpleNamespace

    from flow.infra import processes
    from flow.rtl import build
    from flow.rtl.synth import SynthFailed

    started = []

    def fake_synthesize(path, top, family):
        started.append(top)
        if top == 'a':
            time.sleep(0.5)  # b's tool is running by now
            raise SynthFailed('yosys failed on a')
        processes.run(['sleep', '30'])  # killed, so it returns early
        return {}

    monkeypatch.setattr(build, 'synthesize', fake_synthesize)
    per_layer = [(SimpleNamespace(name=n, kind='dense'), None, SimpleNamespace(path=None, top=n, cost=0)) for n in 'abc']
    t0 = time.time()
    with pytest.raises(SynthFailed, match='yosys failed on a'):
        build.synthesize_layers(per_layer, 'xc7')
    assert time.time() - t0 < 10  # b's 30 s tool (and c's, if a's thread took it before the cancel) killed
    assert started[:2] == ['a', 'b'] and not processes._running


def test_yosys_results_are_cached_by_content(tmp_path, monkeypatch):
    """The same Verilog synthesizes once: a rerun reads yosys' own earlier result; any change reruns it."""
    from flow.rtl import synth

    monkeypatch.setenv('SPARSE_FLOW_CACHE', str(tmp_path / 'cache'))
    src = tmp_path / 'add.v'
    src.write_text('module add(input [7:0] a, input [7:0] b, output [8:0] s); assign s = a + b; endmodule\n')
    runs = []
    real_run = synth.processes.run
    monkeypatch.setattr(synth.processes, 'run', lambda *a, **k: runs.append(a) or real_run(*a, **k))
    for d in ('one', 'two', 'three'):
        (tmp_path / d).mkdir()
    first = synth.synthesize_files([src], 'add', 'xc7', tmp_path / 'one' / 'synth')
    again = synth.synthesize_files([src], 'add', 'xc7', tmp_path / 'two' / 'synth')
    assert again == first and first['lut'] > 0 and len(runs) == 1
    assert (tmp_path / 'two' / 'synth' / 'cached_from.txt').exists() and (tmp_path / 'two' / 'synth' / 'stat.txt').exists()
    src.write_text(src.read_text().replace('a + b', 'a - b'))
    synth.synthesize_files([src], 'add', 'xc7', tmp_path / 'three' / 'synth')
    assert len(runs) == 2
    src.write_text(src.read_text().replace('a - b', 'a ^ b'))
    synth.synthesize_files([src], 'add', 'xc7', tmp_path / 'two' / 'synth')  # a folder reused for a new design
    assert len(runs) == 3 and not (tmp_path / 'two' / 'synth' / 'cached_from.txt').exists()


def test_rtl_auto_builds_small_networks_and_skips_big_ones_with_the_way_to_force_it():
    from flow.export import to_integer_model
    from flow.rtl.logic import AUTO_WEIGHT_BITS, too_big_for_auto
    from user_models import small_mlp

    small = to_integer_model(small_mlp(), FixedType(8, 3))  # 64x16 + 16x10 weights
    assert too_big_for_auto(small) is None
    big = to_integer_model(small_mlp(n_in=784, hidden=64, wbits=8), FixedType(8, 3))  # 784x64 8-bit weights alone: 401,408 bits
    reason = too_big_for_auto(big)
    assert f'up to {AUTO_WEIGHT_BITS} stored weight bits and this one has {784 * 64 * 8 + 64 * 10 * 6}' in reason
    assert 'set rtl: true' in reason


def test_logic_depth_cuts_at_a_dsps_absorbed_registers_and_refuses_a_loop():
    """yosys absorbs registers into a DSP48: an input register (A, B, C, D) ends the paths into its port
    only (the LSTM's state loop runs through one; the multiplier after it is a level of the path from
    it), a product or output register (M, P) every path through the DSP; a loop of logic has no depth."""
    from flow.rtl.synth import SynthFailed, _cell_depths

    def cell(kind, ins, o, **params):
        return {'type': kind, 'parameters': params, 'port_directions': {**{p: 'input' for p in ins}, 'O': 'output'},
                'connections': {**{p: [b] for p, b in ins.items()}, 'O': [o]}}

    one, zero = '00000000000000000000000000000001', '00000000000000000000000000000000'
    loop = [cell('LUT2', {'I': 2}, 3), cell('LUT2', {'I': 3}, 4)]  # 2 -> 3 -> 4, and the DSP: 4 -> 2
    # A registered: the loop is cut at the DSP's A; B (from bit 9, a port) goes through it
    depths = _cell_depths([*loop, cell('DSP48E1', {'A': 4, 'B': 9}, 2, AREG=one, MREG=zero)])
    assert depths[2] == 1 and depths[4] == 3
    assert max(_cell_depths([*loop, cell('DSP48E1', {'A': 4, 'B': 9}, 2, PREG=one)]).values()) == 2
    with pytest.raises(SynthFailed, match='combinational loop'):
        _cell_depths([*loop, cell('DSP48E1', {'A': 4, 'B': 9}, 2, BREG=one)])
