"""Schedules of the time-multiplexed block-sparse engine: which kept weight each multiplier
works on in each of the ReuseFactor cycles, and which accumulator its product goes to.

The schedule is the accumulator organisation. It decides what the hardware costs beyond the
multipliers: every (multiplier, output) pair that a schedule ever uses is a wire into that
output's adder (gated by the cycle when the multiplier does not always write there), and every
distinct input a multiplier reads is a leg of its input multiplexer. Two organisations:

- ``scatter``: the kept weights in the packed (input block-row major) order, cut into
  ``n_mult`` runs of ``rf`` consecutive weights, one run per multiplier. What the first CGS
  template did. A run crosses the columns of a block, so each multiplier writes up to
  ``block_out`` outputs and several multipliers hit the same output in one cycle.
- ``gather`` (output-stationary): lanes of ``block_out`` multipliers, one per column of a block.
  A lane works through the kept blocks of one output block-column at a time (segments of
  ``seg_len`` cycles), so each multiplier writes one output for a whole segment and the
  ``block_out`` multipliers of a lane share one input per cycle. Works for any block mask:
  a column with fewer kept blocks is padded with zero weights to whole segments. With as many
  kept blocks in every block-column (``cgs_balanced`` masks) and a segment that divides the
  column, there is no padding and every multiplier owns fixed outputs. Lanes exist only for kept
  blocks: inputs of dropped block-rows are never read, dropped block-columns get no segment.
  How the columns' segments are laid out over the lanes (``LANE_ORDERS``) decides how many partial
  sums wait: ``packed`` (the default) fills lanes with whole columns wherever a set of them fills a
  lane exactly, so columns are cut at a lane's end no more often than in the ``sequential`` order (one
  column after another, McNaughton's), with as many lanes.

Everything here is numpy on the reference's packed format (``ref_block_sparse``); the RTL engine
(``flow/rtl/engine.py``) and the per-layer HLS kernel (``flow/hls/block_sparse_emit.py``) are both
built from the static structure of a schedule (``static_engine.py``: its tables as constants of the
cycle). ``run_start``/``seg_block`` are the gather schedule's compact description (tested), no
longer stored by the hardware.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # annotations only: the kind imports this module to build its schedule
    from .ref_block_sparse import BlockSparseDense


@dataclass
class Schedule:
    """Per multiplier and cycle (arrays of shape (n_mult, rf)): the input it reads (-1: a padding
    slot, weight 0), the weight code it multiplies by, the output its product is added to."""

    organisation: str
    rf: int
    n_in: int
    n_out: int
    inputs: np.ndarray = field(repr=False)
    weights: np.ndarray = field(repr=False)
    outputs: np.ndarray = field(repr=False)
    # gather only, a compact form of the schedule: run_start[l, r] * run_len is the first input of run r
    # (run_len consecutive inputs, one per cycle) of lane l; seg_block[l, s] the output block of
    # its segment s (seg_len cycles).
    lane_width: int = 1
    seg_len: int = 0
    run_len: int = 0
    run_start: np.ndarray | None = field(default=None, repr=False)
    seg_block: np.ndarray | None = field(default=None, repr=False)
    # False: every output keeps an accumulator of its own, because the caller holds them across the
    # cycles it runs (a convolution's pixel loop); True: the static structure may time-multiplex them
    may_time_multiplex: bool = True

    @property
    def n_mult(self) -> int:
        return self.inputs.shape[0]

    @property
    def n_lanes(self) -> int:
        return self.n_mult // self.lane_width

    @property
    def slots(self) -> int:
        """Weights the engine stores and multiplies, padding included."""
        return self.inputs.size

    @property
    def padding(self) -> int:
        return int((self.inputs < 0).sum())

    def sources(self) -> dict[int, list[int]]:
        """Output -> the multipliers whose products ever reach it."""
        out: dict[int, set[int]] = {}
        for m, o in {(m, int(o)) for m in range(self.n_mult) for o in np.unique(self.outputs[m])}:
            out.setdefault(o, set()).add(m)
        return {o: sorted(ms) for o, ms in sorted(out.items())}

    def dense_weight(self) -> np.ndarray:
        """The (n_in, n_out) weight matrix this schedule computes (checks it covers each weight once)."""
        w = np.zeros((self.n_in, self.n_out), dtype=np.int64)
        seen = np.zeros_like(w)
        used = self.inputs >= 0
        np.add.at(w, (self.inputs[used], self.outputs[used]), self.weights[used])
        np.add.at(seen, (self.inputs[used], self.outputs[used]), 1)
        if seen.max(initial=0) > 1:
            raise AssertionError('a weight is scheduled twice')
        return w

    def stats(self) -> dict:
        src = self.sources()
        fan = [len(v) for v in src.values()]
        gated = sum(1 for m in range(self.n_mult) for o in np.unique(self.outputs[m])
                    if (self.outputs[m] != o).any())
        return {
            'organisation': self.organisation, 'reuse_factor': self.rf, 'multipliers': self.n_mult,
            'slots': self.slots, 'padding': self.padding,
            'adder_inputs': int(sum(fan)), 'max_adder_inputs': int(max(fan, default=0)), 'gated_inputs': gated,
            'input_mux_legs': int(sum(len(np.unique(r[r >= 0])) for r in _distinct_rows(self.inputs))),
        }

    def logic_estimate(self, layer: BlockSparseDense, in_type, dsp: bool = True) -> dict:
        """LUT and FF of the engine (flow/rtl/engine.py, flow/hls/block_sparse_emit.py) on this schedule's
        static structure (flow/runtime/static_engine.py), from unit costs of a
        6-input-LUT fabric, not fitted to measurements (bench/bench_engine.py reports how far off):
        a LUT is a 4:1 multiplexer bit, 64 ROM bits, one adder bit; a product goes to a DSP
        (its register inside) unless ``dsp`` is false; per cast its rounding adder and saturating
        compare where it has them (``cast_luts``). An output with an accumulator of its own costs one
        adder bit per source, a cast and, unless it is a DSP's accumulator all the same
        (``dsp_accumulated``: one ungated source), its register;
        the time-multiplexed outputs cost, per running sum, a restart multiplexer (``restart_luts``: one
        constant restart folds into its adder) and,
        without DSPs or where its product has another user (``fabric_sums``), its register and adder
        (else it is the DSP's accumulator), a cast per multiplier that finishes one-chain outputs, per
        chain whose partial sum waits a hold register, and per output of several chains an adder per
        chain but one and a cast.
        ``layer`` gives the weight, accumulator and output widths, ``in_type`` the input's."""
        from .static_engine import cast_luts, counter_bits, restart_luts, static_engine  # the structure both emitters build from this schedule

        wx, ww, acc, wy = in_type.width, layer.weight_type.width, layer.accum_type.width, layer.out_type.width
        eng = static_engine(self)
        timed, running = eng.timed_outputs(), eng.running()
        rom_luts = math.ceil(self.rf / 64) * ww * sum(len(set(mu.weights)) > 1 for mu in eng.multipliers)
        mux_luts = wx * eng.select_luts()  # a leg per distinct input (or row, where the selects are factored)
        srcs = [gate for s in eng.shared().values() for _, gate in s]
        # an adder column per source, the gate folded into its LUTs (for an output that is a DSP's accumulator
        # all the same, the column stands for its restart choice: the adder is the DSP's)
        adder_luts = acc * len(srcs) + sum(g.ranges is not None for g in srcs)
        # a running sum: the choice of restart or sum and the restart values (a case of the cycle) in LUTs
        # (``restart_luts``); its register and adder are the DSP's accumulator (P), unless its product has another user
        fabric_sums = len(eng.fabric_sums()) if dsp else len(running)
        adder_luts += sum(acc * restart_luts(starts) for starts in running.values())
        adder_luts += acc * fabric_sums
        finals = eng.finals()  # an output of several chains: an adder per chain but one and a cast of its own
        adder_luts += acc * sum(len(parts) - 1 for _, parts in finals.values())
        casts = self.n_out - len(timed) + len(eng.writes()) + len(finals)
        cast = casts * cast_luts(layer.accum_type, layer.out_type)
        cw = counter_bits(self.rf)
        own = self.n_out - len(timed)  # outputs not timed (one without a live weight holds its bias: counted alike)
        fabric = own - (len(eng.dsp_accumulated()) if dsp else 0) + fabric_sums  # accumulator registers in the fabric
        ff = (self.n_in * wx + (fabric + len(eng.held())) * acc + self.n_out * wy
              + (3 if timed else 2) * cw + (0 if dsp else self.n_mult * (wx + ww)))
        return {'lut': rom_luts + mux_luts + adder_luts + cast, 'ff': ff,
                'parts': {'rom': rom_luts, 'mux': mux_luts, 'adders': adder_luts, 'cast': cast}}


def _distinct_rows(a: np.ndarray) -> np.ndarray:
    return np.unique(a, axis=0) if len(a) else a


def _packed(layer: BlockSparseDense):
    bi, bo = layer.block
    rows = layer.block_rows()  # each kept block's input block-row; dropped rows never appear
    # values keep their dtype: integer codes (the reference), or real weights (the hls4ml extension)
    return bi, bo, rows, np.asarray(layer.index, dtype=np.int64), np.asarray(layer.values)


def scatter(layer: BlockSparseDense, rf: int) -> Schedule:
    """Multiplier m, cycle t: packed kept weight ``t + rf * m`` (the first template's loop)."""
    bi, bo, rows, index, values = _packed(layer)
    n_kept = values.size
    if rf < 1 or n_kept % rf:
        raise ValueError(f"layer '{layer.name}': the scatter schedule needs a ReuseFactor dividing its {n_kept} kept weights, got {rf}")
    w = np.arange(n_kept).reshape(n_kept // rf, rf)
    b, r = w // (bi * bo), w % (bi * bo)
    return Schedule('scatter', rf, layer.n_in, layer.n_out, inputs=rows[b] * bi + r // bo,
                    weights=values.reshape(-1)[w], outputs=index[b] * bo + r % bo)


def gather(layer: BlockSparseDense, rf: int, order: str = 'packed') -> Schedule:
    """Output-stationary lanes; any ReuseFactor (a column's last segment is padded). ``order``: how the
    columns' segments are laid out over the lanes (``LANE_ORDERS``)."""
    bi, bo, rows, index, values = _packed(layer)
    if rf < 1:
        raise ValueError(f"layer '{layer.name}': ReuseFactor must be at least 1, got {rf}")
    if order not in LANE_ORDERS:
        raise ValueError(f'unknown lane order {order!r}; known: {sorted(LANE_ORDERS)}')
    n_cb = layer.n_out // bo
    col_blocks = [np.flatnonzero(index == c) for c in range(n_cb)]  # kept blocks per column, by input row
    steps = [len(bs) * bi for bs in col_blocks]

    def lanes_for(seg):
        return math.ceil(sum(math.ceil(s / seg) for s in steps) / (rf // seg))

    # the segment length giving the fewest lanes (then the longest). Segments start at multiples
    # of seg_len in a column's steps and blocks at multiples of bi, so runs of gcd(seg_len, bi)
    # steps never cross a block: consecutive rows, one stored index each
    candidates = [d for d in range(1, rf + 1) if rf % d == 0]
    seg_len = min(candidates, key=lambda d: (lanes_for(d), -d))
    run_len = math.gcd(seg_len, bi)
    per_lane = rf // seg_len

    columns = []  # per output block, its segments: (output block, [kept block or -1 per step's block, row within block])
    for c, bs in enumerate(col_blocks):
        st = [(int(b), i) for b in bs for i in range(bi)]
        st += [(-1, 0)] * (-len(st) % seg_len)
        columns.append([(c, st[k:k + seg_len]) for k in range(0, len(st), seg_len)])
    lanes = LANE_ORDERS[order](columns, per_lane)
    n_lanes = len(lanes)
    segments = [seg for lane in lanes for seg in lane + [(None, [(-1, 0)] * seg_len)] * (per_lane - len(lane))]

    inputs = np.full((n_lanes * bo, rf), -1, dtype=np.int64)
    weights = np.zeros((n_lanes * bo, rf), dtype=values.dtype)
    outputs = np.zeros((n_lanes * bo, rf), dtype=np.int64)
    run_start = np.zeros((n_lanes, rf // run_len), dtype=np.int64)
    seg_block = np.zeros((n_lanes, per_lane), dtype=np.int64)
    j = np.arange(bo)
    for lane in range(n_lanes):
        mine = segments[lane * per_lane:(lane + 1) * per_lane]
        home = next((c for c, _ in mine if c is not None), 0)  # an empty segment writes (zeros) where the lane does
        for s, (c, st) in enumerate(mine):
            c = home if c is None else c
            seg_block[lane, s] = c
            for p, (b, i) in enumerate(st):
                t = s * seg_len + p
                outputs[lane * bo + j, t] = c * bo + j
                if b >= 0:
                    x = rows[b] * bi + i
                    inputs[lane * bo + j, t] = x
                    weights[lane * bo + j, t] = values[b, i, :]
                    if t % run_len == 0:
                        run_start[lane, t // run_len] = x // run_len
    return Schedule('gather', rf, layer.n_in, layer.n_out, inputs=inputs, weights=weights, outputs=outputs,
                    lane_width=bo, seg_len=seg_len, run_len=run_len, run_start=run_start, seg_block=seg_block)


def sequential_lanes(columns: list[list], per_lane: int) -> list[list]:
    """The columns one after another, cut into lanes of ``per_lane`` segments (McNaughton's wrap-around
    rule): the fewest lanes, but a column cut at a lane's end continues at the start of the next lane,
    earlier in the sample, so its partial sum waits in a hold (or, where the two parts overlap in time,
    the output is a sum of two chains)."""
    flat = [seg for col in columns for seg in col]
    return [flat[k:k + per_lane] for k in range(0, len(flat), per_lane)]


def packed_lanes(columns: list[list], per_lane: int) -> list[list]:
    """As many lanes as ``sequential_lanes``, and never more runs (a column's segments in one lane; a segment's
    first element names its column). A column of ``per_lane`` segments or more takes whole lanes of its
    own; then each lane in turn takes a set of whole columns (and remainders of the long ones) that fills
    it exactly, the largest first (subset sum), so those columns each run on one multiplier per output
    from their first cycle to their last and need no hold; the columns left over are laid out
    ``sequential_lanes`` over the lanes left, so each is cut at most once. In a lane, remainders of long
    columns come last: their output is the sum of chains (the long column's lanes run at the same time),
    and the last of them, in the cycle its run ends with the lane, needs no hold. Where the sequential
    order happens to make fewer runs (its cuts can fall on column ends), it is taken."""
    seq = sequential_lanes(columns, per_lane)
    n_lanes = len(seq)
    lanes, items = [], []
    for col in columns:
        q, r = divmod(len(col), per_lane)
        lanes += [col[k * per_lane:(k + 1) * per_lane] for k in range(q)]
        if r:
            items.append((q > 0, col[q * per_lane:]))
    items.sort(key=lambda it: -len(it[1]))  # stable: equal lengths stay in column order
    while items and len(lanes) < n_lanes:
        take = _exact_fill([len(segs) for _, segs in items], per_lane)
        if take is None:
            break
        mine = [items[k] for k in take]
        items = [it for k, it in enumerate(items) if k not in take]
        lanes.append([seg for _, segs in sorted(mine, key=lambda it: it[0]) for seg in segs])
    lanes += sequential_lanes([segs for _, segs in items], per_lane)
    return lanes if _runs(lanes) <= _runs(seq) else seq


def _runs(lanes: list[list]) -> int:
    """(column, lane) pairs: a column's runs over all lanes, one more for every cut."""
    return sum(len({seg[0] for seg in lane}) for lane in lanes)


def _exact_fill(lengths: list[int], total: int) -> list[int] | None:
    """Indices of ``lengths`` (sorted, longest first) that sum to exactly ``total``, taking each longest
    one that still leaves the rest reachable by the ones after it; None where no subset does."""
    mask = (1 << (total + 1)) - 1
    reach = [1] * (len(lengths) + 1)  # reach[k]: bit s set where items k.. can sum to s
    for k in range(len(lengths) - 1, -1, -1):
        reach[k] = (reach[k + 1] | (reach[k + 1] << lengths[k])) & mask
    if not reach[0] >> total & 1:
        return None
    take, left = [], total
    for k, n in enumerate(lengths):
        if left >= n and reach[k + 1] >> (left - n) & 1:
            take.append(k)
            left -= n
    return take


LANE_ORDERS = {'packed': packed_lanes, 'sequential': sequential_lanes}
ORGANISATIONS = {'scatter': scatter, 'gather': gather}


def schedule(layer: BlockSparseDense, rf: int, organisation: str = 'gather') -> Schedule:
    if organisation not in ORGANISATIONS:
        raise ValueError(f'unknown accumulator organisation {organisation!r}; known: {sorted(ORGANISATIONS)}')
    return ORGANISATIONS[organisation](layer, rf)
