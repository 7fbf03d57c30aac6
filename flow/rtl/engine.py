"""The time-multiplexed block-sparse engine as Verilog, generated from a schedule (flow/runtime/schedule.py).

The architecture of the HLS kernel, cycle by cycle, on the same static structure
(flow/runtime/static_engine.py) that flow/hls/block_sparse_emit.py writes as C++: everything that is
constant (weights, the block index) is a table of the cycle counter, as synthesis folds a constant ROM:

    start: x latched; cnt counts 0 .. rf-1                          (ready again on the last cycle)
    stage 1 (cnt):  per live multiplier m: w_m = weight ROM[cnt], x_m = its select's case table of
                    cnt (the legs that occur; factored: a case of the window cnt / group over
                    the shared row selects z_q, cases of cnt mod group); p_m <= x_m * w_m
    stage 2 (cnt1): per output o: acc_o <= (cnt1 == 0 ? bias_o : acc_o) + sum of p_m over the
                    static sources of o, each gated by a constant comparison of cnt1 unless it
                    always writes o (the accumulator organisation is exactly this sum)
    stage 3:        y_o <= cast(acc_o) with the reference's rounding and overflow; done

Where the static structure time-multiplexes the outputs (``StaticEngine.timed``), stage 2 keeps one
running sum r_m per multiplier instead, written as a DSP48's accumulator so that synthesis packs it
into the multiplier's DSP (P <= (load ? C : P) + M): r_m <= (load_m ? s_m : r_m) + its product,
restarted (load_m, a comparison of the cycle) at the first cycle of each of its runs from s_m, a
constant case of the cycle: the output's bias, 0, or the partial sum an earlier run of the output's
chain left (the other multiplier's r in the cycle after that run ended, else the chain's hold h_o_c,
latched from it then), and stage 3 casts r_m once (c_m) and writes y_o in the constant cycle after the
run that finishes o. An output that lanes compute at once (several chains) is the sum f_o of its
chains' running sums (or holds), cast and written in the cycle after its last chain ends.
Outputs not timed keep their accumulator as above.

A new sample can start on the last cycle of the previous one, so the initiation interval is rf
cycles and the latency rf + 3. Multipliers sharing an input sequence share one select. y is valid
in the cycle ``done`` is high (a time-multiplexed output of the next sample may replace it from the
cycle after).
"""

from __future__ import annotations

import numpy as np

from flow.runtime.fixed import FixedType
from flow.runtime.ref_block_sparse import BlockSparseDense
from flow.runtime.schedule import Schedule
from flow.runtime.static_engine import counter_bits, static_engine, sum_name

from .engine_design import EngineDesign, engine_for


def _lit(value: int, width: int) -> str:
    """A signed Verilog literal of ``width`` bits (a negative one as the negation of a positive)."""
    return f"{width}'sd{value}" if value >= 0 else f"-{width}'sd{-value}"


def _rounding_offset(mode: str, sh: int, s: str, width: int) -> str:
    """What ap_fixed's rounding ``mode`` adds before the arithmetic shift by ``sh`` (floor), in
    terms of the signed value ``s``: the same rules as fixed._round_shift, as a pre-add."""
    half, neg = 1 << (sh - 1), f'{s}[{width - 1}]'
    lit = lambda v: _lit(v, width)  # noqa: E731
    return {
        'TRN': lit(0),
        'TRN_ZERO': f'({neg} ? {lit((1 << sh) - 1)} : {lit(0)})',
        'RND': lit(half),
        'RND_MIN_INF': lit(half - 1),
        'RND_ZERO': f'({neg} ? {lit(half)} : {lit(half - 1)})',
        'RND_INF': f'({neg} ? {lit(half - 1)} : {lit(half)})',
        'RND_CONV': f'({lit(half - 1)} + $signed({{{width - 1}\'d0, {s}[{sh}]}}))',
    }[mode]


