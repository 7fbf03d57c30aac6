"""The static structure of the time-multiplexed block-sparse engine, from a schedule
(flow/runtime/schedule.py): what both emitters build, the C++ of flow/hls/block_sparse_emit.py
(what hls4ml ships) and the Verilog of flow/rtl/engine.py (what yosys measures and Verilator runs).

Everything the schedule stores as tables becomes constants of the cycle counter t:

- ``selects``: per distinct input sequence (the multipliers of a gather lane share one), a case
  table of t -> input, only the legs that occur (cycles with the same input share one leg; padding
  cycles are don't-cares, left to the default, the first leg's input), or one fixed input;
- ``group``: where the schedule reads the inputs in aligned runs (a block's rows one per cycle, the
  gather schedule's runs), the selects are factored in two levels of constant case tables: shared
  row selects ``z_q = x[q * group + t mod group]`` and, per select, a case of the window
  ``t / group`` choosing a row (``factored``): a sparse lane's 64-leg case table becomes an 8-leg
  one over rows that every lane shares. Taken per layer where it needs fewer multiplexer LUTs
  (``select_luts``); 1: the selects read the inputs directly;
- ``multipliers``: the live multipliers (a bank of zero weights only is no multiplier), each with
  its select and its weight bank (word t is what it multiplies in cycle t: the ROM, one bank per
  multiplier, read at address t);
- ``sources``: per output, the multipliers whose products ever reach it, each gated by a constant
  comparison of t (``Gate``) unless it always writes there; a cycle in which a multiplier
  multiplies by zero (padding) is a don't-care of its gates.
- ``timed``: the outputs computed by time-multiplexed running accumulators instead (``Run``), when
  the schedule lets a multiplier work through several outputs one after another (see
  ``time_multiplexed``); ``sources`` still lists every output's products (the LSTM's gate sums and
  the estimate read it), the block-sparse emitters give an accumulator of its own only to the
  outputs that are not timed (``shared``). A running sum is a DSP48's accumulator: each cycle it
  adds its product to itself or, in the first cycle of a run, to a restart value (a constant case
  of t), so synthesis packs the sum and its register into the multiplier's DSP, unless the product
  also feeds an accumulator (``fabric_sums``); a partial sum is
  handed to the next run of the output's chain from the running sum itself when that run starts in
  the next cycle, else from a hold latched from the running sum in that cycle (``handoffs``). An
  output that lanes compute at once has several chains (``chains``), each started from the bias or 0,
  and is written as the sum of their sums, cast once (``finals``).

Nothing here indexes an array with a table: the emitters write the case tables and gates as code.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from .fixed import _round_shift

if TYPE_CHECKING:  # annotations only: Schedule.logic_estimate builds on this module
    from .schedule import Schedule


@dataclass(frozen=True)
class Select:
    """An input select: ``legs`` ((cycles, input) ..., by first cycle) and the ``default`` input for
    every other cycle. No legs: a wire from input ``default``."""

    legs: tuple[tuple[tuple[int, ...], int], ...]
    default: int


@dataclass(frozen=True)
class Gate:
    """The cycles a product is added in: inclusive ranges (lo, hi) of t; None: every cycle."""

    ranges: tuple[tuple[int, int], ...] | None

    def condition(self, var: str, rf: int) -> str | None:
        """The gate as an expression in ``var`` (the same text in C++ and Verilog); None: always."""
        if self.ranges is None:
            return None
        terms = []
        for lo, hi in self.ranges:
            if lo == hi:
                terms.append(f'{var} == {lo}')
            else:
                parts = ([f'{var} >= {lo}'] if lo > 0 else []) + ([f'{var} <= {hi}'] if hi < rf - 1 else [])
                terms.append(' && '.join(parts) if len(parts) == 1 or len(self.ranges) == 1 else f"({' && '.join(parts)})")
        return ' || '.join(terms)

    def gated(self, term: str, var: str, rf: int, zero: str) -> str:
        """``term`` in the cycles of the gate, ``zero`` in the others: the same ternary in C++ and Verilog."""
        cond = self.condition(var, rf)
        return term if cond is None else f'(({cond}) ? {term} : {zero})'


@dataclass(frozen=True)
class Multiplier:
    m: int  # its number in the schedule: bank m of the weight ROM
    select: int  # index into StaticEngine.selects
    weights: tuple[int, ...]  # its bank, one word per cycle (codes, or the real values the hls4ml node holds)


@dataclass(frozen=True)
class Run:
    """Multiplier ``m`` works on output ``o`` from cycle ``lo`` to ``hi``: every product it makes for
    ``o`` falls in [lo, hi] and none for another output (cycles that multiply by zero are free)."""

    m: int
    o: int
    lo: int
    hi: int
    chain: int = 0  # the output's chain (see ``StaticEngine.chains``) this run belongs to


@dataclass(frozen=True)
class StaticEngine:
    rf: int
    n_in: int
    n_out: int
    n_mult: int  # the schedule's multipliers, dead ones included (the ROM's banks)
    selects: tuple[Select, ...]
    multipliers: tuple[Multiplier, ...]
    sources: dict  # output -> tuple of (multiplier number m, Gate), every output with a live source
    timed: tuple[Run, ...] = ()  # the runs of the time-multiplexed outputs, by output, chain, then cycle; () for none
    group: int = 1  # a power of two: the selects factored over shared row selects (see the module); 1: not

    def factored(self, sel: Select) -> Select:
        """``sel`` over the shared row selects: legs (windows t // group, row q), default a row; no
        legs: one row in every cycle that needs an input."""
        return _factor(sel, self.group)

    def rows(self) -> tuple[int, ...]:
        """The rows q whose shared select ``z_q`` some factored select reads."""
        return tuple(sorted(_rows(self.factored(sel) for sel in self.selects if sel.legs))) if self.group > 1 else ()

    def select_luts(self) -> int:
        """Multiplexer LUTs per input bit of the selects as built (a LUT6 is a 4:1 multiplexer bit)."""
        return _select_luts(self.selects, self.group)

    def multiplier(self, m: int) -> Multiplier:
        return next(mu for mu in self.multipliers if mu.m == m)

    def adder_levels(self) -> int:
        """Levels of the balanced tree adding the most products that reach one output in a cycle."""
        most = max((len(s) for s in self.sources.values()), default=0)
        return max(most - 1, 0).bit_length()

    def timed_outputs(self) -> dict[int, tuple[Run, ...]]:
        """Output -> its runs (every chain's) in cycle order."""
        out: dict[int, list[Run]] = {}
        for r in self.timed:
            out.setdefault(r.o, []).append(r)
        return {o: tuple(sorted(rs, key=lambda r: r.lo)) for o, rs in out.items()}

    def chains(self) -> dict[int, tuple[tuple[Run, ...], ...]]:
        """Output -> its chains, each a tuple of runs disjoint in time, in cycle order: chain 0 starts
        from the bias, any other from 0, each later run of a chain from the partial sum the one before
        left; the output is the sum of its chains' last runs' sums (``finals``; one chain: that sum)."""
        out = {}
        for o, runs in self.timed_outputs().items():
            n = 1 + max(r.chain for r in runs)
            out[o] = tuple(tuple(r for r in runs if r.chain == c) for c in range(n))
        return out

    def shared(self) -> dict:
        """The sources of the outputs that keep an accumulator of their own (not timed)."""
        timed = self.timed_outputs()
        return {o: s for o, s in self.sources.items() if o not in timed}

    def dsp_accumulated(self) -> tuple[int, ...]:
        """The outputs among ``shared`` whose accumulator is a DSP48's accumulator all the same: one
        multiplier writes them in every cycle it works and no other output, so its product has no
        other user and synthesis packs the sum and its register into that DSP (as a running sum)."""
        return tuple(o for o, s in self.shared().items() if _one_ungated(s))

    def fabric_sums(self) -> tuple[int, ...]:
        """The multipliers whose running sum synthesis cannot pack into their DSP: they also write an
        output that keeps an accumulator of its own, so the product has two users (``time_multiplexed``
        weighs this)."""
        shared = {m for s in self.shared().values() for m, _ in s}
        return tuple(m for m in self.running() if m in shared)

    def running(self) -> dict[int, tuple[tuple[int, str, int], ...]]:
        """Multiplier -> the starts of its runs in cycle order: (lo, how, output), ``how`` 'bias', 'zero'
        or 'hold'. Its running accumulator restarts there (from the bias, from 0 (a chain but the first)
        or from the partial sum the chain's previous run left: ``handoff_source``) and otherwise adds
        its product to what it holds."""
        out: dict[int, list] = {}
        for o, chains in self.chains().items():
            for c, runs in enumerate(chains):
                for k, r in enumerate(runs):
                    out.setdefault(r.m, []).append((r.lo, 'hold' if k else 'zero' if c else 'bias', o))
        return {m: tuple(sorted(v)) for m, v in sorted(out.items())}

    def handoffs(self) -> dict[tuple[int, int], tuple[tuple[int, int, bool], ...]]:
        """(output, chain) -> (hi, m, held) for each of the chain's runs but the last: the run on
        multiplier m ending at cycle hi hands its partial sum to the chain's next run; ``held``: that
        run starts later than the cycle after (hi + 1), so the sum waits in the chain's hold, latched
        from the running sum in cycle hi + 1; otherwise the next run reads the running sum itself
        (``handoff_source``). (A chain's sum that waits for ``finals`` is latched too: see ``hold_latches``.)"""
        out = {}
        for o, chains in self.chains().items():
            for c, runs in enumerate(chains):
                if len(runs) > 1:
                    out[o, c] = tuple((r.hi, r.m, self.handoff_source(nxt.m, nxt.lo)[0] == 'h') for r, nxt in zip(runs, runs[1:]))
        return out

    def hold_latches(self) -> dict[tuple[int, int], tuple[tuple[int, int], ...]]:
        """(output, chain) -> (cycle, m) for each partial sum that waits: latched into the chain's hold
        from multiplier m's running sum in that cycle (the one after its run, hi + 1), for the chain's
        next run or, where m works again before the output is written, for ``finals``."""
        return self._plan[1]

    def held(self) -> tuple[tuple[int, int], ...]:
        """The (output, chain) pairs that need a hold register."""
        return tuple(self.hold_latches())

    def handoff_source(self, m: int, lo: int) -> tuple[str, int | tuple[int, int]]:
        """Where multiplier ``m``'s run starting at ``lo`` (not the first of its chain) restarts from:
        ('h', (o, chain)), the chain's hold, or ('r', m'), multiplier m''s running sum, where the
        chain's previous run ended at lo - 1."""
        return self._plan[0][m, lo]

    def finals(self) -> dict[int, tuple[int, tuple[tuple[str, int | tuple[int, int]], ...]]]:
        """Output with several chains -> (hi, parts): it is written in cycle hi, where its last chain
        ends, as the sum of its chains' sums, each read from its multiplier's running sum ('r', m),
        which has made no other non-zero product since, or else from the chain's hold ('h', (o, c))."""
        return self._plan[2]

    @functools.cached_property
    def _plan(self):
        """handoff_source, hold_latches and finals, built once (``_chain_plan`` per output)."""
        weights = {mu.m: mu.weights for mu in self.multipliers}
        sources, latches, finals = {}, {}, {}
        for o, chains in self.chains().items():
            src, lat, fin = _chain_plan(o, chains, lambda m, lo, hi: any(weights[m][lo:hi + 1]))
            sources.update(src)
            latches.update(lat)
            if fin:
                finals[o] = fin
        return sources, latches, finals

    def writes(self) -> dict[int, tuple[tuple[int, int], ...]]:
        """Multiplier -> (hi, o) of the one-chain outputs it finishes: the cycle after which its running
        sum is output o (cast once per multiplier)."""
        out: dict[int, list] = {}
        for o, chains in self.chains().items():
            if len(chains) == 1:
                out.setdefault(chains[0][-1].m, []).append((chains[0][-1].hi, o))
        return {m: tuple(sorted(v)) for m, v in sorted(out.items())}


def _chain_plan(o: int, chains, busy):
    """For output ``o``'s ``chains``: {(m, lo): handoff source}, {(o, c): hold latches} and, with
    several chains, (hi, parts) (``StaticEngine.finals``); ``busy(m, lo, hi)``: multiplier m makes a
    non-zero product in cycles lo .. hi (its running sum then no longer holds the chain's sum)."""
    sources, latches, parts = {}, {}, []
    end = max(runs[-1].hi for runs in chains)
    for c, runs in enumerate(chains):
        for prev, nxt in zip(runs, runs[1:]):
            if nxt.lo > prev.hi + 1:
                sources[nxt.m, nxt.lo] = ('h', (o, c))
                latches.setdefault((o, c), []).append((prev.hi + 1, prev.m))
            else:
                sources[nxt.m, nxt.lo] = ('r', prev.m)
        last = runs[-1]
        if len(chains) > 1:
            if busy(last.m, last.hi + 1, end):
                latches.setdefault((o, c), []).append((last.hi + 1, last.m))
                parts.append(('h', (o, c)))
            else:
                parts.append(('r', last.m))
    # every latch falls inside the sample (the next run, or the write, comes later in it)
    assert all(cycle <= end for v in latches.values() for cycle, _ in v), (o, latches)
    return sources, {k: tuple(v) for k, v in latches.items()}, (end, tuple(parts)) if len(chains) > 1 else None


def _split_chains(runs: list[Run]) -> list[list[Run]]:
    """``runs`` (by first cycle) in the fewest chains of runs disjoint in time: each run joins the chain
    that ended last before it (so a partial sum waits the least), or starts a chain."""
    chains: list[list[Run]] = []
    for r in runs:
        free = [ch for ch in chains if ch[-1].hi < r.lo]
        if free:
            max(free, key=lambda ch: ch[-1].hi).append(r)
        else:
            chains.append([r])
    return chains


def sum_name(source: tuple) -> str:
    """The emitters' name (the same in C++ and Verilog) of a partial sum's place: ('r', m) multiplier
    m's running sum ``r<m>``, ('h', (o, c)) output o's chain c's hold ``h<o>_<c>``."""
    kind, key = source
    return f'r{key}' if kind == 'r' else f'h{key[0]}_{key[1]}'


def _one_ungated(sources: tuple) -> bool:
    """One multiplier writes the output in every cycle it works and no other output: the output's sum
    is that multiplier's DSP accumulator (``StaticEngine.dsp_accumulated``)."""
    return len(sources) == 1 and sources[0][1].ranges is None


def _select(inputs: np.ndarray, care: np.ndarray) -> Select:
    used = [(t, int(i)) for t, i in enumerate(inputs) if care[t]]
    if len({i for _, i in used}) == 1:
        return Select((), used[0][1])
    legs: dict[int, list[int]] = {}  # every cycle that needs an input is a leg (a full case table where there
    for t, i in used:  # is no padding: yosys maps it as one mux tree, 5% fewer LUTs than legs + a default input)
        legs.setdefault(i, []).append(t)
    return Select(tuple((tuple(ts), i) for i, ts in legs.items()), used[0][1])


def restart_luts(starts) -> int:
    """LUTs per accumulator bit of a running sum's choice of restart or sum and its restart values, for
    its ``starts`` (``StaticEngine.running``: 'hold' restarts read a partial sum, a hold or another
    running sum; the others a constant, the bias or 0): the estimate's unit (``time_multiplexed`` weighs
    restarts its own way). One constant folds into the adder's LUTs with the choice of restart or sum,
    the others are a multiplexer of constants of the cycle, and restarts from sums a multiplexer of the
    sums, the constants and the running sum itself. Measured with yosys on one 18-bit running sum: 1 LUT
    for one constant, 4 for two, 39 for a constant and a hold; four constants per running sum (the
    RF 256 engines of bench_engine) about 1 LUT per bit."""
    sums = sum(how == 'hold' for _, how, _ in starts)
    constants = len(starts) - sums
    return (1 + _mux_luts(sums + 2) if sums else 0) + _mux_luts(constants - 1)


def cast_luts(acc_t, out_t) -> int:
    """LUTs of one cast from the (signed) accumulator type to the output type (the estimates' unit): a
    rounding adder and a saturating compare (output and accumulator bits), or none where the emitted
    cast is a bit slice: fraction bits dropped by truncation, or by a rounding whose offset is a
    constant (it goes into the carry chain), and integer bits dropped by wrapping, or by saturating
    where every (rounded) accumulator value fits (yosys maps those to wires and CARRY4s only). A one-bit
    signed output's saturation is charged too, though it is the sign bit."""
    drop = acc_t.frac - out_t.frac
    if drop > 0:
        lo, hi = (int(v) for v in _round_shift(np.array([acc_t.min_code, acc_t.max_code], dtype=np.int64), drop, out_t.rounding))
    else:  # more fraction bits out than in: a left shift, in Python integers (no int64 overflow)
        lo, hi = acc_t.min_code << -drop, acc_t.max_code << -drop
    least = -out_t.max_code if out_t.overflow == 'SAT_SYM' and out_t.signed and out_t.width > 1 else out_t.min_code
    saturates = out_t.overflow != 'WRAP' and (lo < least or hi > out_t.max_code)
    rounds = drop > 0 and out_t.rounding not in ('TRN', 'RND', 'RND_MIN_INF')
    return acc_t.width + out_t.width if saturates or rounds else 0


def _mux_luts(legs: int) -> int:
    return -(-(legs - 1) // 3) if legs > 1 else 0


def _factor(sel: Select, g: int) -> Select:
    if g == 1 or not sel.legs:
        return sel
    rows: dict[int, set] = {}
    for ts, i in sel.legs:
        rows.setdefault(i // g, set()).update(t // g for t in ts)
    if len(rows) == 1:
        return Select((), next(iter(rows)))
    legs = sorted(((tuple(sorted(ws)), q) for q, ws in rows.items()), key=lambda leg: leg[0][0])
    return Select(tuple(legs), legs[0][1])


def _select_luts(selects, g: int) -> int:
    if g == 1:
        return sum(_mux_luts(len(sel.legs)) for sel in selects)
    factored = [_factor(sel, g) for sel in selects if sel.legs]
    return len(_rows(factored)) * _mux_luts(g) + sum(_mux_luts(len(f.legs)) for f in factored)


def _rows(factored) -> set:
    """The rows the factored selects read (their legs' and their defaults')."""
    return {q for f in factored for q in (f.default, *(q for _, q in f.legs))}


def _factors(sel: Select, g: int) -> bool:
    """Every cycle that needs an input reads element t mod g of a row, one row per window t // g."""
    window: dict[int, int] = {}
    for ts, i in sel.legs:
        for t in ts:
            if i % g != t % g or window.setdefault(t // g, i // g) != i // g:
                return False
    return True


def _group(selects, rf: int) -> int:
    """The largest power of two the selects factor over, if that needs fewer multiplexer LUTs; else 1."""
    g, best = 2, 1
    while g <= rf and all(_factors(sel, g) for sel in selects):
        best, g = g, 2 * g
    return best if best > 1 and _select_luts(selects, best) < _select_luts(selects, 1) else 1


def _gate(hit: np.ndarray, care: np.ndarray) -> Gate:
    """Ranges covering every cycle of ``hit`` and no other cycle of ``care`` (maximal runs between
    the excluded cycles that hold a hit)."""
    hit = hit & care
    excluded = care & ~hit
    if not excluded.any():
        return Gate(None)
    ranges, lo = [], None
    for t in range(len(hit) + 1):
        if t == len(hit) or excluded[t]:
            if lo is not None and hit[lo:t].any():
                ranges.append((lo, t - 1))
            lo = None
        elif lo is None:
            lo = t
    return Gate(tuple(ranges))


def counter_bits(rf: int) -> int:
    """Bits of a counter over rf cycles (the emitters' cycle counter, the estimate's registers)."""
    return max(1, math.ceil(math.log2(rf))) if rf > 1 else 1


def static_engine(sched: Schedule) -> StaticEngine:
    """The static structure of ``sched``, built once per schedule (the estimate, the engine's report and
    both emitters read it; a schedule is not changed after it is made)."""
    if '_static_engine' not in sched.__dict__:
        sched.__dict__['_static_engine'] = _static_engine(sched)
    return sched.__dict__['_static_engine']


def _static_engine(sched: Schedule) -> StaticEngine:
    rf = sched.rf
    nonzero = np.asarray(sched.weights) != 0  # a product that can be non-zero
    live = [m for m in range(sched.n_mult) if nonzero[m].any()]
    selects: dict[tuple, int] = {}
    sel_list: list[Select] = []
    multipliers = []
    for m in live:
        # the select's care set: the cycles where any multiplier reading this sequence multiplies by a non-zero weight
        seq = tuple(int(i) for i in sched.inputs[m])
        if seq not in selects:
            sharing = [k for k in live if tuple(int(i) for i in sched.inputs[k]) == seq]
            selects[seq] = len(sel_list)
            sel_list.append(_select(sched.inputs[m], nonzero[sharing].any(axis=0) & (sched.inputs[m] >= 0)))
        multipliers.append(Multiplier(m, selects[seq], tuple(np.asarray(sched.weights[m]).tolist())))
    found: dict[int, list] = {}
    for m in live:
        for o in np.unique(sched.outputs[m][nonzero[m]]):
            found.setdefault(int(o), []).append((m, _gate(sched.outputs[m] == o, nonzero[m])))
    sources = {o: tuple(s) for o, s in sorted(found.items())}
    return StaticEngine(rf, sched.n_in, sched.n_out, sched.n_mult, tuple(sel_list), tuple(multipliers), sources,
                        time_multiplexed(sched.outputs, nonzero, live, sources) if sched.may_time_multiplex else (),
                        _group(sel_list, rf))


def time_multiplexed(outputs: np.ndarray, nonzero: np.ndarray, live: list[int], sources: dict) -> tuple[Run, ...]:
    """The accumulator organisation the schedule allows. A multiplier's runs are the maximal stretches
    of its non-zero products that go to one output. A time-multiplexed output needs no accumulator of
    its own: its runs are split into the fewest chains of runs disjoint in time (one, where no two
    lanes compute it at once); each multiplier keeps one running sum, restarted at each of its runs
    from the output's bias (the first run of chain 0), 0 (the first of another chain) or the partial
    sum the chain's previous run left (held, where it waits); a one-chain output is its last run's sum,
    cast once per multiplier, an output of several chains the sum of its chains' sums (an adder per
    chain but one, a hold for a sum whose multiplier works again before, a cast of its own). An output
    not timed keeps its accumulator of gated products (``sources``). Of the four choices (no output
    timed, those with one chain, those computed in one run, every output) the one with the fewest
    accumulator-wide registers, adders, restart choices and casts outside the DSPs is taken, no output
    timed on a tie.
    A running sum whose multiplier writes only timed outputs, and an accumulator of its own with one
    ungated source (``StaticEngine.dsp_accumulated``), are DSP accumulators; any other sum's register
    and adders are fabric (``StaticEngine.fabric_sums``: the product has another user)."""
    runs: list[Run] = []
    for m in live:
        cycles = np.flatnonzero(nonzero[m])
        start = 0
        for k in range(1, len(cycles) + 1):
            if k == len(cycles) or outputs[m, cycles[k]] != outputs[m, cycles[start]]:
                runs.append(Run(m, int(outputs[m, cycles[start]]), int(cycles[start]), int(cycles[k - 1])))
                start = k
    by_out: dict[int, list[Run]] = {}
    writes: dict[int, set] = {}
    for r in sorted(runs, key=lambda r: r.lo):
        by_out.setdefault(r.o, []).append(r)
        writes.setdefault(r.m, set()).add(r.o)
    chains = {o: [[replace(r, chain=c) for r in ch] for c, ch in enumerate(_split_chains(rs))]
              for o, rs in by_out.items()}
    plans = {o: _chain_plan(o, chs, lambda m, lo, hi: nonzero[m, lo:hi + 1].any()) for o, chs in chains.items()}
    one_chain = {o for o, chs in chains.items() if len(chs) == 1}
    single = {o for o, rs in by_out.items() if len(rs) == 1}

    def own(o: int) -> int:  # an output's own accumulator: its restart choice and cast, its register and adders unless in a DSP
        return 2 if _one_ungated(sources[o]) else 3 + len(sources[o])

    def cost(timed: set) -> int:
        starts: dict[int, int] = {}
        for o in timed:
            for r in by_out[o]:
                starts[r.m] = starts.get(r.m, 0) + 1
        fabric = sum(2 for m in starts if not writes[m] <= timed)  # register and adder
        # every restart an accumulator-wide multiplexer leg, constant or not: the choice's weighting, kept from
        # the measurements it was set on (it leaves the dense and RF 16 engines their accumulators, where timing
        # them measured larger); the estimate's unit (``restart_luts``) charges little for constant restarts
        restarts = sum(1 + _mux_luts(n + 1) for n in starts.values())
        holds = sum(len(plans[o][1]) for o in timed)
        casts = len({chains[o][0][-1].m for o in timed & one_chain}) + len(timed - one_chain)
        adders = sum(len(chains[o]) - 1 for o in timed)
        return restarts + fabric + holds + casts + adders + sum(own(o) for o in by_out if o not in timed)

    best = min((set(), one_chain, single, set(by_out)), key=cost)  # min keeps the first of equals: no output timed
    return tuple(r for o in sorted(best) for ch in chains[o] for r in ch)
