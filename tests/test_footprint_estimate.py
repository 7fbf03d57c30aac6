"""Footprint arithmetic and the resource estimate model, on hand-counted layers."""

import numpy as np
import dataclasses

import pytest

from flow.runtime.costs import bram18
from flow.stages.estimate import engine, layer_estimate
from flow.stages.footprint import footprint
from flow.runtime.fixed import FixedType
from flow.runtime.ref_block_sparse import BlockSparseDense, pack_blocks
from flow.runtime.ref_layers import Dense, Input
from flow.runtime.reference import IntegerModel
from keras_models.masks import cgs_block_mask, expand

W4, B8, ACC = FixedType(4, 1), FixedType(8, 4), FixedType(16, 8)


def _cgs_layer(n_in=64, n_out=64, block=(8, 8), drop=0.75):
    mask = cgs_block_mask('fc', (n_in, n_out), block, drop, 0)
    w = np.ones((n_in, n_out), dtype=np.int64) * expand(mask, block)
    values, index, k = pack_blocks(w, mask, block)
    return BlockSparseDense('fc', out_type=ACC, weight_type=W4, bias_type=B8, accum_type=ACC, bias=np.zeros(n_out, np.int64),
                            n_in=n_in, n_out=n_out, block=block, kept_per_row=k, values=values, index=index)


def test_footprint_hand_counted():
    # 64x64, 8x8 blocks, 75% dropped: 8 block-rows x 2 kept blocks x 64 weights = 1024 kept weights,
    # 16 kept blocks x 3 index bits (8 output blocks) = 48 bits, 64 biases x 8 bits = 512 bits.
    dense = Dense('out', out_type=ACC, weight_type=FixedType(6, 1), bias_type=B8, accum_type=ACC,
                  weight=np.ones((64, 10), np.int64), bias=np.zeros(10, np.int64))
    fp = footprint(IntegerModel([Input('x', out_type=FixedType(8, 1), shape=(64,)), _cgs_layer(), dense]))
    fc = fp['layers']['fc']
    assert (fc['kept_weights'], fc['weight_bits'], fc['index_bits'], fc['bias_bits']) == (1024, 4096, 48, 512)
    assert fc['total_bits'] == 4656
    assert fc['dense_float32_bits'] == (64 * 64 + 64) * 32
    out = fp['layers']['out']
    assert (out['weight_bits'], out['index_bits'], out['bias_bits']) == (640 * 6, 0, 80)
    total = fp['total']
    assert total['total_bits'] == 4656 + 3840 + 80
    assert total['ratio_vs_float32'] == ((4160 + 650) * 32) / total['total_bits']
    assert total['ratio_vs_float64'] == 2 * total['ratio_vs_float32']


def test_bram18_tiling():
    assert bram18(36, 512) == 1
    assert bram18(72, 512) == 2
    assert bram18(1, 16384) == 1
    assert bram18(18, 1025) == 2
    assert bram18(256, 16) == 8  # 8 x 36-bit wide ROMs
    assert bram18(64, 1) == 0  # RF = 1: registers, no BRAM


def test_engine_and_ratio_to_the_density_limit():
    assert engine(1024, 16, 4) == {'multipliers': 64, 'cycles': 16, 'weight_memory_bits': 4096, 'bram18': 8}
    est = layer_estimate(_cgs_layer(), rf=16)
    assert est['ours']['multipliers'] == 64 and est['hls4ml_dense']['multipliers'] == 256
    assert est['ratio_ours_vs_dense']['multipliers'] == 0.25
    assert est['ratio_ours_vs_limit']['multipliers'] == 1.0  # exactly density x dense
    assert est['ratio_ours_vs_limit']['weight_memory_bits'] == 1.0


