"""The time-multiplexed block-sparse engine in RTL (flow/rtl/engine.py) on both schedules
(flow/runtime/schedule.py): Verilated, equal to the integer reference on every output code, one sample
per ReuseFactor cycles; its output cast exact on every accumulator code in every mode."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flow.export import exact_accum_type
from flow.rtl import tools
from flow.rtl.engine import cast_function, engine_verilog
from flow.rtl.engines import rtl_engine
from flow.rtl.engine_sim import EngineSim
from flow.runtime.fixed import OVERFLOW, ROUNDING, FixedType
from flow.runtime.ref_block_sparse import BlockSparseDense, pack_blocks
from flow.runtime.schedule import gather, scatter, schedule
from keras_models.masks import make_block_mask

pytestmark = [pytest.mark.rtl, pytest.mark.skipif(bool(tools.missing()), reason=f'RTL tools missing: {tools.missing()}')]


def random_layer(rng, n_in, n_out, block, drop, wbits, in_t, out_t, mask='cgs', bias_t=FixedType(8, 3)):
    block_mask = make_block_mask(mask, 'l', (n_in, n_out), block, drop, int(rng.integers(1 << 30)))
    w_t = FixedType(wbits, 1)
    w = rng.integers(w_t.min_code, w_t.max_code + 1, (n_in, n_out)) * np.kron(block_mask, np.ones(block, int))
    bias = rng.integers(bias_t.min_code, bias_t.max_code + 1, n_out)
    acc = exact_accum_type(w, w_t, bias, bias_t, in_t)
    values, index, kpr = pack_blocks(w, block_mask, block)
    return BlockSparseDense('l', out_t or acc, weight_type=w_t, bias_type=bias_t, accum_type=acc, bias=bias,
                            n_in=n_in, n_out=n_out, block=block, kept_per_row=kpr, values=values, index=index)


def simulate(tmp_path, sched, layer, in_t, x):
    sim = EngineSim(engine_verilog(sched, layer, in_t), 'engine', tmp_path, layer.n_in, in_t, layer.n_out, layer.out_type, sched.rf)
    sim.compile()
    return sim.run(x)


@st.composite
def engine_cases(draw):
    bi, bo = draw(st.sampled_from([1, 2, 4, 8])), draw(st.sampled_from([1, 2, 4, 8]))
    n_in, n_out = bi * draw(st.integers(1, 6)), bo * draw(st.integers(1, 6))
    in_t = FixedType(draw(st.integers(2, 9)), draw(st.integers(-1, 4)), signed=draw(st.booleans()))
    out_t = FixedType(draw(st.integers(2, 10)), draw(st.integers(-1, 6)), signed=draw(st.booleans()),
                      rounding=draw(st.sampled_from(ROUNDING)), overflow=draw(st.sampled_from(OVERFLOW)))
    return dict(n_in=n_in, n_out=n_out, block=(bi, bo), drop=draw(st.sampled_from([0.0, 0.5, 0.75, 0.875])),
                wbits=draw(st.integers(2, 8)), in_t=in_t, out_t=out_t, mask=draw(st.sampled_from(['cgs', 'cgs_balanced'])),
                organisation=draw(st.sampled_from(['gather', 'scatter'])), rf_draw=draw(st.integers(1, 10**6)),
                seed=draw(st.integers(0, 2**31)))


@given(case=engine_cases())
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_engine_equals_reference_one_sample_per_reuse_factor(tmp_path_factory, case):
    rng = np.random.default_rng(case['seed'])
    in_t = case['in_t']
    layer = random_layer(rng, case['n_in'], case['n_out'], case['block'], case['drop'], case['wbits'], in_t,
                         case['out_t'], case['mask'])
    n_kept = layer.values.size
    rfs = [r for r in range(1, n_kept + 1) if n_kept % r == 0] if case['organisation'] == 'scatter' else range(1, n_kept + 1)
    rf = rfs[case['rf_draw'] % len(rfs)]
    sched = schedule(layer, rf, case['organisation'])
    assert np.array_equal(sched.dense_weight(), layer.dense_weight())
    x = rng.integers(in_t.min_code, in_t.max_code + 1, (40, layer.n_in))
    x[0], x[1] = in_t.max_code, in_t.min_code
    run = simulate(tmp_path_factory.mktemp('engine'), sched, layer, in_t, x)
    want = layer.forward(x, in_t)
    bad = np.argwhere(run.codes != want)
    assert not len(bad), f'first mismatch at sample {bad[0][0]}, output {bad[0][1]}: {run.codes[tuple(bad[0])]} != {want[tuple(bad[0])]}'
    assert run.cycles == len(x) * rf + 3 and run.latency == rf + 3  # back to back: one sample every rf cycles


def test_gather_owns_outputs_and_scatter_spreads_them():
    """What the organisations are: on a balanced 75% layer with 8x8 blocks at RF 16, every gather
    multiplier writes one output and lanes of 8 share an input; scatter multipliers write 8 outputs."""
    layer = random_layer(np.random.default_rng(0), 64, 64, (8, 8), 0.75, 4, FixedType(8, 3), None, 'cgs_balanced')
    g, s = gather(layer, 16), scatter(layer, 16)
    assert g.n_mult == s.n_mult == layer.values.size // 16 and g.padding == 0
    assert all(len(np.unique(row)) == 1 for row in g.outputs)
    assert all(len(np.unique(row)) == 8 for row in s.outputs)
    assert (g.inputs.reshape(-1, 8, 16) == g.inputs.reshape(-1, 8, 16)[:, :1]).all()
    assert g.stats()['adder_inputs'] < s.stats()['adder_inputs'] / 4


def test_gather_pads_uneven_columns_and_any_reuse_factor(tmp_path):
    rng = np.random.default_rng(5)
    in_t = FixedType(6, 2)
    layer = random_layer(rng, 24, 32, (4, 8), 0.5, 3, in_t, None)  # cgs: column counts differ
    sched = gather(layer, 7)  # divides nothing in the layer
    assert sched.padding > 0 and sched.slots == sched.n_mult * 7
    x = rng.integers(in_t.min_code, in_t.max_code + 1, (30, 24))
    assert np.array_equal(simulate(tmp_path, sched, layer, in_t, x).codes, layer.forward(x, in_t))


@given(lengths=st.lists(st.integers(0, 40), min_size=1, max_size=40), per_lane=st.integers(1, 16))
@settings(max_examples=200, deadline=None)
def test_packed_lanes_are_as_few_as_sequential_and_cut_a_short_column_at_most_once(lengths, per_lane):
    """The packed lane order: every segment once, the same number of lanes as the sequential order
    (McNaughton's) and no more runs (a column's segments in one lane), a column shorter than a lane in
    at most two lanes, a longer one cut at most once more than it needs lanes."""
    from flow.runtime.schedule import _runs, packed_lanes, sequential_lanes

    columns = [[(c, k) for k in range(n)] for c, n in enumerate(lengths)]
    lanes, seq = packed_lanes(columns, per_lane), sequential_lanes(columns, per_lane)
    assert len(lanes) == len(seq) and all(len(lane) <= per_lane for lane in lanes) and _runs(lanes) <= _runs(seq)
    assert sorted(seg for lane in lanes for seg in lane) == sorted(seg for col in columns for seg in col)
    for c, n in enumerate(lengths):
        spans = sum(any(seg[0] == c for seg in lane) for lane in lanes)
        assert spans <= -(-n // per_lane) + 1


def test_packed_lanes_hold_fewer_partial_sums():
    """A 128x128 layer at RF 32 (8x8 blocks, 75%, cgs; not bench_engine's mask, whose figures the README
    gives): the sequential order cuts a column at every lane's end, and 41 partial sums wait in holds;
    packed lanes fill most lanes with whole columns, and 8 do. Both compute the same weights with as
    many multipliers."""
    from flow.runtime.static_engine import static_engine

    layer = random_layer(np.random.default_rng(0), 128, 128, (8, 8), 0.75, 4, FixedType(8, 3), None)
    seq, pac = gather(layer, 32, 'sequential'), gather(layer, 32)
    assert seq.n_mult == pac.n_mult and np.array_equal(seq.dense_weight(), pac.dense_weight())
    assert len(static_engine(pac).held()) == 8 < len(static_engine(seq).held()) == 41
    with pytest.raises(ValueError, match="unknown lane order 'zigzag'"):
        gather(layer, 32, 'zigzag')


def test_scatter_refuses_a_reuse_factor_that_does_not_divide():
    layer = random_layer(np.random.default_rng(1), 16, 16, (4, 4), 0.5, 4, FixedType(8, 3), None)
    with pytest.raises(ValueError, match='dividing its 128 kept weights, got 3'):
        scatter(layer, 3)
    with pytest.raises(ValueError, match='unknown accumulator organisation'):
        schedule(layer, 4, 'banked')


CAST_MODULE = """module engine (input clk, input rst, input start, input [{wa}:0] x, output ready, output reg done,
                output reg [{wy}:0] y);
{functions}
assign ready = 1'b1;
always @(posedge clk) begin done <= start; {assigns} end
endmodule
"""


@pytest.mark.parametrize('signed', [True, False])
def test_output_cast_is_exact_on_every_accumulator_code_in_every_mode(tmp_path, signed):
    """All rounding x overflow modes side by side, on all 2^10 codes of a 10-bit accumulator."""
    acc_t = FixedType(10, 4)
    outs = [FixedType(5, 1 if signed else 2, signed, r, o) for r in ROUNDING for o in OVERFLOW]
    w = outs[0].width
    functions = '\n'.join(cast_function(f'c{k}', acc_t, t) for k, t in enumerate(outs))
    assigns = ' '.join(f'y[{k * w + w - 1}:{k * w}] <= c{k}(x);' for k in range(len(outs)))
    verilog = CAST_MODULE.format(wa=acc_t.width - 1, wy=len(outs) * w - 1, functions=functions, assigns=assigns)
    # the testbench reads one type for all outputs: same width and signedness, so read them as outs[0]
    sim = EngineSim(verilog, 'engine', tmp_path, 1, acc_t, len(outs), outs[0], 1)
    sim.compile()
    codes = np.arange(acc_t.min_code, acc_t.max_code + 1)[:, None]
    got = sim.run(codes).codes
    for k, t in enumerate(outs):
        want = t.from_codes(codes[:, 0], acc_t.frac)
        bad = np.flatnonzero(got[:, k] != want)
        assert not len(bad), f'{t.hls()}: code {codes[bad[0], 0]} -> {got[bad[0], k]}, reference {want[bad[0]]}'


@given(bi=st.integers(1, 9), bo=st.integers(1, 4), rows=st.integers(1, 5), cols=st.integers(1, 5),
       drop=st.sampled_from([0.0, 0.5, 0.75]), rf=st.integers(1, 100), seed=st.integers(0, 2**31))
@settings(max_examples=80, deadline=None)
def test_gather_storage_names_every_slot(bi, bo, rows, cols, drop, rf, seed):
    """The compact form of the gather schedule (run_start, seg_block, the weight banks) reproduces it
    slot by slot, and the schedule computes exactly the layer's weights, for any RF and block."""
    layer = random_layer(np.random.default_rng(seed), rows * bi, cols * bo, (bi, bo), drop, 4, FixedType(8, 3), None)
    s = gather(layer, rf)
    assert np.array_equal(s.dense_weight(), layer.dense_weight())
    assert rf % s.seg_len == 0 and rf % s.run_len == 0 and s.seg_len % s.run_len == 0 and bi % s.run_len == 0
    t = np.arange(rf)
    for lane in range(s.n_lanes):
        mine = slice(lane * bo, (lane + 1) * bo)
        x = s.run_start[lane, t // s.run_len] * s.run_len + t % s.run_len
        used = s.inputs[mine] >= 0
        assert (np.where(used, s.inputs[mine], x) == x).all()
        assert (s.outputs[mine] == s.seg_block[lane, t // s.seg_len] * bo + np.arange(bo)[:, None]).all()
    assert s.n_mult * rf >= layer.values.size


def test_an_engine_mismatch_names_layer_sample_and_element(tmp_path, monkeypatch):
    """The rtl step's engine check on a faulty engine (one accumulator LSB off on output 3)."""
    from flow.rtl import build, engine
    from flow.runtime.ref_layers import Input
    from flow.stages.verify import Mismatch

    in_t = FixedType(6, 2)
    layer = random_layer(np.random.default_rng(3), 16, 8, (4, 4), 0.5, 4, in_t, None)
    prev = Input('x', in_t, shape=(16,))
    x = np.random.default_rng(4).integers(in_t.min_code, in_t.max_code + 1, (20, 16))
    trace = {'x': x, 'l': layer.forward(x, in_t)}
    good = engine.engine_verilog
    monkeypatch.setattr(engine, 'engine_verilog', lambda *a: good(*a).replace('cast_out(acc3)', "cast_out(acc3 + 1'b1)"))
    with pytest.raises(Mismatch, match=r"RTL engine \(gather, RF 4\).*layer 'l', sample 0, element \(3,\): expected code"):
        build.simulate_engines([(layer, prev, rtl_engine(layer, 4, in_t))], trace, tmp_path, 'p')
    monkeypatch.setattr(engine, 'engine_verilog', good)
    got = build.simulate_engines([(layer, prev, rtl_engine(layer, 4, in_t))], trace, tmp_path / 'ok', 'p')
    assert got['l']['cycles_per_sample'] == (20 * 4 + 3) / 20


@pytest.mark.parametrize('chains', [True, False])
def test_timed_and_own_accumulators_side_by_side_equal_reference(tmp_path, monkeypatch, chains):
    """64x64, 8x8 blocks, 75% dropped, RF 16: outputs timed (running sums, partial sums held) beside
    outputs that two lanes compute at once: as sums of chains (the chains' sums read where they end or
    held), or (``chains`` false: the other organisation the choice weighs) with accumulators of their
    own, whose multipliers' running sums then sit in the fabric; exact, back to back. (The sequential
    lane order, which cuts a column at each lane's end: the packed order holds fewer sums.)"""
    import dataclasses

    import flow.rtl.engine as rtl_engine
    from flow.runtime.static_engine import static_engine

    rng = np.random.default_rng(5)
    in_t = FixedType(6, 2)
    layer = random_layer(rng, 64, 64, (8, 8), 0.75, 4, in_t, FixedType(8, 3, True, 'RND_CONV', 'SAT'))
    sched = gather(layer, 16, 'sequential')
    eng = static_engine(sched)
    assert {k for _, parts in eng.finals().values() for k, _ in parts} == {'r', 'h'} and eng.held()
    if not chains:
        eng = dataclasses.replace(eng, timed=tuple(r for r in eng.timed if len(eng.chains()[r.o]) == 1))
        assert eng.timed and eng.shared() and eng.fabric_sums() and not eng.finals()
        monkeypatch.setattr(rtl_engine, 'static_engine', lambda s: eng)
    x = rng.integers(in_t.min_code, in_t.max_code + 1, (30, 64))
    run = simulate(tmp_path, sched, layer, in_t, x)
    assert np.array_equal(run.codes, layer.forward(x, in_t))
    assert run.cycles == len(x) * 16 + 3 and run.latency == 16 + 3


@pytest.mark.parametrize('rf', [16, 32])
def test_time_multiplexed_outputs_equal_reference(tmp_path, rf):
    """32x32, 4x4 blocks, 75% dropped: running sums per multiplier (written as DSP accumulators), partial
    sums of a split column held between its runs or handed to the next run the cycle after, outputs
    written at constant cycles; exact, one sample per RF cycles back to back. (The sequential lane
    order, whose cut columns wait in holds.)"""
    from flow.runtime.static_engine import static_engine

    rng = np.random.default_rng(5)
    in_t = FixedType(6, 2)
    layer = random_layer(rng, 32, 32, (4, 4), 0.75, 4, in_t, FixedType(8, 3, True, 'RND_CONV', 'SAT'))
    sched = gather(layer, rf, 'sequential')
    eng = static_engine(sched)
    assert eng.timed and len(eng.running()) < len(eng.timed_outputs())
    handoffs = [held for hs in eng.handoffs().values() for _, _, held in hs]
    assert rf != 16 or (True in handoffs and False in handoffs)  # RF 16: partial sums held, and handed over directly
    x = rng.integers(in_t.min_code, in_t.max_code + 1, (30, 32))
    run = simulate(tmp_path, sched, layer, in_t, x)
    assert np.array_equal(run.codes, layer.forward(x, in_t))
    assert run.cycles == len(x) * rf + 3 and run.latency == rf + 3


def test_factored_selects_equal_reference(tmp_path):
    """64x64, 8x8 blocks, 75% dropped at RF 32: the selects read the shared row selects (a case of
    cnt mod 8) through a case of the window; exact, one sample per RF cycles back to back."""
    from flow.runtime.static_engine import static_engine

    rng = np.random.default_rng(6)
    in_t = FixedType(7, 3, signed=False)
    layer = random_layer(rng, 64, 64, (8, 8), 0.75, 4, in_t, FixedType(8, 3, True, 'RND_CONV', 'SAT'))
    sched = gather(layer, 32)
    assert static_engine(sched).group == 8
    x = rng.integers(in_t.min_code, in_t.max_code + 1, (30, 64))
    run = simulate(tmp_path, sched, layer, in_t, x)
    assert np.array_equal(run.codes, layer.forward(x, in_t))
    assert run.cycles == len(x) * 32 + 3 and run.latency == 32 + 3


def test_convolution_engine_equals_reference_on_every_patch(tmp_path):
    """The rtl step's engine for a block-sparse convolution (the per-patch kernel the pixel loop runs,
    flow/rtl/engine.py on the layer's own schedule): Verilated on every output pixel's patch of the
    reference's input, image by image; its codes are the reference's conv outputs."""
    from test_conv_cosim import build_cnn

    from flow.export import to_integer_model
    from flow.rtl.build import simulate_engines
    from flow.runtime.ref_conv import BlockSparseConv2D

    in_t = FixedType(8, 3)
    model = build_cnn((6, 5, 4), 8, (3, 3), (2, 1), 'same', (4, 2), 0.5, 4, seed=3)
    im = to_integer_model(model, in_t)
    conv = next(lay for lay in im.layers if isinstance(lay, BlockSparseConv2D))
    prev = im.layers[im.layers.index(conv) - 1]
    rng = np.random.default_rng(0)
    x = rng.integers(in_t.min_code, in_t.max_code + 1, (5, 6 * 5 * 4))
    trace = im.trace(x)
    out = simulate_engines([(conv, prev, rtl_engine(conv, 6, prev.out_type))], trace, tmp_path, 'p')[conv.name]
    pixels = int(np.prod(trace[conv.name].shape[:3]))
    assert out['cycles_per_sample'] == (pixels * 6 + 3) / pixels and out['time_multiplexed_outputs'] == 0  # back to back
    assert conv.engine_vectors(trace[prev.name]).shape == (pixels, conv.n_in)


CASTS = [  # (accumulator type, output type): the estimate charges a cast or not, yosys' LUTs decide
    (FixedType(13, 6), FixedType(13, 6)),  # the same type: wires (the default model's fc1)
    (FixedType(18, 6), FixedType(8, 3)),  # truncate and wrap: a bit slice
    (FixedType(10, 4), FixedType(8, 4, True, 'TRN', 'SAT')),  # saturating where every value fits: a slice
    (FixedType(10, 3), FixedType(9, 3, True, 'RND', 'WRAP')),  # a constant rounding offset: the carry chain only
    (FixedType(10, 3), FixedType(9, 3, True, 'RND_CONV', 'WRAP')),  # an offset that depends on a bit
    (FixedType(18, 6), FixedType(8, 6, True, 'TRN', 'SAT_SYM')),  # the minimum alone saturates
    (FixedType(18, 6), FixedType(8, 3, True, 'RND_CONV', 'SAT')),  # both (bench/bench_engine.py's output)
    (FixedType(10, 6), FixedType(8, 4, False, 'TRN', 'SAT')),  # a negative value saturates at 0
    (FixedType(10, 5), FixedType(9, 5, True, 'TRN', 'SAT')),  # truncating, the maximum fits
    (FixedType(10, 5), FixedType(9, 5, True, 'RND', 'SAT')),  # rounding up passes it
    (FixedType(10, 4), FixedType(10, 5, True, 'RND', 'SAT')),  # rounding where the result still fits
    (FixedType(18, 6), FixedType(8, 6, True, 'TRN', 'SAT_ZERO')),  # every value fits: no zeroing
    (FixedType(18, 6), FixedType(8, 3, True, 'TRN', 'SAT_ZERO')),  # out of range becomes 0
    (FixedType(8, 4), FixedType(12, 4, True, 'TRN', 'SAT')),  # more fraction bits out: a shift, it fits
    (FixedType(8, 4), FixedType(8, 2, True, 'TRN', 'SAT')),  # more fraction bits out, fewer integer bits
]


@pytest.mark.rtl
@pytest.mark.skipif(tools.yosys() is None, reason='yosys not installed')
@pytest.mark.parametrize('acc_t, out_t', CASTS)
def test_the_estimate_charges_a_cast_exactly_where_it_takes_logic(tmp_path, acc_t, out_t):
    """``cast_luts`` (the estimates' unit for one output cast) is 0 exactly where yosys maps the emitted
    cast to no LUTs: a bit slice, or a constant rounding offset in the carry chain."""
    from flow.rtl.synth import synthesize_files
    from flow.runtime.static_engine import cast_luts

    v = tmp_path / 'cast.v'
    v.write_text(cast_function('cast_out', acc_t, out_t).join([
        f'module cast (input [{acc_t.width - 1}:0] a, output [{out_t.width - 1}:0] y);\n',
        '\nassign y = cast_out(a);\nendmodule\n']))
    luts = synthesize_files([v], 'cast', 'xc7', tmp_path / 'synth')['lut']
    assert (cast_luts(acc_t, out_t) == 0) == (luts == 0), (cast_luts(acc_t, out_t), luts)


@pytest.mark.rtl
@pytest.mark.skipif(tools.yosys() is None, reason='yosys not installed')
def test_a_weight_rom_of_the_cycle_counter_is_measured_as_a_lut_rom(tmp_path):
    """yosys turns a case table of constants into a ROM and, left alone, folds the engine's cycle
    counter into its read port, which maps the ROM on the counter's next-state logic (about 6x the
    LUTs; synth.SYNTH maps every ROM as logic on its own address first). Eight 256 x 4-bit weight ROMs
    on the engines' counter (``header``), each feeding a product: a LUT6 per 64 words and bit, as
    Vivado maps them, plus the counter."""
    from flow.rtl.engine import header
    from flow.rtl.synth import synthesize_files

    rng, rf, lanes = np.random.default_rng(3), 256, 8
    v = header('weight ROMs', 'roms', 8 * lanes, 13 * lanes, '', rf)
    for m in range(lanes):
        v += [f'reg signed [3:0] w{m};', 'always @* case (cnt)']
        v += [f"    {t}: w{m} = {'-' if c < 0 else ''}4'sd{abs(c)};" for t, c in enumerate(rng.integers(-8, 8, rf))]
        v += [f"    default: w{m} = 4'sd0;", 'endcase', f'reg signed [12:0] p{m};',
              f"always @(posedge clk) p{m} <= $signed({{1'b0, xr[{8 * m + 7}:{8 * m}]}}) * w{m};",
              f'always @(posedge clk) y[{13 * m + 12}:{13 * m}] <= p{m};']
    (tmp_path / 'roms.v').write_text('\n'.join(v + ['endmodule', '']))
    got = synthesize_files([tmp_path / 'roms.v'], 'roms', 'xc7', tmp_path / 'synth')
    rom_luts = lanes * 4 * rf // 64
    assert got['dsp'] == lanes and rom_luts <= got['lut'] <= rom_luts + 16, got
