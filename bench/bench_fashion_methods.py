"""Benchmark: accuracy vs memory of every compression method on one Fashion-MNIST MLP.

The same architecture (784-128-64-10, as the built-in Fashion-MNIST models; each method compresses
it its own way) trained the same way (Adam, batch 128, the same epochs and seed), per method:
- float: plain Keras Dense in float32 (the baseline; not deployable bit-exactly);
- cgs: BlockSparseQDense, 4-bit weights, 16x16 blocks, 75% / 50% dropped, 6-bit head;
- sst: SSTQDense (8, 2) ternary codes, power-of-two scale per neuron (keras_models/builtin/fashion_sst_mlp);
- the built-in binary / low-bit models when present (keras_models/builtin/fashion_binary_mlp,
  fashion_lowbit_mlp), as they are defined there.
Accuracy of the deployable methods is the hardware's: the integer reference (what the C
simulation and the board compute, bit for bit) on the whole test set. Memory is every stored bit
(flow/stages/footprint.py: weights or codewords, index, scales, biases) against the float32 model.

  --epochs 10 --seed 0 --methods float,cgs,sst,binary,lowbit   (--quick: 1 epoch, 10k training images)
Writes bench/results/fashion_methods.{json,png}.
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


def build_float(seed):
    import tensorflow as tf

    inp = tf.keras.Input((784,))
    x = inp
    for k, units in enumerate(HIDDEN, start=1):
        x = tf.keras.layers.Dense(units, activation='relu', name=f'fc{k}')(x)
    return tf.keras.Model(inp, tf.keras.layers.Dense(10, name='logits')(x)), None


def build_cgs(seed):
    import tensorflow as tf
    from qkeras import QActivation, quantized_bits, quantized_relu

    from keras_models.layers import BlockSparseQDense

    inp = tf.keras.Input((784,))
    x = inp
    for k, (units, drop) in enumerate(zip(HIDDEN, (0.75, 0.5)), start=1):
        x = BlockSparseQDense(units, block_shape=(16, 16), drop_rate=drop, mask_seed=seed * 10 + k,
                              kernel_quantizer=quantized_bits(4, 0, alpha=1), bias_quantizer=quantized_bits(8, 3, alpha=1),
                              name=f'fc{k}')(x)
        x = QActivation(quantized_relu(6, 2), name=f'relu{k}')(x)
    return tf.keras.Model(inp, _head(x)), INPUT_PRECISION


BUILTIN_METHODS = {'sst': 'fashion_sst_mlp', 'binary': 'fashion_binary_mlp', 'lowbit': 'fashion_lowbit_mlp'}


def _builtin(name):
    def build(seed):
        from keras_models import get

        module = get(name)
        return module.build(seed), module.INPUT_PRECISION

    return build


METHODS = {'float': build_float, 'cgs': build_cgs, **{m: _builtin(b) for m, b in BUILTIN_METHODS.items()}}


def run_method(name, seed, epochs, data, n_train):
    import tensorflow as tf

    from flow.export import to_integer_model
    from flow.stages.footprint import footprint
    from flow.infra.progress import KerasProgress
    from flow.runtime.fixed import FixedType

    tf.keras.utils.set_random_seed(seed)
    model, precision = METHODS[name](seed)
    model.compile(tf.keras.optimizers.Adam(3e-3), tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=['accuracy'])
    with KerasProgress(epochs, f'training {name}') as cb:
        model.fit(data.x_train[:n_train], data.y_train[:n_train], epochs=epochs, batch_size=128, verbose=0, callbacks=[cb])
    keras_acc = float(model.evaluate(data.x_test, data.y_test, verbose=0)[1])
    row = {'method': name, 'keras_accuracy': keras_acc, 'layers': [l.name for l in model.layers]}
    if precision is None:  # the float baseline: every weight and bias in float32
        params = int(sum(np.prod(w.shape) for w in model.get_weights()))
        row.update(accuracy=keras_acc, total_bits=32 * params, float32_bits=32 * params, source='Keras float32')
        return row
    in_t = FixedType.parse(precision)
    im = to_integer_model(model, in_t)
    logits = im.predict_codes(in_t.from_float_exact(data.x_test, 'test images'))
    fp = footprint(im)['total']
    row.update(accuracy=float(np.mean(np.argmax(logits, axis=1) == data.y_test)), total_bits=fp['total_bits'],
               float32_bits=fp['dense_float32_bits'], index_bits=fp['index_bits'], weight_bits=fp['weight_bits'],
               source='integer reference (= C simulation = board)')
    return row


def plot(rows, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        ax.scatter(r['total_bits'] / 8 / 1024, 100 * r['accuracy'], s=40)
        ax.annotate(f"{r['method']} ({r['ratio_vs_float32']:.1f}x)", (r['total_bits'] / 8 / 1024, 100 * r['accuracy']),
                    textcoords='offset points', xytext=(6, 4), fontsize=9)
    ax.set_xscale('log')
    ax.set_xlabel('stored memory (index, codewords, scales, biases included), KiB, log scale')
    ax.set_ylabel('test accuracy, %')
    ax.set_title(title, fontsize=10)
    ax.grid(True, which='both', alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    from flow.data.datasets import load
    from keras_models import BUILTIN

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--epochs', type=int, default=10)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--methods', default=','.join(METHODS))
    ap.add_argument('--quick', action='store_true', help='1 epoch on 10,000 training images (a smoke run)')
    args = ap.parse_args()
    methods = [m.strip() for m in args.methods.split(',') if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        ap.error(f'unknown methods {unknown}; known: {sorted(METHODS)}')
    missing = [m for m in methods if m in BUILTIN_METHODS and BUILTIN_METHODS[m] not in BUILTIN]
    if missing:
        console.print(f'[yellow]skipped (no built-in model yet):[/] {missing}')
        methods = [m for m in methods if m not in missing]
    epochs, n_train = (1, 10000) if args.quick else (args.epochs, None)
    data = load('fashion_mnist', args.seed)
    rows = [run_method(m, args.seed, epochs, data, n_train) for m in methods]
    base = next((r for r in rows if r['method'] == 'float'), None)
    t = Table(title=f'Fashion-MNIST, {epochs} epochs, seed {args.seed}: accuracy vs stored bits')
    for c in ('method', 'test accuracy', 'vs float (points)', 'stored bits', 'x smaller than float32', 'accuracy from'):
        t.add_column(c, justify='right')
    for r in rows:
        r['ratio_vs_float32'] = r['float32_bits'] / r['total_bits']
        vs = f"{100 * (r['accuracy'] - base['accuracy']):+.2f}" if base else '-'
        t.add_row(r['method'], f"{100 * r['accuracy']:.2f}%", vs, str(r['total_bits']), f"{r['ratio_vs_float32']:.1f}",
                  r['source'])
    print_table(t, console)
    console.print(PAPERS, soft_wrap=True)
    results = ROOT / 'bench' / 'results'
    results.mkdir(parents=True, exist_ok=True)
    name = 'fashion_methods_quick' if args.quick else 'fashion_methods'
    (results / f'{name}.json').write_text(json.dumps({'args': vars(args), 'rows': rows}, indent=1))
    plot(rows, results / f'{name}.png', f'Fashion-MNIST MLP 784-128-64-10, {epochs} epochs: accuracy vs memory')
    console.print(f'wrote {results / name}.json and .png')


if __name__ == '__main__':
    main()
