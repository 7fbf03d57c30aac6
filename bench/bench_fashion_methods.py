"""Benchmark: accuracy vs memory of every compression method on one Fashion-MNIST MLP, over seeds.

The same architecture (784-128-64-10, as the built-in Fashion-MNIST models; each method compresses
it its own way) trained the same way: the flow's training recipe (flow/training.py, the Fashion-MNIST
built-ins' FLOW_DEFAULTS: epochs, batch, Adam with warm-up + cosine, and their distillation setting:
off, since over 3 seeds it cost accuracy; --distill turns it on), per method:
- float: the methods' float twin (plain Keras Dense/ReLU, float32), trained with the same budget and
  schedule; it is the teacher when the others distil (a float model is its own teacher: never distilled);
- cgs: BlockSparseQDense, 4-bit weights, 16x16 blocks, 62.5% / 50% dropped, 6-bit head (>= 16x vs float32);
- hcgs: BlockSparseQDense with two levels (16x32 then 4x4 blocks, 50% / 25% dropped in fc1; 32x16 then
  4x4, 50% / 25% in fc2), 4-bit weights, 6-bit head (>= 16x);
- sst, binary, lowbit: the built-in models keras_models/builtin/fashion_{sst,binary,lowbit}_mlp.
Accuracy of the deployable methods is the hardware's: the integer reference (what the C simulation
and the board compute, bit for bit) on all 10,000 test images. Memory is every stored bit
(flow/stages/footprint.py: weights or codewords, index, scales, biases) against the float32 model.

  --seeds 3 --methods float,cgs,hcgs,sst,binary,lowbit [--epochs E] [--distill | --no-distill] [--lr-schedule constant]
  [--params sst:prune_fraction=0.5] (a built-in method's build() parameter)
  (a recipe or parameter other than the built-ins' writes fashion_methods_<setting><value>.*)
  (--quick: 1 seed, 1 epoch on 10,000 training images: a smoke run)
Writes bench/results/fashion_methods.{json,png,md} (fashion_methods_quick.* for --quick). The JSON:
{"float": {"mean", "spread"}, "methods": {name: {"mean", "spread", "x_smaller_f32"}}, ...} with
accuracies as fractions, spread the sample standard deviation over the seeds (bench/seeds.py), and
the per-seed rows under "rows"; the .md is the README's table.
"""

from __future__ import annotations

import argparse
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

from flow.infra import quiet  # noqa: E402,F401  (TensorFlow log silencing)
from flow.infra.progress import print_table  # noqa: E402

console = Console()
HIDDEN = (128, 64)
INPUT_PRECISION = 'ap_ufixed<8,0>'  # Fashion-MNIST pixels k/256, exactly
PAPERS = ('publications: SST 32x smaller than float32 (Boo and Sung); 3-bit weights with 8x structured compression '
          '98.4% on MNIST (Yin et al.) - Fashion-MNIST is a harder task, compare with our own float baseline')


def _head(x):
    from qkeras import QDense, quantized_bits

    return QDense(10, kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=quantized_bits(8, 3, alpha=1),
                  name='logits')(x)


def _mlp(seed, layer):
    """784 -> hidden (``layer(k, units)``, each with quantized_relu(6, 2)) -> 6-bit head."""
    import tensorflow as tf
    from qkeras import QActivation, quantized_relu

    inp = tf.keras.Input((784,), name='pixels')
    x = inp
    for k, units in enumerate(HIDDEN, start=1):
        x = layer(k, units)(x)
        x = QActivation(quantized_relu(6, 2), name=f'relu{k}')(x)
    return tf.keras.Model(inp, _head(x)), INPUT_PRECISION


def build_cgs(seed):
    from qkeras import quantized_bits

    from keras_models.layers import BlockSparseQDense

    drops = {1: 0.625, 2: 0.5}  # fc1 keeps 3 of 8 16x16 blocks per block-row, fc2 2 of 4
    return _mlp(seed, lambda k, units: BlockSparseQDense(
        units, block_shape=(16, 16), drop_rate=drops[k], mask_seed=seed * 10 + k, kernel_quantizer=quantized_bits(4, 0, alpha=1),
        bias_quantizer=quantized_bits(8, 3, alpha=1), name=f'fc{k}'))


def build_hcgs(seed):
    from qkeras import quantized_bits

    from keras_models.layers import BlockSparseQDense

    levels = {1: [((16, 32), 0.5), ((4, 4), 0.25)], 2: [((32, 16), 0.5), ((4, 4), 0.25)]}  # density 0.375 each
    return _mlp(seed, lambda k, units: BlockSparseQDense(
        units, levels=levels[k], mask_seed=seed * 10 + k, kernel_quantizer=quantized_bits(4, 0, alpha=1),
        bias_quantizer=quantized_bits(8, 3, alpha=1), name=f'fc{k}'))


