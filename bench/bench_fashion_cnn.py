"""Benchmark: Fashion-MNIST CNN, dense float vs CGS at 2x, 4x, 8x with 4-bit weights, against hls4ml's Conv2D, over seeds.

The built-in keras_models/builtin/fashion_cgs_cnn (QConv2D 8 3x3 -> pool -> BlockSparseQConv2D 16 3x3 ->
pool -> Flatten -> BlockSparseQDense 64 -> QDense 10) at drop rates 0.5 / 0.75 / 0.875 of conv2 and
fc1's blocks (2x, 4x, 8x), and the same architecture dense in float (its float twin, flow/training.py:
tf.keras Conv2D/Dense/ReLU, no quantization, no mask), trained the same way (the flow's recipe with the
built-in's FLOW_DEFAULTS: epochs, batch, Adam with warm-up + cosine; with --distill the CGS models distil
from the float one, which is its own teacher) with the same seeds on the same images (the
ap_fixed<9,1> input grid: pixels k/256 exactly). Per model and seed:
- accuracy: the float model's own; for CGS the hardware's = the integer reference (what the C
  simulation and the board compute, bit for bit) on every test image, checked equal to QKeras'
  decisions on a subset (--check-images);
- memory: every stored bit (flow/stages/footprint.py: kept 4-bit weights, channel/block index, biases)
  against the float model's float32 parameters and against hls4ml's Conv2D/Dense storing the same
  4-bit weights dense (zeros stored);
- estimate (flow/stages/estimate.py, io_stream, the built-in's ReuseFactors, PYNQ-Z2): multipliers, cycles
  per image and interval, ours vs hls4ml's Conv2D/Dense on the same weights, with the board verdict;
- C simulation throughput (images/s) of ours and of the SAME network built from hls4ml's own
  QConv2D/QDense carrying the masked kernels (zeros included), both bit-exact to the same reference
  and timed in the same run: a software measure, its ratio shows the work skipped.

  --seeds 3 --drops 0.5,0.75,0.875 --csim all --csim-images 1000 [--epochs E] [--distill] [--lr-schedule S]
  (C simulation: the first seed; a recipe other than the built-in's writes fashion_cnn_<setting><value>.*)
  (--quick: 1 seed, 2 epochs on 12,000 training images, 2,000 test images, 200 C-simulation images, 4x only)
The built-in's conv2 (8 -> 16 channels) has 4x2 channel blocks, 2 x 8 of them, so every drop rate
here is exact (4, 2 or 1 of 8 kept per block-row); the table shows each block-sparse layer's density.
Writes bench/results/fashion_cnn.{json,png,md} (fashion_cnn_quick.* for --quick); HLS projects under
bench/work/fashion_cnn/. The JSON: {"float": {"mean", "spread"}, "methods": {"cgs_4x": {"mean", "spread",
"x_smaller_f32"}, ...}, ...}, accuracies as fractions, spread the sample standard deviation over the
seeds (bench/seeds.py), every seed's row under "rows"; the .md is the README's table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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
from flow.infra.progress import bar, print_table  # noqa: E402

console = Console()
MODEL = 'fashion_cgs_cnn'
BOARD = 'pynq-z2'
PROJECT = 'fashioncnn'
WORK = ROOT / 'bench' / 'work' / 'fashion_cnn'
SPARSE_LAYERS = ('conv2', 'fc1')  # the block-sparse layers of the built-in


def ratio_name(drop: float) -> str:
    return f'{round(1 / (1 - drop))}x'


def hls4ml_twin(model):
    """The same network with hls4ml's own layers: each BlockSparseQConv2D / BlockSparseQDense becomes a
    QConv2D / QDense (same name, quantizers and geometry) carrying the masked quantized kernel, zeros
    included; every other layer keeps its weights."""
    import tensorflow as tf
    from qkeras import QConv2D, QDense

    from keras_models.conv import BlockSparseQConv2D
    from keras_models.layers import BlockSparseQDense

    x = inp = tf.keras.Input(shape=model.input_shape[1:], name=model.layers[0].name)
    pairs = []
    for layer in model.layers[1:]:
        if isinstance(layer, BlockSparseQConv2D):
            twin = QConv2D(layer.filters, layer.kernel_size, strides=layer.strides, padding=layer.padding,
                           kernel_quantizer=layer.kernel_quantizer, bias_quantizer=layer.bias_quantizer, name=layer.name)
        elif isinstance(layer, BlockSparseQDense):
            twin = QDense(layer.units, kernel_quantizer=layer.kernel_quantizer, bias_quantizer=layer.bias_quantizer,
                          name=layer.name)
        else:
            twin = layer.__class__.from_config(layer.get_config())
        x = twin(x)
        pairs.append((layer, twin))
    dmodel = tf.keras.Model(inp, x, name=f'{model.name}_hls4ml')
    for layer, twin in pairs:
        if isinstance(layer, (BlockSparseQConv2D, BlockSparseQDense)):
            kernel = np.asarray(layer.kernel_quantizer_internal(layer.kernel.numpy())) * layer.element_mask().numpy()
            twin.set_weights([kernel, layer.bias.numpy()])
        else:
            twin.set_weights(layer.get_weights())
    return dmodel


def train(model, data, recipe, name):
    from flow.training import fit

    t0 = time.perf_counter()
    info = fit(model, data.x_train, data.y_train, recipe, name=name,
               note=lambda text: console.print(f'[yellow]note:[/] {text}', soft_wrap=True))
    return time.perf_counter() - t0, info


def run_float(seed, recipe, data):
    """The CGS model's float twin trained with the same recipe (no distillation): the CGS models' teacher."""
    from flow.training import float_teacher
    from keras_models import get

    t0 = time.perf_counter()
    model, folder, cached = float_teacher(get(MODEL).build(seed), data.x_train, data.y_train, recipe, name=f'float, seed {seed}')
    seconds = time.perf_counter() - t0
    acc = float(model.evaluate(data.x_test, data.y_test, verbose=0, batch_size=500)[1])
    params = int(sum(np.prod(w.shape) for w in model.get_weights()))
    return {'name': 'float', 'method': 'float', 'seed': seed, 'drop_rate': None, 'compression': None, 'accuracy': acc,
            'keras_accuracy': acc, 'accuracy_source': 'Keras float32', 'memory_bits': 32 * params, 'params': params,
            'train_seconds': seconds, 'teacher': str(folder), 'teacher_cached': cached}


def run_cgs(drop, seed, recipe, data, x_codes, cfg, board, n_check):
    import tensorflow as tf

    from flow.plan import make_plan
    from flow.stages.estimate import estimate_model
    from flow.export import to_integer_model
    from flow.stages.footprint import footprint
    from keras_models import get

    name = f'CGS {ratio_name(drop)}'
    tf.keras.utils.set_random_seed(seed)
    model = get(MODEL).build(seed, drop_rate=drop, bits=4)
    seconds, info = train(model, data, recipe, f'{name}, seed {seed}')
    in_t = data.in_type
    im = to_integer_model(model, in_t)
    t0 = time.perf_counter()
    ref_logits = im.predict_codes(x_codes)
    ref_seconds = time.perf_counter() - t0
    ref_pred = ref_logits.argmax(1)
    q_logits = model.predict(data.x_test, verbose=0, batch_size=500)
    keras_acc = float(np.mean(q_logits.argmax(1) == data.y_test))
    sub = q_logits[:n_check].argmax(1)
    agree = int(np.sum(sub == ref_pred[:n_check]))
    assert agree == n_check, (f'{name}: QKeras and the integer reference disagree on {n_check - agree} of the first '
                              f'{n_check} test images')
    fp = footprint(im)
    # hls4ml's own Conv2D/Dense on the same weights: stores every 4-bit weight, zeros included
    dmodel = hls4ml_twin(model)
    dim = to_integer_model(dmodel, in_t, sparse=False)  # the twin stays hls4ml's own Dense, zeros stored
    dense_logits = dim.predict_codes(x_codes)
    mism = np.flatnonzero(np.any(dense_logits != ref_logits, axis=1))
    assert not len(mism), (f'{name}: the hls4ml twin (QConv2D/QDense, masked kernels) differs from the block-sparse '
                           f'reference on {len(mism)} test images (first: {mism[0]})')
    dfp = footprint(dim)
    est = estimate_model(im, make_plan(im, cfg.model_copy(update={'io_type': 'io_stream'}), board), board)
    tot = est['total']
    layers = {}
    for lname, f in fp['layers'].items():
        e = est['layers'].get(lname, {})
        layers[lname] = {
            'kind': f['kind'], 'shape': f['shape'], 'kept_weights': f['kept_weights'], 'density': f['density'],
            'weight_bits': f['weight_bits'], 'index_bits': f['index_bits'], 'bias_bits': f['bias_bits'],
            'memory_bits': f['total_bits'], 'hls4ml_memory_bits': dfp['layers'][lname]['total_bits'],
            'float32_bits': f['dense_float32_bits'], 'reuse_factor': e.get('reuse_factor'),
            'pixels': e.get('pixels'),
            'multipliers': e['ours']['multipliers'], 'hls4ml_multipliers': e['hls4ml_dense']['multipliers'],
            'cycles_per_image': e['ours']['cycles'], 'hls4ml_cycles_per_image': e['hls4ml_dense']['cycles'],
            'rom_bits_estimate': e['ours']['weight_memory_bits'], 'hls4ml_rom_bits_estimate': e['hls4ml_dense']['weight_memory_bits'],
            'bram18': e['ours']['bram18'], 'hls4ml_bram18': e['hls4ml_dense']['bram18'],
        }
    for l in layers.values():  # the products each side computes per image (the C simulation does each one)
        out_px = (l['pixels'] or {}).get('out', 1)
        l['products_per_image'] = l['kept_weights'] * out_px
        l['hls4ml_products_per_image'] = l['shape'][0] * l['shape'][1] * out_px
    cap = board.resources
    o, d = tot['ours'], tot['hls4ml_dense']
    hls4ml_bram = d['bram18'] + d.get('line_buffer_bram18', 0)
    return {
        'name': name, 'method': f'cgs_{ratio_name(drop)}', 'seed': seed, 'distilled_from': info['distilled_from'],
        'drop_rate': drop, 'compression': ratio_name(drop), 'accuracy': float(np.mean(ref_pred == data.y_test)),
        'keras_accuracy': keras_acc, 'accuracy_source': 'integer reference (= C simulation = board)',
        'qkeras_agreement': f'{agree}/{n_check}', 'reference_seconds': ref_seconds,
        'memory_bits': fp['total']['total_bits'], 'weight_bits': fp['total']['weight_bits'],
        'index_bits': fp['total']['index_bits'], 'bias_bits': fp['total']['bias_bits'],
        'hls4ml_memory_bits': dfp['total']['total_bits'], 'float32_bits': fp['total']['dense_float32_bits'],
        'density': fp['total']['density'], 'layers': layers,
        'products_per_image': sum(l['products_per_image'] for l in layers.values()),
        'hls4ml_products_per_image': sum(l['hls4ml_products_per_image'] for l in layers.values()),
        'multipliers': o['multipliers'], 'hls4ml_multipliers': d['multipliers'],
        'cycles_per_image': o['cycles'], 'hls4ml_cycles_per_image': d['cycles'],
        'interval': o['interval'], 'hls4ml_interval': d['interval'],
        'slowest_layer': o['slowest_layer'], 'hls4ml_slowest_layer': d['slowest_layer'],
        'board': tot['board'], 'fits': tot['fits'], 'fit': tot['fit'],
        'hls4ml_fit': {'dsp': {'used': d['multipliers'], 'available': cap.dsp},
                       'bram18': {'used': hls4ml_bram, 'available': cap.bram18}},
        'hls4ml_fits': d['multipliers'] <= cap.dsp and hls4ml_bram <= cap.bram18,
        'train_seconds': seconds, '_model': model, '_im': im, '_dmodel': dmodel, '_dim': dim,
    }


def timed(lib, x, repeats):
    """Best of ``repeats`` passes (images/s): the machine is shared, the best pass is the least disturbed."""
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        lib.run(x)
        best = max(best, len(x) / (time.perf_counter() - t0))
    return best


def run_csim(row, cfg, board, data, x_codes, n_images, repeats):
    """Convert, compile and time the C simulation of ours and of the hls4ml twin (same weights, same
    config); both must equal the reference code for code before they are timed."""
    from flow.stages.convert import compile_csim, convert_model
    from flow.stages.verify import compare_reference_csim, csim_library

    x = data.in_type.to_float(x_codes[:n_images])
    out, builds, libs = {}, {}, {}
    for side, model, im in (('ours', row['_model'], row['_im']), ('hls4ml', row['_dmodel'], row['_dim'])):
        root = WORK / row['compression'] / side
        shutil.rmtree(root, ignore_errors=True)
        t0 = time.perf_counter()
        with console.status(f"{row['name']}: converting and compiling the C simulation ({side})"):
            convert_model(model, im, cfg.model_copy(update={'io_type': 'io_stream'}), board, root / 'hls')
            compile_csim(root / 'hls')
        builds[side] = time.perf_counter() - t0
        libs[side] = csim_library(root, im, cfg.project_name)
        with console.status(f"{row['name']}: C simulation ({side}) vs the reference on {n_images} images"):
            compare_reference_csim(im, libs[side], x, x_codes[:n_images])  # raises on the first differing code
    tp = {side: 0.0 for side in libs}
    with bar('C simulation timing', repeats) as p:
        task = p.add_task(f"{row['name']}: C-sim timing ({n_images} images per pass)", total=repeats, info='')
        for _ in range(repeats):  # interleaved, so both sides see the same load
            for side, lib in libs.items():
                tp[side] = max(tp[side], timed(lib, x, 1))
            p.update(task, advance=1, info=f"ours {tp['ours']:.1f}/s, hls4ml {tp['hls4ml']:.1f}/s")
    out.update(images=n_images, repeats=repeats, ours_images_per_s=tp['ours'], hls4ml_images_per_s=tp['hls4ml'],
               ratio=tp['ours'] / tp['hls4ml'], build_seconds=builds, bit_exact_images=n_images,
               note='C simulation throughput is a software measure (g++ -O3 on this machine), not the FPGA\'s; '
                    'its ratio shows the work skipped')
    return out


def plot(rows, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.6))
    base = next(r for r in rows if r['name'] == 'float')
    cgs = [r for r in rows if r['name'] != 'float']
    a1.plot([r['memory_bits'] / 8192 for r in cgs], [100 * r['accuracy'] for r in cgs], 'o-', label='CGS, 4-bit (hardware)')
    for r in cgs:
        a1.annotate(r['compression'], (r['memory_bits'] / 8192, 100 * r['accuracy']), textcoords='offset points',
                    xytext=(5, 4), fontsize=8)
    a1.scatter([r['hls4ml_memory_bits'] / 8192 for r in cgs], [100 * r['accuracy'] for r in cgs], marker='x', color='tab:red',
               label="hls4ml Conv2D/Dense, same 4-bit weights (zeros stored)")
    a1.scatter(base['memory_bits'] / 8192, 100 * base['accuracy'], marker='*', s=120, color='k', label='dense float32')
    a1.set_xscale('log')
    a1.set_xlabel('stored memory (index and biases included), KiB, log scale')
    a1.set_ylabel('test accuracy, %')
    a1.legend(fontsize=8)
    a1.grid(True, which='both', alpha=0.3)
    a2.plot([r['multipliers'] for r in cgs], [100 * r['accuracy'] for r in cgs], 'o-', label='CGS, ours (estimate)')
    for r in cgs:
        a2.annotate(r['compression'], (r['multipliers'], 100 * r['accuracy']), textcoords='offset points', xytext=(5, 4),
                    fontsize=8)
    a2.scatter([r['hls4ml_multipliers'] for r in cgs], [100 * r['accuracy'] for r in cgs], marker='x', color='tab:red',
               label="hls4ml Conv2D/Dense, same weights and RFs")
    a2.axhline(100 * base['accuracy'], color='k', ls='--', lw=1, label='dense float32 (not deployable)')
    a2.axvline(cgs[0]['fit']['dsp']['available'], color='gray', ls=':', lw=1, label=f"{cgs[0]['board']} DSPs")
    a2.set_xlabel('estimated multipliers (DSPs), built-in ReuseFactors')
    a2.set_ylabel('test accuracy, %')
    a2.legend(fontsize=7, loc='lower center')
    a2.grid(True, alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    from dataclasses import replace

    from flow.infra.boards import get_board
    from flow.config import FlowConfig
    from flow.data.datasets import fashion_mnist, on_grid
    from flow.runtime.fixed import FixedType
    from flow.training import Recipe
    from keras_models import get

    from bench.seeds import markdown, summarize

    defaults = get(MODEL).FLOW_DEFAULTS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--epochs', type=int, default=defaults['epochs'])
    ap.add_argument('--seeds', type=int, default=3, help='seeds 0 .. N-1 (the C simulation is built for the first)')
    ap.add_argument('--drops', default='0.5,0.75,0.875', help='drop rates of conv2 and fc1 (2x, 4x, 8x)')
    ap.add_argument('--csim', default='all', help="drop rates whose C simulation is built and timed ('all', 'none'; "
                                                  '--quick: 0.75 only)')
    ap.add_argument('--csim-images', type=int, default=1000)
    ap.add_argument('--repeats', type=int, default=3, help='timing passes per side (interleaved; the best counts)')
    ap.add_argument('--check-images', type=int, default=500, help='QKeras == reference decisions on these test images')
    ap.add_argument('--distill', action=argparse.BooleanOptionalAction, default=None,
                    help="distil from the float twin (default: the built-in's setting)")
    ap.add_argument('--lr-schedule', choices=('warmup_cosine', 'constant'), default=None)
    ap.add_argument('--quick', action='store_true', help='1 seed, 2 epochs on 12,000 training images, 2,000 test images, '
                                                          '200 C-sim images')
    args = ap.parse_args()
    if args.quick and args.csim == 'all':
        args.csim = '0.75'
    t_start = time.perf_counter()
    drops = [float(d) for d in args.drops.split(',')]
    csim = drops if args.csim == 'all' else [] if args.csim == 'none' else [float(d) for d in args.csim.split(',')]
    if set(csim) - set(drops):
        ap.error(f'--csim {args.csim}: not among --drops {args.drops}')
    n_train, n_test = (12000, 2000) if args.quick else (None, None)
    seeds = range(args.seeds)
    if args.quick:
        args.epochs, args.csim_images, seeds = 2, min(args.csim_images, 200), range(1)

    cfg = FlowConfig.load(None, model=MODEL, project_name=PROJECT)
    # a recipe other than the built-in's writes its own files: fashion_cnn.* is the built-in's recipe
    recipe = Recipe.from_config(cfg)
    overrides = {k: v for k, v in (('epochs', args.epochs), ('distill', args.distill), ('lr_schedule', args.lr_schedule))
                 if v is not None and v != getattr(recipe, k)}
    recipe = recipe.replace(**overrides)
    board = get_board(BOARD)
    in_t = FixedType.parse(cfg.input_precision)
    rows = []
    for seed in seeds:
        data = fashion_mnist(seed)
        data = replace(data, x_train=data.x_train[:n_train].reshape(-1, 28, 28, 1), y_train=data.y_train[:n_train],
                       x_test=data.x_test[:n_test].reshape(-1, 28, 28, 1), y_test=data.y_test[:n_test])
        data, note = on_grid(data, in_t)
        assert note is None, note  # k/256 pixels are exact on ap_fixed<9,1>
        data.in_type = in_t
        x_codes = in_t.from_float_exact(data.x_test, 'test images')
        n_check = min(args.check_images, len(x_codes))
        args.csim_images = min(args.csim_images, len(x_codes))

        mine = [run_float(seed, recipe.replace(seed=seed), data)]
        for drop in drops:
            mine.append(run_cgs(drop, seed, recipe.replace(seed=seed), data, x_codes, cfg, board, n_check))
            if drop in csim and seed == seeds[0]:
                mine[-1]['csim'] = run_csim(mine[-1], cfg, board, data, x_codes, args.csim_images, args.repeats)
        for r in mine:
            r['x_smaller_than_float32'] = r['ratio_vs_float32'] = mine[0]['memory_bits'] / r['memory_bits']
            if 'hls4ml_memory_bits' in r:
                r['x_smaller_than_hls4ml'] = r['hls4ml_memory_bits'] / r['memory_bits']
                assert r['float32_bits'] == mine[0]['memory_bits'], 'the float model has other shapes than the CGS model'
            console.print(f"seed {seed}, {r['name']}: {100 * r['accuracy']:.2f}% ({r['accuracy_source']})")
        rows += mine
    summary = summarize(rows, 'method')
    # the tables below: the first seed's hardware figures (the masks differ by seed, their sizes do not),
    # accuracy as the mean over the seeds
    acc = {'float': summary['float'], **summary['methods']}
    rows_seeds = rows
    rows = [{**r, 'accuracy': acc[r['method']]['mean']} for r in rows if r['seed'] == seeds[0]]
    base = rows[0]

    rfs = {n: lc.reuse_factor for n, lc in cfg.layers.items()}
    title = (f"Fashion-MNIST CNN, {args.epochs} epochs, {len(seeds)} seed(s) (accuracy: their mean), {len(data.x_train)} training / "
             f"{len(data.x_test)} "
             f"test images: dense float vs CGS 4-bit (ours vs hls4ml's Conv2D/Dense on the same weights, io_stream, {board.name}, "
             f"RF {rfs})")
    t = Table(title=title)
    for c in ('model', 'density conv2 / fc1', 'test accuracy', 'vs float (points)', 'QKeras accuracy', 'stored bits', 'x smaller than float32',
              'hls4ml stored bits (same 4-bit weights)', 'x smaller than hls4ml', 'multipliers ours / hls4ml',
              'cycles per image ours / hls4ml', 'interval ours / hls4ml', f'{board.name} ours / hls4ml', 'accuracy from'):
        t.add_column(c, justify='right')

    def verdict(ok):
        return 'fits' if ok else 'does not fit'

    for r in rows:
        cgs = r['name'] != 'float'
        dens = ' / '.join(f"{r['layers'][n]['density']:.3f}" for n in SPARSE_LAYERS) if cgs else '-'
        t.add_row(r['name'], dens, f"{100 * r['accuracy']:.2f}%", f"{100 * (r['accuracy'] - base['accuracy']):+.2f}",
                  f"{100 * r['keras_accuracy']:.2f}%", str(r['memory_bits']), f"{r['x_smaller_than_float32']:.1f}",
                  str(r['hls4ml_memory_bits']) if cgs else '-', f"{r['x_smaller_than_hls4ml']:.2f}" if cgs else '-',
                  f"{r['multipliers']} / {r['hls4ml_multipliers']}" if cgs else '-',
                  f"{r['cycles_per_image']} / {r['hls4ml_cycles_per_image']}" if cgs else '-',
                  f"{r['interval']} / {r['hls4ml_interval']}" if cgs else '-',
                  f"{verdict(r['fits'])} / {verdict(r['hls4ml_fits'])}" if cgs else '-', r['accuracy_source'])
    print_table(t, console)

    t = Table(title='per layer: stored bits, estimated multipliers and cycles per image, ours / hls4ml (same weights, same RF)')
    for c in ('model', 'layer', 'RF', 'kept / all weights', 'weights + index + bias bits', 'stored bits ours / hls4ml',
              'multipliers ours / hls4ml', 'cycles per image ours / hls4ml', 'products per image ours / hls4ml'):
        t.add_column(c, justify='right')
    for r in rows[1:]:
        for lname, l in r['layers'].items():
            n_all = l['shape'][0] * l['shape'][1]
            t.add_row(r['name'], lname, str(l['reuse_factor']), f"{l['kept_weights']} / {n_all}",
                      f"{l['weight_bits']} + {l['index_bits']} + {l['bias_bits']}",
                      f"{l['memory_bits']} / {l['hls4ml_memory_bits']}", f"{l['multipliers']} / {l['hls4ml_multipliers']}",
                      f"{l['cycles_per_image']} / {l['hls4ml_cycles_per_image']}",
                      f"{l['products_per_image']} / {l['hls4ml_products_per_image']}")
    print_table(t, console)
    for r in rows[1:]:
        f = r['fit']
        console.print(f"{r['name']}: {r['board']} ours {verdict(r['fits'])} (DSP {f['dsp']['used']}/{f['dsp']['available']}, "
                      f"BRAM18 {f['bram18']['used']}/{f['bram18']['available']}"
                      + (f", LUT {f['lut']['used']}/{f['lut']['available']} ({f['lut']['detail']})" if 'lut' in f else '')
                      + f"); hls4ml {verdict(r['hls4ml_fits'])} (DSP {r['hls4ml_fit']['dsp']['used']}/"
                      f"{r['hls4ml_fit']['dsp']['available']}, BRAM18 {r['hls4ml_fit']['bram18']['used']}/"
                      f"{r['hls4ml_fit']['bram18']['available']}); slowest layer {r['slowest_layer']} "
                      f"(hls4ml {r['hls4ml_slowest_layer']})", soft_wrap=True)

    console.print('At the same ReuseFactor both sides take the same cycles per image (each multiplier does RF products per '
                  'input pixel); ours needs fewer multipliers, in proportion to the kept weights. The interval is the '
                  'slowest layer (dataflow): conv1, dense on both sides.', soft_wrap=True)
    sims = [r for r in rows if 'csim' in r]
    if sims:
        t = Table(title='C simulation throughput, measured in this run (software: g++ on this machine, not the FPGA)')
        for c in ('model', 'images (bit-exact to the reference)', 'ours images/s', "hls4ml Conv2D/Dense images/s",
                  'ours / hls4ml', 'products per image ours / hls4ml', 'hls4ml / ours products', 'build s ours / hls4ml'):
            t.add_column(c, justify='right')
        for r in sims:
            c = r['csim']
            t.add_row(r['name'], str(c['images']), f"{c['ours_images_per_s']:.1f}", f"{c['hls4ml_images_per_s']:.1f}",
                      f"{c['ratio']:.2f}", f"{r['products_per_image']} / {r['hls4ml_products_per_image']}",
                      f"{r['hls4ml_products_per_image'] / r['products_per_image']:.2f}", f"{c['build_seconds']['ours']:.0f} / {c['build_seconds']['hls4ml']:.0f}")
        print_table(t, console)
        console.print(sims[0]['csim']['note'], soft_wrap=True)

    total_seconds = time.perf_counter() - t_start
    results = ROOT / 'bench' / 'results'
    results.mkdir(parents=True, exist_ok=True)
    name = 'fashion_cnn_quick' if args.quick else '_'.join(['fashion_cnn', *(f'{k}{v}' for k, v in overrides.items())])
    clean = [{k: v for k, v in r.items() if not k.startswith('_')} for r in rows_seeds]
    labels = {r['method']: 'float' if r['method'] == 'float' else r['name'] for r in rows}
    extra = {'x smaller than hls4ml (same 4-bit weights)': {r['method']: f"{r['x_smaller_than_hls4ml']:.2f}" for r in rows[1:]},
             'multipliers ours / hls4ml': {r['method']: f"{r['multipliers']} / {r['hls4ml_multipliers']}" for r in rows[1:]},
             f'{board.name} ({board.resources.dsp} DSPs) ours / hls4ml':
                 {r['method']: f"{verdict(r['fits'])} / {verdict(r['hls4ml_fits'])}" for r in rows[1:]},
             'C-sim speed ours / hls4ml': {r['method']: f"{r['csim']['ratio']:.2f}x" for r in rows[1:] if 'csim' in r}}
    table = markdown(summary, labels, {r['method']: r['memory_bits'] for r in rows}, extra)
    console.print(table, soft_wrap=True, markup=False)
    (results / f'{name}.md').write_text(table + '\n')
    (results / f'{name}.json').write_text(json.dumps(
        {**summary, 'seeds': list(seeds), 'recipe': {k: v for k, v in vars(recipe).items() if k != 'seed'},
         'spread': 'sample standard deviation over the seeds (ddof 1)', 'args': vars(args), 'reuse_factors': rfs,
         'board': board.name, 'io_type': 'io_stream', 'n_train': len(data.x_train), 'n_test': len(data.x_test),
         'rows': clean, 'seconds': total_seconds}, indent=1))
    plot(rows, results / f'{name}.png',
         f'Fashion-MNIST CNN, {args.epochs} epochs, mean of {len(seeds)} seed(s): dense float vs CGS, 4-bit')
    console.print(f'wrote {results / name}.json and .png ({total_seconds:.0f} s)')


if __name__ == '__main__':
    main()
