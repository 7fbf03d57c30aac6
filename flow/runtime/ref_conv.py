"""Reference for 2-D and 1-D convolutions and max pooling on (n, H, W, C) / (n, W, C) codes, channels last.

A convolution is, per output pixel, a dense product of the (kh, kw, C) input patch (flattened in
that order, hls4ml's line-buffer order) with the kernel seen as a (kh * kw * C, F) matrix. So each
convolution kind is a dense kind plus the patch geometry: hls4ml's Conv2D is ``Dense`` per pixel,
a block-sparse QConv2D is ``BlockSparseDense`` per pixel (its channel mask repeated for every
kernel position) and the hardware runs the same block-sparse kernel on each patch. A 1-D layer
(hls4ml's Conv1D) is the same geometry with height 1 (``OneDimensional``): only its tensors drop the
height axis.
numpy only (runs on the board).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .ref_block_sparse import BlockSparseDense, level_index_bits, row_index_bits
from .ref_layers import LATENCY, RESOURCE, Dense, RefLayer, register_kind

# Cycles of the pixel loops (estimates until Vitis HLS reports them; see ``image_cycles``):
HLS4ML_PIXEL_CYCLES = 2  # hls4ml's unpipelined (Resource) loop: per input pixel, the call and the line-buffer shift
HLS4ML_RESOURCE_FILL = 4  # ... and per output pixel besides its RF MAC cycles: its pipeline's fill/flush, the write
# our pipelined pixel loop besides the adder tree: the stream read and line-buffer shift into the window,
# the weight ROM read, the product, the add into the accumulator, the cast and write of the output pixel
CONV_PIPELINE_DEPTH = 5


def same_padding(size: int, filt: int, stride: int) -> tuple[int, int]:
    """Keras/hls4ml 'same' padding along one axis: (before, after), the odd one after."""
    total = max(filt - stride, 0) if size % stride == 0 else max(filt - size % stride, 0)
    return total // 2, total - total // 2


@dataclass
class PatchGeometry:
    """Where a sliding window (filter or pool) reads: input (H, W, C), window, strides and zero
    padding (top, bottom, left, right)."""

    in_shape: tuple = (1, 1, 1)
    filt: tuple = (1, 1)
    strides: tuple = (1, 1)
    pads: tuple = (0, 0, 0, 0)
    input_rank = 3
    io_types = ('io_stream',)  # hls4ml's line buffer
    line_buffer = True
    rtl_unbuilt = ('the RTL level is not built for convolutional networks (a da4ml graph is one combinational function '
                   "of the input, hls4ml's io_stream line buffer a loop over pixels with state)")

    @property
    def out_hw(self) -> tuple[int, int]:
        (h, w, _), (kh, kw), (sh, sw), (pt, pb, pl, pr) = self.in_shape, self.filt, self.strides, self.pads
        return (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1

    def windows(self, x: np.ndarray) -> np.ndarray:
        """(n, H, W, C) -> (n, out_h, out_w, kh, kw, C): the input each output pixel sees."""
        x = np.asarray(x, dtype=np.int64).reshape(len(x), *self.in_shape)
        pt, pb, pl, pr = self.pads
        x = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
        win = np.lib.stride_tricks.sliding_window_view(x, tuple(self.filt), axis=(1, 2))  # (n, H', W', C, kh, kw)
        oh, ow = self.out_hw
        win = win[:, : oh * self.strides[0] : self.strides[0], : ow * self.strides[1] : self.strides[1]]
        return win.transpose(0, 1, 2, 4, 5, 3)

    def pixels_per_image(self) -> tuple[int, int]:
        """(input pixels streamed, output pixels computed) per image (estimate)."""
        h, w, _ = self.in_shape
        pt, pb, pl, pr = self.pads
        oh, ow = self.out_hw
        return (h + pt + pb) * (w + pl + pr), oh * ow

    def image_cycles(self, cycles_per_pixel: int, strategy: str | None) -> dict:
        """hls4ml's io_stream loop over the (padded) input pixels per image, each running an engine of
        ``cycles_per_pixel`` cycles (its ReuseFactor; 1 for pooling), by its ``strategy``
        (nnet_conv2d_stream.h conv_2d_buffer_cl): Latency pipelines the loop at II = ReuseFactor
        (every input pixel, output or not, takes an II; the pipeline's depth is not counted);
        Resource does not pipeline it: every input pixel costs the call and the line-buffer shift,
        every output pixel its MAC loop's RF cycles plus fill and flush. The terms add up to the
        cycles per image."""
        in_px, out_px = self.pixels_per_image()
        if strategy == RESOURCE:
            return {'input_pixels': in_px * HLS4ML_PIXEL_CYCLES,
                    'output_pixels': out_px * (cycles_per_pixel + HLS4ML_RESOURCE_FILL)}
        return {'input_pixels': in_px * cycles_per_pixel}

    def locate(self, element: tuple) -> str:
        if len(element) != 3:
            return ''
        r, c, ch = element
        return f'pixel (row {r}, column {c}), channel {ch}'

    def geometry(self) -> dict:
        return {'in_shape': list(self.in_shape), 'filt': list(self.filt), 'strides': list(self.strides),
                'pads': list(self.pads)}

    @classmethod
    def _tuples(cls, layer):
        for f in ('in_shape', 'filt', 'strides', 'pads'):
            setattr(layer, f, tuple(getattr(layer, f)))
        return layer


class Convolution(PatchGeometry):
    """A dense kind applied to every patch (the dense kind's forward on (pixels, kh * kw * C))."""

    def hls_inserted(self, in_type, io_type):
        """In io_stream hls4ml puts a ZeroPadding2D ('zp2d_<conv>') before every padded convolution."""
        return {f'zp2d_{self.name}': in_type} if io_type == 'io_stream' and any(self.pads) else {}

    @property
    def positions(self) -> int:
        return self.filt[0] * self.filt[1]

    def engine_vectors(self, x):
        """Every output pixel's patch, image by image in row-major pixel order: what forward computes on."""
        p = self.windows(x)
        return p.reshape(p.shape[0] * p.shape[1] * p.shape[2], -1)

    def forward(self, x, in_type):
        return super().forward(self.engine_vectors(x), in_type).reshape(len(x), *self.out_hw, -1)

    def scalars(self):
        return {**super().scalars(), **self.geometry()}

    @classmethod
    def from_json(cls, d, arrays):
        return cls._tuples(super().from_json(d, arrays))


@register_kind
@dataclass
class Conv2D(Convolution, Dense):
    """hls4ml's Conv2D (io_stream, line buffer): ``weight`` is the (kh * kw * C, F) kernel codes."""

    kind = 'conv2d'
    strategies = (LATENCY, RESOURCE)  # hls4ml's Conv2D (no distributed_arithmetic for convolutions in 1.3.0)


@register_kind
@dataclass
class BlockSparseConv2D(Convolution, BlockSparseDense):
    """Block-sparse QConv2D: the packed (kh * kw * C, F) matrix whose block mask is the channel
    mask repeated for every kernel position (position-major, like the patch)."""

    kind = 'block_sparse_conv2d'
    strategies = ()  # our pixel loop and kernel (nnet_block_sparse_conv2d.h), behind hls4ml's line buffer

    def schedule(self, rf: int):
        """The gather schedule with an accumulator per output: the pixel loop holds them across the
        cycles of a pixel (no time-multiplexed outputs). Memoized, as the dense one."""
        import dataclasses

        cache = self.__dict__.setdefault('_pixel_schedules', {})
        if rf not in cache:
            cache[rf] = dataclasses.replace(super().schedule(rf), may_time_multiplex=False)
        return cache[rf]

    def engine_estimate(self, rf, in_type, steps=1):
        """The dense kernel's cost per patch (``BlockSparseDense.engine_estimate``), run by the pipelined
        pixel loop of hls_templates/nnet_block_sparse_conv2d.h (II=1 over the image's cycles): every
        output pixel takes RF cycles, every other input pixel (padding, strides, the window's first
        rows and columns) one, plus the pipeline's depth once per image (CONV_PIPELINE_DEPTH + the
        levels of the adder tree of the most products reaching one output in a cycle). ``cycles``
        is per image (``image_cycles`` its terms)."""
        from .static_engine import static_engine

        ours = super().engine_estimate(rf, in_type, steps)
        in_px, out_px = self.pixels_per_image()
        image = {'output_pixels': out_px * rf, 'other_pixels': in_px - out_px,
                 'pipeline_depth': CONV_PIPELINE_DEPTH + static_engine(self.schedule(rf)).adder_levels()}
        return {**ours, 'cycles_per_pixel': rf, 'image_cycles': image, 'cycles': sum(image.values())}

    def storage(self):
        """As the dense kernel, but the index once: every kernel position repeats the channel mask."""
        s = super().storage()
        per_position = self.n_kept_blocks // self.positions
        rows = self.in_shape[2] // self.block[0]
        kpr = self.kept_per_row if np.ndim(self.kept_per_row) == 0 else list(self.kept_per_row)[:rows]
        levels = level_index_bits(self.block_rows()[:per_position], self.index[:per_position], self.block, self.levels,
                                  self.n_out)
        s.update(index_bits=sum(levels) + row_index_bits(kpr, self.n_out // self.block[1]), index_bits_per_level=levels)
        return s


@register_kind
@dataclass
class MaxPool2D(PatchGeometry, RefLayer):
    """hls4ml's Pooling2D (max): the largest code of each window, in the input's type."""

    kind = 'maxpool2d'

    def forward(self, x, in_type):
        return self.out_type.from_codes(self.windows(x).max(axis=(3, 4)), in_type.frac)

    def hls_attrs(self):
        return {'accum_t': self.out_type}  # hls4ml compares the window in accum_t: the input's type

    def scalars(self):
        return self.geometry()

    @classmethod
    def from_json(cls, d, arrays):
        return cls._tuples(super().from_json(d, arrays))


class OneDimensional:
    """A window sliding along the width of (W, C) sequences: the 2-D geometry with in_shape (1, W, C),
    filt (1, k), strides (1, s), pads (0, 0, left, right); its tensors have no height axis."""

    input_rank = 2

    def forward(self, x, in_type):
        out = super().forward(x, in_type)
        return out.reshape(len(out), *out.shape[2:])

    def hls_inserted(self, in_type, io_type):
        """hls4ml puts a ZeroPadding1D ('zp1d_<conv>') before every padded Conv1D in io_stream."""
        return {f'zp1d_{self.name}': in_type} if io_type == 'io_stream' and any(self.pads) else {}

    def locate(self, element: tuple) -> str:
        if len(element) != 2:
            return ''
        return f'position {element[0]}, channel {element[1]}'


@register_kind
@dataclass
class Conv1D(OneDimensional, Conv2D):
    """hls4ml's Conv1D (io_stream): ``weight`` is the (k * C, F) kernel codes."""

    kind = 'conv1d'


@register_kind
@dataclass
class BlockSparseConv1D(OneDimensional, BlockSparseConv2D):
    """Block-sparse QConv1D: the packed (k * C, F) matrix, the channel mask repeated for every tap."""

    kind = 'block_sparse_conv1d'
    schedule = BlockSparseDense.schedule  # the whole kernel per position (may time-multiplex its outputs)

    def engine_estimate(self, rf, in_type, steps=1):
        """The whole dense kernel per output position, called by hls4ml's Resource Conv1D loop, which
        is not pipelined (flow/hls/block_sparse_conv1d.py): ``image_cycles`` by the Resource rule."""
        ours = super(BlockSparseConv2D, self).engine_estimate(rf, in_type, steps)
        image = self.image_cycles(rf, RESOURCE)
        return {**ours, 'cycles_per_pixel': rf, 'image_cycles': image, 'cycles': sum(image.values())}
