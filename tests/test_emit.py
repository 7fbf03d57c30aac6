"""The per-layer HLS kernel (flow/hls/block_sparse_emit.py) and the Verilog engine (flow/rtl/engine.py)
are two renderings of one static structure (flow/runtime/static_engine.py) of the gather schedule:
read back from both texts, the input case tables and the per-output source lists and gates are the
same, and they compute the layer; inside the generated pipelined loop nothing is indexed by a table.
No tools needed (the C simulation is tests/test_cosim.py's, the Verilator run tests/test_engine.py's)."""

import dataclasses
import re

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from flow.hls.block_sparse_emit import emit_cycle, emit_kernel
from flow.rtl.engine import engine_verilog
from flow.runtime.fixed import FixedType
from flow.runtime.schedule import gather
from flow.runtime.static_engine import static_engine, sum_name
from test_engine import random_layer

IN_T = FixedType(6, 2)


def _cases(text: str, start: str, leg: str, end: str) -> dict:
    """name -> {cycle: input} (default under -1) of every case table in ``text``."""
    tables = {}
    for m in re.finditer(start, text):
        name, body = m[1], text[m.end():text.index(end, m.end())]
        table = {}
        for labels, i in re.findall(leg, body):
            for t in re.findall(r'\d+|default', labels):
                table[-1 if t == 'default' else int(t)] = int(i)
        tables[name] = table
    return tables


def _terms(expr: str, prod: str, zero: str) -> dict:
    """A sum of products ``prod``<m>, some as ``((cond) ? prod<m> : zero)``: m -> cond (None: ungated)."""
    gated, spans = {}, []
    for m in re.finditer(rf' \? {prod}(\d+) : {re.escape(zero)}\)', expr):
        depth, j = 0, m.start() - 1  # expr[j] is the ')' closing the condition: find its '('
        while True:
            depth += {')': 1, '(': -1}.get(expr[j], 0)
            if depth == 0:
                break
            j -= 1
        gated[int(m[1])] = expr[j + 1:m.start() - 1]
        spans.append((j - 1, m.end()))
    for lo, hi in sorted(spans, reverse=True):
        expr = expr[:lo] + expr[hi:]
    return {**{int(m): None for m in re.findall(rf'\b{prod}(\d+)\b', expr)}, **gated}


def _legs(text: str, start: str, leg: str) -> dict:
    """name -> {cycle: what} of every case table ``start`` (its name the first group) whose legs
    match ``leg`` (the cycle, then what it gives)."""
    out = {}
    for m in re.finditer(start, text, re.S):
        out[int(m[1])] = {int(t): tuple(int(v) if v.isdigit() else v for v in rest) for t, *rest in re.findall(leg, m[2])}
    return out


def _restart(value: str, bias: str):
    """A running sum's restart value as text -> ('bias', o or accumulator code), ('zero',) or the name of
    a partial sum's place (``sum_name``)."""
    b = re.fullmatch(bias, value)
    return ('bias', int(b[1])) if b else ('zero',) if value == 'acc_t(0)' else value


def cpp_timed(code: str):
    """The time-multiplexed outputs as the C++ writes them: running sums' restarts {m: {lo: ('bias', o) |
    ('zero',) | 'h<o>_<c>' | 'r<m>'}}, hold latches {'h<o>_<c>': {cycle: m}}, one-chain output writes
    {m: {hi: o}} and the outputs of several chains {o: (hi, their chains' sums' places)}."""
    running = {}
    for m, body in re.findall(r'acc_t s(\d+);\n\s*switch \(t\) \{(.*?)default', code, re.S):
        running[int(m)] = {int(lo): _restart(v, r'\(acc_t\)biases\[(\d+)\]') for lo, v in re.findall(r'case (\d+): s\d+ = (.*?); break;', body)}
    holds = {}
    for t, h, m in re.findall(r'case (\d+): (h\d+_\d+) = r(\d+); break;', code):
        holds.setdefault(h, {})[int(t)] = int(m)
    writes = {}
    for m, body in re.findall(r'const res_T y(\d+) = \(res_T\)r\d+;\n\s*switch \(t\) \{(.*?)default', code, re.S):
        writes[int(m)] = {int(hi): int(o) for hi, o, _ in re.findall(r'case (\d+): res\[(\d+)\] = y(\d+);', body)}
    sums = dict(re.findall(r'const res_T f(\d+) = \(res_T\)acc_t\((.*)\);', code))
    finals = {int(o): (int(hi), tuple(sorted(re.findall(r'[rh][\d_]+', sums[o]))))
              for hi, o, o2 in re.findall(r'case (\d+): res\[(\d+)\] = f(\d+); break;', code)}
    return running, holds, writes, finals


