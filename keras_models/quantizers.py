"""Weight quantizers of the compression papers that QKeras does not have, usable like any QKeras
quantizer (kernel_quantizer=..., saved with the model, loaded by keras_models.layers.load_model)."""

from __future__ import annotations

import tensorflow as tf
from qkeras.quantizers import BaseQuantizer


class sign_magnitude(BaseQuantizer):  # noqa: N801  (QKeras names quantizers in lower case)
    """HCGS's weight quantizer (Kadetotad et al., JSSC 2020): clip to [-1, 1], then a sign and a
    magnitude k / 2^(bits-1), k = 1 .. 2^(bits-1), the nearest level (halves round up). There is
    no zero code: zeros come only from the mask (apply it after this quantizer, as
    BlockSparseQDense does). Straight-through gradient. The values are exact in float32 and on
    the grid of an ap_fixed<bits + 1, 2> (flow.export.quantizers.kernel_type)."""

    def __init__(self, bits: int = 3):
        super().__init__()
        if int(bits) < 1:
            raise ValueError(f'sign_magnitude needs at least 1 bit, got {bits}')
        self.bits = int(bits)
        self.keep_negative = True

    @property
    def levels(self) -> int:
        return 2 ** (self.bits - 1)

    def __call__(self, x):
        x = tf.convert_to_tensor(x, dtype=tf.float32)
        m = float(self.levels)
        k = tf.clip_by_value(tf.floor(tf.abs(x) * m + 0.5), 1.0, m)
        q = tf.where(x < 0, -k, k) / m
        # straight-through inside [-1, 1] (the clip's gradient outside); q + (c - c) is exactly q,
        # where QKeras' x + (q - x) can miss it by a rounding
        c = tf.clip_by_value(x, -1.0, 1.0)
        return tf.stop_gradient(q) + (c - tf.stop_gradient(c))

    def max(self):
        return 1.0

    def min(self):
        return -1.0

    def get_config(self):
        return {'bits': self.bits}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __str__(self):
        return f'sign_magnitude({self.bits})'


# QKeras (and hls4ml's parser, through qkeras.get_quantizer) deserialize quantizers through Keras'
# global custom objects: a saved model names this class and must find it
tf.keras.utils.get_custom_objects()['sign_magnitude'] = sign_magnitude
