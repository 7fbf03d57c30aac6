"""Training recipes: the one way the flow's train step and the benches fit a model.

A recipe (FlowConfig: epochs, batch_size, learning_rate, lr_schedule, warmup_epochs, distill,
distill_temperature, distill_alpha) is applied by ``fit``:
- learning rate: ``warmup_cosine`` rises linearly from 0 over ``warmup_epochs`` and falls along a
  half cosine to 0 at the last step; ``constant`` keeps ``learning_rate`` (Adam either way);
- knowledge distillation from the float model of the same architecture (``float_twin``: every
  quantized or masked layer as its plain Keras layer), trained once with the same recipe, no
  distillation, and cached by content (``teacher``); the loss is
  alpha * CE(labels, student) + (1 - alpha) * T^2 * KL(softmax(teacher / T) || softmax(student / T));
  for a classifier with logits outputs only; a model without a twin trains without it, with a note;
- layers with a training schedule of their own (SST's gradual pruning, ``schedule_to``) are told the
  total number of optimizer steps before fitting.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

CACHE_ENV = 'SPARSE_FLOW_TEACHER_CACHE'
TEACHER_VERSION = 1  # bump when teacher training changes: it is part of the cache key


class NoTwin(ValueError):
    """A layer ``float_twin`` cannot map to a float Keras layer (one line, naming it)."""


@dataclass(frozen=True)
class Recipe:
    epochs: int
    batch_size: int = 32
    learning_rate: float = 3e-3
    lr_schedule: str = 'warmup_cosine'
    warmup_epochs: float = 1.0
    distill: bool = False  # as FlowConfig's: see there why
    distill_temperature: float = 4.0
    distill_alpha: float = 0.5
    seed: int = 0

    @classmethod
    def from_config(cls, cfg) -> Recipe:
        return cls(**{k: getattr(cfg, k) for k in cls.__dataclass_fields__})

    def replace(self, **kw) -> Recipe:
        return Recipe(**{**asdict(self), **kw})


# --- learning-rate schedule ------------------------------------------------------------------------

def _schedule_base():
    import tensorflow as tf

    return tf.keras.optimizers.schedules.LearningRateSchedule


class WarmupCosine(_schedule_base()):
    """Linear warm-up from 0 to ``peak`` over ``warmup_steps``, then a half cosine to 0 at ``total_steps``."""

    def __init__(self, peak: float, warmup_steps: int, total_steps: int):
        self.peak, self.warmup_steps, self.total_steps = float(peak), int(warmup_steps), max(int(total_steps), 1)

    def __call__(self, step):
        import tensorflow as tf

        step = tf.cast(step, tf.float32)
        warm = self.peak * (step + 1.0) / max(self.warmup_steps, 1)  # +1: the first step already learns
        frac = tf.clip_by_value((step - self.warmup_steps) / max(self.total_steps - self.warmup_steps, 1), 0.0, 1.0)
        cosine = 0.5 * self.peak * (1.0 + tf.cos(math.pi * frac))
        return tf.where(step < self.warmup_steps, warm, cosine)

    def get_config(self):
        return {'peak': self.peak, 'warmup_steps': self.warmup_steps, 'total_steps': self.total_steps}


def learning_rate(recipe: Recipe, steps_per_epoch: int):
    if recipe.lr_schedule == 'constant':
        return recipe.learning_rate
    return WarmupCosine(recipe.learning_rate, round(recipe.warmup_epochs * steps_per_epoch), recipe.epochs * steps_per_epoch)


# --- the float twin ------------------------------------------------------------------------------

_DENSE = {'QDense', 'BlockSparseQDense', 'SSTQDense'}
_CONV = {'QConv1D': 'Conv1D', 'QConv2D': 'Conv2D', 'BlockSparseQConv1D': 'Conv1D', 'BlockSparseQConv2D': 'Conv2D',
         'QSeparableConv1D': 'SeparableConv1D', 'QSeparableConv2D': 'SeparableConv2D',
         'QDepthwiseConv2D': 'DepthwiseConv2D'}
_RNN = {'BlockSparseQLSTM': 'LSTM', 'QLSTM': 'LSTM', 'QGRU': 'GRU', 'QSimpleRNN': 'SimpleRNN'}
_POOL = {'QAveragePooling2D': 'AveragePooling2D', 'QGlobalAveragePooling2D': 'GlobalAveragePooling2D'}
_KEPT = {  # plain Keras layers the twin keeps as they are
    'InputLayer', 'Dense', 'Conv1D', 'Conv2D', 'DepthwiseConv2D', 'SeparableConv1D', 'SeparableConv2D', 'ReLU', 'Activation',
    'Softmax', 'BatchNormalization', 'Dropout', 'Flatten', 'Reshape', 'Permute', 'MaxPooling1D', 'MaxPooling2D',
    'AveragePooling1D', 'AveragePooling2D', 'GlobalAveragePooling1D', 'GlobalAveragePooling2D', 'GlobalMaxPooling1D',
    'GlobalMaxPooling2D', 'ZeroPadding1D', 'ZeroPadding2D', 'UpSampling1D', 'UpSampling2D', 'Add', 'Subtract',
    'Multiply', 'Average', 'Maximum', 'Minimum', 'Concatenate', 'LSTM', 'GRU', 'SimpleRNN', 'LeakyReLU'}
_COMMON = ('name', 'trainable', 'dtype')


def _activation_name(act) -> str:
    """A Keras or QKeras activation (a name, 'quantized_relu(6,2)' or a serialized quantizer) -> its float kind."""
    if act is None:
        return 'linear'
    name = act.get('class_name', '') if isinstance(act, dict) else str(act).split('(')[0].strip()
    if 'relu' in name:
        return 'relu'
    if 'sigmoid' in name:
        return 'sigmoid'
    if 'tanh' in name or name in ('binary', 'ternary', 'stochastic_binary', 'stochastic_ternary'):
        return 'tanh'
    if name in ('quantized_bits', 'quantized_po2', 'linear', ''):
        return 'linear'
    if name in ('softmax', 'elu', 'selu', 'swish', 'gelu', 'softplus', 'hard_sigmoid'):
        return name
    raise NoTwin(f'activation {name!r} has no float twin')


def _pick(config: dict, keys) -> dict:
    return {k: config[k] for k in (*_COMMON, *keys) if k in config}


def _twin_layer(cls: str, config: dict, init: str | None = None) -> tuple[str, dict]:
    """One layer's (class_name, config) -> its float twin's; ``init``: its kernels' initializer."""
    if cls in _DENSE:
        return 'Dense', {**_pick(config, ('units', 'use_bias')), 'activation': _activation_name(config.get('activation')),
                         **({'kernel_initializer': init} if init else {})}
    if cls in _CONV:
        keys = ('kernel_size', 'strides', 'padding', 'data_format', 'use_bias', 'depth_multiplier', 'dilation_rate')
        keys += () if cls == 'QDepthwiseConv2D' else ('filters',)
        kernel = 'depthwise_initializer' if cls == 'QDepthwiseConv2D' else 'kernel_initializer'
        return _CONV[cls], {**_pick(config, keys), 'activation': _activation_name(config.get('activation')),
                            **({kernel: init} if init and not cls.startswith('QSeparable') else {})}
    if cls in _RNN:
        return _RNN[cls], _pick(config, ('units', 'return_sequences', 'return_state', 'use_bias'))
    if cls == 'QActivation':
        act = _activation_name(config.get('activation'))
        return ('ReLU', _pick(config, ())) if act == 'relu' else ('Activation', {**_pick(config, ()), 'activation': act})
    if cls == 'QBatchNormalization':
        return 'BatchNormalization', _pick(config, ('axis', 'momentum', 'epsilon', 'center', 'scale'))
    if cls in _POOL:
        return _POOL[cls], _pick(config, ('pool_size', 'strides', 'padding', 'data_format', 'keepdims'))
    if cls in _KEPT:
        return cls, config
    raise NoTwin(f'layer {config.get("name")!r} ({cls}) has no float twin')


