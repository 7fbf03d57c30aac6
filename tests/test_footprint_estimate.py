"""Footprint arithmetic and the resource estimate model, on hand-counted layers."""

import numpy as np

from flow.estimate import bram18, engine, layer_estimate
from flow.footprint import footprint
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

    from flow.footprint import print_footprint

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
    RF 16: 8 lanes of 8 multipliers, one column each, no padding; run_start 8 lanes x 2 runs and
    seg_block 8 x 1 entries at 3 bits. RF 24: segments of 8 cycles, 16 of them in 6 lanes of 3
    (2 empty): 48 multipliers, 48 x 24 slots of which 128 padding; tables 18 + 18 entries."""
    mask = np.isin((np.arange(8)[None, :] - np.arange(8)[:, None]) % 8, (0, 1))  # block-row r keeps columns r, r+1
    values, index, k = pack_blocks(np.ones((64, 64), np.int64) * expand(mask, (8, 8)), mask, (8, 8))
    layer = BlockSparseDense('fc', out_type=ACC, weight_type=W4, bias_type=B8, accum_type=ACC, bias=np.zeros(64, np.int64),
                             n_in=64, n_out=64, block=(8, 8), kept_per_row=k, values=values, index=index)
    assert layer_estimate(layer, rf=16)['ours'] == {
        'multipliers': 64, 'cycles': 16, 'weight_memory_bits': 4096, 'bram18': 8, 'index_bits': (16 + 8) * 3, 'padding': 0}
    assert layer_estimate(layer, rf=24)['ours'] == {
        'multipliers': 48, 'cycles': 24, 'weight_memory_bits': 1152 * 4, 'bram18': 6, 'index_bits': (18 + 18) * 3,
        'padding': 128}
