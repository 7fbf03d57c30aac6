"""Benchmark: models as users bring them, each through ``build-bitstream`` to ``verify``.

A zoo of QKeras/Keras models written the way the field writes them (hls4ml's own QKeras test
cases, MLPerf-Tiny-class architectures: a dense autoencoder, a depthwise-separable keyword CNN, a
ResNet block, a 1-D CNN, recurrent layers, TFMOT block pruning, weightless models), random
weights (seeded), random inputs on the input grid. For each: deployed or refused, the one-line
reason when refused, and whether reference == C simulation (and QKeras == reference) held. No
training, no data download; each deployed model compiles a C simulation (about 0.5-2 min each on 2 cores).

Prints a table and writes bench/results/user_models.json.

  --only NAME[,NAME]   run some models only        --keep DIR   keep the build folders there
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / 'tests'))

IN_TYPE = 'ap_fixed<8,3>'


def _q():
    import qkeras

    return qkeras


def _randomize(model, seed=0):
    from user_models import random_weights

    return random_weights(model, seed)


def mlp_hls4ml_test():
    """hls4ml's QKeras test shape: QDense + quantized_relu, 4-6 bit."""
    import tensorflow as tf
    q = _q()
    inp = tf.keras.Input((16,), name='x')
    x = q.QDense(32, kernel_quantizer=q.quantized_bits(6, 0, alpha=1), bias_quantizer=q.quantized_bits(6, 0, alpha=1), name='fc1')(inp)
    x = q.QActivation(q.quantized_relu(4, 0), name='relu1')(x)
    x = q.QDense(5, kernel_quantizer=q.quantized_bits(6, 0, alpha=1), bias_quantizer=q.quantized_bits(6, 0, alpha=1), name='fc2')(x)
    return tf.keras.Model(inp, x), (16,)


def float_mlp():
    """Plain Keras Dense/ReLU: deployed at the config's (hls4ml's default) precision."""
    import tensorflow as tf
    inp = tf.keras.Input((16,), name='x')
    x = tf.keras.layers.Dense(16, activation='relu', name='fc1')(inp)
    x = tf.keras.layers.Dense(4, name='fc2')(x)
    return tf.keras.Model(inp, x), (16,)


def autoencoder():
    """A dense anomaly-detection autoencoder (MLPerf Tiny AD): QDense/BatchNorm/ReLU, 128-64-8-64-128."""
    import tensorflow as tf
    q = _q()
    kq = q.quantized_bits(8, 0, alpha=1)
    inp = tf.keras.Input((128,), name='x')
    x = inp
    for i, units in enumerate((64, 8, 64)):
        x = q.QDense(units, kernel_quantizer=kq, bias_quantizer=kq, name=f'fc{i}')(x)
        x = tf.keras.layers.BatchNormalization(name=f'bn{i}')(x)
        x = q.QActivation(q.quantized_relu(6, 3), name=f'relu{i}')(x)
    x = q.QDense(128, kernel_quantizer=q.quantized_bits(8, 8, alpha=1), bias_quantizer=q.quantized_bits(8, 8, alpha=1), name='out')(x)
    return tf.keras.Model(inp, x), (128,)


def ds_cnn():
    """A depthwise-separable keyword CNN (MLPerf Tiny KWS shape, small)."""
    import tensorflow as tf
    q = _q()
    kq, bq = q.quantized_bits(6, 0, alpha=1), q.quantized_bits(8, 3, alpha=1)
    inp = tf.keras.Input((12, 10, 1), name='x')
    x = q.QConv2D(8, (3, 3), strides=(2, 2), padding='same', kernel_quantizer=kq, bias_quantizer=bq, name='conv1')(inp)
    x = q.QActivation(q.quantized_relu(6, 2), name='relu1')(x)
    x = q.QDepthwiseConv2D((3, 3), padding='same', depthwise_quantizer=kq, bias_quantizer=bq, name='dw1')(x)
    x = q.QActivation(q.quantized_relu(6, 2), name='relu2')(x)
    x = q.QConv2D(8, (1, 1), kernel_quantizer=kq, bias_quantizer=bq, name='pw1')(x)
    x = q.QActivation(q.quantized_relu(6, 2), name='relu3')(x)
    x = tf.keras.layers.AveragePooling2D((2, 1), name='pool')(x)
    x = tf.keras.layers.Flatten(name='flat')(x)
    x = q.QDense(4, kernel_quantizer=kq, bias_quantizer=bq, name='logits')(x)
    return tf.keras.Model(inp, x), (12, 10, 1)


