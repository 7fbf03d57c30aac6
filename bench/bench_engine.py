"""Benchmark: the time-multiplexed block-sparse engine (the HLS template's architecture) measured
in logic, per accumulator organisation, in one run.

For each layer size, block sparsity and ReuseFactor, the engine of flow/rtl/engine.py is generated
on both schedules of flow/runtime/schedule.py (``gather``: output-stationary lanes, what the HLS template
does; ``scatter``: the first template's order, any multiplier to any output) for the sparse layer
and for the same layer dense (every block kept, the same weight values), and synthesized by yosys
``synth_xilinx``: LUT, FF, CARRY, DSP, BRAM18 and logic depth (register to register). Ratios are
to the dense engine (gather: the best dense organisation) and to the density limit (density x
dense); next to
them the schedule's own LUT/FF estimate (``Schedule.logic_estimate``) and how far off it is.

The engines' exactness is the subject of tests/test_engine.py and of the rtl step (golden vectors);
here only resources are measured. 4-bit weights, 8-bit inputs, 8x8 blocks unless told otherwise.
Prints a table, writes bench/results/engine.json (rows of earlier runs at other points kept: a grid
can be measured in parts) and bench/results/engine.png; with another mask than ``cgs``,
engine_<mask>.json/.png, so a variant never replaces the main results.

  --quick                    128x128 at 75%, RF 16 and 64 (about 10 min on 2 cores)
  --sizes 784x256,256x256 --drops 0.5,0.75,0.875 --rfs 16,32,64,128,256   (the full grid: hours)
  --mask cgs_balanced        equal fan-in masks (no padding for gather)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from functools import partial
from pathlib import Path

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flow.export import exact_accum_type  # noqa: E402
from flow.infra.progress import print_table  # noqa: E402
from flow.rtl.build import in_parallel  # noqa: E402
from flow.rtl.engine import engine_verilog  # noqa: E402
from flow.rtl.synth import synthesize_files  # noqa: E402
from flow.runtime.fixed import FixedType  # noqa: E402
from flow.runtime.ref_block_sparse import BlockSparseDense, pack_blocks  # noqa: E402
from flow.runtime.schedule import ORGANISATIONS, schedule  # noqa: E402
from keras_models.masks import make_block_mask  # noqa: E402

console = Console()
IN_T, BIAS_T, OUT_T = FixedType(8, 3, signed=False), FixedType(8, 3), FixedType(8, 3, True, 'RND_CONV', 'SAT')
MEASURED = ('lut', 'ff', 'carry', 'dsp', 'bram18', 'logic_depth')
TARGET = 1.3  # LUT+FF within 1.3x of the density limit (issue 20)


def make_layer(w: np.ndarray, bias: np.ndarray, mask: np.ndarray, block, wbits: int) -> BlockSparseDense:
    kernel = w * np.kron(mask, np.ones(block, np.int64))
    values, index, kpr = pack_blocks(kernel, mask, block)
    w_t = FixedType(wbits, 1)
    acc = exact_accum_type(kernel, w_t, bias, BIAS_T, IN_T)
    n_in, n_out = w.shape
    return BlockSparseDense('fc', OUT_T, weight_type=w_t, bias_type=BIAS_T, accum_type=acc, bias=bias, n_in=n_in,
                            n_out=n_out, block=block, kept_per_row=kpr, values=values, index=index)


def pairs(text: str):
    return [tuple(int(v) for v in p.split('x')) for p in text.split(',')]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--quick', action='store_true')
    ap.add_argument('--sizes', default='784x256,256x256')
    ap.add_argument('--drops', default='0.5,0.75,0.875')
    ap.add_argument('--rfs', default='16,32,64,128,256')
    ap.add_argument('--block', default='8x8')
    ap.add_argument('--wbits', type=int, default=4)
    ap.add_argument('--mask', default='cgs')
    ap.add_argument('--organisations', default=','.join(ORGANISATIONS))
    ap.add_argument('--family', default='xc7')
    ap.add_argument('--work', help='work folder (default bench/work/engine, and its subfolder <mask> for a mask other than cgs)')
    ap.add_argument('--replot', action='store_true', help='only print the table and redraw the plot from the JSON results')
    args = ap.parse_args()
    results = ROOT / 'bench' / 'results'
    stem = 'engine' if args.mask == 'cgs' else f'engine_{args.mask}'
    json_path, png_path = results / f'{stem}.json', results / f'{stem}.png'
    if args.replot:
        out = json.loads(json_path.read_text())
        report(out)
        json_path.write_text(json.dumps(out, indent=1))
        plot(out['rows'], png_path, out['mask'])
        return
    if args.quick:
        args.sizes, args.drops, args.rfs = '128x128', '0.75', '16,64'
    sizes, block = pairs(args.sizes), pairs(args.block)[0]
    drops, rfs = [float(d) for d in args.drops.split(',')], [int(r) for r in args.rfs.split(',')]
    orgs = args.organisations.split(',')
    default = ROOT / 'bench' / 'work' / 'engine'
    work = Path(args.work) if args.work else default if args.mask == 'cgs' else default / args.mask
    rng = np.random.default_rng(0)

    designs, tasks = {}, {}  # name -> (size, drop or None for dense, rf, organisation, schedule, layer)
    for n_in, n_out in sizes:
        w = rng.integers(-(1 << (args.wbits - 1)), 1 << (args.wbits - 1), (n_in, n_out))
        w[w == 0] = 1  # every kept weight non-zero: the dense engine multiplies by all of them
        bias = rng.integers(BIAS_T.min_code, BIAS_T.max_code + 1, n_out)
        grid = (n_in // block[0], n_out // block[1])
        variants = {None: make_layer(w, bias, np.ones(grid, bool), block, args.wbits)}
        for drop in drops:
            mask = make_block_mask(args.mask, 'fc', (n_in, n_out), block, drop, seed=1)
            variants[drop] = make_layer(w, bias, mask, block, args.wbits)
        for drop, lay in variants.items():
            for rf in rfs:
                for org in (['gather'] if drop is None else orgs):  # a dense engine has no reason to scatter
                    name = f'{n_in}x{n_out}_{"dense" if drop is None else f"d{drop:g}"}_rf{rf}_{org}'
                    try:
                        sched = schedule(lay, rf, org)
                    except ValueError as e:  # scatter needs RF | kept weights
                        console.print(f'[yellow]skipped[/] {name}: {e}')
                        continue
                    folder = work / name
                    folder.mkdir(parents=True, exist_ok=True)
                    (folder / 'engine.v').write_text(engine_verilog(sched, lay, IN_T))
                    designs[name] = ((n_in, n_out), drop, rf, org, sched, lay)
                    tasks[name] = partial(synthesize_files, [folder / 'engine.v'], 'engine', args.family, folder / 'synth')
    t0 = time.time()
    measured = in_parallel(tasks, f'yosys synth_xilinx -family {args.family}: {len(tasks)} engines')
    console.print(f'synthesized {len(tasks)} engines in {time.time() - t0:.0f} s')

    rows = []
    for name, (size, drop, rf, org, sched, lay) in designs.items():
        if drop is None:
            continue
        m = measured[name]
        dense_name = f'{size[0]}x{size[1]}_dense_rf{rf}_gather'
        d = measured.get(dense_name)
        density = lay.values.size / (size[0] * size[1])
        est = sched.logic_estimate(lay, IN_T)
        row = {'size': list(size), 'drop': drop, 'density': density, 'rf': rf, 'organisation': org,
               'multipliers': sched.n_mult, 'padding': sched.padding, **{k: m[k] for k in MEASURED},
               'estimate': {'lut': est['lut'], 'ff': est['ff']}, 'dense': {k: d[k] for k in MEASURED} if d else None}
        lf, dlf = m['lut'] + m['ff'], (d['lut'] + d['ff']) if d else None
        row['lut_ff_vs_dense'] = lf / dlf if dlf else None
        row['lut_ff_vs_limit'] = lf / (density * dlf) if dlf else None
        row['estimate_error'] = (est['lut'] + est['ff']) / lf - 1
        rows.append(row)
    out = {'family': args.family, 'mask': args.mask, 'block': list(block), 'wbits': args.wbits, 'input': IN_T.hls(),
           'output': OUT_T.hls(), 'rows': rows}
    report(out)
    results.mkdir(parents=True, exist_ok=True)
    out['rows'] = merged(json_path, out)
    json_path.write_text(json.dumps(out, indent=1))
    plot(out['rows'], png_path, out['mask'])  # every point measured so far, not only this run's
    console.print(f'wrote {json_path} and {png_path}')


def merged(path: Path, out: dict) -> list:
    """This run's rows, after the rows of earlier runs at other points (layer size, sparsity, RF,
    organisation) with the same bench settings: a grid measured in parts (784x256 after 256x256)
    accumulates in one file; a point measured again replaces its old row."""
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return out['rows']
    if any(old.get(k) != out[k] for k in ('family', 'mask', 'block', 'wbits', 'input', 'output')):
        return out['rows']
    key = lambda r: (tuple(r['size']), r['drop'], r['rf'], r['organisation'])  # noqa: E731
    new = {key(r) for r in out['rows']}
    return [r for r in old['rows'] if key(r) not in new] + out['rows']


def io_bits(r: dict) -> int:
    """The engine's input and output registers (x latched at start, y held for the caller): as many
    in the dense engine as in any sparse one, whatever the density."""
    return r['size'][0] * IN_T.width + r['size'][1] * OUT_T.width


def report(out: dict) -> None:
    rows = out['rows']
    for r in rows:
        r['core_vs_limit'] = r['io_floor'] = None
        if r['dense']:
            io, dense, density = io_bits(r), r['dense']['lut'] + r['dense']['ff'], r['density']
            # the logic inside the I/O registers, against the same of the dense engine x density
            r['core_vs_limit'] = (r['lut'] + r['ff'] - io) / (density * (dense - io))
            # LUT+FF / limit of an engine with these I/O registers whose core is exactly density x the dense core
            r['io_floor'] = (io + density * (dense - io)) / (density * dense)
    best = {}
    for r in rows:  # the cheapest organisation per point
        key = (tuple(r['size']), r['drop'], r['rf'])
        if key not in best or r['lut'] + r['ff'] < best[key]['lut'] + best[key]['ff']:
            best[key] = r
    block = out['block']
    t = Table(title=f"Time-multiplexed engine, measured by yosys synth_xilinx -family {out['family']} "
                    f"({out['mask']} masks, {block[0]}x{block[1]} blocks, {out['wbits']}-bit weights)")
    for c in ('layer', 'sparsity', 'RF', 'organisation', 'mult', 'pad', 'LUT', 'FF', 'CARRY', 'DSP', 'BRAM18', 'depth',
              'LUT+FF / dense', 'LUT+FF / limit', 'I/O floor', 'inside I/O regs / limit', 'est LUT+FF', 'est error'):
        t.add_column(c, justify='right')
    fmt = lambda v, f='.2f': '-' if v is None else format(v, f)  # noqa: E731
    for r in rows:
        t.add_row(f'{r["size"][0]}x{r["size"][1]}', f'{r["drop"]:.1%}', str(r['rf']), r['organisation'],
                  str(r['multipliers']), str(r['padding']), *(str(r[k]) for k in MEASURED),
                  fmt(r['lut_ff_vs_dense']), fmt(r['lut_ff_vs_limit']), fmt(r['io_floor']), fmt(r['core_vs_limit']),
                  str(r['estimate']['lut'] + r['estimate']['ff']),
                  f'{r["estimate_error"]:+.0%}', style='bold' if best[(tuple(r['size']), r['drop'], r['rf'])] is r else None)
    print_table(t, console)
    console.print('bold: the cheaper organisation (LUT+FF) at that point. limit = density x the dense engine (gather, '
                  'the same weights, every block kept); products are DSPs, so LUT+FF is the logic around the multipliers. '
                  '"inside I/O regs": the same ratio without the input and output registers (n_in x input bits + '
                  'n_out x output bits of FF), which every engine of the layer has whatever its density. "I/O floor": '
                  'LUT+FF / limit of an engine with those registers whose core is exactly density x the dense core; '
                  'only a core smaller than that gets below it.')


def plot(rows: list, path: Path, mask: str) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    sizes = sorted({tuple(r['size']) for r in rows})
    fig, axes = plt.subplots(1, len(sizes), figsize=(max(9, 6 * len(sizes)), 4.8), squeeze=False)
    for ax, size in zip(axes[0], sizes):
        for (org, drop) in sorted({(r['organisation'], r['drop']) for r in rows if tuple(r['size']) == size}):
            pts = sorted((r['rf'], r['lut_ff_vs_limit']) for r in rows if tuple(r['size']) == size and
                         r['organisation'] == org and r['drop'] == drop and r['lut_ff_vs_limit'])
            if pts:
                ax.plot(*zip(*pts), marker='o', linestyle='-' if org == 'gather' else '--', label=f'{org}, {drop:.1%} sparse')
        for drop in sorted({r['drop'] for r in rows if tuple(r['size']) == size}):
            floor = sorted({(r['rf'], r['io_floor']) for r in rows if tuple(r['size']) == size and r['drop'] == drop and r['io_floor']})
            if floor:  # what an engine whose core is exactly density x the dense core measures (report())
                ax.plot(*zip(*floor), marker='_', markersize=14, linestyle=':', color='grey', label=f'I/O floor, {drop:.1%} sparse')
        ax.axhline(TARGET, color='grey', linewidth=0.8)
        ax.axhline(1.0, color='black', linewidth=0.8)
        ax.set_xscale('log', base=2)
        ax.set_xlabel('ReuseFactor')
        ax.set_ylabel('LUT+FF / density limit')
        ax.set_title(f'{size[0]}x{size[1]}')
        ax.legend(fontsize=8)
    fig.suptitle(f'Sparse engine ({mask} masks) LUT+FF / (density x dense engine); 1.0 = scales with density, {TARGET} = target', fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == '__main__':
    main()
