"""The block-sparse LSTM as Verilog (flow/rtl/lstm_engine.py): the step MAC from the static structure
its HLS kernel is generated from (flow/runtime/lstm_engine.py) and the state update, time step after
time step. Verilated on exported QKeras LSTMs whose random weights reach every clip and saturation,
exact against the reference; sequences back to back."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from test_lstm import build
from test_lstm_cosim import IN_T, lstm, lstm_cases, n_kept_blocks

from flow.rtl import tools
from flow.rtl.engines import rtl_engine

pytestmark = [pytest.mark.rtl, pytest.mark.skipif(bool(tools.missing()), reason=f'RTL tools missing: {tools.missing()}')]


def simulate(tmp_path, model, rf_pick: int, in_type=IN_T, n=24, seed=0):
    """The rtl step's check of the model's LSTM (simulate_engines raises naming the first element
    that differs) on ``n`` random sequences, the extremes first; its report row."""
    from flow.export import to_integer_model
    from flow.rtl.build import simulate_engines

    im = to_integer_model(model, in_type)
    i = next(i for i, lay in enumerate(im.layers) if lay.kind == 'block_sparse_lstm')
    layer, prev = im.layers[i], im.layers[i - 1]
    rf = 1 + rf_pick % n_kept_blocks(im, layer.name)
    x = np.random.default_rng(seed).integers(in_type.min_code, in_type.max_code + 1, (n, int(np.prod(im.input.shape))))
    x[0], x[1] = in_type.max_code, in_type.min_code
    design = rtl_engine(layer, rf, prev.out_type, im.input.shape)
    row = simulate_engines([(layer, prev, design)], im.trace(x), tmp_path, 'p')[layer.name]
    steps = im.input.shape[0]
    assert row['cycles_per_sample'] == (n * steps * (rf + 4) + 1) / n and row['latency'] == steps * (rf + 4) + 1
    return row


@given(lstm_cases())
@settings(max_examples=2, deadline=None, suppress_health_check=list(HealthCheck))
def test_random_lstm_engines_equal_reference(tmp_path_factory, case):
    """Random shapes, blocks, densities, HCGS levels, bit widths, sequence lengths, ReuseFactors; the
    last h or every h."""
    import tensorflow as tf

    steps, n_in, units, block, rblock, drop, (kb, sb, tb, cell, hidden), seq, _, in_type, rf_pick, seed, levels = case
    layers = [lstm(units, 'lstm', kb, sb, tb, cell, hidden, block_shape=block, recurrent_block_shape=rblock,
                   drop_rate=drop, mask_seed=seed, return_sequences=seq, **levels)]
    if seq:
        layers.append(tf.keras.layers.Flatten(name='flat'))
    simulate(tmp_path_factory.mktemp('lstm_engine'), build((steps, n_in), *layers, seed=seed), rf_pick, in_type, seed=seed)


def test_an_lstm_engine_on_unsigned_inputs_equals_reference(tmp_path):
    """A ReLU before the LSTM: x_t is unsigned (a zero sign bit before the signed products); 3 steps, RF 3."""
    from qkeras import QActivation, quantized_relu

    model = build((3, 6), QActivation(quantized_relu(6, 2), name='relu'),
                  lstm(4, 'lstm', block_shape=(2, 2), recurrent_block_shape=(2, 2), drop_rate=0.5, mask_seed=2), seed=2)
    simulate(tmp_path, model, 2)


@pytest.mark.parametrize('mutation', ['recurrent', 'gate', 'cell'])
def test_a_wrong_lstm_engine_is_caught(tmp_path, monkeypatch, mutation):
    """Each part can fail the check: a recurrent product's alignment, a gate's activation input, the cell
    update; the reference names the layer, the time step and the unit."""
    import re

    import tensorflow as tf

    from flow.rtl import lstm_engine
    from flow.stages.verify import Mismatch

    model = build((4, 4), lstm(4, 'lstm', block_shape=(2, 2), recurrent_block_shape=(2, 2), drop_rate=0.5, mask_seed=1,
                               return_sequences=True), tf.keras.layers.Flatten(name='flat'), seed=1)
    good = lstm_engine.lstm_verilog

    def bad(*a):
        v = good(*a)
        if mutation == 'recurrent':  # a U product aligned one bit off
            return re.sub(r'(wire \[\d+:0\] qu\d+ = \$signed\(pu\d+\) <<< )(\d+)', lambda m: f'{m[1]}{int(m[2]) + 1}', v, count=1)
        if mutation == 'gate':  # unit 0's forget gate from its input gate's sum (z0 instead of z4)
            return '\n'.join(ln.replace('$signed(z4)', '$signed(z0)') if ln.startswith('    gf0 <= ') else ln for ln in v.split('\n'))
        return v.replace('begin c0 <= cast', 'begin c0 <= 1 + cast', 1)  # the update, not the reset

    monkeypatch.setattr(lstm_engine, 'lstm_verilog', bad)
    with pytest.raises(Mismatch, match=r"RTL engine \(lstm gather x 4 steps, RF 2\).*layer 'lstm'.*time step \d+, unit \d+"):
        simulate(tmp_path, model, 1)
    monkeypatch.undo()  # the same layer, engine as generated: exact
    simulate(tmp_path / 'ok', model, 1)
