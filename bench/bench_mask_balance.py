"""Benchmark: what equal fan-in costs in accuracy (and what it saves in the engine).

The output-stationary engine (flow/runtime/schedule.py ``gather``, what the HLS template does) pads a
block-column with fewer kept blocks than the others with zero weights. ``cgs_balanced`` masks keep
as many blocks in every block-column as in the others (give or take one) on top of CGS's equal
fan-out, so there is nothing to pad. This trains the same QKeras MLP with both masks, several
seeds each, the same data and schedule, and reports test accuracy (float software: the Keras
model's own accuracy, the flow's exact hardware reproduces it) and the engine's padding and
multipliers per layer at a given ReuseFactor.

  --dataset fashion_mnist (784-256-128-10, 16x16 blocks, 75% / 50% dropped; default) or digits
  --seeds 3 --epochs 5 --rf 64
Writes bench/results/mask_balance.json.
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
from flow.data.datasets import load  # noqa: E402
from flow.infra.progress import print_table  # noqa: E402
from flow.runtime.ref_block_sparse import BlockSparseDense, pack_blocks  # noqa: E402
from flow.runtime.schedule import gather  # noqa: E402

console = Console()
ARCH = {'fashion_mnist': ((256, 128), (16, 16), 784), 'digits': ((64, 32), (8, 8), 64)}


def build(mask: str, seed: int, hidden, block, n_in):
    import tensorflow as tf
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu

    from keras_models.layers import BlockSparseQDense

    tf.keras.utils.set_random_seed(seed)
    kq, bq = quantized_bits(4, 0, alpha=1), quantized_bits(8, 3, alpha=1)
    inp = tf.keras.Input((n_in,))
    x = inp
    for k, (units, drop) in enumerate(zip(hidden, (0.75, 0.5))):
        x = BlockSparseQDense(units, block_shape=block, drop_rate=drop, mask_method=mask, mask_seed=seed * 10 + k,
                              kernel_quantizer=kq, bias_quantizer=bq, name=f'fc{k + 1}')(x)
        x = QActivation(quantized_relu(6, 2))(x)
    out = QDense(10, kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=bq, name='logits')(x)
    return tf.keras.Model(inp, out)


def engine_cost(model, rf: int) -> dict:
    out = {}
    for layer in model.layers:
        if hasattr(layer, 'get_block_mask'):
            mask = layer.get_block_mask()
            n_in, n_out = layer.kernel.shape
            w = np.ones((n_in, n_out), np.int64) * np.kron(mask, np.ones(layer.block_shape, np.int64))
            values, index, kpr = pack_blocks(w, mask, tuple(layer.block_shape))
            ref = BlockSparseDense(layer.name, None, n_in=n_in, n_out=n_out, block=tuple(layer.block_shape),
                                   kept_per_row=kpr, values=values, index=index)
            s = gather(ref, rf)
            st = s.stats()
            out[layer.name] = {'multipliers': s.n_mult, 'ideal': -(-values.size // rf), 'padding': s.padding,
                               'adder_inputs': st['adder_inputs'], 'gated_inputs': st['gated_inputs']}
    return out


def main() -> None:
    import tensorflow as tf

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--dataset', default='fashion_mnist', choices=sorted(ARCH))
    ap.add_argument('--seeds', type=int, default=3)
    ap.add_argument('--epochs', type=int, default=5)
    ap.add_argument('--rf', type=int, default=64)
    args = ap.parse_args()
    hidden, block, n_in = ARCH[args.dataset]
    data = load(args.dataset)
    xtr, xte = (d.reshape(len(d), -1).astype(np.float32) for d in (data.x_train, data.x_test))
    rows = []
    for mask in ('cgs', 'cgs_balanced'):
        for seed in range(args.seeds):
            model = build(mask, seed, hidden, block, n_in)
            model.compile(tf.keras.optimizers.Adam(2e-3), tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                          metrics=['accuracy'])
            model.fit(xtr, data.y_train, epochs=args.epochs, batch_size=128, verbose=0)
            acc = float(model.evaluate(xte, data.y_test, verbose=0)[1])
            rows.append({'mask': mask, 'seed': seed, 'test_accuracy': acc, 'engine': engine_cost(model, args.rf)})
            console.print(f'{mask} seed {seed}: test accuracy {acc:.4f}')
    t = Table(title=f'{args.dataset}: CGS (equal fan-out) vs cgs_balanced (equal fan-in too), {args.seeds} seeds, '
                    f'{args.epochs} epochs; engine at RF {args.rf}')
    for c in ('mask', 'accuracy mean', 'accuracy std', 'multipliers (gather)', 'ideal', 'padding slots', 'adder inputs',
              'gated'):
        t.add_column(c, justify='right')
    summary = {}
    for mask in ('cgs', 'cgs_balanced'):
        accs = [r['test_accuracy'] for r in rows if r['mask'] == mask]
        eng = [r['engine'] for r in rows if r['mask'] == mask]
        mult = np.mean([sum(v['multipliers'] for v in e.values()) for e in eng])
        ideal = np.mean([sum(v['ideal'] for v in e.values()) for e in eng])
        pad, adders, gated = (np.mean([sum(v[k] for v in e.values()) for e in eng])
                              for k in ('padding', 'adder_inputs', 'gated_inputs'))
        sd = float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0  # the sample standard deviation, as bench/seeds.py
        summary[mask] = {'accuracy_mean': float(np.mean(accs)), 'accuracy_std': sd,
                         'multipliers': float(mult), 'ideal_multipliers': float(ideal), 'padding': float(pad),
                         'adder_inputs': float(adders), 'gated_inputs': float(gated)}
        t.add_row(mask, f'{np.mean(accs):.4f}', f'{sd:.4f}', f'{mult:g}', f'{ideal:g}', f'{pad:g}',
                  f'{adders:g}', f'{gated:g}')
    print_table(t, console)
    diff = summary['cgs_balanced']['accuracy_mean'] - summary['cgs']['accuracy_mean']
    console.print(f'equal fan-in changes mean test accuracy by {diff * 100:+.2f} points (float software accuracy of the '
                  'quantized models; seeds differ in masks and initial weights)')
    results = ROOT / 'bench' / 'results'
    results.mkdir(parents=True, exist_ok=True)
    (results / 'mask_balance.json').write_text(json.dumps({'args': vars(args), 'rows': rows, 'summary': summary}, indent=1))


if __name__ == '__main__':
    main()