def verilog_timed(v: str, wy: int):
    """The same, read from the Verilog (a restart from the bias as ('bias', its accumulator code), from 0 as ('bias', 0))."""
    running = {}
    for m, body in re.findall(r'reg \[\d+:0\] r(\d+), s\d+;\nalways @\* case \(cnt1\)\n(.*?)endcase', v, re.S):
        running[int(m)] = {int(lo): _restart(val, r"\d+'d(\d+)") for lo, val in re.findall(r"^\s+(\d+): s\d+ = (.*?);$", body, re.M)}
    holds = {}
    for t, h, m in re.findall(r'^\s+(\d+): (h\d+_\d+) <= r(\d+);', v, re.M):
        holds.setdefault(h, {})[int(t)] = int(m)
    writes, finals = {}, {}
    sums = dict(re.findall(r'wire \[\d+:0\] f(\d+) = (.*);', v))
    for hi, body in re.findall(r'^\s+(\d+): begin (.*?) end$', v, re.M):
        for lo, m in re.findall(r'y\[\d+:(\d+)\] <= c(\d+);', body):
            writes.setdefault(int(m), {})[int(hi)] = int(lo) // wy
        for lo, o in re.findall(r'y\[\d+:(\d+)\] <= cast_out\(f(\d+)\);', body):
            assert int(lo) // wy == int(o)
            finals[int(o)] = (int(hi), tuple(sorted(re.findall(r'[rh][\d_]+', sums[o]))))
    return running, holds, writes, finals


def expected_timed(eng):
    """What the static structure says the emitters write (as cpp_timed reads it)."""
    running = {m: {lo: ('bias', o) if how == 'bias' else ('zero',) if how == 'zero' else sum_name(eng.handoff_source(m, lo))
                   for lo, how, o in s} for m, s in eng.running().items()}
    holds = {sum_name(('h', oc)): dict(latches) for oc, latches in eng.hold_latches().items()}
    finals = {o: (hi, tuple(sorted(sum_name(p) for p in parts))) for o, (hi, parts) in eng.finals().items()}
    return running, holds, {m: dict(ws) for m, ws in eng.writes().items()}, finals


def cpp_structure(code: str, rf: int):
    rows = {int(q): t for q, t in _cases(code, r'data_T xz(\d+);\n\s*switch \(t & \d+\) \{',
                                           r'((?:case \d+: )+|default: )xz\d+ = data\[(\d+)\]; break;', '}').items()}
    k = int(re.search(r'switch \(t & (\d+)\)', code)[1]).bit_length() if rows else 0
    tables = {g: (False, t) for g, t in _cases(code, r'data_T x(\d+);\n\s*switch \(t\) \{',
                                                r'((?:case \d+: )+|default: )x\d+ = data\[(\d+)\]; break;', '}').items()}
    tables.update({g: (True, t) for g, t in _cases(code, r'data_T x(\d+);\n\s*switch \(t >> \d+\) \{',
                                                    r'((?:case \d+: )+|default: )x\d+ = xz(\d+); break;', '}').items()})
    tables.update({g: (False, {-1: int(i)}) for g, i in re.findall(r'const data_T x(\d+) = data\[(\d+)\];', code)})
    tables.update({g: (True, {-1: int(q)}) for g, q in re.findall(r'const data_T x(\d+) = xz(\d+);', code)})
    selects = _resolve(tables, rows, rf, k)
    mults = {int(m): g for m, g in re.findall(r'const acc_t p(\d+) = \(acc_t\)\(x(\d+) \* weights\[\d+ \+ t\]\);', code)}
    sources = {int(o): _terms(expr, 'p', 'acc_t(0)') for o, expr in re.findall(r'acc(\d+) = acc_t\(acc\d+ \+ (.*)\);', code)}
    return selects, mults, sources


