"""Reference for the HCGS-style block-sparse quantized LSTM (keras_models/lstm.py), on integer codes.

Per time step t, from h = c = 0 (codes, each with its FixedType; every step exact in int64):

    z   = x_t W + h U + b                       accum_type: exact (sized from the weights), WRAP never wraps
    i, f, o = hard_sigmoid(z_i, z_f, z_o)       clip(z/2 + 1/2, 0, 1) exact, cast to gate_type
    g   = hard_tanh(z_g)                        2 clip(z/2 + 1/2, 0, 1) - 1 exact, cast to act_type
    s   = f * c + i * g                         cell_sum_type: exact
    c   = (cell_type) s                         quantized_bits: AP_RND_CONV, AP_SAT (SAT_SYM if symmetric)
    p   = o * hard_tanh(c)                      hidden_product_type: exact (hard_tanh of c cast to act_type)
    h   = (out_type) p                          quantized_bits: AP_RND_CONV, AP_SAT (SAT_SYM if symmetric)

gate_type is quantized_sigmoid's ap_ufixed<bits, 0, AP_RND_CONV, AP_SAT>, act_type quantized_tanh's
ap_fixed<bits, 1, AP_RND_CONV, AP_SAT>: QKeras' hard forms with slope and shift 0.5 (hls4ml's
HardActivation constants for them, ap_ufixed<2,0>); HardSigmoid/HardTanh of ref_activations do the
arithmetic. Gate order in every kernel column and bias: i, f, g, o.

Storage (HCGS: one mask per kernel shared by the four gates, so one index stream drives four weight
streams): each kernel is packed per gate like ref_block_sparse (kept blocks only, input block-row
implicit, one output-block index per kept block); the index is stored once per kernel.
numpy only (runs on the board).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import zip_longest

import numpy as np

from .fixed import FixedType
from .ref_activations import HardSigmoid, HardTanh
from .ref_block_sparse import block_rows, level_index_bits, pack_blocks, unpack_blocks
from .ref_layers import HlsWeight, RefLayer, ReuseFactors, register_kind

GATES = 4  # i, f, g, o
# QKeras' hard sigmoid 0.5 * x + 0.5: slope and shift as hls4ml's qkeras parser types them
HARD_CONST_TYPE = FixedType(2, 0, signed=False)
HARD_HALF = 2  # 0.5 in ap_ufixed<2,0>
FLOAT32_EXACT_INT = 2**24


def _mag(t: FixedType) -> int:
    """Largest code magnitude of a type."""
    return max(abs(t.min_code), abs(t.max_code))


def _exact_sum_bound(*terms: tuple[int, int]) -> tuple[int, int]:
    """(bound, frac) of a sum of terms (magnitude bound in LSBs, frac), at the finest LSB."""
    frac = max(f for _, f in terms)
    return sum(b << (frac - f) for b, f in terms), frac


def _ste_bound(x_bound: int, x_frac: int, q: FixedType) -> int:
    """QKeras' quantizers return x + (q(x) - x) (straight-through): with both exact, the sum is q(x)
    exactly when the difference is a float32 integer of the finer LSB. Its magnitude is at most
    how far x reaches past q's range, or one LSB of q inside it."""
    frac = max(x_frac, q.frac)
    inner = min(q.max_code, -q.min_code) << (frac - q.frac)  # q's range holds [-inner, inner] LSBs
    return max((x_bound << (frac - x_frac)) - inner, 1 << (frac - q.frac))


def pack_gates(weight: np.ndarray, block_mask: np.ndarray, block: tuple[int, int]):
    """(n, 4u) codes with one (n/bi, u/bo) block mask shared by the gates -> (values (4, kept, bi, bo),
    index (kept,), kept_per_row): the same kept blocks in each gate, so one index serves all four."""
    u = weight.shape[1] // GATES
    packed = [pack_blocks(weight[:, g * u:(g + 1) * u], block_mask, block) for g in range(GATES)]
    return np.stack([p[0] for p in packed]), packed[0][1], packed[0][2]


