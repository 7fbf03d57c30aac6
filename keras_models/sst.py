"""SST: a dense layer with structured sparse ternary weights (Boo and Sung, SiPS 2017).

Weights are t * scale with t in {-1, 0, +1} and at most K non-zeros in every group of N
consecutive weights along the input (an (N, K) code: one codeword per group, see
flow/runtime/sst_code.py). The scale is per output neuron or per layer, quantized by a QKeras
quantizer (``quantized_po2``: a shift in hardware; ``quantized_bits``: a fixed-point constant).

Training (the paper's schedules are not published; this is ours, documented):
- the latent kernel is kept at unit RMS per output column after every optimizer step (weight-
  distribution normalization): the ternary pattern depends only on relative magnitudes, and the
  learned ``scale`` carries the magnitude, so neither drifts as the other trains;
- gradual pruning: the non-zeros allowed per group fall from N to K over ``prune_steps``
  training steps, or over ``prune_fraction`` of however many steps training takes (the flow's
  training tells the layer, ``schedule_to``) (cubic, as Zhu and Gupta's schedule), the K largest |w| of each group are kept
  (ties: the lower index); inference always applies (N, K) exactly;
- straight-through gradients through the ternary pattern and the scale quantizer.

At inference the layer computes dot(x, t) * scale + bias: the hardware's order (sums of +-x, one
product by the scale per output), exact in float32 within the flow's 2^24 bound.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from qkeras import QDense, quantized_po2
from qkeras.quantizers import get_quantizer

from .block_masked import bias_and_activation

DEFAULT_SCALE_QUANTIZER = 'quantized_po2(8)'


def ternary_kernel(kernel: np.ndarray, group: int, nonzeros: int) -> np.ndarray:
    """(n_in, n_out) float kernel -> (n_in, n_out) int8 in {-1, 0, 1}: per group of ``group``
    consecutive inputs of each output, the signs of the ``nonzeros`` largest |w| (ties: lower index),
    as ``SSTQDense`` computes it with tf.math.top_k."""
    n_in, n_out = kernel.shape
    g = np.asarray(kernel, dtype=np.float32).T.reshape(n_out, n_in // group, group)
    top = np.argsort(-np.abs(g), axis=-1, kind='stable')[..., :nonzeros]
    mask = np.zeros(g.shape, dtype=bool)
    np.put_along_axis(mask, top, True, axis=-1)
    return (np.sign(g) * mask).astype(np.int8).reshape(n_out, n_in).T.copy()


class _UnitRMSColumns(tf.keras.constraints.Constraint):
    """Weight-distribution normalization: every output column of the latent kernel at unit RMS."""

    def __call__(self, w):
        return w * tf.math.rsqrt(tf.reduce_mean(tf.square(w), axis=0, keepdims=True) + 1e-12)


class SSTQDense(QDense):
    """QDense whose kernel is an (N, K) structured sparse ternary code times a quantized scale.

    ``group`` N divides the inputs; ``nonzeros`` K <= N; ``per_output_scale``: a scale per output
    neuron (else one per layer); ``scale_quantizer``: a QKeras quantizer (string or object) for the
    scale; ``prune_steps``: training steps of the gradual pruning from N to K non-zeros per group;
    ``prune_fraction``: instead, that share of the training's steps (set by ``schedule_to``).
    The bias is quantized by ``bias_quantizer`` as in any QDense; there is no kernel quantizer.
    """

    def __init__(self, units, group=8, nonzeros=2, per_output_scale=True, scale_quantizer=DEFAULT_SCALE_QUANTIZER,
                 prune_steps=2000, prune_fraction=None, **kwargs):
        if kwargs.get('kernel_quantizer'):
            raise ValueError('SSTQDense: the (N, K) ternary code is the kernel quantizer; do not pass kernel_quantizer '
                             '(set scale_quantizer for the scale)')
        kwargs.pop('kernel_quantizer', None)
        if kwargs.get('kernel_constraint') is None:
            kwargs['kernel_constraint'] = _UnitRMSColumns()
        super().__init__(units, **kwargs)
        self.group, self.nonzeros = int(group), int(nonzeros)
        if not 1 <= self.nonzeros <= self.group:
            raise ValueError(f"layer '{self.name}': SST ({group}, {nonzeros}) needs 1 <= nonzeros <= group")
        self.per_output_scale = bool(per_output_scale)
        self.scale_quantizer = scale_quantizer
        self.scale_quantizer_internal = get_quantizer(scale_quantizer) if scale_quantizer else quantized_po2(8)
        self.prune_steps = int(prune_steps)
        self.prune_fraction = None if prune_fraction is None else float(prune_fraction)

    def schedule_to(self, total_steps: int) -> None:
        """Training will take ``total_steps`` optimizer steps: prune over ``prune_fraction`` of them."""
        if self.prune_fraction is not None:
            self.prune_steps = max(1, round(self.prune_fraction * total_steps))

    def build(self, input_shape):
        n_in = int(input_shape[-1])
        if n_in % self.group:
            raise ValueError(f"layer '{self.name}': SST group {self.group} does not divide its {n_in} inputs; pick a group "
                             f'that divides {n_in} (e.g. {max(d for d in (1, 2, 4, 8, 16) if n_in % d == 0)}) or pad the input')
        super().build(input_shape)
        # He-like start for a ternary kernel with K/N density: output variance ~ 2 var(x)
        s0 = float(np.sqrt(2.0 / (n_in * self.nonzeros / self.group)))
        self.scale = self.add_weight(name='scale', shape=(self.units if self.per_output_scale else 1,),
                                     initializer=tf.keras.initializers.Constant(s0), trainable=True)
        self.sst_step = self.add_weight(name='sst_step', shape=(), dtype='int64', trainable=False,
                                        initializer='zeros')

    def _allowed(self, training):
        """Non-zeros allowed per group now: K at inference, the gradual schedule in training."""
        if not training or self.prune_steps <= 0:
            return tf.constant(self.nonzeros, tf.int32)
        frac = tf.minimum(tf.cast(self.sst_step, tf.float32) / float(self.prune_steps), 1.0)
        extra = tf.math.ceil((self.group - self.nonzeros) * (1.0 - frac) ** 3)
        return self.nonzeros + tf.cast(extra, tf.int32)

    def _ternary(self, k):
        n_in = self.kernel.shape[0]
        g = tf.reshape(tf.transpose(self.kernel), (self.units, n_in // self.group, self.group))
        _, idx = tf.math.top_k(tf.abs(g), k=k)  # ties: the lower index first (as ternary_kernel)
        mask = tf.reduce_sum(tf.one_hot(idx, self.group, dtype=g.dtype), axis=-2)
        return tf.transpose(tf.reshape(tf.sign(g) * mask, (self.units, n_in)))

    def quantized_scale(self):
        return self.scale_quantizer_internal(tf.abs(self.scale))

    def call(self, inputs, training=None):
        t, s = self._ternary(self._allowed(training)), self.quantized_scale()
        if training:
            self.sst_step.assign_add(1)
            t = self.kernel + tf.stop_gradient(t - self.kernel)  # straight-through
            s = self.scale + tf.stop_gradient(s - self.scale)
        return bias_and_activation(self, tf.keras.backend.dot(inputs, t) * s)

    def get_config(self):
        config = super().get_config()
        config.pop('kernel_quantizer', None)
        config['kernel_constraint'] = None if isinstance(self.kernel_constraint, _UnitRMSColumns) else \
            tf.keras.constraints.serialize(self.kernel_constraint)
        sq = self.scale_quantizer
        config.update(group=self.group, nonzeros=self.nonzeros, per_output_scale=self.per_output_scale,
                      scale_quantizer=sq if isinstance(sq, str) or sq is None else str(sq), prune_steps=self.prune_steps,
                      prune_fraction=self.prune_fraction)
        return config

    def sst_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """(ternary kernel int8 (n_in, n_out), quantized scale float (n_out,) or (1,)) as inference uses them."""
        return ternary_kernel(self.kernel.numpy(), self.group, self.nonzeros), np.asarray(self.quantized_scale())
