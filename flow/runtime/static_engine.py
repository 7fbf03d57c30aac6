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
  handed to the output's next run from the running sum itself when that run starts in the next
  cycle, else from a hold latched from the running sum in that cycle (``handoffs``).

Nothing here indexes an array with a table: the emitters write the case tables and gates as code.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

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


@dataclass(frozen=True)
class StaticEngine:
    rf: int
    n_in: int
    n_out: int
    n_mult: int  # the schedule's multipliers, dead ones included (the ROM's banks)
    selects: tuple[Select, ...]
    multipliers: tuple[Multiplier, ...]
    sources: dict  # output -> tuple of (multiplier number m, Gate), every output with a live source
    timed: tuple[Run, ...] = ()  # the runs of the time-multiplexed outputs, by output then cycle; () for none
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
        """Output -> its runs in cycle order: the first starts from the bias, each later one from
        the partial sum the one before left in the output's hold, the last one's result is the output."""
        out: dict[int, list[Run]] = {}
        for r in self.timed:
            out.setdefault(r.o, []).append(r)
        return {o: tuple(rs) for o, rs in out.items()}

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
        """Multiplier -> the starts of its runs in cycle order: (lo, 'bias' or 'hold', output). Its
        running accumulator restarts there (from the bias, or from the partial sum the output's previous
        run left: ``handoff_source``) and otherwise adds its product to what it holds."""
        out: dict[int, list] = {}
        for o, runs in self.timed_outputs().items():
            for k, r in enumerate(runs):
                out.setdefault(r.m, []).append((r.lo, 'hold' if k else 'bias', o))
        return {m: tuple(sorted(v)) for m, v in sorted(out.items())}

    def handoffs(self) -> dict[int, tuple[tuple[int, int, bool], ...]]:
        """Output -> (hi, m, held) for each of its runs but the last: the run on multiplier m ending at
        cycle hi hands its partial sum to the output's next run; ``held``: that run starts later than
        the cycle after (hi + 1), so the sum is kept in the output's hold, latched from the running
        sum in cycle hi + 1; otherwise the next run reads the running sum itself."""
        out = {}
        for o, runs in self.timed_outputs().items():
            if len(runs) > 1:
                out[o] = tuple((r.hi, r.m, nxt.lo > r.hi + 1) for r, nxt in zip(runs, runs[1:]))
        return out

    def hold_latches(self) -> dict[int, tuple[tuple[int, int], ...]]:
        """Output -> (cycle, m) for each partial sum that waits for its next run: latched into the
        output's hold from multiplier m's running sum in that cycle (the one after its run, hi + 1)."""
        out = {o: tuple((hi + 1, m) for hi, m, held in hs if held) for o, hs in self.handoffs().items()}
        return {o: latches for o, latches in out.items() if latches}

    def held(self) -> tuple[int, ...]:
        """The outputs that need a hold register (a partial sum waits at least a cycle for its next run)."""
        return tuple(self.hold_latches())

    def handoff_source(self, o: int, lo: int) -> tuple[str, int]:
        """Where output ``o``'s run starting at ``lo`` (not its first) restarts from: ('h', o), the
        output's hold, or ('r', m), multiplier m's running sum, where its previous run ended at lo - 1."""
        return self._handoff_sources[o, lo]

    @functools.cached_property
    def _handoff_sources(self) -> dict[tuple[int, int], tuple[str, int]]:
        """(output, first cycle of one of its runs but the first) -> handoff_source, built once."""
        out = {}
        for o, runs in self.timed_outputs().items():
            for prev, nxt in zip(runs, runs[1:]):
                out[o, nxt.lo] = ('h', o) if nxt.lo > prev.hi + 1 else ('r', prev.m)
        return out

    def writes(self) -> dict[int, tuple[tuple[int, int], ...]]:
        """Multiplier -> (hi, o) of the outputs it finishes: the cycle after which its running sum is output o."""
        out: dict[int, list] = {}
        for o, runs in self.timed_outputs().items():
            out.setdefault(runs[-1].m, []).append((runs[-1].hi, o))
        return {m: tuple(sorted(v)) for m, v in sorted(out.items())}


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
    of its non-zero products that go to one output. An output whose runs (over all multipliers) are
    disjoint in time needs no accumulator of its own: each multiplier keeps one running sum, started
    from the output's bias (first run) or the partial sum held from its previous run, and its last
    run's sum is cast once and written at that constant cycle. An output whose runs overlap (lanes
    computing it at once) keeps its own accumulator of gated products (``sources``). Of the three
    choices (no output timed, every disjoint one, those computed in one run) the one with the fewest
    accumulator-wide registers, adders and casts outside the DSPs is taken, no output timed on a tie.
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
    disjoint = {o for o, rs in by_out.items() if all(a.hi < b.lo for a, b in zip(rs, rs[1:]))}
    single = {o for o, rs in by_out.items() if len(rs) == 1}

    def own(o: int) -> int:  # an output's own accumulator: its cast, and its register and adders unless in a DSP
        return 1 if _one_ungated(sources[o]) else 2 + len(sources[o])

    def cost(timed: set) -> int:
        running = {r.m for o in timed for r in by_out[o]}
        fabric = sum(2 for m in running if not writes[m] <= timed)  # register and adder
        holds = sum(len(by_out[o]) > 1 for o in timed)
        casts = len({by_out[o][-1].m for o in timed})
        return fabric + holds + casts + sum(own(o) for o in by_out if o not in timed)

    best = min((set(), disjoint, single), key=cost)  # min keeps the first of equals: no output timed
    return tuple(r for o in sorted(best) for r in by_out[o])