def float_twin(model, kernel_initializer: str | None = None):
    """The float Keras model of ``model``'s architecture: every quantized, masked, SST or low-bit layer as
    its plain Keras layer (same units, filters, kernel, strides, padding), quantized activations as their
    float kinds, the rest as it is; fresh weights (``kernel_initializer``: of its dense and convolution
    kernels instead of Keras' Glorot default; 'he_uniform' where a deep ReLU net without BatchNormalization
    would see its activations vanish). Layers are renamed by position, so the twins of two
    models that differ only in names, masks or quantizers are one model (one cached teacher).
    Raises NoTwin in one line for a layer it cannot map."""
    import tensorflow as tf

    config = model.get_config()
    if 'layers' not in config:
        raise NoTwin(f'model {model.name!r} ({type(model).__name__}) is not a Functional or Sequential Keras model')
    names = {l['config']['name']: f'l{i}' for i, l in enumerate(config['layers'])}

    def rename(x):  # every reference to a layer: its own name, inbound nodes, the model's inputs and outputs
        if isinstance(x, str):
            return names.get(x, x)
        if isinstance(x, list):
            return [rename(v) for v in x]
        if isinstance(x, dict):
            return {k: rename(v) for k, v in x.items()}
        return x

    layers = []
    for l in config['layers']:
        cls, cfg = _twin_layer(l['class_name'], l['config'], kernel_initializer)
        layers.append({**{k: rename(v) for k, v in l.items() if k not in ('class_name', 'config', 'module', 'registered_name')},
                       'class_name': cls, 'config': {**cfg, 'name': names[l['config']['name']]}})
    twin = {**{k: rename(v) for k, v in config.items() if k != 'layers'}, 'name': 'float_twin', 'layers': layers}
    kind = tf.keras.Sequential if isinstance(model, tf.keras.Sequential) else tf.keras.Model
    return kind.from_config(twin)


