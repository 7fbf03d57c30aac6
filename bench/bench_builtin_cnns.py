"""Benchmark: the built-in CNNs against the same networks dense in float.

keywords_dscnn (a depthwise-separable keyword CNN, CGS pointwise convolutions) and fashion_resnet (a
small ResNet, CGS convolutions in its residual blocks), each run through the flow (train .. estimate:
`run_flow`, resumable, so a finished build folder is read, not redone), and each one's float twin: the
same layers as plain Keras Conv2D / DepthwiseConv2D / Dense / ReLU (no quantizer, no mask), trained the
same way (the built-in's epochs, batch size, learning rate and seed, on the same data on the same input
grid). Per model:
- accuracy: the float model's own; the built-in's is the hardware's, the integer reference (what the C
  simulation and the board compute, bit for bit) on every test sample, its logits checked equal to
  QKeras' code for code; the verify step's C simulation == reference on its golden vectors is required;
- memory: every stored bit (the flow's footprint: kept weights, channel index, biases) against the
  float twin's float32 parameters;
- estimate (the flow's estimate step, the built-in's io type and ReuseFactors, PYNQ-Z2): DSPs (the
  LSTM's cell and hidden products too, beside its MAC's multipliers), interval and latency in cycles
  per sample (io_parallel: the interval is the latency plus the transfer), the board verdict.

  --models keywords_dscnn,fashion_resnet --seeds 3 --builds bench/work/builtin_cnns
  (--models takes any built-in whose layers have a float twin, e.g. keywords_hcgs_lstm: its files are
  then bench/results/builtins_<models>.*)
Seed s (the built-in's ``seed``: its masks, initial weights and data order, and the twin's) builds in
<builds>/seed<s>/<model>; each finished (seed, model) pair's rows are kept beside it (<model>.json)
and reused by a rerun, so seeds can be added one at a time. Accuracies are the mean and the sample
standard deviation over the seeds (bench/seeds.py).
Writes bench/results/builtin_cnns.{json,md,png}: the JSON has every seed's rows and, per model,
{"float": {"mean", "spread"}, "builtin": {"mean", "spread", "x_smaller_f32"}} (fractions); the .md
is the README's table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flow.infra import quiet  # noqa: E402,F401  (TensorFlow log silencing)
from flow.infra.progress import print_table  # noqa: E402

console = Console()
MODELS = ('keywords_dscnn', 'fashion_resnet')
LABELS = {'keywords_dscnn': 'CGS 2x pointwise, 4-bit', 'fashion_resnet': 'CGS 2x, 4-bit',
          'keywords_hcgs_lstm': 'HCGS 16x, 6-bit'}  # the README's rows


def builtin_data(cfg, model):
    """The data the flow trains and verifies the built-in on (on its input grid, in its input shape)."""
    from flow.data.datasets import for_model
    from flow.runtime.fixed import FixedType

    in_t = FixedType.parse(cfg.input_precision)
    data, _ = for_model(cfg.dataset, cfg.seed, in_t, tuple(model.input_shape[1:]), tuple(model.output_shape[1:]))
    return data, in_t


def run_float(name, cfg, data):
    """The built-in's float twin (flow.training.float_twin), He-initialized: with Keras' Glorot default
    the float DS-CNN's activations shrank about 5x per layer through the depthwise convolutions (no
    BatchNormalization) and it never learned (10% after 100 epochs, seed 0); trained with the
    built-in's recipe (flow.training.fit)."""
    import tensorflow as tf

    from flow.training import Recipe, fit, float_twin
    from keras_models import get

    tf.keras.utils.set_random_seed(cfg.seed)  # as the train step: the seed, then the build
    model = float_twin(get(name).build(cfg.seed, **cfg.model_params), kernel_initializer='he_uniform')
    t0 = time.perf_counter()
    fit(model, data.x_train, data.y_train, Recipe.from_config(cfg).replace(distill=False), name=f'{name} float twin')
    seconds = time.perf_counter() - t0
    acc = float(model.evaluate(data.x_test, data.y_test, verbose=0, batch_size=500)[1])
    params = int(sum(np.prod(w.shape) for w in model.get_weights()))
    return {'model': f'{name} float twin', 'builtin': name, 'kind': 'float', 'accuracy': acc,
            'accuracy_source': 'Keras float32', 'stored_bits': 32 * params, 'params': params, 'train_seconds': seconds}


