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
from flow.runtime.static_engine import static_engine
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


def cpp_timed(code: str):
    """The time-multiplexed outputs as the C++ writes them: running sums' restarts {m: {lo: ('bias', o) |
    ('h', o) | ('r', m')}}, hold latches {o: {cycle: m}} and output writes {m: {hi: o}}."""
    running = {m: {lo: ('bias', int(o)) if b else (src, int(o)) for lo, (b, src, o) in legs.items()}
               for m, legs in _legs(code, r'acc_t s(\d+);\n\s*switch \(t\) \{(.*?)default',
                                    r'case (\d+): s\d+ = (?:\(acc_t\)(bias)es\[|(h|r))(\d+)').items()}
    holds = {}
    for t, o, m in re.findall(r'case (\d+): h(\d+) = r(\d+); break;', code):
        holds.setdefault(int(o), {})[int(t)] = int(m)
    writes = {}
    for m, body in re.findall(r'const res_T y(\d+) = \(res_T\)r\d+;\n\s*switch \(t\) \{(.*?)default', code, re.S):
        writes[int(m)] = {int(hi): int(o) for hi, o, _ in re.findall(r'case (\d+): res\[(\d+)\] = y(\d+);', body)}
    return running, holds, writes


def verilog_timed(v: str, wy: int):
    """The same, read from the Verilog (a restart from the bias as ('bias', its accumulator code))."""
    running = {}
    for m, body in re.findall(r'reg \[\d+:0\] r(\d+), s\d+;\nalways @\* case \(cnt1\)\n(.*?)endcase', v, re.S):
        running[int(m)] = {int(lo): ('bias', int(c)) if c else (src, int(o))
                           for lo, c, src, o in re.findall(r"^\s+(\d+): s\d+ = (?:\d+'d(\d+)|(h|r)(\d+));", body, re.M)}
    holds = {}
    for t, o, m in re.findall(r'^\s+(\d+): h(\d+) <= r(\d+);', v, re.M):
        holds.setdefault(int(o), {})[int(t)] = int(m)
    writes = {}
    for hi, body in re.findall(r'^\s+(\d+): begin (.*?) end$', v, re.M):
        for lo, m in re.findall(r'y\[\d+:(\d+)\] <= c(\d+);', body):
            writes.setdefault(int(m), {})[int(hi)] = int(lo) // wy
    return running, holds, writes