def resnet_block():
    """A ResNet block of QConv2DBatchnorm with a skip connection (MLPerf Tiny IC shape, small)."""
    import tensorflow as tf
    q = _q()
    kq, bq = q.quantized_bits(8, 0, alpha=1), q.quantized_bits(8, 3, alpha=1)
    inp = tf.keras.Input((8, 8, 3), name='x')
    x = q.QConv2DBatchnorm(8, (3, 3), padding='same', kernel_quantizer=kq, bias_quantizer=bq, name='conv0')(inp)
    x = q.QActivation(q.quantized_relu(6, 2), name='relu0')(x)
    y = q.QConv2DBatchnorm(8, (3, 3), padding='same', kernel_quantizer=kq, bias_quantizer=bq, name='conv1')(x)
    y = q.QActivation(q.quantized_relu(6, 2), name='relu1')(y)
    x = tf.keras.layers.Add(name='add')([x, y])
    x = q.QActivation(q.quantized_relu(6, 2), name='relu2')(x)
    x = tf.keras.layers.MaxPooling2D(2, name='pool')(x)
    x = tf.keras.layers.Flatten(name='flat')(x)
    x = q.QDense(4, kernel_quantizer=kq, bias_quantizer=bq, name='logits')(x)
    return tf.keras.Model(inp, x), (8, 8, 3)


def conv1d():
    """A 1-D CNN for time series."""
    import tensorflow as tf
    q = _q()
    kq, bq = q.quantized_bits(6, 0, alpha=1), q.quantized_bits(8, 3, alpha=1)
    inp = tf.keras.Input((32, 2), name='x')
    x = q.QConv1D(8, 3, kernel_quantizer=kq, bias_quantizer=bq, name='conv1')(inp)
    x = q.QActivation(q.quantized_relu(6, 2), name='relu1')(x)
    x = tf.keras.layers.MaxPooling1D(2, name='pool1')(x)
    x = q.QConv1D(8, 3, kernel_quantizer=kq, bias_quantizer=bq, name='conv2')(x)
    x = q.QActivation(q.quantized_relu(6, 2), name='relu2')(x)
    x = tf.keras.layers.GlobalAveragePooling1D(name='gap')(x)
    x = q.QDense(3, kernel_quantizer=kq, bias_quantizer=bq, name='logits')(x)
    return tf.keras.Model(inp, x), (32, 2)