def cast_function(name: str, acc_t: FixedType, out_t: FixedType) -> str:
    """A Verilog function: accumulator bits (``acc_t``) -> output bits (``out_t``), as
    ``out_t.from_codes(code, acc_t.frac)`` computes it (rounding, then overflow)."""
    a, sh = acc_t.width, acc_t.frac - out_t.frac
    e = max(a, sh) + 3 + max(0, -sh)  # room for the sign, the rounding add and a left shift
    ext = f"{{{{{e - a}{{a[{a - 1}]}}}}, a}}" if acc_t.signed else f"{{{e - a}'d0, a}}"
    lines = [f'function [{out_t.width - 1}:0] {name};', f'    input [{a - 1}:0] a;',
             f'    reg signed [{e - 1}:0] s, r;', '    begin', f'        s = $signed({ext});']
    if sh > 0:
        lines.append(f'        r = (s + {_rounding_offset(out_t.rounding, sh, "s", e)}) >>> {sh};')
    else:
        lines.append(f'        r = s <<< {-sh};')
    lo, hi = out_t.min_code, out_t.max_code
    if out_t.overflow == 'SAT_SYM' and out_t.signed and out_t.width > 1:
        lo = -hi  # as fixed.FixedType._overflow: even the minimum becomes -max
    low_bits = f'r[{out_t.width - 1}:0]'
    over, under = f'r > {_lit(hi, e)}', f'r < {_lit(lo, e)}'
    if out_t.overflow == 'WRAP':
        lines.append(f'        {name} = {low_bits};')
    elif out_t.overflow == 'SAT_ZERO':
        lines.append(f"        {name} = ({over} || {under}) ? {out_t.width}'d0 : {low_bits};")
    else:
        hi_bits, lo_bits = (f"{out_t.width}'d{v & ((1 << out_t.width) - 1)}" for v in (hi, lo))
        lines.append(f'        {name} = {over} ? {hi_bits} : {under} ? {lo_bits} : {low_bits};')
    lines += ['    end', 'endfunction']
    return '\n'.join(lines)


def _tree(terms: list[str]) -> str:
    """A balanced sum (a + b + c + ... would synthesize as a chain of adders)."""
    while len(terms) > 1:
        terms = [f'({terms[k]} + {terms[k + 1]})' if k + 1 < len(terms) else terms[k] for k in range(0, len(terms), 2)]
    return terms[0]


def as_signed(bits: str, t: FixedType) -> str:
    """``bits`` (a value of ``t``) as a signed Verilog value: an unsigned one gets a zero sign bit."""
    return f'$signed({bits})' if t.signed else f"$signed({{1'b0, {bits}}})"


def input_bits(i: int, t: FixedType) -> str:
    """Input ``i`` of the latched vector ``xr`` (inputs of ``t``), as a signed value."""
    return as_signed(f'xr[{i * t.width + t.width - 1}:{i * t.width}]', t)


def signed_width(t: FixedType) -> int:
    """Bits of a value of ``t`` as a signed value (``as_signed``)."""
    return t.width + (0 if t.signed else 1)


def ports(comment: str, top: str, x_bits: int, y_bits: int) -> list[str]:
    """Every engine's module and ports: the testbench (flow/rtl/engine_sim.py) drives them all."""
    return [f'// {comment}', f'module {top} (', '    input clk, input rst, input start,', f'    input [{x_bits - 1}:0] x,',
            '    output ready, output reg done,', f'    output reg [{y_bits - 1}:0] y', ');']


def header(comment: str, top: str, x_bits: int, y_bits: int, functions: str, rf: int) -> list[str]:
    """The engines' ports and handshake (one testbench runs them all, flow/rtl/engine_sim.py): on
    ``start`` while ``ready`` x is latched (``xr``) and the cycle counter ``cnt`` runs 0 .. rf - 1,
    ready again in its last cycle; ``cnt1``/``v1`` are stage 2's cycle and valid, ``v2`` stage 3's,
    ``done`` the cycle y is valid in. ``functions``: Verilog functions the module uses."""
    cw = counter_bits(rf)
    return ports(comment, top, x_bits, y_bits) + [functions, f'reg [{x_bits - 1}:0] xr;', f'reg [{cw - 1}:0] cnt, cnt1;', 'reg busy, v1, v2;',
            f"assign ready = !busy || cnt == {cw}'d{rf - 1};",
            'always @(posedge clk) begin',
            "    if (rst) begin busy <= 1'b0; cnt <= 0; end",
            "    else if (start && ready) begin busy <= 1'b1; cnt <= 0; xr <= x; end",
            f"    else if (busy) begin if (cnt == {cw}'d{rf - 1}) busy <= 1'b0; else cnt <= cnt + 1'b1; end",
            '    v1 <= !rst && busy; cnt1 <= cnt;',
            f"    v2 <= !rst && v1 && cnt1 == {cw}'d{rf - 1};", '    done <= !rst && v2;', 'end']


