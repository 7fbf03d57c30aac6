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

from .static_engine import Gate, Select, _gate, _select


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
