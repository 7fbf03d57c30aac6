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
- estimate (the flow's estimate step, io_stream, the built-in's ReuseFactors, PYNQ-Z2): multipliers
  (DSPs), interval and latency in cycles per sample, the board verdict.

  --models keywords_dscnn,fashion_resnet --builds bench/work/builtin_cnns (one build folder per model)
Writes bench/results/builtin_cnns.{json,png}.
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
            'slowest_layer': o['slowest_layer'], 'latency': o['cycles'], 'board': est['board'], 'fits': est['fits'],
            'fit': est['fit'], 'reuse_factors': {n: lc.reuse_factor for n, lc in cfg.layers.items()},
            'flow_seconds': flow_seconds, 'build_dir': str(build_dir)}


def plot(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, color in zip(MODELS, ('tab:blue', 'tab:orange')):
        pair = [r for r in rows if r['builtin'] == name]
        if not pair:
            continue
        ax.plot([r['stored_bits'] / 8192 for r in pair], [100 * r['accuracy'] for r in pair], 'o--', color=color, label=name)
        for r in pair:
            ax.annotate(r['kind'], (r['stored_bits'] / 8192, 100 * r['accuracy']), textcoords='offset points', xytext=(5, 4),
                        fontsize=8)
    ax.set_xscale('log')
    ax.set_xlabel('stored memory (index and biases included), KiB, log scale')
    ax.set_ylabel('test accuracy, % (built-in: the hardware\'s)')
    ax.grid(True, which='both', alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title('Built-in CNNs (CGS, 4-bit) vs the same networks dense in float32', fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    from flow.config import FlowConfig
    from keras_models import get

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--models', default=','.join(MODELS))
    ap.add_argument('--builds', type=Path, default=ROOT / 'bench' / 'work' / 'builtin_cnns',
                    help='one build folder per model under it (a finished one is read, not redone)')
    ap.add_argument('--seed', type=int, default=0)
    args = ap.parse_args()
    t_start = time.perf_counter()
    rows = []
    for name in args.models.split(','):
        cfg = FlowConfig.load(None, model=name, seed=args.seed)
        data, in_t = builtin_data(cfg, get(name).build(cfg.seed, **cfg.model_params))
        rows.append(run_float(name, cfg, data))
        rows.append(run_builtin(name, cfg, args.builds / name, data, in_t))
        rows[-1]['n_test'] = rows[-2]['n_test'] = len(data.y_test)

    t = Table(title=f'Built-in CNNs vs the same networks dense in float (seed {args.seed}; estimate: io_stream, '
                    "the built-ins' ReuseFactors)")
    for c in ('model', 'test accuracy', 'vs float (points)', 'test samples', 'stored bits', 'x smaller than float32',
              'multipliers (DSPs)', 'interval (cycles)', 'latency (cycles)', 'fits'):
        t.add_column(c, justify='right')
    for r in rows:
        base = next(b for b in rows if b['builtin'] == r['builtin'] and b['kind'] == 'float')
        r['x_smaller_than_float32'] = base['stored_bits'] / r['stored_bits']
        hw = r['kind'] == 'built-in'
        t.add_row(r['model'], f"{100 * r['accuracy']:.2f}%",
                  f"{100 * (r['accuracy'] - base['accuracy']):+.2f}" if hw else '', str(r['n_test']),
                  f"{r['stored_bits']:,}", f"{r['x_smaller_than_float32']:.1f}",
                  f"{r['multipliers']} / {r['dsp']['available']}" if hw else '-', str(r['interval']) if hw else '-',
                  str(r['latency']) if hw else '-', (f"{r['board']}: " + ('fits' if r['fits'] else 'does not fit')) if hw else '-')
    print_table(t, console)
    console.print('Built-in accuracy is the hardware\'s (integer reference = C simulation = board, equal to QKeras code '
                  'for code on every test sample); the float twins are not deployable as they are.', soft_wrap=True)

    results = ROOT / 'bench' / 'results'
    results.mkdir(parents=True, exist_ok=True)
    total = time.perf_counter() - t_start
    (results / 'builtin_cnns.json').write_text(json.dumps({'args': {k: str(v) for k, v in vars(args).items()}, 'rows': rows,
                                                           'seconds': total}, indent=1))
    plot(rows, results / 'builtin_cnns.png')
    console.print(f'wrote {results / "builtin_cnns"}.json and .png ({total:.0f} s)')


if __name__ == '__main__':
    main()
