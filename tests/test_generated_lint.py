"""The HLS lint (flow/stages/hls_lint.py) on the firmware hls4ml writes for small SST and LSTM
models and the fashion_cgs_cnn built-in: no finding in our code (the layer templates and the
per-layer kernels generated into nnet_code_gen.h), and the lint does reach those kernels (through
the config's kernel<...>): a generated kernel with its ROM reshape removed, or a write at a
table-read index, is reported."""

import re

import pytest

from flow.config import FlowConfig
from flow.export import to_integer_model
from flow.infra.boards import get_board
from flow.runtime.fixed import FixedType
from flow.stages.convert import convert_model
from flow.stages.hls_lint import lint_project

OURS = {'nnet_code_gen.h', 'nnet_sst_dense.h', 'nnet_block_sparse_lstm.h', 'nnet_block_sparse_conv2d.h'}


def _ours(findings):
    return [f for f in findings if f.file.split('/')[-1] in OURS]


def _convert(tmp_path, model, in_type, layers):
    """The converted project, lint-clean as hls4ml wrote it: the plan makes the top a DATAFLOW region
    (hls4ml would pipeline the top of an all-Latency model, unrolling these layers' loops)."""
    cfg = FlowConfig.load(None, model='user.h5', layers=layers)
    convert_model(model, to_integer_model(model, in_type), cfg, get_board('pynq-z2'), tmp_path / 'hls')
    hls = tmp_path / 'hls'
    top = (hls / 'firmware' / f'{cfg.project_name}.cpp').read_text()
    assert '#pragma HLS DATAFLOW' in top and '#pragma HLS PIPELINE' not in top
    assert lint_project(hls) == []
    return hls


def _mutate(hls, old, new):
    path = hls / 'firmware' / 'nnet_utils' / 'nnet_code_gen.h'
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_generated_block_sparse_firmware_is_lint_clean(tmp_path):
    """A CGS layer whose outputs are time-multiplexed (written to res at constant cycles inside the
    pipelined loop) is lint-clean; a write at an index read from an array is reported."""
    from test_cosim import build_keras

    model = build_keras(32, 16, (2, 4), 0.5, 4, 0, 3, False)
    hls = _convert(tmp_path, model, FixedType(8, 2), {'bs': {'reuse_factor': 24}})
    code = (hls / 'firmware' / 'nnet_utils' / 'nnet_code_gen.h').read_text()
    write = re.search(r'case \d+: res\[', code)[0]  # an output written at a constant cycle, inside the loop
    _mutate(hls, write, write + '(unsigned)weights[t] + ')  # at an index read from the weight ROM: reported
    assert {f.rule for f in _ours(lint_project(hls))} == {'table-index'}


def test_generated_sst_firmware_is_lint_clean(tmp_path):
    from test_sst import sst_model

    model = sst_model(n_in=32, units=(12, 4), group=(8, 4), k=(2, 3))
    hls = _convert(tmp_path, model, FixedType(6, 2), {'sst0': {'reuse_factor': 5}, 'sst1': {'reuse_factor': 3}})
    code = (hls / 'firmware' / 'nnet_utils' / 'nnet_code_gen.h').read_text()
    reshape = re.search(r'#pragma HLS ARRAY_RESHAPE variable=codes block factor=\d+ dim=1', code)[0]
    _mutate(hls, reshape, '')
    _mutate(hls, 'sum[0] = sum_t(sum[0] +', 'sum[codes[t] & 1] = sum_t(sum[0] +')
    rules = {f.rule for f in _ours(lint_project(hls))}
    assert rules == {'rom-ports', 'table-index'}


@pytest.mark.parametrize('rf', [1, 3])
def test_generated_lstm_firmware_is_lint_clean(tmp_path, rf):
    from test_lstm import build
    from test_lstm_cosim import IN_T, dense_head, lstm

    model = build((4, 6), lstm(8, 'lstm', block_shape=(2, 2), recurrent_block_shape=(1, 2), drop_rate=0.5),
                  dense_head(3), seed=3)
    hls = _convert(tmp_path, model, IN_T, {'lstm': {'reuse_factor': rf}})
    if rf > 1:
        reshape = re.search(r'#pragma HLS ARRAY_RESHAPE variable=w block factor=\d+ dim=1', (
            hls / 'firmware' / 'nnet_utils' / 'nnet_code_gen.h').read_text())[0]
        _mutate(hls, reshape, '')
        assert {f.rule for f in _ours(lint_project(hls))} == {'rom-ports'}


def test_generated_cnn_firmware_is_lint_clean(tmp_path):
    """fashion_cgs_cnn (random weights, its built-in ReuseFactors): hls4ml's conv1, our conv2 (one
    pipelined loop over the pixels' kernel cycles, nnet_block_sparse_conv2d.h, running the generated
    cycle function) and fc1. The lint reaches the cycle function through the mult config's
    kernel<...>::cycle: its ROM reshape removed, or an accumulator written at a table-read index,
    is reported."""
    from user_models import random_weights

    from keras_models.builtin import fashion_cgs_cnn as cnn

    hls = _convert(tmp_path, random_weights(cnn.build(), 0), FixedType.parse(cnn.INPUT_PRECISION), cnn.FLOW_DEFAULTS['layers'])
    assert 'nnet::block_sparse_conv_2d_cl<' in (hls / 'firmware' / 'sparsenet.cpp').read_text()
    code = (hls / 'firmware' / 'nnet_utils' / 'nnet_code_gen.h').read_text()
    cycle = re.search(r'void block_sparse_conv_\d+\(.*?\n}\n', code, re.S)[0]
    reshape = re.search(r'    #pragma HLS ARRAY_RESHAPE variable=weights block factor=\d+ dim=1\n', cycle)[0]
    mutated = re.sub(r'acc\[\d+\] = acc_t\(', 'acc[weights[t] != 0] = acc_t(', cycle.replace(reshape, ''), count=1)
    _mutate(hls, cycle, mutated)
    findings = _ours(lint_project(hls))
    assert {f.rule for f in findings} == {'rom-ports', 'table-index'}
    assert all(f.function.startswith('block_sparse_conv_') for f in findings)
