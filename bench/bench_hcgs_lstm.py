"""Benchmark: HCGS compression of a keyword-spotting LSTM, accuracy vs memory.

The same network (49 frames x 40 log-mel bands -> LSTM(units) -> 10-way QDense head, spoken
keywords synthesized with espeak-ng, test voices never trained on) at 1x, 4x, 8x and 16x HCGS
compression of both LSTM kernels (two levels, one mask per kernel shared by the four gates), with
3- and 6-bit sign-magnitude weights (the papers' quantizer), against the same LSTM dense in float
(Keras' LSTM, trained the same way). Accuracy of the compressed models is the hardware's: the
integer reference (what the C simulation and the board compute, bit for bit) on every test clip.
Memory: every stored bit of the LSTM and head (weights, the index per level, biases).

  --units 128 --epochs 20 --seeds 3 --ratios 1,4,8,16 --bits 3,6   (--quick: 4 epochs, 1x/16x, 3-bit, one seed)
Writes bench/results/hcgs_lstm.{json,md,png} (other settings than these: hcgs_lstm_<setting><value>...,
e.g. hcgs_lstm_units64_ratios16_bits6): per model the accuracy's mean and sample standard
deviation over the seeds (bench/seeds.py; seed s: the data split, the masks and the initial
weights). Each finished seed is kept in bench/work/<that name>/ and reused by a rerun with the same
settings, so an interrupted run resumes.
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

from flow.infra.quiet import quiet_python  # noqa: E402
from flow.infra.progress import print_table  # noqa: E402

console = Console()
INPUT_PRECISION = 'ap_fixed<9,3>'  # the keyword features' grid (flow/data/keywords.py)
# compression -> (level-1 drop, level-2 drop): 1 / ((1 - d1)(1 - d2)), as the HCGS papers configure it
RATIOS = {1: (0.0, 0.0), 4: (0.5, 0.5), 8: (0.75, 0.5), 16: (0.75, 0.75)}


def levels(ratio: int, outer: tuple, inner: tuple):
    d1, d2 = RATIOS[ratio]
    return [(outer, d1), (inner, d2)]


def build(ratio, bits, units, seed):
    import tensorflow as tf
    from qkeras import QDense, quantized_bits

    from keras_models.lstm import BlockSparseQLSTM
    from keras_models.quantizers import sign_magnitude

    inp = tf.keras.Input((49, 40), name='features')
    if ratio is None:  # the float baseline
        x = tf.keras.layers.LSTM(units, name='lstm')(inp)
        return tf.keras.Model(inp, tf.keras.layers.Dense(10, name='logits')(x))
    q = sign_magnitude(bits)
    if units % 64:
        raise SystemExit(f'--units {units}: use a multiple of 64 (16-wide level-1 blocks, 4 per gate row at least, so 16x is 16x)')
    b1 = 16  # level-1 blocks: 8 inputs x 16 outputs (40 inputs), 16 x 16 recurrent; level 2: 4x4
    x = BlockSparseQLSTM(units, levels=levels(ratio, (8, b1), (4, 4)), recurrent_levels=levels(ratio, (b1, b1), (4, 4)),
                         mask_seed=seed * 10 + 1, kernel_quantizer=q, recurrent_quantizer=q, name='lstm')(inp)
    out = QDense(10, kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=quantized_bits(8, 3, alpha=1),
                 name='logits')(x)
    return tf.keras.Model(inp, out)


def run(ratio, bits, units, epochs, seed, data):
    import tensorflow as tf

    from flow.export import to_integer_model
    from flow.stages.footprint import footprint
    from flow.infra.progress import KerasProgress
    from flow.runtime.fixed import FixedType

    tf.keras.utils.set_random_seed(seed)
    model = build(ratio, bits, units, seed)
    model.compile(tf.keras.optimizers.Adam(3e-3), tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=['accuracy'])
    name = 'float' if ratio is None else f'{ratio}x, {bits}-bit'
    with KerasProgress(epochs, f'training {name}') as cb:
        model.fit(data.x_train, data.y_train, epochs=epochs, batch_size=32, verbose=0, callbacks=[cb])
    keras_acc = float(model.evaluate(data.x_test, data.y_test, verbose=0)[1])
    row = {'name': name, 'ratio': ratio, 'bits': bits, 'keras_accuracy': keras_acc}
    if ratio is None:
        params = int(sum(np.prod(w.shape) for w in model.get_weights()))
        return {**row, 'accuracy': keras_acc, 'memory_bits': 32 * params, 'source': 'Keras float32'}
    in_t = FixedType.parse(INPUT_PRECISION)
    im = to_integer_model(model, in_t)
    logits = im.predict_codes(in_t.from_float_exact(data.x_test.reshape(len(data.x_test), -1), 'test clips'))
    fp = footprint(im)
    lstm = fp['layers']['lstm']
    return {**row, 'accuracy': float(np.mean(np.argmax(logits, axis=1) == data.y_test)), 'memory_bits': fp['total']['total_bits'],
            'index_bits_per_level': lstm.get('index_bits_per_level'), 'density': lstm['density'],
            'source': 'integer reference (= C simulation = board)'}


def plot(rows, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for bits, marker in ((3, 'o'), (6, 's')):
        pts = sorted((r['memory_bits'], r['accuracy'], r['ratio']) for r in rows if r['bits'] == bits)
        if pts:
            ax.plot([p[0] / 8192 for p in pts], [100 * p[1] for p in pts], marker=marker, label=f'HCGS, {bits}-bit')
            for m, a, ratio in pts:
                ax.annotate(f'{ratio}x', (m / 8192, 100 * a), textcoords='offset points', xytext=(5, 4), fontsize=8)
    for r in rows:
        if r['ratio'] is None:
            ax.scatter(r['memory_bits'] / 8192, 100 * r['accuracy'], color='k', marker='*', s=90, label='dense float32')
    ax.set_xscale('log')
    ax.set_xlabel('stored memory (index per level, biases included), KiB, log scale')
    ax.set_ylabel('test accuracy (held-out voices), %')
    ax.set_title(title, fontsize=10)
    ax.grid(True, which='both', alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def variant_name(ap, args) -> str:
    """The results' name: hcgs_lstm for the default settings (or hcgs_lstm_quick), else the settings that
    differ appended (hcgs_lstm_units64_ratios16_bits6), so a variant never replaces the main results."""
    if args.quick:
        return 'hcgs_lstm_quick'
    changed = [f'{k}{str(v).replace(",", "-")}' for k, v in vars(args).items()
               if k not in ('seeds', 'quick') and v != ap.get_default(k)]
    return '_'.join(['hcgs_lstm', *changed])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--units', type=int, default=128)
    ap.add_argument('--epochs', type=int, default=20)
    ap.add_argument('--seeds', type=int, default=3, help='seeds 0 .. N-1')
    ap.add_argument('--ratios', default='1,4,8,16')
    ap.add_argument('--bits', default='3,6')
    ap.add_argument('--quick', action='store_true', help='4 epochs, 1x and 16x at 3 bits (a smoke run)')
    args = ap.parse_args()
    if args.quick:
        args.epochs, args.ratios, args.bits, args.seeds = 4, '1,16', '3', 1
    args.name = variant_name(ap, args)
    quiet_python()  # TensorFlow's and Keras' warnings hidden as in the flow (saving a QLSTM warns about its quantizers)
    ratios = [int(r) for r in args.ratios.split(',')]
    bad = [r for r in ratios if r not in RATIOS]
    if bad:
        ap.error(f'ratios {bad} unknown; known: {sorted(RATIOS)}')
    from bench.seeds import mean_spread, summarize

    rows = []
    for seed in range(args.seeds):
        rows += one_seed(args, ratios, seed)
    first = [r for r in rows if r['seed'] == 0]
    summary = summarize(rows, 'name')
    base = summary['float']
    t = Table(title=f'Keyword LSTM({args.units}), {args.epochs} epochs, {args.seeds} seed(s): HCGS compression vs dense float')
    for c in ('model', 'test accuracy (mean)', 'sd (points)', 'per seed', 'vs float (points)', 'LSTM density', 'stored bits',
              'x smaller than float32', 'index per level (bits)', 'accuracy from'):
        t.add_column(c, justify='right')
    for r in first:
        s = base if r['ratio'] is None else summary['methods'][r['name']]
        t.add_row(r['name'], f"{100 * s['mean']:.2f}%", f"{100 * s['spread']:.2f}",
                  ' '.join(f"{100 * x['accuracy']:.2f}" for x in rows if x['name'] == r['name']),
                  f"{100 * (s['mean'] - base['mean']):+.2f}", f"{r.get('density', 1.0):.4f}", str(r['memory_bits']),
                  f"{r['ratio_vs_float32']:.1f}", ' + '.join(map(str, r.get('index_bits_per_level') or [])) or '-', r['source'])
    print_table(t, console)
    results = ROOT / 'bench' / 'results'
    results.mkdir(parents=True, exist_ok=True)
    name = args.name
    (results / f'{name}.json').write_text(json.dumps(
        {**summary, 'seeds': list(range(args.seeds)), 'spread': 'sample standard deviation over the seeds (ddof 1)',
         'args': vars(args), 'rows': rows}, indent=1))
    (results / f'{name}.md').write_text(markdown(first, summary) + '\n')
    means = [{**r, 'accuracy': mean_spread([x['accuracy'] for x in rows if x['name'] == r['name']])['mean']} for r in first]
    plot(means, results / f'{name}.png',
         f'Keyword LSTM({args.units}), {args.epochs} epochs, mean of {args.seeds} seed(s): accuracy vs memory, HCGS 1x-16x')
    console.print(f'wrote {results / name}.json, .md and .png')


def one_seed(args, ratios: list[int], seed: int) -> list[dict]:
    """Every model of one seed (its data split, masks and initial weights), kept in bench/work so a
    rerun with the same settings reuses it."""
    from flow.data.datasets import load, on_grid
    from flow.runtime.fixed import FixedType

    key = {k: v for k, v in vars(args).items() if k not in ('seeds', 'quick', 'name')}
    cache = ROOT / 'bench' / 'work' / args.name / f'seed{seed}.json'
    if cache.exists() and (kept := json.loads(cache.read_text()))['settings'] == key:
        console.print(f'seed {seed}: reusing {cache.relative_to(ROOT)}')
        return kept['rows']
    data, _ = on_grid(load('keywords', seed), FixedType.parse(INPUT_PRECISION))  # as the flow feeds the hardware
    rows = [run(None, None, args.units, args.epochs, seed, data)]
    rows += [run(r, int(b), args.units, args.epochs, seed, data) for b in args.bits.split(',') for r in ratios]
    for r in rows:
        r['seed'], r['ratio_vs_float32'] = seed, rows[0]['memory_bits'] / r['memory_bits']
    console.print(f'seed {seed}: test set {data.source}', soft_wrap=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({'settings': key, 'rows': rows}, indent=1))
    return rows


def markdown(first: list[dict], summary: dict) -> str:
    """The README table: per model the accuracy mean +- sd, the gap to float, stored bits, ratio, index per level."""
    base = summary['float']
    lines = ['| model | test accuracy (mean +- sd) | vs float (points) | stored bits | x smaller than float32 | index per level |',
             '|---|---:|---:|---:|---:|---:|']
    for r in first:
        s = base if r['ratio'] is None else summary['methods'][r['name']]
        name = 'dense float32 (Keras LSTM)' if r['ratio'] is None else r['name']
        gap = '' if r['ratio'] is None else f"{100 * (s['mean'] - base['mean']):+.2f}"
        index = ' + '.join(f'{b:,}' for b in r.get('index_bits_per_level') or [])
        lines.append(f"| {name} | {100 * s['mean']:.2f}% +- {100 * s['spread']:.2f} | {gap} | {r['memory_bits']:,} | "
                     f"{r['ratio_vs_float32']:.1f} | {index} |")
    return '\n'.join(lines)


if __name__ == '__main__':
    main()
