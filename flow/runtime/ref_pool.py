"""Reference for pooling and shape layers in io_stream, channels last: average pooling, global
max/average pooling, zero padding, nearest upsampling and reshapes, 1-D on (steps, channels) and
2-D on (H, W, C).

hls4ml's average (nnet_pooling_stream.h ``reduce_pool`` / ``global_pooling*d_cl``) copies each
input into ``accum_t``, sums there (a tree of ``accum_t`` additions) and divides by the window
size as an ap_fixed / integer division: the quotient keeps accum_t's LSB and is truncated toward
zero (measured), then cast to the result type. The reference mirrors exactly that, so its types
decide how close to the float average it is: ``avg_types`` gives accum ceil(log2 N) more fraction
bits than the input, which makes a window of N = 2^k exact.
numpy only (runs on the board).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fixed import FixedType
from .ref_conv import MaxPool2D, OneDimensional, PatchGeometry
from .ref_layers import RefLayer, register_kind

STREAM_ONLY = ('io_stream',)  # the CNN path; hls4ml's io_parallel pooling pads and counts differently
RTL_UNBUILT = ('the RTL level is not built for streamed pooling and shape layers (hls4ml moves them pixel by pixel '
               'through io_stream; a da4ml graph is one combinational function of the input)')


def trunc_div(codes: np.ndarray, n: int) -> np.ndarray:
    """Integer division rounding toward zero, as ap_fixed's ``sdiv`` (C division)."""
    codes = np.asarray(codes, dtype=np.int64)
    return np.sign(codes) * (np.abs(codes) // n)


def avg_types(in_t: FixedType, n: int) -> tuple[FixedType, FixedType]:
    """(accum, result) for the average of ``n`` values of ``in_t``: accum holds every sum with
    k = ceil(log2 n) more integer and fraction bits; the result keeps those fraction bits and the
    input's range (an average, truncated toward zero, stays within it), so nothing is cast."""
    k = max(n - 1, 0).bit_length()
    return (FixedType(in_t.width + 2 * k, in_t.integer + k, in_t.signed),
            FixedType(in_t.width + k, in_t.integer, in_t.signed))


def _average(codes: np.ndarray, axes, n: int, in_type: FixedType, accum_t: FixedType, out_t: FixedType) -> np.ndarray:
    acc = accum_t.from_codes(codes, in_type.frac)  # each input copied into accum_t
    acc = accum_t.from_codes(acc.sum(axis=axes), accum_t.frac)  # WRAP: any order of additions gives this
    return out_t.from_codes(trunc_div(acc, n), accum_t.frac)


def _check_accum(layer, n: int, in_type: FixedType) -> None:
    a = layer.accum_type
    bound = n * max(abs(in_type.min_code), abs(in_type.max_code)) << max(a.frac - in_type.frac, 0)
    if a.overflow != 'WRAP' and not a.holds(bound, a.frac):
        raise ValueError(f"layer '{layer.name}': a saturating accumulator that cannot hold every sum depends on the "
                         'order of additions; use WRAP for its accum')


def _average_inexact(layer, n: int, in_type: FixedType) -> str | None:
    """Why the float average differs from these codes: a divisor not a power of two, too few
    fraction bits in accum, or a result type that rounds or saturates."""
    a, o = layer.accum_type, layer.out_type
    k = max(n - 1, 0).bit_length()
    if n != 1 << k:
        return (f'hls4ml divides the sum of {n} values by {n}, truncating toward zero at its accumulator\'s LSB '
                f'(2^-{a.frac}); the float average is in general off that grid')
    if n * max(abs(in_type.min_code), abs(in_type.max_code)) > 1 << 24:
        return f'its sums of {n} values of {in_type.hls()} reach beyond the 2^24 LSBs that float32 holds exactly'
    s = o.frac - in_type.frac  # the average lies in the input's range
    if a.frac < in_type.frac + k or o.frac < a.frac or not (
            o.min_code <= in_type.min_code << s and in_type.max_code << s <= o.max_code):
        return (f'its types (accum {a.hls()}, result {o.hls()}) round or saturate the average of {n} values of '
                f'{in_type.hls()}, a cast the float model does not make')
    return None


def _dividers(n: int, channels: int) -> int:
    """An average over ``n`` codes in each of ``channels``: a divider per channel unless n is 2^k."""
    return 0 if n & (n - 1) == 0 else channels


@register_kind
@dataclass
class AvgPool2D(PatchGeometry, RefLayer):
    """hls4ml's Pooling2D (average) in io_stream: trunc(sum / N) in accum_t, cast to the result."""

    kind = 'avgpool2d'
    accum_type: FixedType = None

    @property
    def window(self) -> int:
        return self.filt[0] * self.filt[1]

    def check(self, in_type):
        _check_accum(self, self.window, in_type)

    def forward(self, x, in_type):
        return _average(self.windows(x), (3, 4), self.window, in_type, self.accum_type, self.out_type)

    def qkeras_inexact(self, in_type):
        return _average_inexact(self, self.window, in_type)

    def constant_dividers(self):
        return _dividers(self.window, self.in_shape[-1])

    def hls_attrs(self):
        return {'accum_t': self.accum_type}

    def scalars(self):
        return {**self.geometry(), 'accum_type': self.accum_type.to_dict()}

    @classmethod
    def from_json(cls, d, arrays):
        return cls._tuples(super().from_json(d, arrays))


@register_kind
@dataclass
class AvgPool1D(OneDimensional, AvgPool2D):
    """hls4ml's Pooling1D (average) in io_stream; geometry as a one-row image."""

    kind = 'avgpool1d'


@register_kind
@dataclass
class MaxPool1D(OneDimensional, MaxPool2D):
    """hls4ml's Pooling1D (max) in io_stream: the largest code of each window, in the input's type."""

    kind = 'maxpool1d'


@dataclass
class _Global(RefLayer):
    """A global pooling over every pixel (step) of an (H, W, C) image or (steps, C) sequence:
    ``in_shape`` the input's, ``keepdims`` Keras's (an output of (1, 1, C) / (1, C), else (C,))."""

    in_shape: tuple = ()
    keepdims: bool = False
    io_types = STREAM_ONLY
    rtl_unbuilt = RTL_UNBUILT

    @property
    def input_rank(self):
        return len(self.in_shape)

    @property
    def count(self) -> int:
        return int(np.prod(self.in_shape[:-1]))

    def stream_pixels(self):
        return self.count, 1

    def _out(self, y):
        return y.reshape(len(y), *((1,) * (len(self.in_shape) - 1) if self.keepdims else ()), self.in_shape[-1])

    def hls_attrs(self):
        return {'accum_t': self.accum_type}

    def scalars(self):
        return {'in_shape': list(self.in_shape), 'keepdims': self.keepdims, 'accum_type': self.accum_type.to_dict()}

    @classmethod
    def from_json(cls, d, arrays):
        layer = super().from_json(d, arrays)
        layer.in_shape = tuple(layer.in_shape)
        return layer


@register_kind
@dataclass
class GlobalMaxPool(_Global):
    """hls4ml's GlobalPooling1D/2D (max): the largest code per channel, compared in accum_t (the
    input's type; hls4ml starts from accum_t's minimum)."""

    kind = 'global_maxpool'
    accum_type: FixedType = None

    def forward(self, x, in_type):
        x = np.asarray(x, dtype=np.int64).reshape(len(x), self.count, self.in_shape[-1])
        return self._out(self.out_type.from_codes(self.accum_type.from_codes(x, in_type.frac).max(axis=1),
                                                  self.accum_type.frac))


@register_kind
@dataclass
class GlobalAvgPool(_Global):
    """hls4ml's GlobalPooling1D/2D (average): the channel's sum in accum_t divided by the pixel
    count (truncated toward zero), cast to the result."""

    kind = 'global_avgpool'
    accum_type: FixedType = None

    def check(self, in_type):
        _check_accum(self, self.count, in_type)

    def forward(self, x, in_type):
        x = np.asarray(x, dtype=np.int64).reshape(len(x), self.count, self.in_shape[-1])
        return self._out(_average(x, 1, self.count, in_type, self.accum_type, self.out_type))

    def qkeras_inexact(self, in_type):
        return _average_inexact(self, self.count, in_type)

    def constant_dividers(self):
        return _dividers(self.count, self.in_shape[-1])


@dataclass
class _Shape(RefLayer):
    """A layer that moves codes without computing (hls4ml passes them on in the input's type)."""

    in_shape: tuple = ()
    io_types = STREAM_ONLY
    rtl_unbuilt = RTL_UNBUILT

    @property
    def input_rank(self):
        return len(self.in_shape)

    def out_shape(self) -> tuple:
        raise NotImplementedError

    def stream_pixels(self):
        return int(np.prod(self.in_shape[:-1])), int(np.prod(self.out_shape()[:-1]))

    def _scalars(self, *fields):
        return {'in_shape': list(self.in_shape), **{f: list(getattr(self, f)) for f in fields}}

    @classmethod
    def from_json(cls, d, arrays):
        layer = super().from_json(d, arrays)
        for f, v in vars(layer).items():
            if isinstance(v, list):
                setattr(layer, f, tuple(v))
        return layer


@register_kind
@dataclass
class ZeroPad(_Shape):
    """hls4ml's ZeroPadding1D/2D: zeros around the image (``pads`` top, bottom, left, right) or the
    sequence (left, right)."""

    kind = 'zeropad'
    pads: tuple = ()

    def forward(self, x, in_type):
        x = np.asarray(x, dtype=np.int64).reshape(len(x), *self.in_shape)
        p = self.pads
        spatial = ((p[0], p[1]), (p[2], p[3])) if len(p) == 4 else ((p[0], p[1]),)
        return self.out_type.from_codes(np.pad(x, ((0, 0), *spatial, (0, 0))), in_type.frac)

    def out_shape(self):
        p, (*spatial, c) = self.pads, self.in_shape
        return (*(n + p[2 * k] + p[2 * k + 1] for k, n in enumerate(spatial)), c)

    def scalars(self):
        return self._scalars('pads')


@register_kind
@dataclass
class UpSample(_Shape):
    """hls4ml's Resize (nearest) for UpSampling1D/2D: every pixel repeated ``size`` times per axis."""

    kind = 'upsample'
    size: tuple = ()

    def forward(self, x, in_type):
        x = np.asarray(x, dtype=np.int64).reshape(len(x), *self.in_shape)
        for axis, f in enumerate(self.size):
            x = np.repeat(x, f, axis=1 + axis)
        return self.out_type.from_codes(x, in_type.frac)

    def out_shape(self):
        *spatial, c = self.in_shape
        return (*(n * f for n, f in zip(spatial, self.size)), c)

    def scalars(self):
        return self._scalars('size')


@register_kind
@dataclass
class Reshape(_Shape):
    """Keras Reshape to a tensor of rank > 1: the same codes in row-major order under a new shape.
    In io_stream hls4ml replaces it by a node ``repack_<name>`` (nnet::repack_stream) that regroups
    the stream's words; the flat Reshape is ``Flatten``."""

    kind = 'repack'  # hls4ml's node (Keras Reshape)
    input_rank = None
    shape: tuple = ()

    def hls_node(self, io_type):
        return f'repack_{self.name}' if io_type == 'io_stream' else self.name

    def forward(self, x, in_type):
        return self.out_type.from_codes(np.asarray(x, dtype=np.int64).reshape(len(x), *self.shape), in_type.frac)

    def out_shape(self):
        return self.shape

    def scalars(self):
        return self._scalars('shape')