def outputs_logits(model) -> bool:
    """A classifier whose output is logits (no softmax/sigmoid at the end): distillation needs them."""
    last = model.layers[-1]
    act = getattr(last, 'activation', None)
    name = getattr(act, '__name__', None) or (act if isinstance(act, str) else None)
    return len(model.outputs) == 1 and len(model.outputs[0].shape) == 2 and model.outputs[0].shape[-1] > 1 and \
        type(last).__name__ != 'Softmax' and name in (None, 'linear')


# --- distillation ---------------------------------------------------------------------------------

def distill_loss(temperature: float, alpha: float):
    """Loss on y = [label, teacher logits...] and the student's logits."""
    import tensorflow as tf

    def loss(y, logits):
        labels, teacher = tf.cast(y[:, 0], tf.int32), y[:, 1:]
        ce = tf.keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        p = tf.nn.softmax(teacher / temperature)
        kl = tf.reduce_sum(p * (tf.nn.log_softmax(teacher / temperature) - tf.nn.log_softmax(logits / temperature)), axis=-1)
        return alpha * ce + (1.0 - alpha) * temperature ** 2 * kl

    loss.__name__ = 'distill_loss'
    return loss


def label_accuracy(y, logits):
    """Accuracy on the label column of the distillation targets."""
    import tensorflow as tf

    return tf.keras.metrics.sparse_categorical_accuracy(y[:, :1], logits)


label_accuracy.__name__ = 'accuracy'


# --- the cached teacher ---------------------------------------------------------------------------

def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / '.cache' / 'sparse-fpga-flow' / 'teachers')


