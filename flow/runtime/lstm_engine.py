"""The static structure of the block-sparse LSTM's per-step MAC (ref_lstm.BlockSparseLSTM): what
flow/hls/lstm_emit.py writes as the layer's C++ kernel.

Each kernel (W on x_t, U on h) is scheduled as a block-sparse dense layer of ONE gate (the four
gates share the mask): the gather schedule of flow/runtime/schedule.py over the kept blocks, any
ReuseFactor. The four gates' multipliers of a schedule slot read the same input and write the
same unit of their gate, so the schedule tiled over the gates (bank g * n_mult + m is gate g's
multiplier m, its output g * units + the slot's) is a schedule of the (n, 4 units) kernel, and its
static structure (flow/runtime/static_engine.py: input selects as case tables of the cycle, the
live multipliers with their weight banks, per-output source lists with constant gates of t) is
what the kernel builds. Both kernels run in the same RF cycles of one pipelined loop and add into
the same 4 units gate sums z.

The weight ROM of a kernel is its tiled schedule's banks, [gate][multiplier][cycle] (padding
slots hold zero): one word per cycle once reshaped by banks. No index is stored.
numpy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .ref_block_sparse import BlockSparseDense
from .schedule import Schedule, gather
from .static_engine import StaticEngine, static_engine

GATES = 4


def gate_schedule(values, index, kept_per_row, n_in: int, units: int, block, rf: int, name: str = '') -> Schedule:
    """The gather schedule of one kernel's kept blocks tiled over the four gates: ``values``
    (4, kept, bi, bo), any dtype (codes or the real weights); outputs g * units + unit."""
    values = np.asarray(values)
    kept = values[0].size
    ids = np.arange(1, kept + 1, dtype=np.int64).reshape(values[0].shape)  # slot -> kept weight (0: padding)
    pos = BlockSparseDense(name, out_type=None, n_in=n_in, n_out=units, block=tuple(block), kept_per_row=kept_per_row,
                           values=ids, index=np.asarray(index, dtype=np.int64))
    s = gather(pos, rf)
    flat = values.reshape(GATES, kept)
    w = np.zeros((GATES, *s.weights.shape), dtype=values.dtype)
    has = s.weights > 0
    for g in range(GATES):
        w[g][has] = flat[g][s.weights[has] - 1]
    return Schedule('gather', rf, n_in, GATES * units, inputs=np.tile(s.inputs, (GATES, 1)), weights=w.reshape(-1, rf),
                    outputs=np.concatenate([s.outputs + g * units for g in range(GATES)]), lane_width=s.lane_width,
                    seg_len=s.seg_len, run_len=s.run_len)


@dataclass(frozen=True)
class LSTMEngine:
    rf: int
    n_in: int
    units: int
    w: StaticEngine  # x_t -> z, inputs 0 .. n_in - 1
    u: StaticEngine  # h -> z, inputs 0 .. units - 1
    w_slots: int  # the ROMs' words, padding and dead banks included: 4 x n_mult x rf
    u_slots: int

    @property
    def multipliers(self) -> int:
        return len(self.w.multipliers) + len(self.u.multipliers)

    def max_sources(self) -> int:
        """The most products that reach one gate sum in a cycle (W's and U's)."""
        return max((len(self.w.sources.get(o, ())) + len(self.u.sources.get(o, ())) for o in range(GATES * self.units)),
                   default=0)

    def adder_levels(self) -> int:
        """Levels of the balanced tree adding a gate sum's products (then one more into z)."""
        return math.ceil(math.log2(self.max_sources())) if self.max_sources() > 1 else 0


def lstm_engine(layer, rf: int, values=None, recurrent_values=None) -> LSTMEngine:
    """The static structure of ``layer`` (ref_lstm.BlockSparseLSTM, or anything with its packed
    attributes) at ReuseFactor ``rf``; ``values``/``recurrent_values``: the weights to put in the
    banks instead of the layer's codes (the hls4ml node's real values)."""
    v = layer.values if values is None else values
    rv = layer.recurrent_values if recurrent_values is None else recurrent_values
    sw = gate_schedule(v, layer.index, layer.kept_per_row, layer.n_in, layer.units, layer.block, rf, layer.name)
    su = gate_schedule(rv, layer.recurrent_index, layer.recurrent_kept_per_row, layer.units, layer.units,
                       layer.recurrent_block, rf, layer.name)
    return LSTMEngine(rf, layer.n_in, layer.units, static_engine(sw), static_engine(su), sw.slots, su.slots)


def rom_words(layer, rf: int, values=None, recurrent_values=None) -> tuple[np.ndarray, np.ndarray]:
    """(W ROM, U ROM): each kernel's tiled schedule banks, flat [gate][multiplier][cycle]."""
    v = layer.values if values is None else values
    rv = layer.recurrent_values if recurrent_values is None else recurrent_values
    sw = gate_schedule(v, layer.index, layer.kept_per_row, layer.n_in, layer.units, layer.block, rf, layer.name)
    su = gate_schedule(rv, layer.recurrent_index, layer.recurrent_kept_per_row, layer.units, layer.units,
                       layer.recurrent_block, rf, layer.name)
    return sw.weights.reshape(-1), su.weights.reshape(-1)