def test_printed_tables_never_cut_a_number(capsys):
    """Not a terminal (CI logs, pipes): rich would squeeze the table to 80 columns with ellipses."""
    import io

    from rich.console import Console

    from flow.stages.footprint import print_footprint

    dense = Dense('a_rather_long_layer_name', out_type=ACC, weight_type=FixedType(6, 1), bias_type=B8, accum_type=ACC,
                  weight=np.ones((4096, 4096), np.int64), bias=np.zeros(4096, np.int64))
    fp = footprint(IntegerModel([Input('x', out_type=FixedType(8, 1), shape=(4096,)), _cgs_layer(), dense]))
    out = io.StringIO()
    print_footprint(fp, Console(file=out, width=80, force_terminal=False))
    text = out.getvalue()
    assert '…' not in text and 'a_rather_long_layer_name' in text
    for number in (fp['total']['dense_float64_bits'], fp['total']['kept_weights']):
        assert str(number) in text
    total = next(l for l in text.splitlines() if 'TOTAL' in l)
    assert f"{fp['total']['density']:.3f}" in total and 'nan' not in total


def test_block_sparse_estimate_follows_the_gather_schedule():
    """64x64, 8x8 blocks, 2 kept per block-row and per block-column (16 steps of 8 rows each).
    RF 16: 8 lanes of 8 multipliers, one column each, no padding. RF 24: segments of 8 cycles, 16
    of them in 6 lanes of 3 (2 empty): 48 multipliers, 48 x 24 slots of which 128 padding. No
    stored index: the generated kernel holds the schedule as case tables and gates (its logic)."""
    mask = np.isin((np.arange(8)[None, :] - np.arange(8)[:, None]) % 8, (0, 1))  # block-row r keeps columns r, r+1
    values, index, k = pack_blocks(np.ones((64, 64), np.int64) * expand(mask, (8, 8)), mask, (8, 8))
    layer = BlockSparseDense('fc', out_type=ACC, weight_type=W4, bias_type=B8, accum_type=ACC, bias=np.zeros(64, np.int64),
                             n_in=64, n_out=64, block=(8, 8), kept_per_row=k, values=values, index=index)
    assert layer_estimate(layer, rf=16)['ours'] == {
        'multipliers': 64, 'cycles': 16, 'weight_memory_bits': 4096, 'bram18': 8, 'index_bits': 0, 'padding': 0}
    assert layer_estimate(layer, rf=24)['ours'] == {
        'multipliers': 48, 'cycles': 24, 'weight_memory_bits': 1152 * 4, 'bram18': 6, 'index_bits': 0,
        'padding': 128}


# --- convolutional networks (io_stream): hls4ml's line buffer, our block-sparse kernel per patch ---

IN8 = FixedType(8, 4)  # 4 fractional bits: with 3-bit-fraction weights the products fit ACC's 8


def _sparse_conv(drop, in_shape=(8, 8, 16), filt=(3, 3), pads=(1, 1, 1, 1), n_out=16, block=(4, 4), method='cgs_balanced'):
    """A BlockSparseConv2D (as export_block_sparse_qconv2d builds it): one channel block mask
    (C/bi x F/bo) repeated at every kernel position, weights all one where kept."""
    from flow.runtime.ref_conv import BlockSparseConv2D
    from keras_models.masks import make_block_mask

    c = in_shape[2]
    mask = np.tile(make_block_mask(method, 'conv', (c, n_out), block, drop, 0), (filt[0] * filt[1], 1))
    w = np.ones((filt[0] * filt[1] * c, n_out), np.int64) * expand(mask, block)
    values, index, k = pack_blocks(w, mask, block)
    return BlockSparseConv2D('conv', out_type=ACC, weight_type=W4, bias_type=B8, accum_type=ACC,
                             bias=np.zeros(n_out, np.int64), n_in=w.shape[0], n_out=n_out, block=block, kept_per_row=k,
                             values=values, index=index, in_shape=in_shape, filt=filt, strides=(1, 1), pads=pads)


