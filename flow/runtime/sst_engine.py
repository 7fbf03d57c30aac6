"""The static structure of the SST dense engine (ref_sst.SSTDense on flow/runtime/sst_code.py's
codewords): what flow/hls/sst_emit.py writes as the layer's C++ kernel.

Work item w = o * n_groups + g (output o, group g of N inputs); decoder d takes item d * rf + t
in cycle t (items past n_work are padding: codeword 0, no non-zero). Everything that depends on
the cycle is a constant of t, nothing is computed with a divider or read from a table:

- ``selects``: per distinct group sequence (decoders with the same sequence share one), a case
  table of t -> group (only the groups that occur; padding cycles are don't-cares), or one group;
  the select delivers that group's N inputs, among which the codeword's pattern picks (N:1);
- ``decoders``: decoder d -> its select;
- ``sources``: per output, the decoders whose sums ever reach it, each gated by a constant
  comparison of t (``static_engine.Gate``) unless it always writes there.

The codewords stay a ROM (one word of n_dec codewords per cycle); the decoder ROM (codeword ->
pattern) is the same for every layer of an (N, K) code and becomes constants of the kernel.
numpy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .static_engine import Gate, Select, _gate, _mux_luts, _select, cast_luts, counter_bits


@dataclass(frozen=True)
class SSTEngine:
    rf: int
    n_in: int
    n_out: int
    group: int  # N
    nonzeros: int  # K
    n_groups: int
    n_dec: int
    selects: tuple[Select, ...]  # case tables of t -> group number
    decoders: tuple[int, ...]  # decoder d -> index into selects
    sources: dict  # output -> tuple of (decoder d, Gate)

    @property
    def n_work(self) -> int:
        return self.n_out * self.n_groups

    def logic_estimate(self, layer, in_type) -> dict:
        """LUT and FF of the engine (flow/rtl/sst_engine.py, flow/hls/sst_emit.py) on this structure, from
        the unit costs of ``Schedule.logic_estimate`` (a LUT is a 4:1 multiplexer bit, 64 ROM bits, one
        adder bit), not fitted: the group selects (N inputs each), the codeword ROM per decoder, the
        decoder constants (a function of the codeword per slot bit), each slot's N:1 pick, its add or
        subtract into the part, each output's gated sources, and per output the constant product by
        its scale (an adder per further set bit; a power of two is wiring), the bias and the cast."""
        wx, sw, acc, wy = in_type.width, layer.sum_type.width, layer.accum_type.width, layer.out_type.width
        n, k, kb = self.group, self.nonzeros, layer.code.code_bits
        pb = max(1, n.bit_length())
        banks = code_banks(layer.codes, self.rf)
        rom = math.ceil(self.rf / 64) * kb * sum(len(np.unique(b)) > 1 for b in banks)
        mux = n * wx * sum(_mux_luts(len(sel.legs)) for sel in self.selects)
        decode = self.n_dec * k * (pb + 1) * max(1, 1 << max(0, kb - 6))
        pick = self.n_dec * k * wx * _mux_luts(n + 1)
        srcs = [gate for s in self.sources.values() for _, gate in s]
        adders = self.n_dec * k * sw + sw * len(srcs) + sum(g.ranges is not None for g in srcs)
        scale = [abs(int(c)) for c in np.asarray(layer.scale)]
        cast = cast_luts(layer.accum_type, layer.out_type)
        finish = sum(acc * (max(0, bin(c).count('1') - 1) + 1) + cast for c in scale)  # product and bias, cast
        cw = counter_bits(self.rf)
        ff = self.n_in * wx + (self.n_dec + self.n_out) * sw + self.n_out * wy + 2 * cw
        parts = {'rom': rom, 'mux': mux + pick, 'decode': decode, 'adders': adders, 'scale_cast': finish}
        return {'lut': sum(parts.values()), 'ff': ff, 'parts': parts}


def code_banks(codes, rf: int) -> np.ndarray:
    """The codeword ROM as (decoder, cycle) banks: work item d * rf + t (the (output, group) codewords
    in order) in bank d, word t, padded with codeword 0 (no non-zero)."""
    codes = np.ravel(codes)
    return np.concatenate([codes, np.zeros(-len(codes) % rf, dtype=codes.dtype)]).reshape(-1, rf)


def sst_engine(n_in: int, n_out: int, group: int, nonzeros: int, rf: int) -> SSTEngine:
    if n_in % group:
        raise ValueError(f'group {group} does not divide {n_in} inputs')
    n_groups = n_in // group
    n_work = n_out * n_groups
    if not 1 <= rf <= n_work:
        raise ValueError(f'ReuseFactor {rf} is out of range 1 .. {n_work}')
    n_dec = math.ceil(n_work / rf)
    w = np.arange(n_dec)[:, None] * rf + np.arange(rf)[None, :]  # (n_dec, rf) work items
    care = w < n_work  # padding cycles: codeword 0, whatever the select and the gate
    groups, outs = np.where(care, w % n_groups, -1), np.where(care, w // n_groups, -1)
    # decoders share a select where their groups agree on every cycle both care about (the last
    # decoder's padding cycles take whatever the others read)
    seqs: list[np.ndarray] = []  # per select: group per cycle, -1 where no decoder of it cares
    decoders = []
    for d in range(n_dec):
        for s, seq in enumerate(seqs):
            if np.all((seq == groups[d]) | (seq < 0) | (groups[d] < 0)):
                seqs[s] = np.where(seq < 0, groups[d], seq)
                break
        else:
            s = len(seqs)
            seqs.append(groups[d].copy())
        decoders.append(s)
    sel_list = [_select(seq, seq >= 0) for seq in seqs]
    sources: dict[int, list] = {}
    for d in range(n_dec):
        for o in np.unique(outs[d][care[d]]):
            sources.setdefault(int(o), []).append((d, _gate(outs[d] == o, care[d])))
    return SSTEngine(rf, n_in, n_out, group, nonzeros, n_groups, n_dec, tuple(sel_list), tuple(decoders),
                     {o: tuple(s) for o, s in sorted(sources.items())})


__all__ = ['Gate', 'SSTEngine', 'Select', 'sst_engine']