def select_verilog(eng, x_bits, xs: int, name: str, cnt: str, cw: int, rows: str = 'z') -> list[str]:
    """The input selects of a static structure ``eng`` as ``<name><g>`` (``xs`` signed bits) over the
    inputs ``x_bits(i)``: case tables of the counter ``cnt`` (``cw`` bits), or, factored, cases of
    ``cnt / group`` over the shared row selects ``<rows><q>`` (cases of ``cnt mod group``)."""
    v, k = [], eng.group.bit_length() - 1
    for q in eng.rows():  # factored selects: the shared row selects, a case of cnt mod group
        v += [f'reg signed [{xs - 1}:0] {rows}{q};', f'always @* case ({cnt}[{k - 1}:0])']
        v += [f'    {j}: {rows}{q} = {x_bits(q * eng.group + j)};' for j in range(eng.group - 1)]
        v += [f'    default: {rows}{q} = {x_bits(q * eng.group + eng.group - 1)};', 'endcase']
    for g, sel in enumerate(eng.selects):
        src, var, fsel = ((x_bits, cnt, sel) if not sel.legs or k == 0 else
                          (lambda q: f'{rows}{q}', f'{cnt}[{cw - 1}:{k}]', eng.factored(sel)))
        if not fsel.legs:  # one input (or row): a wire (an always @* with no input never runs)
            v.append(f'wire signed [{xs - 1}:0] {name}{g} = {src(fsel.default)};')
        else:
            v += [f'reg signed [{xs - 1}:0] {name}{g};', f'always @* case ({var})']
            v += [f"    {', '.join(map(str, ts))}: {name}{g} = {src(i)};" for ts, i in fsel.legs]
            v += [f'    default: {name}{g} = {src(fsel.default)};', 'endcase']
    return v


def multiplier_verilog(eng, sel: str, ww: int, pw: int, a: int, shift: int, cnt: str, prefix: str = '') -> list[str]:
    """Per live multiplier m of ``eng``: its weight bank as a case table of ``cnt`` (``w<m>``), the
    registered product of its select ``<sel><g>`` (``p<m>``) and the product aligned to the
    accumulator's ``a`` bits (``q<m>``); names prefixed by ``prefix``."""
    v = []
    for mu in eng.multipliers:
        m, w = f'{prefix}{mu.m}', [int(c) for c in mu.weights]
        if len(set(w)) == 1:
            v.append(f'wire signed [{ww - 1}:0] w{m} = {_lit(w[0], ww)};')
        else:
            v += [f'reg signed [{ww - 1}:0] w{m};', f'always @* case ({cnt})'] + [f'    {t}: w{m} = {_lit(c, ww)};' for t, c in enumerate(w) if c]
            v += [f'    default: w{m} = {_lit(0, ww)};', 'endcase']
        v += [f'reg signed [{pw - 1}:0] p{m};', f'always @(posedge clk) p{m} <= {sel}{mu.select} * w{m};',
              f'wire [{a - 1}:0] q{m} = $signed(p{m}) <<< {shift};']
    return v