def _dense_conv(weight, in_shape=(8, 8, 16), filt=(3, 3), pads=(1, 1, 1, 1), name='conv', out_type=ACC):
    from flow.runtime.ref_conv import Conv2D

    return Conv2D(name, out_type=out_type, weight_type=W4, bias_type=B8, accum_type=ACC,
                  bias=np.zeros(weight.shape[1], np.int64), weight=weight, in_shape=in_shape, filt=filt, strides=(1, 1),
                  pads=pads)


@pytest.mark.parametrize('drop, ratio', [(0.5, 0.5), (0.75, 0.25)])
def test_block_sparse_conv_against_hls4ml_conv(drop, ratio):
    """3x3 conv, 16 -> 16 channels, 4x4 channel blocks (balanced), RF 36: hls4ml's Conv2D on the same
    (144 x 16) weights, zeros included, needs 144 * 16 / 36 = 64 multipliers and stores 144 x 16 x 4
    bits; ours keeps (1 - drop) of the blocks in every block-column: 9 positions x 4 x (1 - drop)
    kept blocks of 4 rows per column, whole segments of 36 cycles, so (1 - drop) x 64 multipliers
    and (1 - drop) of the weight bits, no padding."""
    conv = _sparse_conv(drop)
    est = layer_estimate(conv, rf=36, in_type=IN8)
    o, d = est['ours'], est['hls4ml_dense']
    assert est['shape'] == [144, 16] and est['kept_weights'] == int(144 * 16 * (1 - drop))
    assert d['multipliers'] == 64 and d['weight_memory_bits'] == 144 * 16 * 4
    assert o['multipliers'] == 64 * ratio and o['weight_memory_bits'] == 144 * 16 * 4 * ratio and o['padding'] == 0
    assert est['ratio_ours_vs_dense']['multipliers'] == ratio
    assert est['ratio_ours_vs_dense']['weight_memory_bits'] == ratio
    # the baseline is exactly hls4ml's own Conv2D on the same weights (zeros included)
    base = layer_estimate(_dense_conv(conv.dense_weight()), rf=36, in_type=IN8)
    assert base['hls4ml_dense'] == d and base['ours'] == {**d, 'index_bits': 0}
    # Latency strategy at RF 1: HLS drops the multiplies by constant zero
    assert layer_estimate(_dense_conv(conv.dense_weight()), rf=1, strategy='latency', in_type=IN8)[
        'hls4ml_dense']['multipliers'] == est['kept_weights']