def run_builtin(name, cfg, build_dir, data, in_t):
    """The flow to the estimate, then the hardware's accuracy on every test sample."""
    from flow.stages.verify import qkeras_outputs, to_codes
    from flow.steps import run_flow
    from keras_models.layers import load_model

    t0 = time.perf_counter()
    ctx = run_flow(cfg, build_dir, to_step='estimate')
    flow_seconds = time.perf_counter() - t0
    reports = build_dir / 'reports'
    verify = json.loads((reports / 'verify.json').read_text())
    assert verify['reference_vs_csim']['exact'], f'{name}: C simulation != reference: {verify["reference_vs_csim"]}'
    est = json.loads((reports / 'estimate.json').read_text())['total']
    fp = json.loads((build_dir / 'reference' / 'footprint.json').read_text())['total']
    im = ctx.reference()
    x_codes = in_t.from_float_exact(data.x_test, 'test samples').reshape(len(data.x_test), -1)
    ref = im.predict_codes(x_codes)  # in batches
    model = load_model(build_dir / 'train' / 'model.h5')
    last = im.layers[-1]
    q = to_codes(qkeras_outputs(model, im, in_t.to_float(x_codes))[last.name], last.out_type.frac)
    differ = np.flatnonzero(np.any(q.reshape(ref.shape) != ref, axis=1))
    assert not len(differ), f'{name}: QKeras and the reference differ on {len(differ)} test samples (first {differ[0]})'
    o = est['ours']
    return {'model': name, 'builtin': name, 'kind': 'built-in', 'accuracy': float(np.mean(ref.argmax(1) == data.y_test)),
            'accuracy_source': 'integer reference (= C simulation = board), = QKeras code for code',
            'csim_golden': verify['reference_vs_csim'], 'stored_bits': fp['total_bits'], 'weight_bits': fp['weight_bits'],
            'index_bits': fp['index_bits'], 'bias_bits': fp['bias_bits'], 'density': fp['density'],
            'multipliers': o['multipliers'], 'dsp': est['fit']['dsp'], 'interval': o['interval'],
            'slowest_layer': o.get('slowest_layer'), 'latency': o['cycles'], 'board': est['board'], 'fits': est['fits'],
            'fit': est['fit'], 'reuse_factors': {n: lc.reuse_factor for n, lc in cfg.layers.items()},
            'flow_seconds': flow_seconds, 'build_dir': str(build_dir)}


def one_seed(name: str, seed: int, builds: Path) -> list[dict]:
    """The float twin's row and the built-in's for one seed, kept in <builds>/seed<seed>/<name>.json
    (a finished pair is read, not redone; the build folder beside it is resumable)."""
    from flow.config import FlowConfig
    from keras_models import get

    folder = builds / f'seed{seed}'
    cache = folder / f'{name}.json'
    if cache.exists():
        console.print(f'{name}, seed {seed}: reusing {cache}')
        return json.loads(cache.read_text())
    cfg = FlowConfig.load(None, model=name, seed=seed)
    data, in_t = builtin_data(cfg, get(name).build(cfg.seed, **cfg.model_params))
    rows = [run_float(name, cfg, data), run_builtin(name, cfg, folder / name, data, in_t)]
    for r in rows:
        r['seed'], r['n_test'] = seed, len(data.y_test)
        r['x_smaller_than_float32'] = rows[0]['stored_bits'] / r['stored_bits']
    folder.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(rows, indent=1))
    return rows


def summary(rows: list[dict]) -> dict:
    """Per model: the float twin's and the built-in's accuracy over the seeds (fractions)."""
    from bench.seeds import mean_spread

    out = {}
    for name in dict.fromkeys(r['builtin'] for r in rows):
        mine = [r for r in rows if r['builtin'] == name]
        built = [r for r in mine if r['kind'] == 'built-in']
        out[name] = {'float': mean_spread([r['accuracy'] for r in mine if r['kind'] == 'float']),
                     'builtin': {**mean_spread([r['accuracy'] for r in built]),
                                 'x_smaller_f32': float(np.mean([r['x_smaller_than_float32'] for r in built]))}}
    return out


def entries(rows: list[dict], summ: dict):
    """Per model, its float twin then the built-in: (name, built-in?, its rows by seed, accuracy summary,
    points vs float or None), what the table, the README's table and the plot show."""
    for name, s in summ.items():
        for kind, key in (('float', 'float'), ('built-in', 'builtin')):
            mine = sorted((r for r in rows if r['builtin'] == name and r['kind'] == kind), key=lambda r: r['seed'])
            hw = kind == 'built-in'
            yield name, hw, mine, s[key], 100 * (s[key]['mean'] - s['float']['mean']) if hw else None