BUILTIN_METHODS = {'sst': 'fashion_sst_mlp', 'binary': 'fashion_binary_mlp', 'lowbit': 'fashion_lowbit_mlp'}
LABELS = {'float': 'float (Keras, float32)', 'cgs': 'CGS, 4-bit, 16x16 blocks, 62.5% / 50% dropped',
          'hcgs': 'HCGS, 4-bit, 16x32 / 4x4 and 32x16 / 4x4 blocks, 50% / 25% dropped',
          'sst': 'SST (8, 2), po2 scale per neuron', 'binary': 'binary, 8x8 blocks, 50% dropped',
          'lowbit': '3-bit, 8x structured (1/8 of 4x4 blocks kept)'}


PARAMS = {}  # a built-in method's build() parameters (--params sst:prune_fraction=0.5)


def _builtin(name):
    def build(seed):
        from keras_models import get

        module = get(name)
        return module.build(seed, **PARAMS.get(name, {})), module.INPUT_PRECISION

    return build


METHODS = {'float': None, 'cgs': build_cgs, 'hcgs': build_hcgs, **{m: _builtin(b) for m, b in BUILTIN_METHODS.items()}}


def run_float(seed, data, recipe):
    """The methods' float twin, trained with the same recipe and no distillation: the teacher itself."""
    from flow.training import float_teacher

    model, folder, cached = float_teacher(build_cgs(seed)[0], data.x_train, data.y_train, recipe, name='float')
    acc = float(model.evaluate(data.x_test, data.y_test, verbose=0, batch_size=1000)[1])
    bits = 32 * int(sum(np.prod(w.shape) for w in model.get_weights()))
    return {'method': 'float', 'seed': seed, 'accuracy': acc, 'keras_accuracy': acc, 'total_bits': bits, 'float32_bits': bits,
            'source': 'Keras float32', 'teacher': str(folder), 'teacher_cached': cached}


def run_method(name, seed, data, recipe):
    import tensorflow as tf

    from flow.export import to_integer_model
    from flow.runtime.fixed import FixedType
    from flow.stages.footprint import footprint
    from flow.training import fit

    if name == 'float':
        return run_float(seed, data, recipe)
    tf.keras.utils.set_random_seed(seed)
    model, precision = METHODS[name](seed)
    info = fit(model, data.x_train, data.y_train, recipe, name=f'{name}, seed {seed}',
               note=lambda text: console.print(f'[yellow]note:[/] {text}', soft_wrap=True))
    keras_acc = float(model.evaluate(data.x_test, data.y_test, verbose=0, batch_size=1000)[1])
    in_t = FixedType.parse(precision)
    im = to_integer_model(model, in_t)
    logits = im.predict_codes(in_t.from_float_exact(data.x_test, 'test images'))
    fp = footprint(im)['total']
    return {'method': name, 'seed': seed, 'accuracy': float(np.mean(np.argmax(logits, axis=1) == data.y_test)),
            'keras_accuracy': keras_acc, 'total_bits': fp['total_bits'], 'float32_bits': fp['dense_float32_bits'],
            'index_bits': fp['index_bits'], 'weight_bits': fp['weight_bits'], 'distilled_from': info['distilled_from'],
            'source': 'integer reference (= C simulation = board)'}