def teacher_key(twin, x, y, recipe: Recipe) -> str:
    import tensorflow as tf

    h = hashlib.sha256()
    for a in (x, y):
        a = np.ascontiguousarray(a)
        h.update(f'{a.dtype}{a.shape}'.encode())
        h.update(a.tobytes())
    settings = {k: v for k, v in asdict(recipe).items() if not k.startswith('distill')}
    h.update(json.dumps({'twin': json.loads(twin.to_json()), 'recipe': settings, 'tf': tf.__version__,
                         'version': TEACHER_VERSION}, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def teacher(twin, x, y, recipe: Recipe, name: str = 'teacher', progress: bool = True):
    """``twin`` trained on (x, y) with ``recipe`` (no distillation), from the cache when it is there.
    Returns (model, folder, cached). The folder appears whole or not at all (a temporary folder renamed
    into place), so parallel runs may race for it safely: the first rename wins."""
    import tensorflow as tf

    folder = cache_root() / teacher_key(twin, x, y, recipe)
    recipe = recipe.replace(distill=False)
    if (folder / 'teacher.h5').is_file():
        twin.load_weights(folder / 'teacher.h5')
        compile_plain(twin)
        return twin, folder, True
    fit(twin, x, y, recipe, name=name, progress=progress)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix='.tmp-', dir=folder.parent))
    try:
        twin.save_weights(tmp / 'teacher.h5')
        (tmp / 'teacher.json').write_text(json.dumps({'recipe': asdict(recipe), 'model': json.loads(twin.to_json()),
                                                      'n_train': int(len(x)), 'tf': tf.__version__}, indent=1))
        os.rename(tmp, folder)
    except OSError:  # another run put it there first: the same content
        shutil.rmtree(tmp, ignore_errors=True)
    return twin, folder, False


def float_teacher(model, x, y, recipe: Recipe, name: str = 'model', progress: bool = True):
    """``teacher`` for ``model``'s float twin, its initial weights drawn from ``recipe.seed`` (the same
    teacher whoever asks first). Returns (model, folder, cached); raises NoTwin."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(recipe.seed)
    return teacher(float_twin(model), x, y, recipe, name=f'{name}: float teacher', progress=progress)


# --- fitting --------------------------------------------------------------------------------------

def fit(model, x, y, recipe: Recipe, name: str = 'model', progress: bool = True, note=None) -> dict:
    """Compile and fit ``model`` (logits outputs, integer labels) with ``recipe``. ``note(text)`` is told
    why distillation was left out when it is on but cannot apply. Returns what was done."""
    import tensorflow as tf

    from flow.infra.progress import KerasProgress

    steps = max(1, math.ceil(len(x) / recipe.batch_size))
    for layer in model.layers:  # layer schedules that follow the length of training (SST's pruning)
        if hasattr(layer, 'schedule_to'):
            layer.schedule_to(recipe.epochs * steps)
    info = {'epochs': recipe.epochs, 'lr_schedule': recipe.lr_schedule, 'distilled_from': None}
    targets, loss, metric = y, tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True), 'accuracy'
    if recipe.distill and recipe.epochs > 0:
        why = None if outputs_logits(model) else 'the model does not output logits'
        try:
            t, folder, cached = float_teacher(model, x, y, recipe, name, progress) if why is None else (None,) * 3
        except NoTwin as e:
            why = str(e)
        if why is None:
            logits = t.predict(x, batch_size=1024, verbose=0)
            targets = np.concatenate([np.asarray(y, np.float32).reshape(-1, 1), logits.astype(np.float32)], axis=1)
            loss, metric = distill_loss(recipe.distill_temperature, recipe.distill_alpha), label_accuracy
            info['distilled_from'] = str(folder)
            info['teacher_cached'] = cached
        elif note is not None:
            note(f'no distillation for {name}: {why} (distill: false turns this note off)')
    tf.keras.utils.set_random_seed(recipe.seed)  # the same student whether the teacher came from the cache or not
    model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate(recipe, steps)), loss=loss, metrics=[metric])
    if progress:
        with KerasProgress(recipe.epochs, f'training {name}') as cb:
            model.fit(x, targets, epochs=recipe.epochs, batch_size=recipe.batch_size, verbose=0, callbacks=[cb])
    else:
        model.fit(x, targets, epochs=recipe.epochs, batch_size=recipe.batch_size, verbose=0)
    compile_plain(model)
    return info


def compile_plain(model) -> None:
    """A trained model compiled as a plain classifier: evaluate() on labels works, a save holds no custom loss."""
    import tensorflow as tf

    model.compile(loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=['accuracy'])