def markdown(rows: list[dict], summ: dict) -> str:
    """The README's table: per model its float twin and the built-in, mean +- sd over the seeds; the
    memory and the estimate are the same in every seed (the masks keep the same number of blocks)."""
    head = ['model', 'test accuracy (mean +- sd)', 'per seed', 'vs float (points)', 'stored bits', 'x smaller than float32',
            'DSPs (PYNQ-Z2: 220)', 'interval / latency (cycles)', 'PYNQ-Z2']
    lines = ['| ' + ' | '.join(head) + ' |', '|---|' + '---:|' * (len(head) - 2) + '---|']
    for name, hw, mine, acc, gap in entries(rows, summ):
        r = mine[0]
        label = f'`{name}` float twin' if not hw else f'`{name}` ({LABELS.get(name, "built-in")})'
        lines.append('| ' + ' | '.join([
            label, f"{100 * acc['mean']:.2f}% +- {100 * acc['spread']:.2f}", ', '.join(f"{100 * m['accuracy']:.2f}" for m in mine),
            f'{gap:+.2f}' if hw else '', f"{r['stored_bits']:,}", f"{r['x_smaller_than_float32']:.1f}",
            str(r['dsp']['used']) if hw else '', f"{r['interval']:,} / {r['latency']:,}" if hw else '',
            ('fits' if r['fits'] else 'does not fit') if hw else '']) + ' |')
    return '\n'.join(lines)


def plot(rows, summ, path: Path) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(7, 4.5))
    n_seeds = len({r['seed'] for r in rows})
    pts: dict[str, list] = {}
    for name, hw, mine, acc, _ in entries(rows, summ):
        pts.setdefault(name, []).append((mine[0]['stored_bits'] / 8192, 100 * acc['mean'], 100 * acc['spread'],
                                         'built-in' if hw else 'float'))
    for (name, pts), color in zip(pts.items(), ('tab:blue', 'tab:orange', 'tab:green', 'tab:red')):
        ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], fmt='o--', capsize=4, color=color,
                    label=name)
        for x, y, _, kind in pts:
            ax.annotate(kind, (x, y), textcoords='offset points', xytext=(5, 4), fontsize=8)
    ax.set_xscale('log')
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel('stored memory (index and biases included), KiB, log scale')
    ax.set_ylabel('test accuracy, % (mean +- sd)')
    ax.grid(True, which='both', alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"Built-ins (the hardware's accuracy) vs the same networks dense in float32, {n_seeds} seed(s)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--models', default=','.join(MODELS))
    ap.add_argument('--builds', type=Path, default=ROOT / 'bench' / 'work' / 'builtin_cnns',
                    help='seed<s>/<model> build folders and their rows under it (a finished one is read, not redone)')
    ap.add_argument('--seeds', type=int, default=3, help='seeds 0 .. N-1')
    args = ap.parse_args()
    t_start = time.perf_counter()
    rows = [r for seed in range(args.seeds) for name in args.models.split(',') for r in one_seed(name, seed, args.builds)]
    summ = summary(rows)

    t = Table(title=f'Built-ins vs the same networks dense in float (mean +- sd over {args.seeds} seed(s); estimate: '
                    "the built-ins' io types and ReuseFactors)")
    for c in ('model', 'test accuracy', 'per seed', 'vs float (points)', 'test samples', 'stored bits', 'x smaller than float32',
              'DSPs', 'interval (cycles)', 'latency (cycles)', 'fits'):
        t.add_column(c, justify='right')
    for name, hw, mine, acc, gap in entries(rows, summ):
        r = mine[0]
        t.add_row(r['model'], f"{100 * acc['mean']:.2f}% +- {100 * acc['spread']:.2f}", ', '.join(f"{100 * m['accuracy']:.2f}" for m in mine),
                  f'{gap:+.2f}' if hw else '', str(r['n_test']), f"{r['stored_bits']:,}", f"{r['x_smaller_than_float32']:.1f}",
                  f"{r['dsp']['used']} / {r['dsp']['available']}" if hw else '-', str(r['interval']) if hw else '-',
                  str(r['latency']) if hw else '-', (f"{r['board']}: " + ('fits' if r['fits'] else 'does not fit')) if hw else '-')
    print_table(t, console)
    console.print('Built-in accuracy is the hardware\'s (integer reference = C simulation = board, equal to QKeras code '
                  'for code on every test sample); the float twins are not deployable as they are.', soft_wrap=True)

    results = ROOT / 'bench' / 'results'
    results.mkdir(parents=True, exist_ok=True)
    total = time.perf_counter() - t_start
    # other built-ins than the two CNNs (any built-in with a float twin: --models keywords_hcgs_lstm) write their own files
    name = 'builtin_cnns' if args.models == ','.join(MODELS) else 'builtins_' + args.models.replace(',', '_')
    (results / f'{name}.json').write_text(json.dumps(
        {'args': {k: str(v) for k, v in vars(args).items()}, 'seeds': list(range(args.seeds)),
         'spread': 'sample standard deviation over the seeds (ddof 1)', 'summary': summ, 'rows': rows, 'seconds': total},
        indent=1))
    (results / f'{name}.md').write_text(markdown(rows, summ) + '\n')
    plot(rows, summ, results / f'{name}.png')
    console.print(f'wrote {results / name}.json, .md and .png ({total:.0f} s)')


if __name__ == '__main__':
    main()