def tfmot_pruned():
    """A QDense whose kernel has 75% of its 8x8 blocks zero (what TFMOT block pruning leaves)."""
    model, shape = mlp_hls4ml_test()
    _randomize(model)
    k = model.get_layer('fc1').kernel.numpy()
    blocks = np.random.default_rng(1).random((16 // 8, 32 // 8)) < 0.75
    k *= ~np.kron(blocks, np.ones((8, 8), bool))
    model.get_layer('fc1').kernel.assign(k)
    return model, shape, 'weights set'


def qlstm():
    import tensorflow as tf
    q = _q()
    inp = tf.keras.Input((6, 4), name='x')
    x = q.QLSTM(8, kernel_quantizer=q.quantized_bits(6, 0, alpha=1), recurrent_quantizer=q.quantized_bits(6, 0, alpha=1),
                bias_quantizer=q.quantized_bits(6, 0, alpha=1), state_quantizer=q.quantized_bits(8, 0, alpha=1), name='lstm')(inp)
    x = q.QDense(3, kernel_quantizer=q.quantized_bits(6, 0, alpha=1), bias_quantizer=q.quantized_bits(6, 0, alpha=1), name='logits')(x)
    return tf.keras.Model(inp, x), (6, 4)


def weightless(act):
    def build():
        import tensorflow as tf
        q = _q()
        inp = tf.keras.Input((8,), name='x')
        return tf.keras.Model(inp, q.QActivation(act, name='act')(inp)), (8,)
    return build


def auto_po2():
    import tensorflow as tf
    q = _q()
    inp = tf.keras.Input((16,), name='x')
    x = q.QDense(8, kernel_quantizer=q.quantized_bits(4, 0, alpha='auto_po2'), bias_quantizer=q.quantized_bits(6, 0, alpha=1), name='fc1')(inp)
    return tf.keras.Model(inp, x), (16,)


def binary_activation():
    import tensorflow as tf
    q = _q()
    inp = tf.keras.Input((16,), name='x')
    x = q.QDense(16, kernel_quantizer=q.quantized_bits(4, 0, alpha=1), bias_quantizer=q.quantized_bits(6, 0, alpha=1), name='fc1')(inp)
    x = q.QActivation('binary', name='sign')(x)
    x = q.QDense(4, kernel_quantizer=q.quantized_bits(4, 0, alpha=1), bias_quantizer=q.quantized_bits(6, 0, alpha=1), name='fc2')(x)
    return tf.keras.Model(inp, x), (16,)


ZOO = {
    'mlp_hls4ml_test': mlp_hls4ml_test, 'float_mlp': float_mlp, 'autoencoder': autoencoder, 'ds_cnn': ds_cnn,
    'resnet_block': resnet_block, 'conv1d': conv1d, 'tfmot_pruned_blocks': tfmot_pruned, 'qlstm': qlstm,
    'weightless_tanh': weightless('quantized_tanh(8)'), 'weightless_relu': weightless('quantized_relu(6, 2)'),
    'weightless_bits': weightless('quantized_bits(6, 2)'), 'auto_po2_kernel': auto_po2, 'binary_activation': binary_activation,
}


def run_one(name: str, folder: Path) -> dict:
    """Save the model and its inputs, run build-bitstream to verify, read what came out."""
    import tensorflow as tf

    from flow.infra.quiet import quiet_python

    quiet_python()  # this process builds and saves the models: TensorFlow's warnings hidden as in the flow
    tf.keras.utils.set_random_seed(0)
    out = ZOO[name]()
    model, shape = out[0], out[1]
    if len(out) == 2:
        _randomize(model)
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / 'model.h5')
    from flow.runtime.fixed import FixedType

    t = FixedType.parse(IN_TYPE)
    x = t.to_float(np.random.default_rng(0).integers(t.min_code, t.max_code + 1, size=(64, *shape)))
    np.savez(folder / 'data.npz', x=x.astype(np.float32))
    (folder / 'config.yaml').write_text(f'input_precision: "{IN_TYPE}"\nn_golden: 32\n')
    t0 = time.time()
    r = subprocess.run([sys.executable, '-m', 'flow.cli', '--model', str(folder / 'model.h5'), '--data', str(folder / 'data.npz'),
                        '--config', str(folder / 'config.yaml'), '--build-dir', str(folder / 'build'), '--to-step', 'verify'],
                       cwd=ROOT, capture_output=True, text=True, env={**os.environ, 'PYTHONPATH': str(ROOT)})
    row = {'model': name, 'exit_code': r.returncode, 'seconds': round(time.time() - t0, 1)}
    text = re.sub(r'\s+', ' ', (r.stdout + r.stderr))
    verify = folder / 'build' / 'reports' / 'verify.json'
    if r.returncode == 0 and verify.exists():
        v = json.loads(verify.read_text())
        row['exact_csim'] = (v.get('reference_vs_csim') or {}).get('exact')
        row['qkeras_vs_reference'] = 'exact' if (v.get('qkeras_vs_reference') or {}).get('all_layers_exact') else 'differs (float)'
        fp = json.loads((folder / 'build' / 'reference' / 'footprint.json').read_text())['total']
        row['density'] = round(fp.get('density', 1.0), 3)
        row['status'] = 'deployed'
    else:
        m = re.search(r'(bad input|failed|stopped): (.*?)(build folder:|$)', text)
        row['status'] = 'refused' if r.returncode == 2 else 'failed'
        row['reason'] = (m.group(2) if m else text[-300:]).strip()[:300]
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--only')
    ap.add_argument('--keep', type=Path)
    args = ap.parse_args()
    names = args.only.split(',') if args.only else list(ZOO)
    root = args.keep or Path(tempfile.mkdtemp(prefix='user_models_'))
    console = Console()
    rows = []
    from rich.progress import Progress

    from flow.infra.progress import print_table

    with Progress(console=console, transient=True) as progress:
        task = progress.add_task('models', total=len(names))
        for name in names:
            progress.update(task, description=name)
            rows.append(run_one(name, root / name))
            progress.advance(task)
    table = Table(title='users\' models through build-bitstream .. verify (random weights)')
    for c in ('model', 'status', 'reference == C sim', 'QKeras vs reference', 'density', 's'):
        table.add_column(c, no_wrap=True)
    for r in rows:
        table.add_row(r['model'], r['status'], str(r.get('exact_csim', '')), r.get('qkeras_vs_reference', ''),
                      str(r.get('density', '')), f"{r['seconds']:.0f}")
    print_table(table, console)
    for r in rows:
        if r.get('reason'):
            console.print(f"[bold]{r['model']}[/] {r['status']}: {r['reason']}", highlight=False, soft_wrap=True)
    deployed = sum(r['status'] == 'deployed' for r in rows)
    console.print(f'{deployed} of {len(rows)} deployed; every deployed one exact: '
                  f'{all(r.get("exact_csim") for r in rows if r["status"] == "deployed")}')
    out = ROOT / 'bench' / 'results' / 'user_models.json'
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(rows, indent=1))
    console.print(f'wrote {out}')


if __name__ == '__main__':
    main()