def test_conv_cycles_per_image_follow_each_pixel_loop():
    """8x8 input, 'same' padding of 1: 10 x 10 = 100 pixels streamed, 64 windows computed.
    Ours (nnet_block_sparse_conv2d.h, one loop at II=1): RF cycles per output pixel, one per other
    pixel, plus the pipeline's depth: CONV_PIPELINE_DEPTH + the adder levels of the most products
    reaching one output in a cycle (72 kept weights per output over RF 36: 2, one level; RF 72: 1,
    none). hls4ml's conv: Latency pipelines its input-pixel loop at II = RF; Resource does not (the
    call and shift per input pixel, RF + fill and flush per output pixel)."""
    from flow.runtime.ref_conv import CONV_PIPELINE_DEPTH, HLS4ML_PIXEL_CYCLES, HLS4ML_RESOURCE_FILL, MaxPool2D

    conv = _sparse_conv(0.5)
    assert conv.pixels_per_image() == (100, 64)
    for rf, levels in ((36, 1), (72, 0)):
        est = layer_estimate(conv, rf=rf, strategy=None, in_type=IN8)
        assert est['pixels'] == {'in': 100, 'out': 64}
        o = est['ours']
        assert o['image_cycles'] == {'output_pixels': 64 * rf, 'other_pixels': 36,
                                     'pipeline_depth': CONV_PIPELINE_DEPTH + levels}
        assert o['cycles'] == 64 * rf + 36 + CONV_PIPELINE_DEPTH + levels and o['cycles_per_pixel'] == rf
        assert est['hls4ml_dense']['cycles'] == 100 * rf  # the baseline: hls4ml's pipelined (Latency) conv
        plain = _dense_conv(conv.dense_weight())
        for strategy in ('latency', 'resource'):
            e = layer_estimate(plain, rf=rf, strategy=strategy, in_type=IN8)
            want = 100 * rf if strategy == 'latency' else 100 * HLS4ML_PIXEL_CYCLES + 64 * (rf + HLS4ML_RESOURCE_FILL)
            assert e['ours']['cycles'] == e['hls4ml_dense']['cycles'] == want
            assert e['ours']['cycles_per_pixel'] == rf
    valid = layer_estimate(_sparse_conv(0.5, pads=(0, 0, 0, 0)), rf=36, in_type=IN8)
    assert valid['ours']['cycles'] == 36 * 36 + 28 + CONV_PIPELINE_DEPTH + 1 and valid['pixels'] == {'in': 64, 'out': 36}
    pool = layer_estimate(MaxPool2D('pool', out_type=IN8, in_shape=(8, 8, 16), filt=(2, 2), strides=(2, 2)), rf=4,
                          in_type=IN8)
    assert pool['ours']['cycles'] == pool['hls4ml_dense']['cycles'] == 64  # II = 1, no ReuseFactor
    assert pool['ours']['multipliers'] == 0 and pool['ours']['weight_memory_bits'] == 0
    padded = MaxPool2D('pool', out_type=IN8, in_shape=(6, 6, 16), filt=(2, 2), strides=(2, 2), pads=(1, 1, 1, 1))
    assert layer_estimate(padded, rf=1, in_type=IN8)['pixels'] == {'in': 64, 'out': 16}


def test_line_buffer_for_a_known_geometry():
    """(kh - 1) x C shift registers of the padded width, input bits wide; SRLs below one RAMB18."""
    from flow.stages.estimate import LINE_BUFFER_BRAM_MIN_BITS, line_buffer
    from flow.runtime.ref_conv import MaxPool2D

    est = layer_estimate(_sparse_conv(0.75), rf=36, in_type=IN8)  # 2 x 16 registers, 10 deep, 8 bits
    for side in ('ours', 'hls4ml_dense'):
        assert est[side]['line_buffer_bits'] == 2 * 16 * 10 * 8
        assert est[side]['line_buffer_bram18'] == 0 and est[side]['line_buffer_srl_luts'] == 2 * 16 * 8
    conv5 = _dense_conv(np.ones((5 * 5 * 3, 4), np.int64), in_shape=(28, 28, 3), filt=(5, 5), pads=(0, 0, 0, 0))
    assert line_buffer(conv5, 6) == {'line_buffer_bits': 4 * 3 * 28 * 6, 'line_buffer_bram18': 0,
                                     'line_buffer_srl_luts': 4 * 3 * 1 * 6}
    pool = MaxPool2D('pool', out_type=IN8, in_shape=(8, 8, 16), filt=(2, 2), strides=(2, 2))
    assert layer_estimate(pool, rf=1, in_type=IN8)['ours']['line_buffer_bits'] == 1 * 16 * 8 * 8
    # a 2048-wide image of 9-bit pixels: each shift register holds one RAMB18's 18 Kb (2048 x 9)
    assert 2048 * 9 == LINE_BUFFER_BRAM_MIN_BITS
    wide = _dense_conv(np.ones((18, 4), np.int64), in_shape=(4, 2048, 2), pads=(0, 0, 0, 0))
    assert line_buffer(wide, 9) == {'line_buffer_bits': 2 * 2 * 2048 * 9, 'line_buffer_bram18': 4, 'line_buffer_srl_luts': 0}
    narrower = _dense_conv(np.ones((18, 4), np.int64), in_shape=(4, 2047, 2), pads=(0, 0, 0, 0))
    assert line_buffer(narrower, 9) == {'line_buffer_bits': 2 * 2 * 2047 * 9, 'line_buffer_bram18': 0,
                                        'line_buffer_srl_luts': 4 * 64 * 9}


