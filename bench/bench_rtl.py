"""Benchmark: structured sparsity in measured logic (da4ml RTL, yosys synth_xilinx), one run.

1. A 256x256 layer with 4-bit weights at 0%, 50%, 75% and 87.5% block sparsity (8x8 blocks, CGS
   masks, the same weight values everywhere; only the mask changes): LUT, FF, CARRY, DSP and logic
   depth measured by yosys on da4ml's Verilog, as ratios to the dense layer and to the density
   limit (density x dense), with da4ml's own LUT estimate and our estimate model's multiplier count
   next to them (and how far da4ml's estimate is off the measurement).
2. The default model's RTL resources, from the flow's own rtl step (reports/rtl_resources.json).

Each sparse layer is also simulated with Verilator on random inputs and must equal the integer
reference. Prints tables, writes bench/results/rtl.json and bench/results/rtl.png.
Options: --n 256 (layer size), --quick (n=64, for a smoke run).
"""

from __future__ import annotations

import argparse
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

from flow.stages.estimate import layer_estimate  # noqa: E402
from flow.export import exact_accum_type  # noqa: E402
from flow.infra.progress import print_table  # noqa: E402
from flow.rtl.logic import network_comb  # noqa: E402
from flow.rtl.simulate import RTLDesign  # noqa: E402
from flow.rtl.synth import synthesize  # noqa: E402
from flow.runtime.fixed import FixedType  # noqa: E402
from flow.runtime.ref_block_sparse import BlockSparseDense, pack_blocks  # noqa: E402
from flow.runtime.ref_layers import Input  # noqa: E402
from flow.runtime.reference import IntegerModel  # noqa: E402
from keras_models.masks import cgs_block_mask  # noqa: E402

console = Console()
BLOCK, WBITS, DROPS = (8, 8), 4, (0.0, 0.5, 0.75, 0.875)
IN_T, BIAS_T, OUT_T = FixedType(8, 3), FixedType(8, 3), FixedType(16, 8, True, 'RND', 'SAT')
FAMILY, PART = 'xc7', 'xc7z020clg400-1'
MEASURED = ('lut', 'ff', 'carry', 'dsp', 'logic_depth')