def plot(summary, bits, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    points = [('float', summary['float'], 1.0)] + [(m, s, s['x_smaller_f32']) for m, s in summary['methods'].items()]
    for i, (name, s, ratio) in enumerate(points):
        kib = bits[name] / 8 / 1024
        ax.errorbar(kib, 100 * s['mean'], yerr=100 * s['spread'], fmt='o', capsize=3)
        ax.annotate(f'{name} ({ratio:.1f}x)', (kib, 100 * s['mean']), textcoords='offset points',
                    xytext=(6, 4 if i % 2 else -10), fontsize=9)  # alternate: methods of equal size sit on one spot
    ax.set_xscale('log')
    ax.set_xlabel('stored memory (index, codewords, scales, biases included), KiB, log scale')
    ax.set_ylabel('test accuracy, % (mean +- sd over seeds)')
    ax.set_title(title, fontsize=10)
    ax.grid(True, which='both', alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    from dataclasses import replace

    from bench.seeds import markdown, summarize
    from flow.config import FlowConfig
    from flow.data.datasets import load
    from flow.training import Recipe

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--seeds', type=int, default=3, help='seeds 0 .. N-1')
    ap.add_argument('--epochs', type=int, default=None, help="default: the Fashion-MNIST built-ins' epochs")
    ap.add_argument('--methods', default=','.join(METHODS))
    ap.add_argument('--distill', action=argparse.BooleanOptionalAction, default=None,
                    help="distil from the float twin (default: the built-ins' setting)")
    ap.add_argument('--lr-schedule', choices=('warmup_cosine', 'constant'), default=None)
    ap.add_argument('--params', default='', help="a built-in method's parameters, e.g. 'sst:prune_fraction=0.5' "
                                                 '(results then go to fashion_methods_<param><value>.*)')
    ap.add_argument('--quick', action='store_true', help='1 seed, 1 epoch on 10,000 training images (a smoke run)')
    args = ap.parse_args()
    for item in filter(None, args.params.split(',')):
        method, _, kv = item.partition(':')
        key, _, value = kv.partition('=')
        PARAMS.setdefault(BUILTIN_METHODS[method], {})[key] = json.loads(value)
    methods = [m.strip() for m in args.methods.split(',') if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        ap.error(f'unknown methods {unknown}; known: {sorted(METHODS)}')
    if 'float' not in methods:
        methods.insert(0, 'float')  # the baseline every gap is measured against
    # the built-ins' recipe (one budget for every method)
    base = Recipe.from_config(FlowConfig.load(None, model=BUILTIN_METHODS['binary']))
    overrides = {k: v for k, v in (('epochs', args.epochs), ('lr_schedule', args.lr_schedule)) if v is not None}
    if args.distill is not None:
        overrides['distill'] = args.distill
    n_train, seeds = None, range(args.seeds)
    if args.quick:
        overrides['epochs'], n_train, seeds = 1, 10000, range(1)
    base = base.replace(**overrides)
    rows = []
    for seed in seeds:
        data = load('fashion_mnist', seed)
        data = replace(data, x_train=data.x_train[:n_train], y_train=data.y_train[:n_train])
        for m in methods:
            rows.append(run_method(m, seed, data, base.replace(seed=seed)))
            r = rows[-1]
            console.print(f"seed {seed}, {m}: {100 * r['accuracy']:.2f}% ({r['source']})")
    for r in rows:
        r['ratio_vs_float32'] = r['float32_bits'] / r['total_bits']
    summary = summarize(rows, 'method')
    bits = {r['method']: r['total_bits'] for r in rows if r['seed'] == seeds[0]}
    recipe = {k: v for k, v in vars(base).items() if k != 'seed'}
    t = Table(title=f'Fashion-MNIST MLP, {len(seeds)} seed(s), {base.epochs} epochs, {base.lr_schedule}, '
                    f"distill {base.distill}: hardware accuracy (integer reference, {len(data.y_test)} test images)")
    for c in ('method', 'mean accuracy', 'sd (points)', 'per seed', 'vs float (points)', 'stored bits', 'x smaller than float32'):
        t.add_column(c, justify='right')
    points = [('float', summary['float'], 1.0)] + [(m, s, s['x_smaller_f32']) for m, s in summary['methods'].items()]
    for name, s, ratio in points:
        per_seed = ' '.join(f"{100 * r['accuracy']:.2f}" for r in rows if r['method'] == name)
        gap = f"{100 * (s['mean'] - summary['float']['mean']):+.2f}" if name != 'float' else ''
        t.add_row(name, f"{100 * s['mean']:.2f}%", f"{100 * s['spread']:.2f}", per_seed, gap, f'{bits[name]:,}', f'{ratio:.1f}')
    print_table(t, console)
    console.print(PAPERS, soft_wrap=True)
    table = markdown(summary, LABELS, bits)
    console.print(table, soft_wrap=True, markup=False)
    results = ROOT / 'bench' / 'results'
    results.mkdir(parents=True, exist_ok=True)
    # a variant of the recipe or of a model writes its own files: fashion_methods.* is the built-ins' recipe
    variant = [f'{k}{v}' for p in PARAMS.values() for k, v in p.items()] + [f'{k}{v}' for k, v in overrides.items()]
    name = '_'.join(['fashion_methods', *(['quick'] if args.quick else variant)])
    (results / f'{name}.json').write_text(json.dumps(
        {**summary, 'seeds': list(seeds), 'recipe': recipe, 'n_train': len(data.x_train), 'n_test': len(data.y_test),
         'labels': {m: LABELS[m] for m in methods}, 'stored_bits': bits,
         'spread': 'sample standard deviation over the seeds (ddof 1)', 'args': vars(args), 'rows': rows}, indent=1))
    (results / f'{name}.md').write_text(table + '\n')
    plot(summary, bits, results / f'{name}.png',
         f'Fashion-MNIST MLP 784-128-64-10, {base.epochs} epochs, {len(seeds)} seed(s): accuracy vs memory')
    console.print(f'wrote {results / name}.json, .md and .png')


if __name__ == '__main__':
    main()
