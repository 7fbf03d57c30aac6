"""Benchmark: sparsity from another tool (TFMOT block pruning) vs CGS, deployed through the flow.

The Fashion-MNIST MLP of bench_fashion_methods (784-128-64-10, 4-bit hidden layers, 6-bit head,
input ap_ufixed<8,0>) trained two ways, the same epochs, optimizer (Adam 3e-3), batch (128) and seed:
- cgs: BlockSparseQDense, a random block mask fixed before training (bench_fashion_methods.build_cgs:
  16x16 blocks, 75% of fc1's and 50% of fc2's dropped);
- tfmot: the same layers as plain QDense wrapped in TFMOT's prune_low_magnitude with the CGS layer's
  block shape (block_size) and, as final sparsity, its drop rate, reached gradually (PolynomialDecay
  from 0 over the first 2/3 of the steps, UpdatePruningStep); the head is not pruned; strip_pruning.
Each model is saved as .h5 and deployed through the flow (run_flow .. estimate, rtl off), which finds
the TFMOT model's zero blocks itself (flow/export/found.py). Read from the flow's reports: the block
shape, density and index it found or was given (footprint), stored bits (footprint), multipliers
(estimate), reference == C simulation (verify). Hardware accuracy: the flow's integer reference
(what the C simulation and the board compute, bit for bit) on all 10,000 test images.

  --epochs 10 --seeds 3   (--quick: 2 epochs on 10,000 training images, one seed unless --seeds;
                           --report: the table and plot again from the JSON, nothing run)
Writes bench/results/tfmot_vs_cgs.{json,png} (--quick: tfmot_vs_cgs_quick.*), builds in bench/work/.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_fashion_methods import INPUT_PRECISION, build_cgs  # noqa: E402
from flow.infra import quiet  # noqa: E402,F401  (TensorFlow log silencing)
from flow.infra.progress import print_table  # noqa: E402

console = Console()
ARMS = ('tfmot', 'cgs')
BATCH, LEARNING_RATE = 128, 3e-3
# the same ReuseFactors for both arms (the low-bit built-in's): multipliers = kept weights / RF
LAYERS = {'fc1': {'reuse_factor': 196}, 'fc2': {'reuse_factor': 16}, 'logits': {'reuse_factor': 8, 'strategy': 'resource'}}
MASK_CONFIG = ('block_shape', 'drop_rate', 'mask_method', 'mask_seed', 'levels')  # BlockSparseQDense's own settings


def build_tfmot(cgs, total_steps: int):
    """``cgs`` with each BlockSparseQDense a QDense (same config and quantizers) in TFMOT's
    prune_low_magnitude: block_size = its block shape, gradual to its drop rate (PolynomialDecay, the mask
    updated every 1/15 of the steps up to 2/3 of them: the final sparsity is reached, then trained on)."""
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    from qkeras import QDense

    from keras_models.layers import BlockSparseQDense, custom_objects

    sparsity = tfmot.sparsity.keras
    frequency = max(1, 2 * total_steps // 30)
    end_step = 10 * frequency  # a multiple of the frequency: the last update prunes to the final sparsity
    x = inp = tf.keras.Input(cgs.input_shape[1:])
    for layer in cgs.layers[1:]:
        config = layer.get_config()
        if isinstance(layer, BlockSparseQDense):
            dense = QDense.from_config({k: v for k, v in config.items() if k not in MASK_CONFIG})
            schedule = sparsity.PolynomialDecay(0.0, layer.drop_rate, begin_step=0, end_step=end_step, frequency=frequency)
            x = sparsity.prune_low_magnitude(dense, pruning_schedule=schedule, block_size=tuple(layer.block_shape))(x)
        else:
            x = tf.keras.layers.deserialize({'class_name': type(layer).__name__, 'config': config},
                                            custom_objects=custom_objects())(x)
    return tf.keras.Model(inp, x)


def train(arm: str, seed: int, epochs: int, data, n_train: int | None, path: Path) -> float:
    """Train ``arm`` and save it to ``path`` (TFMOT: stripped); its float (QKeras) test accuracy."""
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot

    from flow.infra.progress import KerasProgress

    x, y = data.x_train[:n_train], data.y_train[:n_train]
    tf.keras.utils.set_random_seed(seed)
    model, _ = build_cgs(seed)
    callbacks = []
    if arm == 'tfmot':
        model = build_tfmot(model, epochs * -(-len(x) // BATCH))
        callbacks.append(tfmot.sparsity.keras.UpdatePruningStep())
    model.compile(tf.keras.optimizers.Adam(LEARNING_RATE), tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=['accuracy'])
    with KerasProgress(epochs, f'training {arm}, seed {seed}') as cb:
        model.fit(x, y, epochs=epochs, batch_size=BATCH, verbose=0, callbacks=[*callbacks, cb])
    accuracy = float(model.evaluate(data.x_test, data.y_test, verbose=0)[1])
    if arm == 'tfmot':
        model = tfmot.sparsity.keras.strip_pruning(model)
    model.save(path)
    return accuracy


@contextlib.contextmanager
def flow_output_to(log: Path):
    """The flow's step-by-step console output into ``log`` (as a sweep point's), not on the screen."""
    from flow.infra.progress import console as flow_console

    old = flow_console.file
    with open(log, 'w') as f:
        flow_console.file = f
        try:
            yield
        finally:
            flow_console.file = old


def deploy(model_path: Path, build: Path, seed: int, data, n_golden: int) -> dict:
    """run_flow .. estimate on the saved model; what its reports say, and the hardware accuracy."""
    from flow.config import FlowConfig
    from flow.runtime.fixed import FixedType
    from flow.steps import run_flow

    cfg = FlowConfig.load(None, model=str(model_path), data='fashion_mnist', input_precision=INPUT_PRECISION, rtl=False,
                          n_golden=n_golden, seed=seed, layers=LAYERS)
    build.mkdir(parents=True, exist_ok=True)
    with flow_output_to(build / 'flow.log'):
        ctx = run_flow(cfg, build, to_step='estimate')
    im = ctx.reference()
    in_t = FixedType.parse(INPUT_PRECISION)
    logits = im.predict_codes(in_t.from_float_exact(data.x_test, 'test images'))
    fp = json.loads((build / 'reference' / 'footprint.json').read_text())
    est = json.loads((build / 'reports' / 'estimate.json').read_text())
    verify = json.loads((build / 'reports' / 'verify.json').read_text())
    layers = {}
    for layer in im.layers:
        f = fp['layers'].get(layer.name)
        if f is None:
            continue
        found = f.get('found_sparsity')
        layers[layer.name] = {
            'kind': layer.kind, 'block': list(getattr(layer, 'block', ())) or None, 'density': f['density'],
            'weight_bits': f['weight_bits'], 'index_bits': f['index_bits'], 'total_bits': f['total_bits'],
            'multipliers': est['layers'][layer.name]['ours']['multipliers'],
            'found': None if found is None else {k: found[k] for k in ('block', 'density', 'pattern', 'deployed_sparse')}}
    return {'hw_accuracy': float(np.mean(np.argmax(logits, axis=1) == data.y_test)),
            'exact_csim': verify['reference_vs_csim']['exact'], 'n_golden': n_golden,
            'qkeras_vs_reference_exact': verify['qkeras_vs_reference'].get('all_layers_exact'),
            'stored_bits': fp['total']['total_bits'], 'index_bits': fp['total']['index_bits'],
            'weight_bits': fp['total']['weight_bits'], 'density': fp['total']['density'],
            'multipliers': est['total']['ours']['multipliers'], 'layers': layers}


def summarize(rows: list[dict]) -> dict:
    """Per arm: mean and sample standard deviation over the seeds of every figure compared."""
    out = {}
    for arm in ARMS:
        runs = [r for r in rows if r['arm'] == arm]
        if not runs:
            continue
        stats = {}
        for key in ('hw_accuracy', 'keras_accuracy', 'stored_bits', 'index_bits', 'multipliers', 'density'):
            v = np.array([r[key] for r in runs], dtype=float)
            stats[key] = {'mean': float(v.mean()), 'std': float(v.std(ddof=1)) if len(v) > 1 else 0.0}
        stats['blocks'] = sorted({' / '.join(_block(l) for l in r['layers'].values()) for r in runs})
        stats['exact_csim'] = all(r['exact_csim'] for r in runs)
        stats['seeds'] = len(runs)
        out[arm] = stats
    return out


def _block(layer: dict) -> str:
    return f"{layer['block'][0]}x{layer['block'][1]}" if layer['block'] else 'dense'


def _pm(s: dict, scale: float = 1.0, digits: int = 0) -> str:
    return f"{s['mean'] * scale:,.{digits}f} ± {s['std'] * scale:,.{digits}f}"


COLUMNS = ('arm', 'seeds', 'hardware accuracy, %', 'QKeras accuracy, %', 'stored bits', 'of which index', 'multipliers',
           'density', 'blocks fc1 / fc2 / logits', 'reference == C sim')
LEFT = ('arm', 'blocks fc1 / fc2 / logits', 'reference == C sim')


def table_rows(summary: dict) -> list[list[str]]:
    return [[arm, str(s['seeds']), _pm(s['hw_accuracy'], 100, 2), _pm(s['keras_accuracy'], 100, 2), _pm(s['stored_bits']),
             _pm(s['index_bits']), _pm(s['multipliers']), _pm(s['density'], 1, 3), ', '.join(s['blocks']),
             'exact' if s['exact_csim'] else 'MISMATCH'] for arm, s in summary.items()]


def markdown(rows: list[list[str]]) -> str:
    lines = ['| ' + ' | '.join(COLUMNS) + ' |', '|' + ''.join('---|' if c in LEFT else '---:|' for c in COLUMNS)]
    return '\n'.join(lines + ['| ' + ' | '.join(r) + ' |' for r in rows])


def plot(rows: list[dict], summary: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for arm, color in zip(summary, ('tab:orange', 'tab:blue')):
        runs = [r for r in rows if r['arm'] == arm]
        ax.scatter([r['stored_bits'] / 1000 for r in runs], [100 * r['hw_accuracy'] for r in runs], s=25, alpha=0.5,
                   color=color, label=f'{arm}, per seed')
        s = summary[arm]
        ax.errorbar(s['stored_bits']['mean'] / 1000, 100 * s['hw_accuracy']['mean'], xerr=s['stored_bits']['std'] / 1000,
                    yerr=100 * s['hw_accuracy']['std'], fmt='D', ms=8, capsize=4, color=color,
                    label=f"{arm}, mean ± std ({s['multipliers']['mean']:,.0f} multipliers)")
    ax.set_xlabel('stored bits (weights, index, biases), thousands')
    ax.set_ylabel('hardware test accuracy, %')
    ax.set_title(title.replace(': ', ':\n', 1) + '\naccuracy: the integer reference (= C simulation) on 10,000 test images',
                 fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(seeds, epochs: int, n_train: int | None, n_golden: int, work: Path) -> list[dict]:
    """Per seed, both arms: train, save, deploy through the flow; one row each."""
    from rich.progress import Progress

    from flow.data.datasets import load

    rows = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task('deploying through the flow', total=len(seeds) * len(ARMS))
        for seed in seeds:
            data = load('fashion_mnist', seed)
            for arm in ARMS:
                folder = work / f'{arm}_seed{seed}'
                folder.mkdir(parents=True, exist_ok=True)
                keras_acc = train(arm, seed, epochs, data, n_train, folder / 'model.h5')
                progress.update(task, description=f'{arm}, seed {seed}: run_flow .. estimate')
                rows.append({'arm': arm, 'seed': seed, 'keras_accuracy': keras_acc,
                             **deploy(folder / 'model.h5', folder / 'build', seed, data, n_golden)})
                progress.advance(task)
    return rows


def report(result: dict, path: Path) -> None:
    """The table (printed, and as markdown), the JSON and the PNG of ``result``."""
    rows, epochs = result['rows'], result['epochs']
    summary = summarize(rows)
    title = (f'Fashion-MNIST MLP 784-128-64-10, 4-bit, 16x16 blocks, 75% / 50%: TFMOT vs CGS, {epochs} epochs, '
             f"{len({r['seed'] for r in rows})} seed(s)")
    t = Table(title=title + ' (mean ± std over seeds)')
    for c in COLUMNS:
        t.add_column(c, justify='left' if c in LEFT else 'right')
    body = table_rows(summary)
    for r in body:
        t.add_row(*r)
    print_table(t, console)
    console.print('hardware accuracy: the flow\'s integer reference (= C simulation = board, bit for bit) on all 10,000 '
                  'test images; stored bits and density from the footprint, multipliers from the estimate '
                  '(ReuseFactors ' + ', '.join(f"{k} {v['reuse_factor']}" for k, v in LAYERS.items()) + ')', soft_wrap=True)
    result.update(summary=summary, markdown=markdown(body))
    path.with_suffix('.json').write_text(json.dumps(result, indent=1))
    plot(rows, summary, path.with_suffix('.png'), title)
    console.print(result['markdown'], highlight=False, soft_wrap=True)
    console.print(f'wrote {path}.json and .png')


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--epochs', type=int, default=10)
    ap.add_argument('--seeds', type=int, default=None, help='seeds 0 .. N-1 (default 3; --quick 1)')
    ap.add_argument('--n-golden', type=int, default=256, help='golden vectors the verify step compares exactly')
    ap.add_argument('--quick', action='store_true', help='2 epochs on 10,000 training images (a smoke run)')
    ap.add_argument('--report', action='store_true', help='redraw the table and plot from the JSON, run nothing')
    args = ap.parse_args()
    name = 'tfmot_vs_cgs_quick' if args.quick else 'tfmot_vs_cgs'
    path = ROOT / 'bench' / 'results' / name
    if args.report:
        if not path.with_suffix('.json').is_file():
            ap.error(f'{path}.json does not exist: run the bench first')
        return report(json.loads(path.with_suffix('.json').read_text()), path)
    seeds = range(args.seeds or (1 if args.quick else 3))
    epochs, n_train = (2, 10000) if args.quick else (args.epochs, None)
    work = ROOT / 'bench' / 'work' / name
    rows = run(seeds, epochs, n_train, args.n_golden, work)
    path.parent.mkdir(parents=True, exist_ok=True)
    report({'args': vars(args), 'epochs': epochs, 'n_train': n_train, 'layers': LAYERS, 'rows': rows}, path)
    console.print(f'builds in {work}')


if __name__ == '__main__':
    main()
