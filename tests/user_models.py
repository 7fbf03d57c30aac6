"""Small QKeras models as users save them, for tests that must not train (random weights)."""

from pathlib import Path

import numpy as np


def small_mlp(path: Path | None = None, n_in: int = 64, hidden: int = 16, n_out: int = 10, seed: int = 0,
              names=('fc1', 'relu1', 'logits'), kernel_alpha=1, wbits: int = 4, block_sparse: bool = False):
    """n_in -> hidden (QDense or BlockSparseQDense) -> quantized_relu -> n_out QDense; saved to ``path``."""
    import tensorflow as tf
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu

    from keras_models.layers import BlockSparseQDense

    tf.keras.utils.set_random_seed(seed)
    bq = quantized_bits(8, 3, alpha=1)
    inp = tf.keras.Input((n_in,), name='pixels')
    first = dict(kernel_quantizer=quantized_bits(wbits, 0, alpha=kernel_alpha), bias_quantizer=bq, name=names[0])
    if block_sparse:
        x = BlockSparseQDense(hidden, block_shape=(8, 8), drop_rate=0.5, mask_seed=seed, **first)(inp)
    else:
        x = QDense(hidden, **first)(inp)
    x = QActivation(quantized_relu(6, 2), name=names[1])(x)
    x = QDense(n_out, kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=bq, name=names[2])(x)
    model = random_weights(tf.keras.Model(inp, x), seed)
    if path is not None:
        model.save(path)
    return model


def random_weights(model, seed: int, kernel: float = 1.0, bias: float = 2.0, kernel_scale: float = 1.0):
    """Kernels uniform in [-kernel, kernel] x kernel_scale, biases in [-bias, bias], and trained-like
    BatchNormalization statistics, drawn in layer order from one seeded generator."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if hasattr(layer, 'kernel'):
            layer.kernel.assign(rng.uniform(-kernel, kernel, size=layer.kernel.shape) * kernel_scale)
            if getattr(layer, 'bias', None) is not None:
                layer.bias.assign(rng.uniform(-bias, bias, size=layer.bias.shape))
        if type(layer).__name__ == 'BatchNormalization':
            n = layer.gamma.shape
            layer.set_weights([rng.uniform(0.5, 2, n), rng.uniform(-1, 1, n), rng.uniform(-2, 2, n), rng.uniform(0.2, 3, n)])
    return model


def chain(*layers, n_in: int = 8):
    """A functional model: an input of ``n_in`` features through ``layers`` in order."""
    import tensorflow as tf

    inp = tf.keras.Input((n_in,), name='x')
    x = inp
    for layer in layers:
        x = layer(x)
    return tf.keras.Model(inp, x)


def tfmot_pruned_mlp(path: Path | None = None, strip: bool = True, hidden: int = 32, epochs: int = 2, seed: int = 0):
    """A QKeras MLP on scikit-learn's digits pruned the way a TFMOT user prunes it:
    ``prune_low_magnitude`` (TFMOT 0.7.5 wraps QDense: QKeras layers have ``get_prunable_weights``) with
    8x8 blocks at 75% on fc1 (64 x ``hidden``) and 2:4 along the inputs on logits (``sparsity_m_by_n``),
    trained a few epochs with ``UpdatePruningStep``; ``strip``: then ``strip_pruning`` (else saved with its
    PruneLowMagnitude wrappers). Saved to ``path``."""
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu
    from sklearn.datasets import load_digits

    tf.keras.utils.set_random_seed(seed)
    prune = tfmot.sparsity.keras.prune_low_magnitude
    # frequency=1: the masks are updated at every step (TFMOT's default 100 would leave a few steps unpruned)
    blocks = tfmot.sparsity.keras.ConstantSparsity(0.75, begin_step=0, frequency=1)
    bq = quantized_bits(8, 3, alpha=1)
    inp = tf.keras.Input((64,), name='pixels')
    x = prune(QDense(hidden, kernel_quantizer=quantized_bits(4, 0, alpha=1), bias_quantizer=bq, name='fc1'),
              pruning_schedule=blocks, block_size=(8, 8))(inp)
    x = QActivation(quantized_relu(6, 2), name='relu1')(x)
    x = prune(QDense(10, kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=bq, name='logits'),
              pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(0.5, begin_step=0, frequency=1),
              sparsity_m_by_n=(2, 4))(x)
    model = tf.keras.Model(inp, x)
    digits = load_digits()
    xs = np.floor(digits.data / 2) / 4  # 0 .. 2: on an ap_fixed<8,3> grid
    model.compile(tf.keras.optimizers.Adam(3e-3), tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(xs, digits.target, epochs=epochs, batch_size=64, verbose=0,
              callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    if strip:
        model = tfmot.sparsity.keras.strip_pruning(model)
    if path is not None:
        model.save(path)
    return model