def expected_timed(eng):
    """What the static structure says the emitters write: restarts {m: {lo: ('bias', o) | ('h', o) | ('r', m')}},
    hold latches {o: {hi + 1: m}} (the cycle after the run), output writes {m: {hi: o}}."""
    running = {m: {lo: ('bias', o) if how == 'bias' else eng.handoff_source(o, lo) for lo, how, o in s}
               for m, s in eng.running().items()}
    holds = {o: {hi + 1: m for hi, m, held in hs if held} for o, hs in eng.handoffs().items() if o in eng.held()}
    return running, holds, {m: dict(ws) for m, ws in eng.writes().items()}


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
    shared accumulators' gated sums; the running sums restarted, held and written as the structure says)."""
    rf = eng.rf
    acc = np.zeros((len(x), eng.n_out), dtype=np.int64)
    starts = {m: dict((lo, (how, o)) for lo, how, o in s) for m, s in eng.running().items()}
    r = {m: np.zeros(len(x), dtype=np.int64) for m in starts}
    h = {o: np.zeros(len(x), dtype=np.int64) for o in eng.held()}
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
            if how == 'hold':
                src, k = eng.handoff_source(o, t)
                s[m] = h[k] if src == 'h' else r[k]
            else:
                s[m] = 0 if how == 'bias' else r[m]
        for o, hs in eng.handoffs().items():
            for hi, m, held in hs:
                if held and hi + 1 == t:
                    h[o] = r[m].copy()
        for m in starts:
            r[m] = s[m] + p[m]
        for m, ws in eng.writes().items():
            for hi, o in ws:
                if hi == t:
                    acc[:, o] = r[m]
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
    running, holds, writes = cpp_timed(emit_kernel(sched, 'k'))
    assert (running, holds, writes) == expected_timed(eng)
    acc_t = layer.accum_type
    bias = (np.asarray(layer.bias, dtype=np.int64) << (acc_t.frac - layer.bias_type.frac)) & ((1 << acc_t.width) - 1)
    v_running, v_holds, v_writes = verilog_timed(engine_verilog(sched, layer, IN_T), layer.out_type.width)
    assert v_running == {m: {lo: ('bias', int(bias[k])) if how == 'bias' else (how, k) for lo, (how, k) in legs.items()}
                         for m, legs in running.items()}
    assert (v_holds, v_writes) == (holds, writes)


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
            assert re.fullmatch(r'\s*case \d+: res\[\d+\] = y\d+; break;', line), line
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
    run (its last) and cast there; runs of one output never overlap, and a multiplier's runs neither."""
    layer = _tm_layer()
    eng = static_engine(gather(layer, 16))
    timed = eng.timed_outputs()
    assert timed and len(eng.running()) < len(timed) and eng.held()
    for o, runs in timed.items():
        assert all(a.hi < b.lo for a, b in zip(runs, runs[1:]))
    for m, starts in eng.running().items():
        assert len({lo for lo, _, _ in starts}) == len(starts)
    assert sorted(o for ws in eng.writes().values() for _, o in ws) == sorted(timed)
    code = emit_kernel(gather(layer, 16), 'k')
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
    sched = gather(layer, 16)
    eng = static_engine(sched)
    dsp = eng.dsp_accumulated()
    assert not eng.timed and 0 < len(dsp) < len(eng.shared()) == 56  # 8 in DSPs (8 outputs have no kept block)
    io = layer.n_in * IN_T.width + layer.n_out * layer.out_type.width
    assert sched.logic_estimate(layer, IN_T)['ff'] == io + 2 * counter_bits(16) + (64 - len(dsp)) * layer.accum_type.width


def test_outputs_are_timed_where_their_running_sums_fit_in_the_dsps(monkeypatch):
    """128x128 at RF 32 (8x8 blocks, 75%): lanes split some columns, so some outputs overlap and keep
    an accumulator. Timing the others still pays where most running sums stay in their DSPs (yosys on
    this layer with 8-bit inputs and an 8-bit rounding, saturating output: 72 outputs timed, 11,061
    LUT+FF, against 12,892 with the 40 the choice timed before it knew the DSPs): a running sum counts
    as fabric only where its product also feeds an accumulator, in the Verilog as in the choice."""
    import flow.runtime.static_engine as se

    layer = random_layer(np.random.default_rng(0), 128, 128, (8, 8), 0.75, 4, IN_T, None)
    sched = gather(layer, 32)
    eng = se.static_engine(sched)
    timed = eng.timed_outputs()
    assert timed and eng.shared() and 0 < len(eng.fabric_sums()) < len(eng.running())
    assert any(len(runs) > 1 for runs in timed.values())  # split columns handed from run to run
    verilog = engine_verilog(sched, layer, IN_T)
    feeds_an_accumulator = {int(m) for m in re.findall(r'q(\d+)', ' '.join(re.findall(r'wire \[\d+:0\] sum\d+ = (.*);', verilog)))}
    assert set(eng.fabric_sums()) == feeds_an_accumulator & set(eng.running())
    est = sched.logic_estimate(layer, IN_T)
    none = dataclasses.replace(eng, timed=())
    monkeypatch.setattr(se, 'static_engine', lambda s: none)
    old = sched.logic_estimate(layer, IN_T)
    assert est['lut'] + est['ff'] < old['lut'] + old['ff']


def test_time_multiplexing_lowers_the_estimate(monkeypatch):
    """The estimate follows the organisation: the same schedule with an accumulator per output costs more."""
    import flow.runtime.static_engine as se

    layer = _tm_layer()
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