def _cnn(width=2048):
    """Input (4, width, 2) 9-bit -> 3x3 conv (valid, 4 filters) -> 2x2 max pool -> flatten -> dense 2."""
    from flow.runtime.ref_conv import MaxPool2D
    from flow.runtime.ref_layers import Flatten

    in_t, out_t = FixedType(9, 5), FixedType(8, 4)
    conv = _dense_conv(np.ones((18, 4), np.int64), in_shape=(4, width, 2), pads=(0, 0, 0, 0), out_type=out_t)
    ow = width - 2
    pool = MaxPool2D('pool', out_type=out_t, in_shape=(2, ow, 4), filt=(2, 2), strides=(2, 2))
    dense = Dense('out', out_type=ACC, weight_type=W4, bias_type=B8, accum_type=ACC,
                  weight=np.ones((ow // 2 * 4, 2), np.int64), bias=np.zeros(2, np.int64))
    return IntegerModel([Input('x', out_type=in_t, shape=(4, width, 2)), conv, pool, Flatten('flat', out_type=out_t), dense])


def _plan_board(im, io_type='io_stream'):
    from types import SimpleNamespace

    from flow.config import FlowConfig
    from flow.plan import make_plan

    cfg = FlowConfig.load(None, model='m.h5', io_type=io_type, strategy='resource',
                          layers={'conv': {'reuse_factor': 9}, 'out': {'reuse_factor': 4}})
    board = SimpleNamespace(name='test board', resources=SimpleNamespace(dsp=100, bram18=100, lut=10_000, ff=20_000))
    return make_plan(im, cfg, board), board


def test_io_stream_interval_is_the_slowest_layer_and_latency_the_sum():
    from flow.runtime.ref_conv import HLS4ML_PIXEL_CYCLES, HLS4ML_RESOURCE_FILL
    from flow.stages.estimate import estimate_model

    im = _cnn()
    plan, board = _plan_board(im)
    stream = estimate_model(im, plan, board)
    layers = stream['layers']
    assert list(layers) == ['conv', 'pool', 'out']
    cycles = {n: l['ours']['cycles'] for n, l in layers.items()}
    # conv: hls4ml's Resource conv (the plan's strategy), its loop not pipelined: 4 x 2048 input pixels
    # of a call and a shift, 2 x 2046 output pixels of RF 9 + fill; pool: 2 x 2046 pixels at II 1;
    # dense: RF 4, once per image
    conv_cycles = 4 * 2048 * HLS4ML_PIXEL_CYCLES + 2 * 2046 * (9 + HLS4ML_RESOURCE_FILL)
    assert cycles == {'conv': conv_cycles, 'pool': 2 * 2046, 'out': 4}
    for side in ('ours', 'hls4ml_dense'):
        tot = stream['total'][side]
        assert tot['cycles'] == sum(l[side]['cycles'] for l in layers.values())
        assert tot['interval'] == max(l[side]['cycles'] for l in layers.values()) == conv_cycles
        assert tot['slowest_layer'] == 'conv' and tot['interval'] < tot['cycles']
    # the board verdict counts the line buffers' BRAM18: the conv's 2 x 2 registers of 2048 x 9 bits
    fit = stream['total']['fit']['bram18']
    assert layers['conv']['ours']['line_buffer_bram18'] == 4
    assert fit['used'] == sum(l['ours']['bram18'] + l['ours']['line_buffer_bram18'] for l in layers.values() if 'line_buffer_bram18' in l['ours']) \
        + layers['out']['ours']['bram18']
    assert fit['used'] >= 4
    parallel = estimate_model(im, dataclasses.replace(plan, io_type='io_parallel'), board)  # what existed, the sum
    from flow.stages.accel import stream_format

    fmt = stream_format(im)  # io_parallel: the sequential AXI top reads, computes, writes; samples do not overlap
    assert 'slowest_layer' not in parallel['total']['ours']
    assert parallel['total']['ours']['interval'] == parallel['total']['ours']['cycles'] + fmt.in_words + fmt.out_words
    assert parallel['total']['ours']['cycles'] == stream['total']['ours']['cycles']
    with pytest.raises(ValueError, match='io_type'):
        estimate_model(im, dataclasses.replace(plan, io_type='io_serial'), board)


def test_conv_rows_print_cycles_and_line_buffer():
    import io

    from rich.console import Console

    from flow.stages.estimate import estimate_model, print_estimate

    im = _cnn()
    plan, board = _plan_board(im)
    est = estimate_model(im, plan, board)
    out = io.StringIO()
    print_estimate(est, Console(file=out, width=80, force_terminal=False))
    text = out.getvalue()
    assert '…' not in text and 'ours vs hls4ml (same weights, same ReuseFactor)' in text
    conv_row = next(line for line in text.splitlines() if line.lstrip('│ ').startswith('conv '))
    conv = est['layers']['conv']['ours']
    for number in (conv['cycles'], conv['line_buffer_bits'], '8192/4092'):
        assert str(number) in conv_row
    assert f"interval {conv['cycles']} cycles per image" in text


def test_weightless_streamed_layers_cost_their_pixels_and_dividers():
    """Global pooling, padding, upsampling and repacking stream one pixel a cycle (the larger side);
    an average over N codes needs a divider per channel unless N is a power of two."""
    from flow.runtime.ref_pool import AvgPool2D, GlobalAvgPool, GlobalMaxPool, Reshape, UpSample, ZeroPad

    acc = FixedType(16, 8)
    cases = [
        (GlobalAvgPool('g', out_type=IN8, in_shape=(7, 7, 8), accum_type=acc), {'in': 49, 'out': 1}, 49, 8),
        (GlobalAvgPool('g', out_type=IN8, in_shape=(4, 4, 8), accum_type=acc), {'in': 16, 'out': 1}, 16, 0),
        (GlobalMaxPool('g', out_type=IN8, in_shape=(12, 5), accum_type=acc), {'in': 12, 'out': 1}, 12, 0),
        (ZeroPad('z', out_type=IN8, in_shape=(5, 6, 3), pads=(1, 2, 0, 3)), {'in': 30, 'out': 72}, 72, 0),
        (ZeroPad('z', out_type=IN8, in_shape=(10, 3), pads=(2, 1)), {'in': 10, 'out': 13}, 13, 0),
        (UpSample('u', out_type=IN8, in_shape=(3, 4, 2), size=(2, 3)), {'in': 12, 'out': 72}, 72, 0),
        (Reshape('r', out_type=IN8, in_shape=(6, 4), shape=(2, 3, 4)), {'in': 6, 'out': 6}, 6, 0),
    ]
    for layer, pixels, cycles, mults in cases:
        est = layer_estimate(layer, in_type=IN8)
        assert est['pixels'] == pixels, layer
        for side in ('ours', 'hls4ml_dense'):
            assert (est[side]['cycles'], est[side]['multipliers'], est[side]['weight_memory_bits']) == (cycles, mults, 0)
    pool3 = AvgPool2D('p', out_type=IN8, in_shape=(9, 9, 4), filt=(3, 3), strides=(3, 3), accum_type=acc)
    assert layer_estimate(pool3, in_type=IN8)['ours']['multipliers'] == 4  # 9 = not 2^k: a divider per channel
    pool2 = AvgPool2D('p', out_type=IN8, in_shape=(8, 8, 4), filt=(2, 2), strides=(2, 2), accum_type=acc)
    assert layer_estimate(pool2, in_type=IN8)['ours']['multipliers'] == 0  # a shift
