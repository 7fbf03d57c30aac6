"""Benchmark: the same sweep points run one after another in this process (no Ray: the baseline) and
as a sweep on Ray - a local Ray with 1 and with 2 workers, and a two-node Ray cluster on localhost
(``ray start --head`` + a worker node, one CPU each) joined with ``--address`` - each into a fresh
folder, so every point trains and builds.

Prints wall time per mode, the speed-up against the sequential baseline measured in this run, and
Ray's overhead per point with one worker ((Ray 1 - sequential) / points). Writes
bench/results/sweep.json.

  --points 4        the default model (digits_mlp), drop rate x weight bits, 2 epochs, up to estimate
  --quick           2 points, no cluster run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

AXES = {'model_params.drop_rate': [0.5, 0.75, 0.625, 0.875], 'model_params.weight_bits': [3, 4]}


def spec_for(n_points: int):
    from flow.sweep.spec import SweepSpec

    drops = AXES['model_params.drop_rate'][: max(1, n_points // 2)]
    bits = AXES['model_params.weight_bits'][: 1 if n_points == 1 else 2]
    return SweepSpec.parse({'name': 'bench', 'base': {'model': 'digits_mlp', 'epochs': 2, 'rtl': False, 'n_golden': 64},
                            'axes': {'model_params.drop_rate': drops, 'model_params.weight_bits': bits}})


def sequential(spec, out: Path) -> float:
    """The baseline: every point's flow in this process, one after another (what a shell loop does)."""
    from flow.sweep.points import expand
    from flow.sweep.tasks import run_point

    t0 = time.time()
    for p in expand(spec):
        outcome = run_point(p.config, str(out / p.key), spec.steps)
        if outcome['exit_code'] != 0:
            raise SystemExit(f'point {p.label} failed: {outcome["error"]}')
    return time.time() - t0


def on_ray(spec, out: Path, num_cpus: int | None = None, address: str | None = None) -> float:
    from flow.sweep import run_sweep

    t0 = time.time()
    result = run_sweep(spec, out, num_cpus=num_cpus, address=address, plots=False)
    if result.failed:
        raise SystemExit(f'{len(result.failed)} points failed: {result.failed[0]["error"]}')
    return time.time() - t0


def two_node_cluster(spec, out: Path) -> float:
    """A head and a worker node on localhost (one CPU each), the sweep joined with --address."""
    ray = str(Path(sys.executable).parent / 'ray')
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    env = {**os.environ, 'RAY_AUTH_MODE': 'disabled',
           'PYTHONPATH': os.pathsep.join([str(ROOT), *filter(None, os.environ.get('PYTHONPATH', '').split(os.pathsep))])}
    local = ['--node-ip-address', '127.0.0.1', '--num-cpus', '1', '--disable-usage-stats']
    try:
        subprocess.run([ray, 'start', '--head', '--port', str(port), '--include-dashboard=false', *local], env=env,
                       check=True, capture_output=True)
        subprocess.run([ray, 'start', '--address', f'127.0.0.1:{port}', *local], env=env, check=True, capture_output=True)
        t0 = time.time()
        r = subprocess.run([sys.executable, '-m', 'flow.cli', 'sweep', str(out / 'bench.yaml'), '--out', str(out),
                            '--address', f'127.0.0.1:{port}', '--no-plots'], env=env, cwd=ROOT, capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f'cluster sweep failed:\n{r.stderr[-2000:]}')
        return time.time() - t0
    finally:
        subprocess.run([ray, 'stop', '--force'], env=env, capture_output=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--points', type=int, default=4)
    ap.add_argument('--quick', action='store_true')
    args = ap.parse_args()
    n = 2 if args.quick else args.points
    spec = spec_for(n)
    from flow.sweep.points import expand

    n = len(expand(spec))
    console = Console()
    console.print(f'{n} points of digits_mlp (2 epochs, train .. estimate) on {os.cpu_count()} cores')
    root = Path(tempfile.mkdtemp(prefix='bench_sweep_'))
    times, load = {}, [os.getloadavg()[0]]  # other work on the machine skews every ratio: recorded with them
    try:
        times['sequential (no Ray)'] = sequential(spec, root / 'seq')
        times['Ray, 1 worker'] = on_ray(spec, root / 'ray1', num_cpus=1)
        times['Ray, 2 workers'] = on_ray(spec, root / 'ray2', num_cpus=2)
        if not args.quick:
            import yaml

            (root / 'cluster').mkdir()
            (root / 'cluster' / 'bench.yaml').write_text(yaml.safe_dump(spec.model_dump(mode='json')))
            times['Ray cluster, 2 nodes x 1 CPU'] = two_node_cluster(spec, root / 'cluster')
    finally:
        shutil.rmtree(root, ignore_errors=True)
    load.append(os.getloadavg()[0])
    base = times['sequential (no Ray)']
    table = Table(title=f'the same {n} sweep points, sequential vs Ray')
    for c in ('mode', 'wall s', 'speed-up vs sequential', 's per point'):
        table.add_column(c, justify='left' if c == 'mode' else 'right')
    for mode, t in times.items():
        table.add_row(mode, f'{t:.1f}', f'{base / t:.2f}x', f'{t / n:.1f}')
    console.print(table)
    overhead = (times['Ray, 1 worker'] - base) / n
    console.print(f"Ray's overhead per point with one worker: {overhead:+.1f} s (start-up of Ray included)")
    if max(load) > 0.5 * os.cpu_count():
        console.print(f'[yellow]the machine was busy with other work (1-minute load average {load[0]:.1f} at the start, '
                      f'{load[1]:.1f} at the end, {os.cpu_count()} cores): the ratios understate what Ray gains on an idle one[/]')
    out = ROOT / 'bench' / 'results' / 'sweep.json'
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({'points': n, 'cores': os.cpu_count(), 'seconds': times,
                               'speedup': {m: base / t for m, t in times.items()}, 'overhead_per_point_s': overhead,
                               'load_average_1min': {'start': load[0], 'end': load[1]}}, indent=1))
    console.print(f'wrote {out}')


if __name__ == '__main__':
    main()
