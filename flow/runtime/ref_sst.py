"""Reference for the SST dense layer: structured sparse ternary codes (flow/runtime/sst_code.py)
times a scale, plus a bias. The arithmetic of the hardware (hls_templates/nnet_sst_dense.h):

- per output o: sum_o = sum over the kept inputs of +x or -x (additions and subtractions of the
  selected input codes, exact in ``sum_type``: no multiplier);
- acc_o = sum_o * scale_o + bias_o, exact in ``accum_type`` (a product by a constant, once per
  output; a power-of-two scale is a shift);
- out_o = cast(acc_o) to ``out_type``.

``scale`` holds one code of ``scale_type`` per output (all equal for a per-layer scale, which is
then stored once). ``weight_type`` is the type of the effective weights t * scale: it sizes
the accumulator bound and hls4ml's Dense with the same weights (the estimate's baseline).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from .fixed import FixedType
from .ref_layers import HlsWeight, ReuseFactors, _Accumulating, register_kind
from .sst_code import SSTCode


@register_kind
@dataclass
class SSTDense(_Accumulating):
    kind = 'sst_dense'
    n_in: int = 0
    n_out: int = 0
    group: int = 8
    nonzeros: int = 2
    per_output_scale: bool = True
    scale_type: FixedType = None
    sum_type: FixedType = None
    codes: np.ndarray = field(default=None, repr=False)  # (n_out, n_in / group) codewords
    scale: np.ndarray = field(default=None, repr=False)  # (n_out,) codes of scale_type

    @property
    def code(self) -> SSTCode:
        return SSTCode(self.group, self.nonzeros)

    @cached_property
    def ternary(self) -> np.ndarray:
        """(n_in, n_out) in {-1, 0, 1}, int64."""
        return self.code.decode(self.codes).astype(np.int64)

    def check(self, in_type: FixedType) -> None:
        super().check(in_type)
        bound = int(np.abs(self.ternary).sum(axis=0).max(initial=0)) * max(abs(in_type.min_code), abs(in_type.max_code))
        if self.sum_type.frac != in_type.frac or bound > self.sum_type.max_code:
            raise ValueError(f"layer '{self.name}': the sum of +-inputs needs {bound.bit_length() + 1} bits at the input's "
                             f'{in_type.frac} fractional bits; sum type {self.sum_type.hls()} cannot hold it')

    def forward(self, x, in_type):
        pf = self._check_accum(in_type)
        s = np.asarray(x, dtype=np.int64) @ self.ternary  # additions and subtractions only
        return self._finish(s * self.scale.astype(np.int64), pf)

    def float32_bound(self, in_type: FixedType) -> int:
        """QKeras computes dot(x, t) * scale + bias per output (keras_models/sst.py): the sum of
        +-x, its product with the scale, and the biased result, each in units of its own LSB.
        Tighter than the generic bound: outputs with different power-of-two scales never mix."""
        x_max = max(abs(in_type.min_code), abs(in_type.max_code))
        dots = np.abs(self.ternary).sum(axis=0) * x_max  # LSB 2^-in.frac
        worst = int(dots.max(initial=0))
        for o in range(self.n_out):
            c, b = int(self.scale[o]), int(self.bias[o])
            tz = (c & -c).bit_length() - 1 if c else 0
            s_frac = self.scale_type.frac - tz  # the scale is (c >> tz) * 2^-s_frac
            frac = max(in_type.frac + s_frac, self.bias_type.frac)
            prod = int(dots[o]) * (abs(c) >> tz)
            total = (prod << (frac - in_type.frac - s_frac)) + (abs(b) << (frac - self.bias_type.frac))
            worst = max(worst, prod, total)
        return worst

    def dense_weight(self) -> np.ndarray:
        return self.ternary * self.scale.astype(np.int64)

    @property
    def weight_code_bits(self) -> int:
        return self.weight_type.width

    @property
    def scale_po2(self) -> bool:
        """Every scale a power of two: applying it is a shift (wiring for a constant)."""
        s = self.scale.astype(np.int64)
        return bool(np.all((s > 0) & ((s & (s - 1)) == 0)))

    @property
    def n_scales(self) -> int:
        return self.n_out if self.per_output_scale else 1

    def storage(self):
        """Codewords (``code_bits`` per group of ``group`` weights), the scales, the biases, and the
        decoder's pattern ROM (counted as index: it is what turns codewords into positions)."""
        code = self.code
        return {'shape': [self.n_in, self.n_out], 'kept_weights': int(np.count_nonzero(self.ternary)),
                'weight_bits': int(self.codes.size) * code.code_bits,
                'index_bits': code.n_patterns * code.nonzeros * code.rom_entry_bits,
                'scale_bits': self.n_scales * self.scale_type.width,
                'bias_bits': self.n_out * self.bias_type.width}

    def scalars(self):
        return {**super().scalars(), 'n_in': self.n_in, 'n_out': self.n_out, 'group': self.group, 'nonzeros': self.nonzeros,
                'per_output_scale': self.per_output_scale, 'scale_type': self.scale_type.to_dict(),
                'sum_type': self.sum_type.to_dict()}

    def arrays(self):
        return {'codes': self.codes, 'scale': self.scale, 'bias': self.bias}

    # --- deployment facts -------------------------------------------------------------------------
    def reuse_factors(self, strategy):
        n = int(self.codes.size)  # one (output, group) pair a decoder takes per cycle
        return ReuseFactors(range(1, n + 1), f'its {self.n_out} outputs x {self.n_in // self.group} groups')

    def hls_weights(self, rf):
        """The codeword ROM: n_dec * rf words, padded with codeword 0 (no non-zero); the scale and
        the bias. The decoder's pattern ROM is constants of the generated kernel (flow/hls/sst_emit.py,
        checked by the IR layer's check_reference)."""
        from .sst_engine import code_banks

        return {'code': HlsWeight(code_banks(self.codes, rf).ravel()), 'scale': HlsWeight(self.scale, self.scale_type),
                'bias': HlsWeight(self.bias, self.bias_type)}

    def hls_attrs(self):
        return {'sum_t': self.sum_type}  # the type of the +-input sums

    def engine_estimate(self, rf, in_type, steps=1):
        """n_dec decoders, each K add/subtract slots per cycle, no multiplier in the datapath; the
        scale is one constant product per output (a shift, no multiplier, when it is a power of two).
        Its ROM: n_dec codewords per cycle; the pattern ROM is the index. With ``in_type``, the
        kernel's LUT/FF estimated from its static structure."""
        import math

        from .costs import bram18

        n_dec, bits = math.ceil(self.codes.size / rf), self.code.code_bits
        ours = {'multipliers': 0 if self.scale_po2 else self.n_out,
                'adders': n_dec * self.nonzeros + n_dec,  # the K-input add/subtract and the accumulate
                'cycles': rf, 'weight_memory_bits': n_dec * rf * bits,  # codewords, padding included
                'bram18': bram18(n_dec * bits, rf) if rf > 1 else 0}
        if in_type is not None:  # LUT/FF of the generated kernel's structure (flow/runtime/sst_engine.py)
            from .sst_engine import sst_engine

            logic = sst_engine(self.n_in, self.n_out, self.group, self.nonzeros, rf).logic_estimate(self, in_type)
            ours['lut_estimate'], ours['ff_estimate'] = logic['lut'], logic['ff']
        return ours