def _resolve(tables: dict, rows: dict, rf: int, k: int) -> dict:
    """select -> (input per cycle t, 0 .. rf - 1): a case table of t, or of the window t >> k over the
    row selects ``rows`` (row -> case table of t mod 2**k), as the hardware reads it."""
    def at(table, key):
        return table.get(key, table[-1])

    out = {}
    for name, (over_rows, table) in tables.items():
        out[name] = tuple(at(rows[at(table, t >> k)], t & ((1 << k) - 1)) if over_rows else at(table, t) for t in range(rf))
    return out


def verilog_structure(v: str, wx: int, rf: int):
    rows, tables, k = {}, {}, 0
    for q, kk, body in re.findall(r'reg signed \[\d+:0\] z(\d+);\nalways @\* case \(cnt\[(\d+):0\]\)\n(.*?)endcase', v, re.S):
        k = int(kk) + 1
        rows[int(q)] = {-1 if j == 'default' else int(j): int(lo) // wx
                        for j, lo in re.findall(r'^\s+(\d+|default): z\d+ = \$signed\(xr\[\d+:(\d+)\]\);', body, re.M)}
    for name, key, body in re.findall(r'reg signed \[\d+:0\] xm(\d+);\nalways @\* case \((cnt(?:\[\d+:\d+\])?)\)\n(.*?)endcase', v, re.S):
        t = {}
        for labels, lo, q in re.findall(r'^\s+([\d, ]+|default): xm\d+ = (?:\$signed\(xr\[\d+:(\d+)\]\)|z(\d+));', body, re.M):
            for c in re.findall(r'\d+|default', labels):
                t[-1 if c == 'default' else int(c)] = int(q) if q else int(lo) // wx
        tables[name] = (key != 'cnt', t)
    for name, lo, q in re.findall(r'wire signed \[\d+:0\] xm(\d+) = (?:\$signed\(xr\[\d+:(\d+)\]\)|z(\d+));', v):
        tables[name] = (bool(q), {-1: int(q) if q else int(lo) // wx})
    selects = _resolve(tables, rows, rf, k)
    mults = {int(m): g for m, g in re.findall(r'always @\(posedge clk\) p(\d+) <= xm(\d+) \* w\d+;', v)}
    sources = {}
    for o, expr in re.findall(r'wire \[\d+:0\] sum(\d+) = (.*);', v):
        zero = re.search(r"\d+'d0", expr)
        terms = _terms(expr, 'q', zero[0] if zero else "'d0")
        sources[int(o)] = {m: None if c is None else c.replace('cnt1', 't') for m, c in terms.items()}
    return selects, mults, sources


def _evaluate(eng, layer, x):
    """The static structure run as the hardware does, on input codes: product sums per output (the
    shared accumulators' gated sums; the running sums restarted, held and written as the structure
    says, an output of several chains as the sum of its chains' sums)."""
    rf = eng.rf
    acc = np.zeros((len(x), eng.n_out), dtype=np.int64)
    starts = {m: dict((lo, (how, o)) for lo, how, o in s) for m, s in eng.running().items()}
    r = {m: np.zeros(len(x), dtype=np.int64) for m in starts}
    h = {oc: np.zeros(len(x), dtype=np.int64) for oc in eng.held()}

    def value(src):
        return r[src[1]] if src[0] == 'r' else h[src[1]]

    for t in range(rf):
        xs = {}
        for g, sel in enumerate(eng.selects):
            i = next((i for ts, i in sel.legs if t in ts), sel.default)
            xs[g] = x[:, i]
        p = {mu.m: xs[mu.select] * int(mu.weights[t]) for mu in eng.multipliers}
        for o, srcs in eng.shared().items():
            for m, gate in srcs:
                if gate.ranges is None or any(lo <= t <= hi for lo, hi in gate.ranges):
                    acc[:, o] += p[m]
        s = {}  # restart values and holds read the registers as they were before this cycle's updates
        for m, st_ in starts.items():
            how, o = st_.get(t, ('run', None))
            s[m] = value(eng.handoff_source(m, t)) if how == 'hold' else r[m] if how == 'run' else 0
        for oc, latches in eng.hold_latches().items():
            for cycle, m in latches:
                if cycle == t:
                    h[oc] = r[m].copy()
        for m in starts:
            r[m] = s[m] + p[m]
        for m, ws in eng.writes().items():
            for hi, o in ws:
                if hi == t:
                    acc[:, o] = r[m]
        for o, (hi, parts) in eng.finals().items():
            if hi == t:
                acc[:, o] = sum(value(src) for src in parts)
    return acc


layers = st.builds(lambda bi, bo, rows, cols, drop, rf_pick, seed: (bi, bo, rows, cols, drop, rf_pick, seed),
                   st.integers(1, 8), st.integers(1, 4), st.integers(1, 5), st.integers(1, 5),
                   st.sampled_from([0.0, 0.5, 0.75]), st.integers(0, 1000), st.integers(0, 2**31))


def _layer_and_schedule(case):
    bi, bo, rows, cols, drop, rf_pick, seed = case
    layer = random_layer(np.random.default_rng(seed), rows * bi, cols * bo, (bi, bo), drop, 3, IN_T, None)
    rf = 1 + rf_pick % layer.values.size
    return layer, gather(layer, rf)


@given(layers)
@settings(max_examples=60, deadline=None)
def test_cpp_and_verilog_are_built_from_the_same_static_structure(case):
    layer, sched = _layer_and_schedule(case)
    eng = static_engine(sched)
    cpp = cpp_structure(emit_kernel(sched, 'k'), sched.rf)
    ver = verilog_structure(engine_verilog(sched, layer, IN_T), IN_T.width, sched.rf)
    assert cpp == ver
    selects, mults, sources = cpp
    # every cycle that needs an input reads it (the others are don't-cares: a zero weight)
    assert selects.keys() == {str(g) for g in range(len(eng.selects))}
    for g, sel in enumerate(eng.selects):
        want = {t: i for ts, i in sel.legs for t in ts} or {t: sel.default for t in range(sched.rf)}
        assert {t: selects[str(g)][t] for t in want} == want
    assert mults == {mu.m: str(mu.select) for mu in eng.multipliers}
    assert sources == {o: {m: g.condition('t', sched.rf) for m, g in srcs} for o, srcs in eng.shared().items()}
    running, holds, writes, finals = cpp_timed(emit_kernel(sched, 'k'))
    assert (running, holds, writes, finals) == expected_timed(eng)
    acc_t = layer.accum_type
    bias = (np.asarray(layer.bias, dtype=np.int64) << (acc_t.frac - layer.bias_type.frac)) & ((1 << acc_t.width) - 1)
    v_running, v_holds, v_writes, v_finals = verilog_timed(engine_verilog(sched, layer, IN_T), layer.out_type.width)
    assert v_running == {m: {lo: ('bias', int(bias[leg[1]])) if leg[0] == 'bias' else ('bias', 0) if leg[0] == 'zero' else leg
                             for lo, leg in legs.items()}
                         for m, legs in running.items()}
    assert (v_holds, v_writes, v_finals) == (holds, writes, finals)


@given(layers)
@settings(max_examples=20, deadline=None)
def test_a_convolution_cycle_is_the_dense_kernel_loop_body(case):
    """A convolution's pixel loop runs one cycle of the kernel per iteration (emit_cycle): the same
    selects, multipliers and gated sources as the dense kernel's ReuseLoop, into the caller's
    accumulators at constant indices, with no loop a pipelined caller would unroll. A convolution's
    schedule keeps every output's accumulator (the caller holds them: no time-multiplexed outputs)."""
    import dataclasses

    _, sched = _layer_and_schedule(case)
    cycle = emit_cycle(sched, 'c')  # whatever the dense kernel's organisation: the cycle keeps every accumulator
    sched = dataclasses.replace(sched, may_time_multiplex=False)
    assert not static_engine(sched).timed
    assert 'for (' not in cycle and '#pragma HLS INLINE' in cycle
    as_scalars = re.sub(r'acc\[(\d+)\]', r'acc\1', cycle)
    assert cpp_structure(as_scalars, sched.rf) == cpp_structure(emit_kernel(sched, 'k'), sched.rf)


@given(layers)
@settings(max_examples=60, deadline=None)
def test_the_static_structure_computes_the_layer(case):
    """Selects, banks and gated sources, run cycle by cycle: the layer's exact product sums."""
    layer, sched = _layer_and_schedule(case)
    rng = np.random.default_rng(0)
    x = rng.integers(IN_T.min_code, IN_T.max_code + 1, (8, layer.n_in))
    assert np.array_equal(_evaluate(static_engine(sched), layer, x), x @ layer.dense_weight())


def _loop_body(code: str) -> str:
    body = code[code.index('ReuseLoop:'):]
    depth, i = 0, body.index('{')
    for j in range(i, len(body)):
        depth += {'{': 1, '}': -1}.get(body[j], 0)
        if depth == 0:
            return body[i:j + 1]
    raise AssertionError('unbalanced loop')


@given(layers)
@example((1, 1, 2, 3, 0.0, 3, 0))  # selects factored over pairs: switch (t & 1) beside switch (t)
@settings(max_examples=40, deadline=None)
def test_no_table_indexed_access_in_the_pipelined_loop(case):
    """Inside ReuseLoop: data[] only at constants, the weight ROM only at a constant bank plus t, no
    other array; accumulators are scalars; the loop is pipelined at II=1."""
    layer, sched = _layer_and_schedule(case)
    code = emit_kernel(sched, 'k')
    body = _loop_body(code)
    assert '#pragma HLS PIPELINE II=1' in body
    for array, index in re.findall(r'(\w+)\[([^\]]*)\]', body):
        if array in ('data', 'biases', 'res'):  # res and biases: the time-multiplexed outputs' cases of t
            assert re.fullmatch(r'\d+', index), index
        else:
            assert array == 'weights' and re.fullmatch(r'\d+ \+ t', index), (array, index)
    assert not re.search(r'\bacc\[', body)
    for line in body.splitlines():  # each output written in a constant case of t only
        if 'res[' in line:
            assert re.fullmatch(r"\s*case \d+: res\[\d+\] = [yf]\d+; break;", line), line
    switches = re.findall(r'switch \(([^)]*)\)', body)  # cases of t (factored selects: of t mod and t / the group)
    assert len(switches) == body.count('switch') and all(re.fullmatch(r't( & \d+| >> \d+)?', s) for s in switches), switches
    for cond in re.findall(r'\(\((.*?)\) \?', body):  # gates: comparisons of t with constants only
        assert re.fullmatch(r'[t\d<>=|&() ]+', cond), cond
    assert 'ARRAY_RESHAPE variable=weights block factor' in code and 'dim=1' in code


def test_example_kernel():
    """A small layer's kernel, as the report quotes it: 8 -> 4, 2x2 blocks at 50%, RF 3."""
    layer = random_layer(np.random.default_rng(2), 8, 4, (2, 2), 0.5, 3, IN_T, None)
    code = emit_kernel(gather(layer, 3), 'block_sparse_dense_2', "layer 'l'")
    assert 'switch (t)' in code or 'const data_T x0 = data[' in code
    assert len(re.findall(r'res\[\d+\] = ', code)) == 4


@pytest.mark.parametrize('rf', [1, 4, 16])
def test_a_layer_without_live_weights_is_its_bias(rf):
    layer = random_layer(np.random.default_rng(1), 8, 8, (2, 2), 0.5, 3, IN_T, None)
    layer.values[:] = 0
    sched = gather(layer, min(rf, layer.values.size))
    eng = static_engine(sched)
    assert not eng.multipliers and not eng.sources and not eng.selects
    code = emit_kernel(sched, 'k')
    assert 'weights[' not in _loop_body(code) and len(re.findall(r'res\[\d+\] = ', code)) == 8


def _tm_layer(rf=16):
    """A 32x32 layer, 4x4 blocks, 75% dropped: at RF 16 a lane works through several columns."""
    return random_layer(np.random.default_rng(4), 32, 32, (4, 4), 0.75, 4, IN_T, None)


def test_outputs_are_time_multiplexed_where_a_multiplier_has_several():
    """One running sum per multiplier: fewer accumulators than outputs, each output finished by one
    run (its chain's last) and cast there; runs of one chain never overlap, and a multiplier's runs
    neither; an output of several chains is written once, as their sum. (The sequential lane order,
    whose columns cut at a lane's end wait in holds: the packed order needs none on this layer.)"""
    layer = _tm_layer()
    eng = static_engine(gather(layer, 16, 'sequential'))
    timed = eng.timed_outputs()
    assert timed and len(eng.running()) < len(timed) and eng.held()
    for o, chains in eng.chains().items():
        assert all(a.hi < b.lo for runs in chains for a, b in zip(runs, runs[1:]))
        assert {r for runs in chains for r in runs} == set(timed[o])
    for m, starts in eng.running().items():
        assert len({lo for lo, _, _ in starts}) == len(starts)
    written = [o for ws in eng.writes().values() for _, o in ws] + list(eng.finals())
    assert sorted(written) == sorted(timed)
    code = emit_kernel(gather(layer, 16, 'sequential'), 'k')
    assert len(re.findall(r'const res_T y\d+ = \(res_T\)r\d+;', code)) == len(eng.writes())  # one cast per multiplier
    assert sorted(int(o) for o in re.findall(r'res\[(\d+)\] = ', code)) == list(range(layer.n_out))  # each output once


def test_one_output_per_multiplier_keeps_an_accumulator_per_output():
    """When no multiplier works through two outputs (a balanced layer at RF = a column's kept weights)
    time-multiplexing would only rename the accumulators: the structure keeps them."""
    layer = random_layer(np.random.default_rng(0), 64, 64, (8, 8), 0.75, 4, IN_T, None, 'cgs_balanced')
    eng = static_engine(gather(layer, 16))
    assert not eng.timed and eng.shared() == eng.sources


def test_an_output_with_one_ungated_multiplier_is_accumulated_in_its_dsp():
    """Where one multiplier writes an output in every cycle it works and nothing else, the output's
    accumulator is that DSP's (synthesis packs it, as yosys' log says: ffP): the estimate gives it no
    register in the fabric. An output with gated or several sources keeps its register."""
    from flow.runtime.static_engine import counter_bits

    balanced = random_layer(np.random.default_rng(0), 64, 64, (8, 8), 0.75, 4, IN_T, None, 'cgs_balanced')
    sched = gather(balanced, 16)
    eng = static_engine(sched)
    assert eng.dsp_accumulated() == tuple(eng.sources) == tuple(range(64))
    io = balanced.n_in * IN_T.width + balanced.n_out * balanced.out_type.width
    assert sched.logic_estimate(balanced, IN_T)['ff'] == io + 2 * counter_bits(16)
    fabric = sched.logic_estimate(balanced, IN_T, dsp=False)['ff'] - sched.n_mult * (IN_T.width + balanced.weight_type.width)
    assert fabric == io + 2 * counter_bits(16) + 64 * balanced.accum_type.width
    layer = random_layer(np.random.default_rng(2), 64, 64, (8, 8), 0.75, 4, IN_T, None)
    sched = dataclasses.replace(gather(layer, 16), may_time_multiplex=False)  # every output its accumulator
    eng = static_engine(sched)
    dsp = eng.dsp_accumulated()
    assert not eng.timed and 0 < len(dsp) < len(eng.shared()) == 56  # 8 in DSPs (8 outputs have no kept block)
    io = layer.n_in * IN_T.width + layer.n_out * layer.out_type.width
    assert sched.logic_estimate(layer, IN_T)['ff'] == io + 2 * counter_bits(16) + (64 - len(dsp)) * layer.accum_type.width


def test_outputs_that_lanes_compute_at_once_are_sums_of_chains(monkeypatch):
    """128x128 at RF 32 (8x8 blocks, 75%): lanes split some columns, so two lanes compute some outputs at
    once. Such an output is the sum of two chains of running sums, each in its multiplier's DSP, added
    and cast once, instead of an accumulator of gated products whose products also pull the lanes'
    running sums into the fabric (``before``: what the choice could take before chains). yosys on
    bench_engine's 128x128 layer at RF 32 (8-bit inputs, an 8-bit rounding, saturating output): 5,836 +
    3,012 LUT+FF against 7,427 + 4,308 without chains, the logic depth 14 against 12 (the chains' sum
    before the cast). The Verilog keeps the running sums
    whose product feeds an accumulator in the fabric (``fabric_sums``) in either organisation."""
    import flow.rtl.engine as rtl_engine
    import flow.runtime.static_engine as se

    layer = random_layer(np.random.default_rng(0), 128, 128, (8, 8), 0.75, 4, IN_T, None)
    sched = gather(layer, 32)
    eng = se.static_engine(sched)
    finals = eng.finals()
    assert finals and not eng.shared() and not eng.fabric_sums()
    assert {k for _, parts in finals.values() for k, _ in parts} == {'r', 'h'}  # read where they end, or held
    before = dataclasses.replace(eng, timed=tuple(r for r in eng.timed if len(eng.chains()[r.o]) == 1))
    assert before.shared() and 0 < len(before.fabric_sums()) < len(before.running()) and not before.finals()
    for structure in (eng, before):
        monkeypatch.setattr(rtl_engine, 'static_engine', lambda s, structure=structure: structure)
        verilog = engine_verilog(sched, layer, IN_T)
        feeds = {int(m) for m in re.findall(r'q(\d+)', ' '.join(re.findall(r'wire \[\d+:0\] sum\d+ = (.*);', verilog)))}
        assert set(structure.fabric_sums()) == feeds & set(structure.running())
        assert len(re.findall(r'cast_out\(f\d+\)', verilog)) == len(structure.finals())
    est = sched.logic_estimate(layer, IN_T)
    monkeypatch.setattr(se, 'static_engine', lambda s: before)
    old = sched.logic_estimate(layer, IN_T)
    assert est['lut'] + est['ff'] < old['lut'] + old['ff']


def test_time_multiplexing_lowers_the_estimate(monkeypatch):
    """The estimate follows the organisation: the same schedule with an accumulator per output costs more
    (a cast per output, where the output type rounds and saturates, instead of one per multiplier)."""
    import flow.runtime.static_engine as se

    layer = random_layer(np.random.default_rng(4), 32, 32, (4, 4), 0.75, 4, IN_T, FixedType(8, 3, True, 'RND_CONV', 'SAT'))
    sched = gather(layer, 16)
    est = sched.logic_estimate(layer, IN_T)
    per_output = dataclasses.replace(se.static_engine(sched), timed=())
    monkeypatch.setattr(se, 'static_engine', lambda s: per_output)
    old = sched.logic_estimate(layer, IN_T)
    assert est['parts']['cast'] < old['parts']['cast'] and est['lut'] + est['ff'] < old['lut'] + old['ff']


@pytest.mark.parametrize('rf', [16, 64])
def test_selects_are_factored_over_shared_rows_where_it_pays(rf):
    """A lane reads its column's kept blocks one row per cycle, aligned to the block: both emitters
    build the shared row selects (a case of t mod group) and per lane a case of the window t / group
    choosing a row, fewer multiplexer LUTs than a case table of t per lane; every cycle that needs an
    input still reads it, in the C++ as in the Verilog."""
    layer = random_layer(np.random.default_rng(2), 64, 64, (8, 8), 0.75, 4, IN_T, None)
    sched = gather(layer, rf)
    eng = static_engine(sched)
    assert eng.group == 8 and eng.rows()
    plain = dataclasses.replace(eng, group=1)
    assert eng.select_luts() < plain.select_luts()
    code = emit_kernel(sched, 'k')
    assert re.search(r'switch \(t & 7\)', code) and re.search(r'switch \(t >> 3\)', code)
    cpp = cpp_structure(code, rf)
    assert cpp == verilog_structure(engine_verilog(sched, layer, IN_T), IN_T.width, rf)
    for g, sel in enumerate(eng.selects):
        want = {t: i for ts, i in sel.legs for t in ts}
        assert {t: cpp[0][str(g)][t] for t in want} == want
    est = sched.logic_estimate(layer, IN_T)['parts']['mux']
    assert est == IN_T.width * eng.select_luts() < IN_T.width * plain.select_luts()


def test_selects_are_not_factored_when_a_lane_reads_across_rows():
    """Blocks one row tall give no aligned runs: the selects stay case tables of t."""
    layer = random_layer(np.random.default_rng(2), 64, 64, (1, 8), 0.75, 4, IN_T, None)
    eng = static_engine(gather(layer, 16))
    assert eng.group == 1 and not eng.rows() and 'xz' not in emit_kernel(gather(layer, 16), 'k')