def engine_verilog(sched: Schedule, layer: BlockSparseDense, in_t: FixedType, top: str = 'engine') -> str:
    """The engine for ``layer`` (its weights, bias, accumulator and result types) on ``sched``."""
    layer.check(in_t)
    acc_t, out_t, w_t = layer.accum_type, layer.out_type, layer.weight_type
    if not acc_t.signed:
        raise ValueError(f"layer '{layer.name}': the engine needs a signed accumulator, got {acc_t.hls()}")
    rf, n_in, n_out = sched.rf, sched.n_in, sched.n_out
    wx, ww, a, wy = in_t.width, w_t.width, acc_t.width, out_t.width
    xs = signed_width(in_t)  # an unsigned input gets a zero sign bit before the signed multiply
    pw = xs + ww
    shift = acc_t.frac - (in_t.frac + w_t.frac)
    cw = counter_bits(rf)
    v = header(f'{sched.organisation} block-sparse engine for layer {layer.name}: {n_in} -> {n_out}, '
               f'{sched.n_mult} multipliers x {rf} cycles, generated by flow/rtl/engine.py', top, n_in * wx, n_out * wy,
               cast_function('cast_out', acc_t, out_t), rf)

    # stage 1: input selects (one per distinct input sequence), weight ROMs, multipliers: the
    # static structure (flow/runtime/static_engine.py) the HLS C++ (flow/hls/block_sparse_emit.py) is built from
    eng = static_engine(sched)
    v += select_verilog(eng, lambda i: input_bits(i, in_t), xs, 'xm', 'cnt', cw)
    v += multiplier_verilog(eng, 'xm', ww, pw, a, shift, 'cnt')

    # stage 2: the accumulators, each summing the products the schedule sends it, gated by the cycle
    bias = (np.asarray(layer.bias, dtype=np.int64) << (acc_t.frac - layer.bias_type.frac)) & ((1 << a) - 1)
    for o, srcs in eng.shared().items():
        terms = [gate.gated(f'q{m}', 'cnt1', rf, f"{a}'d0") for m, gate in srcs]
        v += [f'reg [{a - 1}:0] acc{o};', f'wire [{a - 1}:0] sum{o} = {_tree(terms)};',
              f"always @(posedge clk) if (v1) acc{o} <= (cnt1 == {cw}'d0 ? {a}'d{int(bias[o])} : acc{o}) + sum{o};"]
    timed = eng.timed_outputs()
    for o in set(range(n_out)) - set(eng.sources) - set(timed):  # no live weight: the bias alone
        v += [f'reg [{a - 1}:0] acc{o};', f"always @(posedge clk) acc{o} <= {a}'d{int(bias[o])};"]
    # time-multiplexed outputs: a running sum per multiplier, restarted from a bias, 0, a hold or another
    # running sum (``StaticEngine.running``). Written as a DSP48's accumulator (P <= (load ? C : P) + M): the restart a 2:1 choice of the load cycles, the
    # restart value a case of the cycle, so synthesis packs the sum and its register into the DSP
    v += [f'reg [{a - 1}:0] {sum_name(("h", oc))};' for oc in eng.held()]
    for m, starts in eng.running().items():
        v += [f'reg [{a - 1}:0] r{m}, s{m};', 'always @* case (cnt1)']
        for lo, how, o in starts:
            src = {'bias': f"{a}'d{int(bias[o])}", 'zero': f"{a}'d0"}.get(how) or sum_name(eng.handoff_source(m, lo))
            v.append(f'    {lo}: s{m} = {src};')
        load = ' || '.join(f"cnt1 == {cw}'d{lo}" for lo, _, _ in starts)
        v += [f"    default: s{m} = {a}'d0;", 'endcase', f'wire load{m} = {load};',
              f'wire [{a - 1}:0] n{m} = (load{m} ? s{m} : r{m}) + q{m};',
              f'always @(posedge clk) if (v1) r{m} <= n{m};']
    v += [f'wire [{wy - 1}:0] c{m} = cast_out(r{m});' for m in eng.writes()]  # a running sum that finishes outputs: cast once
    for oc, latches in eng.hold_latches().items():  # a partial sum read later than the cycle after its run: kept in a hold
        v += ['always @(posedge clk) if (v1) case (cnt1)'] + [f'    {t}: {sum_name(("h", oc))} <= r{m};' for t, m in latches]
        v += ['    default: ;', 'endcase']
    for o, (_, parts) in eng.finals().items():  # an output of several chains: the sum of its chains' sums, cast once
        v.append(f'wire [{a - 1}:0] f{o} = {_tree([sum_name(p) for p in parts])};')

    # stage 3: the output cast
    v.append('always @(posedge clk) if (v2) begin')
    v += [f'    y[{o * wy + wy - 1}:{o * wy}] <= cast_out(acc{o});' for o in range(n_out) if o not in timed]
    v.append('end')
    by_cycle: dict[int, list] = {}
    for m, ws in eng.writes().items():
        for hi, o in ws:
            by_cycle.setdefault(hi, []).append((o, f'c{m}'))
    for o, (hi, _) in eng.finals().items():
        by_cycle.setdefault(hi, []).append((o, f'cast_out(f{o})'))
    if by_cycle:  # time-multiplexed outputs: in the cycle after the run that finishes them (v3, cnt2)
        v += [f'reg [{cw - 1}:0] cnt2;', 'reg v3;', 'always @(posedge clk) begin v3 <= !rst && v1; cnt2 <= cnt1; end',
              'always @(posedge clk) if (v3) case (cnt2)']
        for hi, ws in sorted(by_cycle.items()):
            v.append(f'    {hi}: begin ' + ' '.join(f'y[{o * wy + wy - 1}:{o * wy}] <= {value};' for o, value in sorted(ws)) + ' end')
        v += ['    default: ;', 'endcase']
    v += ['endmodule', '']
    return '\n'.join(v)


@engine_for(BlockSparseDense)
def block_sparse_design(layer: BlockSparseDense, rf: int, in_t: FixedType, in_shape: tuple = ()) -> EngineDesign:
    """The rtl step's engine for a block-sparse layer (a convolution's per-patch kernel too): its own
    schedule at ``rf`` (``layer.schedule``)."""
    sched = layer.schedule(rf)
    est = sched.logic_estimate(layer, in_t)
    return EngineDesign(sched.rf, sched.organisation, lambda top: engine_verilog(sched, layer, in_t, top), multipliers=sched.n_mult,
                        padding=sched.padding, time_multiplexed_outputs=len(static_engine(sched).timed_outputs()),
                        estimate={'lut': est['lut'], 'ff': est['ff']})
