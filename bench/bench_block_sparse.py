"""Benchmark: our block-sparse template vs hls4ml's own Resource Dense, measured in one run.

1. A 784x256 layer at 75% block sparsity (16x16 blocks) at several ReuseFactors: weight-memory
   bits, BRAM18, multipliers, cycles (estimate model of flow/stages/estimate.py), as ratios to hls4ml's
   Dense on the same weights and to the density limit (density x dense).
2. The same layer converted and compiled (wall time, target < 180 s), and throughput in samples/s
   of the integer reference, our C simulation and hls4ml Dense's C simulation on the same weights.
3. The default model's estimate, and the wall time of the whole default flow up to `estimate`.

Prints tables of ratios and writes bench/results/bench.json.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flow.infra.boards import get_board  # noqa: E402
from flow.config import FlowConfig  # noqa: E402
from flow.stages.convert import compile_csim, convert_model  # noqa: E402
from flow.stages.estimate import estimate_model, layer_estimate  # noqa: E402
from flow.export import to_integer_model  # noqa: E402
from flow.infra.progress import print_table  # noqa: E402
from flow.runtime.fixed import FixedType  # noqa: E402
from flow.stages.verify import compare_reference_csim, csim_library  # noqa: E402

console = Console()
N_IN, N_OUT, BLOCK, DROP = 784, 256, (16, 16), 0.75
IN_TYPE = FixedType(8, 1)


def big_layer_model(dense: bool):
    import tensorflow as tf
    from qkeras import QDense, quantized_bits

    from keras_models.layers import BlockSparseQDense

    tf.keras.utils.set_random_seed(0)
    q = dict(kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=quantized_bits(8, 3, alpha=1))
    inp = tf.keras.Input((N_IN,), name='x')
    sparse = BlockSparseQDense(N_OUT, block_shape=BLOCK, drop_rate=DROP, mask_seed=0, name='fc', **q)
    model = tf.keras.Model(inp, sparse(inp))
    rng = np.random.default_rng(0)
    sparse.kernel.assign(rng.uniform(-1, 1, (N_IN, N_OUT)) * sparse.element_mask().numpy())
    sparse.bias.assign(rng.uniform(-2, 2, N_OUT))
    if not dense:
        return model
    d = QDense(N_OUT, name='fc', **q)
    dmodel = tf.keras.Model(inp, d(inp))
    d.kernel.assign(sparse.kernel.numpy())
    d.bias.assign(sparse.bias.numpy())
    return dmodel


def valid_rfs(n_kept: int) -> list[int]:
    from hls4ml.backends import get_backend

    # ours takes any RF up to one kept weight per multiplier (the gather schedule pads); hls4ml's
    # Dense only its own set, and both sides are built at the same RF
    hls = set(get_backend('Vitis').get_valid_reuse_factors(N_IN, N_OUT))
    both = [rf for rf in sorted(hls) if rf <= n_kept]
    return [rf for rf in (16, 49, 98, 196, 392, 784) if rf in both] or both[:4]


def throughput(fn, x, min_seconds=1.0) -> float:
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < min_seconds:
        fn(x)
        n += len(x)
    return n / (time.perf_counter() - t0)


def fmt(v):
    return '-' if v is None else f'{v:.3f}' if isinstance(v, float) else str(v)


def main() -> dict:
    results = {}
    model = big_layer_model(dense=False)
    im = to_integer_model(model, IN_TYPE)
    layer = im.layers[1]
    n_kept = layer.values.size
    rfs = valid_rfs(n_kept)

    # 1. estimates over ReuseFactors
    t = Table(title=f'{N_IN}x{N_OUT}, {BLOCK[0]}x{BLOCK[1]} blocks, {DROP:.0%} dropped: ours / hls4ml Resource Dense (and / density limit)')
    for col in ('RF', 'mult', 'mult ratio', 'cycles', 'mem bits', 'padding', 'mem ratio', 'BRAM18', 'BRAM18 dense', 'BRAM ratio', 'BRAM / limit'):
        t.add_column(col, justify='right')
    results['layer_784x256'] = {}
    for rf in rfs:
        e = layer_estimate(layer, rf)
        results['layer_784x256'][rf] = e
        o, d, r, lim = e['ours'], e['hls4ml_dense'], e['ratio_ours_vs_dense'], e['ratio_ours_vs_limit']
        t.add_row(str(rf), str(o['multipliers']), fmt(r['multipliers']), f"{o['cycles']} / {d['cycles']}", str(o['weight_memory_bits']), str(o['padding']),
                  fmt(r['weight_memory_bits']), str(o['bram18']), str(d['bram18']), fmt(r['bram18']), fmt(lim['bram18']))
    print_table(t, console)

    # 2. convert + compile, then throughput of reference and both C simulations
    rf = rfs[-1]
    # model-wide: hls4ml's Dense (the twin) takes resource, our template takes no strategy
    cfg = FlowConfig.load(None, model='bench.h5', strategy='resource', layers={'fc': {'reuse_factor': rf}})
    board = get_board('pynq-z2')
    x_codes = np.random.default_rng(1).integers(IN_TYPE.min_code, IN_TYPE.max_code + 1, size=(256, N_IN))
    x = IN_TYPE.to_float(x_codes)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        convert_model(model, im, cfg, board, tmp / 'ours' / 'hls')
        compile_csim(tmp / 'ours' / 'hls')
        ours_build = time.perf_counter() - t0
        ours = csim_library(tmp / 'ours', im, cfg.project_name)
        compare_reference_csim(im, ours, x, x_codes)  # the benchmark only counts a bit-exact design

        dmodel = big_layer_model(dense=True)
        dim = to_integer_model(dmodel, IN_TYPE, sparse=False)  # the masked kernel as hls4ml's own Dense
        t0 = time.perf_counter()
        convert_model(dmodel, dim, cfg, board, tmp / 'dense' / 'hls')
        compile_csim(tmp / 'dense' / 'hls')
        dense_build = time.perf_counter() - t0
        dense = csim_library(tmp / 'dense', dim, cfg.project_name)
        compare_reference_csim(dim, dense, x, x_codes)

        tp = {
            'reference': throughput(im.predict_codes, x_codes),
            'csim_ours': throughput(ours.run, x[:64]),
            'csim_hls4ml_dense': throughput(dense.run, x[:64]),
        }
    results['build_seconds'] = {'ours': ours_build, 'hls4ml_dense': dense_build, 'target_ours': 180.0}
    results['throughput_samples_per_s'] = tp
    t = Table(title=f'784x256 at RF={rf}: build time and throughput')
    for col in ('measure', 'ours', 'hls4ml Dense', 'ratio ours/dense'):
        t.add_column(col, justify='right')
    t.add_row('convert + compile C-sim (s)', f'{ours_build:.1f} (target < 180)', f'{dense_build:.1f}', f'{ours_build / dense_build:.2f}')
    t.add_row('C-sim samples/s', f"{tp['csim_ours']:.0f}", f"{tp['csim_hls4ml_dense']:.0f}", f"{tp['csim_ours'] / tp['csim_hls4ml_dense']:.2f}")
    t.add_row('integer reference samples/s', f"{tp['reference']:.0f}", '', f"{tp['reference'] / tp['csim_ours']:.1f} x our C-sim")
    print_table(t, console)

    # 3. the default model: estimate at its default ReuseFactors, and the whole flow's wall time
    from flow.steps import run_flow

    with tempfile.TemporaryDirectory() as tmp:
        cfg = FlowConfig.load(None)
        t0 = time.perf_counter()
        ctx = run_flow(cfg, Path(tmp), to_step='estimate')
        flow_seconds = time.perf_counter() - t0
        est = estimate_model(ctx.reference(), ctx.plan(), get_board(cfg.board))
    results['default_model'] = {'flow_seconds_to_estimate': flow_seconds, 'estimate': est['total']}
    o, d = est['total']['ours'], est['total']['hls4ml_dense']
    t = Table(title='default model (digits_mlp): ours / hls4ml Dense, same ReuseFactors')
    for col in ('measure', 'ours', 'hls4ml Dense', 'ratio'):
        t.add_column(col, justify='right')
    for k in ('multipliers', 'weight_memory_bits', 'bram18', 'cycles'):
        t.add_row(k, str(o[k]), str(d[k]), fmt(o[k] / d[k] if d[k] else None))
    t.add_row('whole flow to estimate (s)', f'{flow_seconds:.1f}', '', '')
    print_table(t, console)

    out = ROOT / 'bench' / 'results'
    out.mkdir(parents=True, exist_ok=True)
    (out / 'bench.json').write_text(json.dumps(results, indent=1, default=str))
    console.print(f'written {out / "bench.json"}')
    return results


if __name__ == '__main__':
    main()