def unpack_gates(values, index, kept_per_row, n: int, u: int, block) -> np.ndarray:
    return np.concatenate([unpack_blocks(values[g], index, kept_per_row, (n, u), block) for g in range(GATES)], axis=1)


# Cycles of a time step besides the MAC loop's RF iterations and its pipeline depth
# (lstm_engine.LSTMEngine.adder_levels and nnet_block_sparse_lstm.h):
LSTM_INPUT_COPY = 1  # x_t copied to a local array (each input a n_steps:1 select)
LSTM_STATE_CYCLES = 3  # the hard activations of z; c = f c + i g; h = o hard_tanh(c) (dependent, one each)
LSTM_MAC_DEPTH = 3  # the MAC pipeline besides its adder tree: the weight ROM read, the product, the add into z


@register_kind
@dataclass
class BlockSparseLSTM(RefLayer):
    """Input (n, T, n_in) codes -> (n, T, units) when ``return_sequences``, else (n, units): h at the last step."""

    kind = 'block_sparse_lstm'
    sequence_input = True  # takes (time steps, features)
    input_rank = 2
    io_types = ('io_parallel',)  # nnet_block_sparse_lstm.h takes the whole sequence as an array
    rtl_unbuilt = ('da4ml builds no recurrent layer (a da4ml graph is one combinational function of the input, the '
                   'LSTM a loop over time steps with state); the rtl step builds its engine instead')
    n_in: int = 0
    units: int = 0
    return_sequences: bool = False
    block: tuple = (1, 1)
    recurrent_block: tuple = (1, 1)
    kept_per_row: int = 1
    recurrent_kept_per_row: int = 1
    # HCGS: each mask's level block shapes, coarsest first, ending with its block (None: one level)
    levels: list | None = None
    recurrent_levels: list | None = None
    weight_type: FixedType = None  # W
    recurrent_type: FixedType = None  # U
    bias_type: FixedType = None
    accum_type: FixedType = None  # z
    gate_type: FixedType = None  # i, f, o
    act_type: FixedType = None  # g and hard_tanh(c)
    cell_sum_type: FixedType = None  # f * c + i * g, exact
    cell_type: FixedType = None  # c
    hidden_product_type: FixedType = None  # o * hard_tanh(c), exact; out_type is h's
    values: np.ndarray = field(default=None, repr=False)  # (4, kept, bi, bo) W codes
    index: np.ndarray = field(default=None, repr=False)  # (kept,) output block of each kept W block
    recurrent_values: np.ndarray = field(default=None, repr=False)
    recurrent_index: np.ndarray = field(default=None, repr=False)
    bias: np.ndarray = field(default=None, repr=False)  # (4 * units,) codes

    TYPES = ('weight_type', 'recurrent_type', 'bias_type', 'accum_type', 'gate_type', 'act_type', 'cell_sum_type',
             'cell_type', 'hidden_product_type')

    # --- the weights --------------------------------------------------------------------------

    def kernel(self) -> np.ndarray:
        """(n_in, 4u) W codes, zeros in dropped blocks."""
        return unpack_gates(self.values, self.index, self.kept_per_row, self.n_in, self.units, self.block)

    def recurrent_kernel(self) -> np.ndarray:
        """(u, 4u) U codes, zeros in dropped blocks."""
        return unpack_gates(self.recurrent_values, self.recurrent_index, self.recurrent_kept_per_row, self.units,
                            self.units, self.recurrent_block)

    def dense_weight(self) -> np.ndarray:
        """W stacked on U: the (n_in + u, 4u) matrix multiplying [x_t, h] (the footprint's dense baseline)."""
        return np.vstack([self.kernel(), self.recurrent_kernel()])

    @property
    def weight_code_bits(self) -> int:
        """One width per stored weight for a dense baseline: the wider of W's and U's."""
        return max(self.weight_type.width, self.recurrent_type.width)

    def storage(self):
        """Kept weights of both kernels at their widths, the index of each mask (one per kept block
        and level, shared by the four gates: counted once), the 4u biases. Shape: [x, h] -> 4u."""
        u = self.units
        kept = int(self.values.size + self.recurrent_values.size)
        levels = level_index_bits(block_rows(self.kept_per_row, len(self.index)), self.index, self.block, self.levels, u)
        recurrent_levels = level_index_bits(block_rows(self.recurrent_kept_per_row, len(self.recurrent_index)),
                                            self.recurrent_index, self.recurrent_block, self.recurrent_levels, u)
        return {'shape': [self.n_in + u, GATES * u], 'kept_weights': kept,
                'weight_bits': int(self.values.size) * self.weight_type.width
                + int(self.recurrent_values.size) * self.recurrent_type.width,
                'index_bits': sum(levels) + sum(recurrent_levels),
                'index_bits_per_level': [a + b for a, b in zip_longest(levels, recurrent_levels, fillvalue=0)],
                'bias_bits': GATES * u * self.bias_type.width}

    # --- exactness ----------------------------------------------------------------------------

    def z_bound(self, in_type: FixedType) -> tuple[int, int]:
        """(bound, frac): every partial sum of x_t W + h U + b, in any order, for every input of
        ``in_type`` and every hidden state of out_type, is a multiple of 2^-frac within bound LSBs."""
        w = np.abs(self.kernel()).sum(axis=0) * _mag(in_type)
        r = np.abs(self.recurrent_kernel()).sum(axis=0) * _mag(self.out_type)
        fw, fr, fb = in_type.frac + self.weight_type.frac, self.out_type.frac + self.recurrent_type.frac, self.bias_type.frac
        frac = max(fw, fr, fb)
        per_col = (w << (frac - fw)) + (r << (frac - fr)) + (np.abs(self.bias.astype(np.int64)) << (frac - fb))
        return int(per_col.max(initial=0)), frac

    def cell_sum_bound(self) -> tuple[int, int]:
        s = _mag(self.gate_type)
        return _exact_sum_bound((s * _mag(self.cell_type), self.gate_type.frac + self.cell_type.frac),
                                (s * _mag(self.act_type), self.gate_type.frac + self.act_type.frac))

    def hidden_product_bound(self) -> tuple[int, int]:
        return _mag(self.gate_type) * _mag(self.act_type), self.gate_type.frac + self.act_type.frac

    def check(self, in_type: FixedType) -> None:
        where = f"layer '{self.name}'"
        fix = 're-export the layer for this input type (the exporter sizes every intermediate type exactly)'
        bound, frac = self.z_bound(in_type)
        if self.accum_type.frac < frac:
            raise ValueError(f'{where}: accumulator {self.accum_type.hls()} has fewer fractional bits than the gate sums '
                             f'x W + h U + b with input {in_type.hls()} ({frac}): they would round; {fix}')
        if not self.accum_type.holds(bound, frac):
            raise ValueError(f'{where}: the gate sums x W + h U + b with input {in_type.hls()} reach {bound} LSBs of '
                             f'2^-{frac}, more than accumulator {self.accum_type.hls()} holds: they would wrap; {fix}')
        for what, t, (b, f) in (('f * c + i * g', self.cell_sum_type, self.cell_sum_bound()),
                                ('o * tanh(c)', self.hidden_product_type, self.hidden_product_bound())):
            if not t.holds(b, f):
                raise ValueError(f'{where}: {t.hls()} cannot hold {what} exactly (up to {b} LSBs of 2^-{f}); '
                                 f'give it at least {f} fractional bits and {b.bit_length() + 1} bits of width')

    def float32_bound(self, in_type: FixedType) -> int:
        """The largest magnitude, in units of its own LSB, of any value the float32 Keras layer meets
        in a step (exact while <= 2^24): the gate sums z; the hard sigmoid's 0.5 z + 0.5 in [0, 1]
        (outside it float32 rounds monotonically and the clip gives the same); f c + i g and
        o tanh(c); and the difference q(x) - x in QKeras' straight-through x + (q(x) - x) of each
        state quantizer (``_ste_bound``)."""
        zb, zf = self.z_bound(in_type)
        sb, sf = self.cell_sum_bound()
        pb, pf = self.hidden_product_bound()
        return max(zb, 1 << max(zf + 1, 0), 1 << max(self.cell_type.frac + 1, 0), sb, pb,
                   _ste_bound(sb, sf, self.cell_type), _ste_bound(pb, pf, self.out_type))

    def qkeras_inexact(self, in_type: FixedType) -> str | None:
        """Why QKeras' float32 layer can differ from this reference, or None where it is exact."""
        b = self.float32_bound(in_type)
        if b > FLOAT32_EXACT_INT:
            return (f'its per-step values reach {b} LSBs, beyond the 2^24 that float32 holds exactly, and QKeras '
                    'computes in float32, so they can round')
        return None

    # --- deployment facts -----------------------------------------------------------------------

    def reuse_factors(self, strategy):
        # RF cycles per time step; each cycle a lane takes one kept block of W (and of U) for all four gates
        n, nr = len(self.index), len(self.recurrent_index)
        return ReuseFactors(range(1, max(n, nr) + 1), f'the kept blocks of its larger kernel: {n} of W, {nr} of U')

    def hls_weights(self, rf):
        """Per kernel the weight banks of its schedule (flow/runtime/lstm_engine.py: the gather
        schedule of the kept blocks tiled over the four gates, [gate][multiplier][cycle], zero in the
        padding slots); the bias. No index: the generated kernel's case tables and gates replace it."""
        from .lstm_engine import rom_words

        w, u = rom_words(self, rf)
        return {'weight': HlsWeight(w, self.weight_type), 'recurrent_weight': HlsWeight(u, self.recurrent_type),
                'bias': HlsWeight(self.bias, self.bias_type)}

    def hls_attrs(self):
        return {'gate_t': self.gate_type, 'act_t': self.act_type, 'cell_sum_t': self.cell_sum_type,
                'cell_t': self.cell_type, 'hidden_product_t': self.hidden_product_type}  # per-step types

    def engine_estimate(self, rf, in_type, steps=1):
        """The generated step MAC (flow/hls/lstm_emit.py on flow/runtime/lstm_engine.py): the live
        multipliers of both kernels' schedules (4 gates each; a bank of zeros only is none), ONE
        pipelined loop of RF cycles at II=1 for x_t W and h U together. The time steps run one after
        another (h and c carry over), each:

        - ``input_copy`` (1): x_t into a local array;
        - ``mac`` (RF): the loop's iterations;
        - ``pipeline_depth``: its drain, LSTM_MAC_DEPTH (the weight ROM read, the product, the add
          into z) + the levels of the balanced adder tree of the most products reaching one gate
          sum in a cycle (one level per cycle, conservative);
        - ``state`` (3): the hard activations, c = f c + i g, h = o hard_tanh(c).

        Weights: the schedules' banks, padding included; no index stored. The 3 x units products of
        the cell and hidden updates (f c, i g, o tanh(c)) are counted apart: the dense baseline has
        them too."""
        from .costs import bram18
        from .lstm_engine import lstm_engine

        eng = lstm_engine(self, rf)
        step = {'input_copy': LSTM_INPUT_COPY, 'mac': rf, 'pipeline_depth': LSTM_MAC_DEPTH + eng.adder_levels(),
                'state': LSTM_STATE_CYCLES}
        per_step = sum(step.values())
        rom_bits = eng.w_slots * self.weight_type.width + eng.u_slots * self.recurrent_type.width
        bram = (bram18(eng.w.n_mult * self.weight_type.width, rf) + bram18(eng.u.n_mult * self.recurrent_type.width, rf)
                if rf > 1 else 0)
        return {'multipliers': eng.multipliers, 'state_multipliers': 3 * self.units,
                'cycles_per_step': per_step, 'step_cycles': step, 'cycles': steps * per_step,
                'weight_memory_bits': rom_bits, 'bram18': bram, 'index_bits': 0}

    # --- forward ------------------------------------------------------------------------------

    def _activations(self):
        kw = dict(slope=HARD_HALF, slope_type=HARD_CONST_TYPE, shift=HARD_HALF, shift_type=HARD_CONST_TYPE)
        return (HardSigmoid(name=f'{self.name}_gate', out_type=self.gate_type, **kw),
                HardTanh(name=f'{self.name}_act', out_type=self.act_type, **kw))

    def locate(self, element: tuple) -> str:
        """An output code's time step and unit. The gates are inside the step: a wrong h at step t
        comes from that step's gates or cell (or an earlier step's, through h and c)."""
        if self.return_sequences:
            t, u = element if len(element) == 2 else divmod(element[0], self.units)  # (T, units), or flattened
            return f'time step {t}, unit {u}'
        return f'unit {element[-1]}, after the last time step'

    def forward(self, x, in_type):
        self.check(in_type)
        x = np.asarray(x, dtype=np.int64)
        if x.ndim != 3 or x.shape[2] != self.n_in:
            raise ValueError(f"layer '{self.name}': expects (samples, time steps, {self.n_in}) codes, got {x.shape}")
        sig, tanh = self._activations()
        u, acc, h_t = self.units, self.accum_type, self.out_type
        fz = acc.frac
        xw = np.einsum('nti,ij->ntj', x, self.kernel()) << (fz - in_type.frac - self.weight_type.frac)
        r = self.recurrent_kernel()
        b = self.bias.astype(np.int64) << (fz - self.bias_type.frac)
        sf, pf = self.cell_sum_bound()[1], self.hidden_product_bound()[1]
        gf = self.gate_type.frac
        h = np.zeros((len(x), u), dtype=np.int64)
        c = np.zeros_like(h)
        out = []
        for t in range(x.shape[1]):
            z = acc.from_codes(xw[:, t] + ((h @ r) << (fz - h_t.frac - self.recurrent_type.frac)) + b, fz)
            i, f, o = (sig.forward(z[:, k * u:(k + 1) * u], acc) for k in (0, 1, 3))
            g = tanh.forward(z[:, 2 * u:3 * u], acc)
            s = ((f * c) << (sf - gf - self.cell_type.frac)) + ((i * g) << (sf - gf - self.act_type.frac))
            s = self.cell_sum_type.from_codes(s, sf)
            c = self.cell_type.from_codes(s, self.cell_sum_type.frac)
            p = self.hidden_product_type.from_codes(o * tanh.forward(c, self.cell_type), pf)
            h = h_t.from_codes(p, self.hidden_product_type.frac)
            out.append(h)
        return np.stack(out, axis=1) if self.return_sequences else h

    # --- serialization ------------------------------------------------------------------------

    def scalars(self):
        return {'n_in': self.n_in, 'units': self.units, 'return_sequences': self.return_sequences,
                'block': list(self.block), 'recurrent_block': list(self.recurrent_block),
                'kept_per_row': self.kept_per_row, 'recurrent_kept_per_row': self.recurrent_kept_per_row,
                'levels': self.levels, 'recurrent_levels': self.recurrent_levels,
                **{k: getattr(self, k).to_dict() for k in self.TYPES}}

    def arrays(self):
        return {'values': self.values, 'index': self.index, 'recurrent_values': self.recurrent_values,
                'recurrent_index': self.recurrent_index, 'bias': self.bias}

    @classmethod
    def from_json(cls, d, arrays):
        layer = super().from_json(d, arrays)
        layer.block, layer.recurrent_block = tuple(layer.block), tuple(layer.recurrent_block)
        return layer
