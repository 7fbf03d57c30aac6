"""Structured sparse ternary (SST) codes (Boo and Sung, SiPS 2017): a group of N consecutive
ternary weights with at most K non-zeros is one codeword, the index of its pattern in an
enumerated table. numpy only (the board runtime decodes with it).

The table, in order: the all-zero group; then for k = 1 .. K the k-subsets of the N positions in
lexicographic order, each with its 2^k sign patterns (bit i set: the i-th chosen position is -1).
So the rank of a pattern is ``offset[k] + comb_rank(positions) * 2^k + signs``: computed, never
looked up, for any (N, K). (8, 2) has 1 + 8*2 + 28*4 = 129 patterns: 8 bits per 8 weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from math import comb

import numpy as np


class SSTCodeError(ValueError):
    pass


@dataclass(frozen=True)
class SSTCode:
    group: int  # N: weights per codeword, consecutive along the input dimension
    nonzeros: int  # K: at most this many non-zeros per group

    def __post_init__(self):
        if not 1 <= self.nonzeros <= self.group:
            raise SSTCodeError(f'SST ({self.group}, {self.nonzeros}): needs 1 <= K <= N')

    @cached_property
    def offsets(self) -> list[int]:
        """offsets[k]: rank of the first pattern with k non-zeros; offsets[K + 1] = the count."""
        off = [0]
        for k in range(self.nonzeros + 1):
            off.append(off[-1] + comb(self.group, k) * 2**k)
        return off

    @property
    def n_patterns(self) -> int:
        return self.offsets[-1]

    @property
    def code_bits(self) -> int:
        return max(1, (self.n_patterns - 1).bit_length())

    def encode_group(self, t) -> int:
        """One group of N values in {-1, 0, 1} -> its codeword."""
        t = np.asarray(t)
        if t.shape != (self.group,) or np.any(np.abs(t) > 1) or np.any(t != np.round(t)):
            raise SSTCodeError(f'SST ({self.group}, {self.nonzeros}): a group must be {self.group} values in {{-1, 0, 1}}, got {t.tolist()}')
        pos = np.flatnonzero(t).tolist()
        k = len(pos)
        if k > self.nonzeros:
            raise SSTCodeError(f'SST ({self.group}, {self.nonzeros}): group {t.tolist()} has {k} non-zeros, more than {self.nonzeros}')
        signs = sum(1 << i for i, p in enumerate(pos) if t[p] < 0)
        return self.offsets[k] + _comb_rank(pos, self.group) * 2**k + signs

    def decode_group(self, code: int) -> np.ndarray:
        """A codeword -> its N values in {-1, 0, 1} (int8)."""
        code = int(code)
        if not 0 <= code < self.n_patterns:
            raise SSTCodeError(f'SST ({self.group}, {self.nonzeros}): codeword {code} is outside 0 .. {self.n_patterns - 1}')
        k = max(i for i in range(self.nonzeros + 1) if self.offsets[i] <= code)
        r, signs = divmod(code - self.offsets[k], 2**k)
        t = np.zeros(self.group, dtype=np.int8)
        for i, p in enumerate(_comb_unrank(r, k, self.group)):
            t[p] = -1 if signs >> i & 1 else 1
        return t

    def encode(self, t: np.ndarray) -> np.ndarray:
        """Ternary kernel (n_in, n_out), n_in a multiple of N -> codewords (n_out, n_in / N)."""
        n_in, n_out = t.shape
        if n_in % self.group:
            raise SSTCodeError(f'SST ({self.group}, {self.nonzeros}): {n_in} inputs are not a multiple of the group {self.group}')
        groups = np.asarray(t).T.reshape(n_out, n_in // self.group, self.group)
        return np.array([[self.encode_group(g) for g in row] for row in groups], dtype=np.int64).reshape(n_out, -1)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Codewords (n_out, G) -> ternary kernel (G * N, n_out), int8."""
        codes = np.asarray(codes, dtype=np.int64)
        uniq, inv = np.unique(codes, return_inverse=True)
        table = np.stack([self.decode_group(c) for c in uniq]) if len(uniq) else np.zeros((0, self.group), np.int8)
        n_out, g = codes.shape
        return table[inv.reshape(-1)].reshape(n_out, g * self.group).T.copy()

    def decoder_rom(self) -> np.ndarray:
        """The pattern ROM the hardware decodes with: per codeword K signed entries, +(p + 1) to
        add input p of the group, -(p + 1) to subtract it, 0 for none. Shape (n_patterns, K)."""
        rom = np.zeros((self.n_patterns, self.nonzeros), dtype=np.int64)
        for code in range(self.n_patterns):
            t = self.decode_group(code)
            ent = [int(t[p]) * (p + 1) for p in np.flatnonzero(t)]
            rom[code, :len(ent)] = ent
        return rom

    @property
    def rom_entry_bits(self) -> int:
        """Signed bits of one decoder ROM entry (-N .. N)."""
        return self.group.bit_length() + 1


def _comb_rank(pos: list[int], n: int) -> int:
    """Lexicographic rank of the sorted k-subset ``pos`` of range(n)."""
    k, rank, prev = len(pos), 0, -1
    for i, p in enumerate(pos):
        for q in range(prev + 1, p):  # subsets with a smaller element at place i come first
            rank += comb(n - q - 1, k - i - 1)
        prev = p
    return rank


def _comb_unrank(rank: int, k: int, n: int) -> list[int]:
    pos, q = [], 0
    for i in range(k):
        while True:
            c = comb(n - q - 1, k - i - 1)
            if rank < c:
                break
            rank -= c
            q += 1
        pos.append(q)
        q += 1
    return pos