def layer(n: int, drop: float, w: np.ndarray, bias: np.ndarray) -> IntegerModel:
    mask = cgs_block_mask('fc', (n, n), BLOCK, drop, seed=1) if drop else np.ones((n // BLOCK[0], n // BLOCK[1]), bool)
    kernel = w * np.kron(mask, np.ones(BLOCK, np.int64))
    values, index, kpr = pack_blocks(kernel, mask, BLOCK)
    w_t = FixedType(WBITS, 1)
    acc = exact_accum_type(kernel, w_t, bias, BIAS_T, IN_T)
    fc = BlockSparseDense('fc', OUT_T, weight_type=w_t, bias_type=BIAS_T, accum_type=acc, bias=bias, n_in=n, n_out=n,
                          block=BLOCK, kept_per_row=kpr, values=values, index=index)
    return IntegerModel([Input('x', IN_T, shape=(n,)), fc])


def measure(im: IntegerModel, folder: Path, rng) -> dict:
    t0 = time.time()
    design = RTLDesign(network_comb(im), 'fc', folder, PART, 10.0)
    design.write()
    trace_s = time.time() - t0
    design.compile()
    x = rng.integers(IN_T.min_code, IN_T.max_code + 1, (500, im.input.shape[0]))
    x[0], x[1] = IN_T.max_code, IN_T.min_code
    exact = bool(np.array_equal(design.run(x, IN_T, im.out_type), im.predict_codes(x)))
    if not exact:
        raise SystemExit(f'RTL simulation differs from the reference ({folder})')
    t1 = time.time()
    res = synthesize(folder, 'fc', FAMILY)
    return {**res, 'da4ml_lut_estimate': design.cost, 'exact_vectors': len(x), 'trace_s': round(trace_s, 1),
            'synth_s': round(time.time() - t1, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--n', type=int, default=256)
    ap.add_argument('--quick', action='store_true', help='a 64x64 layer: a smoke run in about a minute')
    args = ap.parse_args()
    n = 64 if args.quick else args.n
    rng = np.random.default_rng(0)
    w = rng.choice([c for c in range(-(1 << (WBITS - 1)), 1 << (WBITS - 1)) if c], size=(n, n))  # no zero codes
    bias = rng.integers(BIAS_T.min_code, BIAS_T.max_code + 1, n)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for drop in DROPS:
            console.print(f'{n}x{n}, {drop:.1%} of {BLOCK[0]}x{BLOCK[1]} blocks dropped: da4ml, Verilator, yosys ...')
            im = layer(n, drop, w, bias)
            est = layer_estimate(im.layers[1], rf=1)
            rows[drop] = {'density': est['density'], 'kept_weights': est['kept_weights'],
                          'estimate_multipliers_rf1': est['ours']['multipliers'],
                          **measure(im, Path(tmp) / f'd{drop}', rng)}
            console.print(f'  {rows[drop]}')
    dense = rows[0.0]
    t = Table(title=f'{n}x{n} layer, {WBITS}-bit weights, {BLOCK[0]}x{BLOCK[1]} blocks: yosys synth_xilinx -family {FAMILY}, '
                    'measured (da4ml fully parallel logic)')
    for c in ('sparsity', 'density', *MEASURED, 'LUT / dense', 'LUT / limit', '(LUT+FF) / limit', 'depth / dense',
              'da4ml est.', 'est. off by', 'est. mult (RF 1)'):
        t.add_column(c, justify='right')
    for drop, r in rows.items():
        limit = r['density'] * dense['lut']
        r['lut_vs_dense'] = r['lut'] / dense['lut']
        r['lut_vs_limit'] = r['lut'] / limit
        r['lut_ff_vs_limit'] = (r['lut'] + r['ff']) / (r['density'] * (dense['lut'] + dense['ff']))
        r['da4ml_estimate_error'] = r['da4ml_lut_estimate'] / r['lut'] - 1
        t.add_row(f'{drop:.1%}', f'{r["density"]:.3f}', *(str(r[c]) for c in MEASURED), f'{r["lut_vs_dense"]:.3f}',
                  f'{r["lut_vs_limit"]:.3f}', f'{r["lut_ff_vs_limit"]:.3f}', f'{r["logic_depth"] / dense["logic_depth"]:.3f}',
                  f'{r["da4ml_lut_estimate"]:g}', f'{r["da4ml_estimate_error"]:+.1%}', str(r['estimate_multipliers_rf1']))
    print_table(t, console)
    console.print('Our estimate model counts multipliers (DSPs) for the time-multiplexed engine; it does not model '
                  'this multiplier-free logic, so only its multiplier count is shown: see the measured LUTs.')

    default = ROOT / 'build' / 'digits_mlp' / 'reports' / 'rtl_resources.json'
    out = {'layer': {'n': n, 'block': BLOCK, 'weight_bits': WBITS, 'family': FAMILY, 'rows': rows}}
    if default.exists():
        out['default_model'] = json.loads(default.read_text())
        if out['default_model'].get('built'):
            from flow.rtl.build import print_resources

            print_resources(out['default_model'], console)
    else:
        console.print(f'(no {default}: run `build-bitstream` first for the default model\'s RTL resources)')
    results = ROOT / 'bench' / 'results'
    results.mkdir(exist_ok=True)
    (results / 'rtl.json').write_text(json.dumps(out, indent=1, default=str))
    console.print(f'wrote {results / "rtl.json"}')
    plot(rows, n, results / 'rtl.png')
    console.print(f'wrote {results / "rtl.png"}')


def plot(rows: dict, n: int, path: Path) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    dens = [r['density'] for r in rows.values()]
    dense = rows[0.0]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(dens, [r['lut'] for r in rows.values()], 'o-', label='LUT, measured (yosys)')
    ax.plot(dens, [r['da4ml_lut_estimate'] for r in rows.values()], 's--', label="LUT, da4ml's estimate")
    ax.plot(dens, [d * dense['lut'] for d in dens], ':', color='gray', label='density limit (density x dense)')
    ax.set_xlabel('density (kept weights / all)')
    ax.set_ylabel('LUTs')
    ax.set_title(f'{n}x{n}, {WBITS}-bit weights, {BLOCK[0]}x{BLOCK[1]} block sparsity, fully parallel')
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == '__main__':
    main()
