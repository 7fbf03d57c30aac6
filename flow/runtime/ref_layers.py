"""Integer reference layers: the arithmetic of the generated hardware, on integer codes.

Each layer kind is one class registered under ``kind``; a sparse method adds its own module
(see ``ref_block_sparse.py``) instead of branching here. numpy only (runs on the board).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .fixed import FixedType

LAYER_KINDS: dict[str, type[RefLayer]] = {}


def register_kind(cls):
    LAYER_KINDS[cls.kind] = cls
    return cls


@dataclass
class RefLayer:
    """One layer. ``name`` is the hls4ml layer name, so traces can be compared by name."""

    kind = 'base'
    name: str
    out_type: FixedType

    def forward(self, x: np.ndarray, in_type: FixedType) -> np.ndarray:
        raise NotImplementedError

    def check(self, in_type: FixedType) -> None:
        """Raise ValueError if this layer's types cannot be computed exactly from ``in_type``."""

    # serialization: scalars/types go to JSON, arrays to npz (prefixed with the layer name)
    def scalars(self) -> dict:
        return {}

    def arrays(self) -> dict[str, np.ndarray]:
        return {}

    def to_json(self) -> dict:
        return {'kind': self.kind, 'name': self.name, 'out_type': self.out_type.to_dict(), **self.scalars()}

    @classmethod
    def from_json(cls, d: dict, arrays: dict[str, np.ndarray]) -> RefLayer:
        d = dict(d)
        d.pop('kind')
        types = {k: FixedType.from_dict(v) for k, v in d.items() if k.endswith('_type')}
        d.update(types)
        return cls(**d, **arrays)


@register_kind
@dataclass
class Input(RefLayer):
    """The input type; forward checks the codes are in range (the caller quantized them)."""

    kind = 'input'
    shape: tuple = ()

    def forward(self, x, in_type):
        x = np.asarray(x, dtype=np.int64)
        if x.shape[1:] != tuple(self.shape):
            raise ValueError(f'input shape {x.shape[1:]} does not match the model input {tuple(self.shape)}')
        t = self.out_type
        if x.size and (x.min() < t.min_code or x.max() > t.max_code):
            raise ValueError(f'input codes outside {t.hls()} range [{t.min_code}, {t.max_code}]')
        return x

    def scalars(self):
        return {'shape': list(self.shape)}


def sum_bound(w_codes, w_t: FixedType, b_codes, b_t: FixedType, in_t: FixedType) -> tuple[int, int]:
    """(bound, frac): every partial sum of bias + x*w, in any order, is a multiple of 2^-frac
    with magnitude <= bound * 2^-frac, for every input of ``in_t`` and these weights."""
    frac = max(in_t.frac + w_t.frac, b_t.frac)
    x_max = max(abs(in_t.min_code), abs(in_t.max_code))
    w = np.abs(np.asarray(w_codes, dtype=np.int64).reshape(-1, np.shape(b_codes)[0]))
    bound = (w.sum(axis=0) * x_max) << (frac - in_t.frac - w_t.frac)
    bound = bound + (np.abs(np.asarray(b_codes, dtype=np.int64)) << (frac - b_t.frac))
    return int(bound.max()), frac


@dataclass
class _Accumulating(RefLayer):
    """Shared by dense kernels: bias init, exact product sum, accumulator overflow, result cast."""

    weight_type: FixedType = None
    bias_type: FixedType = None
    accum_type: FixedType = None
    bias: np.ndarray = field(default=None, repr=False)

    def _check_accum(self, in_type: FixedType):
        pf = in_type.frac + self.weight_type.frac
        if self.accum_type.frac < pf or self.accum_type.frac < self.bias_type.frac:
            # Per-term rounding makes the result depend on the hardware's summation order.
            raise ValueError(
                f"layer '{self.name}': accumulator {self.accum_type.hls()} has fewer fractional bits than the "
                f'products ({pf}) or the bias ({self.bias_type.frac}); give its accum at least {max(pf, self.bias_type.frac)}'
            )
        if self.accum_type.overflow != 'WRAP':
            raise ValueError(f"layer '{self.name}': a saturating accumulator depends on summation order; use WRAP for its accum")
        return pf

    check = _check_accum

    def _finish(self, products_sum: np.ndarray, pf: int) -> np.ndarray:
        acc_t = self.accum_type
        acc = products_sum << (acc_t.frac - pf)
        acc = acc + (self.bias.astype(np.int64) << (acc_t.frac - self.bias_type.frac))
        acc = acc_t.from_codes(acc, acc_t.frac)  # wrap: modular sums are order independent
        return self.out_type.from_codes(acc, acc_t.frac)

    def sum_bound(self, in_type: FixedType) -> tuple[int, int]:
        return sum_bound(self.dense_weight(), self.weight_type, self.bias, self.bias_type, in_type)

    def dense_weight(self) -> np.ndarray:
        """The (n_in, n_out) weight codes, zeros included."""
        raise NotImplementedError

    def scalars(self):
        return {k: getattr(self, k).to_dict() for k in ('weight_type', 'bias_type', 'accum_type')}


@register_kind
@dataclass
class Dense(_Accumulating):
    """hls4ml's own Dense (any strategy): out = cast(bias + sum x*w)."""

    kind = 'dense'
    weight: np.ndarray = field(default=None, repr=False)  # (n_in, n_out) codes

    def forward(self, x, in_type):
        pf = self._check_accum(in_type)
        return self._finish(x @ self.weight.astype(np.int64), pf)

    def arrays(self):
        return {'weight': self.weight, 'bias': self.bias}

    def dense_weight(self):
        return self.weight

    @property
    def n_in(self):
        return self.weight.shape[0]

    @property
    def n_out(self):
        return self.weight.shape[1]


@register_kind
@dataclass
class ReLU(RefLayer):
    """hls4ml relu: res = x > 0 ? (res_T) x : 0, with res_T's rounding and overflow."""

    kind = 'relu'

    def forward(self, x, in_type):
        return self.out_type.from_codes(np.where(x > 0, x, 0), in_type.frac)
