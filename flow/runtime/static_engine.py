"""The static structure of the time-multiplexed block-sparse engine, from a schedule
(flow/runtime/schedule.py): what both emitters build, the C++ of flow/hls/block_sparse_emit.py
(what hls4ml ships) and the Verilog of flow/rtl/engine.py (what yosys measures and Verilator runs).

Everything the schedule stores as tables becomes constants of the cycle counter t:

- ``selects``: per distinct input sequence (the multipliers of a gather lane share one), a case
  table of t -> input, only the legs that occur (cycles with the same input share one leg; padding
  cycles are don't-cares, left to the default, the first leg's input), or one fixed input;
- ``multipliers``: the live multipliers (a bank of zero weights only is no multiplier), each with
  its select and its weight bank (word t is what it multiplies in cycle t: the ROM, one bank per
  multiplier, read at address t);
- ``sources``: per output, the multipliers whose products ever reach it, each gated by a constant
  comparison of t (``Gate``) unless it always writes there; a cycle in which a multiplier
  multiplies by zero (padding) is a don't-care of its gates.

Nothing here indexes an array with a table: the emitters write the case tables and gates as code.
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class Multiplier:
    m: int  # its number in the schedule: bank m of the weight ROM
    select: int  # index into StaticEngine.selects
    weights: tuple[int, ...]  # its bank, one word per cycle (codes, or the real values the hls4ml node holds)


@dataclass(frozen=True)
class StaticEngine:
    rf: int
    n_in: int
    n_out: int
    n_mult: int  # the schedule's multipliers, dead ones included (the ROM's banks)
    selects: tuple[Select, ...]
    multipliers: tuple[Multiplier, ...]
    sources: dict  # output -> tuple of (multiplier number m, Gate), every output with a live source

    def multiplier(self, m: int) -> Multiplier:
        return next(mu for mu in self.multipliers if mu.m == m)

    def adder_levels(self) -> int:
        """Levels of the balanced tree adding the most products that reach one output in a cycle."""
        most = max((len(s) for s in self.sources.values()), default=0)
        return max(most - 1, 0).bit_length()


def _select(inputs: np.ndarray, care: np.ndarray) -> Select:
    used = [(t, int(i)) for t, i in enumerate(inputs) if care[t]]
    if len({i for _, i in used}) == 1:
        return Select((), used[0][1])
    legs: dict[int, list[int]] = {}  # every cycle that needs an input is a leg (a full case table where there
    for t, i in used:  # is no padding: yosys maps it as one mux tree, 5% fewer LUTs than legs + a default input)
        legs.setdefault(i, []).append(t)
    return Select(tuple((tuple(ts), i) for i, ts in legs.items()), used[0][1])


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


def static_engine(sched: Schedule) -> StaticEngine:
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
    sources: dict[int, list] = {}
    for m in live:
        for o in np.unique(sched.outputs[m][nonzero[m]]):
            sources.setdefault(int(o), []).append((m, _gate(sched.outputs[m] == o, nonzero[m])))
    return StaticEngine(rf, sched.n_in, sched.n_out, sched.n_mult, tuple(sel_list), tuple(multipliers),
                        {o: tuple(s) for o, s in sorted(sources.items())})
