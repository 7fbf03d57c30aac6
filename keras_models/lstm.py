"""HCGS-style LSTM: a quantized LSTM whose input and recurrent kernels are restricted to fixed
random block masks, one mask per kernel shared by the four gates (Kadetotad et al., JSSC 2020:
one index stream drives the four weight streams W_i, W_f, W_g, W_o).

Per time step t (initial h = c = 0), with every tensor on a fixed-point grid:

    z = x_t Wq + h Uq + bq                      exact sums (Wq, Uq: quantized, then masked)
    i, f, o = recurrent_activation(z_i, z_f, z_o)   quantized_sigmoid(bits), hard form
    g = activation(z_g)                             quantized_tanh(bits), hard form
    c = cell_quantizer(f * c + i * g)               quantized_bits: round half to even, saturate
    h = state_quantizer(o * activation(c))          quantized_bits: round half to even, saturate

The two state casts are QKeras' quantized_bits(bits, integer) as an activation: round half to even
onto the 2^-(bits-1-integer) grid, then saturate to the code range, i.e. ap_fixed<bits, integer + 1,
AP_RND_CONV, AP_SAT> (AP_SAT_SYM with symmetric=1; flow/export/quantizers.py); the reference casts with
exactly these modes. Gate column order in both kernels and the bias: i, f, g, o (Keras' LSTM order). The quantizers
are QKeras' own objects, so this float computation is what flow/runtime/ref_lstm.py computes on
integer codes; it is exact in float32 while every value stays within 2^24 of its LSB
(``BlockSparseLSTM.float32_bound`` in the reference says where).

The time loop is a static Python loop (the sequence length must be known): simple and the same
operations in the same order at every step.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from qkeras.quantizers import get_quantizer

from .masks import expand, make_hierarchical_mask

GATES = 4  # i, f, g, o
# the recurrent kernel's mask is drawn from another seed than the input kernel's (independent masks)
RECURRENT_SEED_OFFSET = 1_000_003


class _MaskAfterStep(tf.keras.constraints.Constraint):
    """Zeroes the dropped blocks after every optimizer step (Keras applies a variable's constraint
    after each update), so dropped weights stay exactly 0.0 and never train."""

    def __init__(self, mask_fn):
        self.mask_fn = mask_fn

    def __call__(self, w):
        return w * self.mask_fn()


def _quantizer(q):
    return get_quantizer(q) if q is not None else None


def _serialize(q):
    return tf.keras.constraints.serialize(q)  # what QDense does: {'class_name', 'config'}, read by get_quantizer


class BlockSparseQLSTM(tf.keras.layers.Layer):
    """Quantized LSTM with fixed random block masks (CGS, or any registered mask method).

    ``block_shape`` tiles the input kernel per gate (n_in x units), ``recurrent_block_shape`` the
    recurrent kernel per gate (units x units); ``drop_rate`` / ``recurrent_drop_rate`` the share of
    blocks dropped. Masks are drawn once at build time from ``mask_seed`` and stored as non-trainable
    weights (a saved model carries them), applied after the kernel quantizers (a quantizer may map
    0 to a non-zero code) and re-applied to the latent kernels after every optimizer step.

    The Keras names ``activation`` / ``recurrent_activation`` are kept as arguments; the quantizers
    live in ``cell_activation`` / ``gate_activation`` (the flow reads a layer's ``.activation`` as
    an activation node of its own, which these are not).
    """

    def __init__(self, units, block_shape=(4, 4), recurrent_block_shape=None, drop_rate=0.5, recurrent_drop_rate=None,
                 mask_method='cgs', mask_seed=0, return_sequences=False, levels=None, recurrent_levels=None,
                 kernel_quantizer='quantized_bits(6, 0, alpha=1)', recurrent_quantizer='quantized_bits(6, 0, alpha=1)',
                 bias_quantizer='quantized_bits(8, 2, alpha=1)', recurrent_activation='quantized_sigmoid(8)',
                 activation='quantized_tanh(8)', cell_quantizer='quantized_bits(12, 3, alpha=1)',
                 state_quantizer='quantized_bits(8, 0, alpha=1)', kernel_initializer='glorot_uniform',
                 recurrent_initializer='orthogonal', unit_forget_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        # HCGS: [(block, drop), ...] coarsest first per kernel; the last level is the block shape
        levels = [(tuple(int(b) for b in blk), float(d)) for blk, d in levels] if levels else None
        recurrent_levels = [(tuple(int(b) for b in blk), float(d)) for blk, d in recurrent_levels] if recurrent_levels \
            else (levels if recurrent_block_shape is None else None)
        if levels:
            block_shape, drop_rate = levels[-1]
        if recurrent_levels:
            recurrent_block_shape, recurrent_drop_rate = recurrent_levels[-1]
        self.block_shape = tuple(int(b) for b in block_shape)
        self.recurrent_block_shape = tuple(int(b) for b in (recurrent_block_shape or block_shape))
        self.drop_rate = float(drop_rate)
        self.recurrent_drop_rate = float(self.drop_rate if recurrent_drop_rate is None else recurrent_drop_rate)
        self.levels = levels or [(self.block_shape, self.drop_rate)]
        self.recurrent_levels = recurrent_levels or [(self.recurrent_block_shape, self.recurrent_drop_rate)]
        self.mask_method = mask_method
        self.mask_seed = int(mask_seed)
        self.return_sequences = bool(return_sequences)
        self.kernel_quantizer_internal = _quantizer(kernel_quantizer)
        self.recurrent_quantizer_internal = _quantizer(recurrent_quantizer)
        self.bias_quantizer_internal = _quantizer(bias_quantizer)
        self.gate_activation = _quantizer(recurrent_activation)
        self.cell_activation = _quantizer(activation)
        self.cell_quantizer_internal = _quantizer(cell_quantizer)
        self.state_quantizer_internal = _quantizer(state_quantizer)
        missing = [k for k, q in (('kernel_quantizer', self.kernel_quantizer_internal),
                                  ('recurrent_quantizer', self.recurrent_quantizer_internal),
                                  ('bias_quantizer', self.bias_quantizer_internal),
                                  ('recurrent_activation', self.gate_activation), ('activation', self.cell_activation),
                                  ('cell_quantizer', self.cell_quantizer_internal),
                                  ('state_quantizer', self.state_quantizer_internal)) if q is None]
        if missing:
            raise ValueError(f"layer '{self.name}': {missing} must be QKeras quantizers (every tensor has a fixed-point "
                             'type in hardware); e.g. quantized_bits(8, 0, alpha=1)')
        self.kernel_initializer = tf.keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = tf.keras.initializers.get(recurrent_initializer)
        self.unit_forget_bias = bool(unit_forget_bias)

    # --- weights ------------------------------------------------------------------------------

    def build(self, input_shape):
        if len(input_shape) != 3 or input_shape[1] is None or input_shape[2] is None:
            raise ValueError(f"layer '{self.name}': needs a (batch, time steps, features) input with a fixed number of "
                             f'time steps and features, got {tuple(input_shape)}; give the Input a shape like (49, 40)')
        n_in, u = int(input_shape[-1]), self.units
        w_mask = make_hierarchical_mask(self.mask_method, self.name, (n_in, u), self.levels, self.mask_seed)
        u_mask = make_hierarchical_mask(self.mask_method, f'{self.name} (recurrent kernel)', (u, u), self.recurrent_levels,
                                        self.mask_seed + RECURRENT_SEED_OFFSET)
        self.block_mask = self.add_weight(name='block_mask', shape=w_mask.shape, trainable=False, dtype='float32',
                                          initializer=tf.keras.initializers.Constant(w_mask.astype(np.float32)))
        self.recurrent_block_mask = self.add_weight(
            name='recurrent_block_mask', shape=u_mask.shape, trainable=False, dtype='float32',
            initializer=tf.keras.initializers.Constant(u_mask.astype(np.float32)))
        self.kernel = self.add_weight(name='kernel', shape=(n_in, GATES * u), initializer=self.kernel_initializer,
                                      constraint=_MaskAfterStep(self.element_mask))
        self.recurrent_kernel = self.add_weight(name='recurrent_kernel', shape=(u, GATES * u),
                                                initializer=self.recurrent_initializer,
                                                constraint=_MaskAfterStep(self.recurrent_element_mask))
        if self.unit_forget_bias:  # forget gate open at the start (Keras' default), 1.0 is on any grid with integer >= 1
            init = np.concatenate([np.zeros(u), np.ones(u), np.zeros(2 * u)]).astype(np.float32)
        else:
            init = np.zeros(GATES * u, np.float32)
        self.bias = self.add_weight(name='bias', shape=(GATES * u,), initializer=tf.keras.initializers.Constant(init))
        super().build(input_shape)
        self.kernel.assign(self.kernel * self.element_mask())
        self.recurrent_kernel.assign(self.recurrent_kernel * self.recurrent_element_mask())

    @staticmethod
    def _gate_mask(block_mask, block):
        """(rows, cols) block mask -> element mask of one gate, tiled across the four gates."""
        bi, bo = block
        one = tf.repeat(tf.repeat(block_mask, bi, axis=0), bo, axis=1)
        return tf.tile(one, [1, GATES])

    def element_mask(self):
        return self._gate_mask(self.block_mask, self.block_shape)

    def recurrent_element_mask(self):
        return self._gate_mask(self.recurrent_block_mask, self.recurrent_block_shape)

    def get_block_mask(self) -> np.ndarray:
        return self.block_mask.numpy().astype(bool)

    def get_recurrent_block_mask(self) -> np.ndarray:
        return self.recurrent_block_mask.numpy().astype(bool)

    def element_masks_numpy(self) -> tuple[np.ndarray, np.ndarray]:
        """The (n_in, 4u) and (u, 4u) element masks as numpy arrays (the gates share one mask)."""
        return (np.tile(expand(self.get_block_mask(), self.block_shape), (1, GATES)),
                np.tile(expand(self.get_recurrent_block_mask(), self.recurrent_block_shape), (1, GATES)))

    def quantized_weights(self):
        """(W, U, b) as the forward pass uses them: quantized, then masked."""
        w = self.kernel_quantizer_internal(self.kernel) * self.element_mask()
        r = self.recurrent_quantizer_internal(self.recurrent_kernel) * self.recurrent_element_mask()
        return w, r, self.bias_quantizer_internal(self.bias)

    # --- forward ------------------------------------------------------------------------------

    def call(self, inputs):
        w, r, b = self.quantized_weights()
        u, steps = self.units, inputs.shape[1]
        xw = tf.einsum('nti,ij->ntj', inputs, w)  # x_t W for every step at once: the same exact sums
        h = tf.zeros_like(xw[:, 0, :u])
        c = tf.zeros_like(h)
        outputs = []
        for t in range(steps):
            z = xw[:, t] + tf.matmul(h, r) + b
            i = self.gate_activation(z[:, :u])
            f = self.gate_activation(z[:, u:2 * u])
            g = self.cell_activation(z[:, 2 * u:3 * u])
            o = self.gate_activation(z[:, 3 * u:])
            c = self.cell_quantizer_internal(f * c + i * g)
            h = self.state_quantizer_internal(o * self.cell_activation(c))
            outputs.append(h)
        return tf.stack(outputs, axis=1) if self.return_sequences else h

    def compute_output_shape(self, input_shape):
        if self.return_sequences:
            return tf.TensorShape((input_shape[0], input_shape[1], self.units))
        return tf.TensorShape((input_shape[0], self.units))

    def get_config(self):
        config = super().get_config()
        config.update(
            units=self.units, block_shape=list(self.block_shape), recurrent_block_shape=list(self.recurrent_block_shape),
            drop_rate=self.drop_rate, recurrent_drop_rate=self.recurrent_drop_rate, mask_method=self.mask_method,
            mask_seed=self.mask_seed, return_sequences=self.return_sequences,
            levels=[[list(b), d] for b, d in self.levels] if len(self.levels) > 1 else None,
            recurrent_levels=[[list(b), d] for b, d in self.recurrent_levels] if len(self.recurrent_levels) > 1 else None,
            kernel_quantizer=_serialize(self.kernel_quantizer_internal),
            recurrent_quantizer=_serialize(self.recurrent_quantizer_internal),
            bias_quantizer=_serialize(self.bias_quantizer_internal),
            recurrent_activation=_serialize(self.gate_activation), activation=_serialize(self.cell_activation),
            cell_quantizer=_serialize(self.cell_quantizer_internal),
            state_quantizer=_serialize(self.state_quantizer_internal),
            kernel_initializer=tf.keras.initializers.serialize(self.kernel_initializer),
            recurrent_initializer=tf.keras.initializers.serialize(self.recurrent_initializer),
            unit_forget_bias=self.unit_forget_bias,
        )
        return config
