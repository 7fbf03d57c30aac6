"""Strategy ``distributed_arithmetic`` (hls4ml 1.3.0 + da4ml: the constant kernel as a
multiplier-free shift-and-add graph, ReuseFactor 1), per layer, for our block-sparse layers and
hls4ml's own dense kinds: the C simulation equals the integer reference bit for bit, the generated
HLS really is the DA code where asked and our template elsewhere, and bad settings are refused
early in one line (exit code 2)."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from flow.config import FlowConfig
from flow.infra.boards import get_board
from flow.plan import make_plan
from flow.runtime.ref_layers import DA
from flow.infra.errors import BadInput
from flow.export import to_integer_model
from flow.runtime.fixed import FixedType
from test_cosim import build_keras, check_cosim
from test_layers import chain, qdense
from user_models import small_mlp

DA_LAYER = {'strategy': DA, 'reuse_factor': 1}


def layer_calls(hls_dir) -> dict[str, str]:
    """layer name -> the C++ call that computes it in the top function (hls4ml comments each
    call with the layer's name)."""
    top = next(p for p in (hls_dir / 'firmware').glob('*.cpp') if not p.name.endswith('_axi.cpp'))
    calls = re.findall(r'^\s*(nnet::\w+)<[^;]*;\s*// (\w+)\s*$', top.read_text(), flags=re.M)
    return {name: fn for fn, name in calls}


def da_functions(hls_dir) -> dict[str, str]:
    """da4ml's generated functions (hls4ml writes them into nnet_utils/nnet_code_gen.h): name -> body."""
    code = (hls_dir / 'firmware' / 'nnet_utils' / 'nnet_code_gen.h').read_text()
    return dict(re.findall(r'void (dense_da_\d+)\(.*?\n(.*?)\n}', code, flags=re.S))


def assert_shift_and_add(hls_dir, calls, names):
    """Each named layer calls its own da4ml function, built of shifts and adds: no multiplier."""
    funcs = da_functions(hls_dir)
    for name in names:
        fn = calls[name].removeprefix('nnet::')
        assert fn in funcs, (name, calls[name], list(funcs))
        assert ' * ' not in funcs[fn] and ('bit_shift<' in funcs[fn] or ' + ' in funcs[fn]), funcs[fn][:400]
    assert len(funcs) == len(names)


@pytest.mark.slow
def test_default_model_with_da_layers_is_verified_bit_exact(tmp_path):
    """fc1 (block-sparse) and logits (QDense) by hls4ml's DA Dense, fc2 by our template: the flow's
    own steps up to verify, exact on every golden vector."""
    from flow.steps import run_flow

    # fc1 at 1/8 of its blocks (the default keeps 1/4): half the shift-and-add code for g++ to compile
    cfg = FlowConfig.load(None, epochs=3, n_golden=32, model_params={'drop_rate': 0.875},
                          layers={'fc1': DA_LAYER, 'logits': DA_LAYER})
    assert (cfg.layers['logits'].strategy, cfg.layers['fc2'].reuse_factor) == (DA, 16)  # merged with the model's defaults
    run_flow(cfg, tmp_path, to_step='verify')
    report = json.loads((tmp_path / 'reports' / 'verify.json').read_text())
    assert report['reference_vs_csim'] == {'equal_vectors': 32, 'exact': True}
    assert report['qkeras_vs_reference']['all_layers_exact'] is True
    assert report['accelerator_testbench'].startswith('PASS: 32 samples')
    calls = layer_calls(tmp_path / 'hls')
    assert calls['fc1'].startswith('nnet::dense_da_') and calls['logits'].startswith('nnet::dense_da_')
    assert calls['fc2'] == 'nnet::block_sparse_dense'
    assert_shift_and_add(tmp_path / 'hls', calls, ['fc1', 'logits'])
    weights = {p.stem for p in (tmp_path / 'hls' / 'firmware' / 'weights').glob('*.txt')}
    assert len(weights) == 2  # fc2's weight banks and bias only (its schedule is in its generated kernel): DA layers have their constants in the code
    costs = json.loads((tmp_path / 'hls' / 'da_layers.json').read_text())  # da4ml's LUT estimates, for the estimate
    assert sorted(costs) == ['fc1', 'logits'] and all(c['lut_estimate'] > 0 for c in costs.values())


@pytest.mark.csim
@pytest.mark.parametrize('n_in, n_out, block, drop, wbits, wint, in_type, head, narrow, seed', [
    (16, 8, (4, 4), 0.5, 4, 0, FixedType(8, 2), True, False, 5),
    (32, 24, (8, 8), 0.75, 2, 0, FixedType(6, 3), False, True, 11),
    (12, 16, (2, 4), 0.25, 8, 1, FixedType(10, 1), True, True, 23),
    (8, 4, (1, 1), 0.0, 5, 1, FixedType(4, 1), False, False, 42),
])
def test_random_block_sparse_layers_with_da_are_exact(tmp_path, n_in, n_out, block, drop, wbits, wint, in_type, head,
                                                      narrow, seed):
    model = build_keras(n_in, n_out, block, drop, wbits, wint, seed, head)
    layers = {'bs': dict(DA_LAYER)}
    if narrow:  # a rounding, saturating result cast after the exact sum
        layers['bs']['result'] = 'ap_fixed<8,3,AP_RND_CONV,AP_SAT>'
    if head:  # hls4ml's own Dense, left on its Latency strategy
        layers['head'] = {'reuse_factor': 1}
    cfg = FlowConfig.load(None, model='user.h5', layers=layers)
    check_cosim(tmp_path, model, in_type, cfg, n_vectors=128, seed=seed)
    calls = layer_calls(tmp_path / 'hls')
    assert_shift_and_add(tmp_path / 'hls', calls, ['bs'])
    if head:
        assert calls['head'] == 'nnet::dense'
    assert 'nnet::block_sparse_dense' not in calls.values()


@pytest.mark.csim
def test_model_wide_da_on_hls4ml_dense_and_po2_kernels(tmp_path):
    """strategy: distributed_arithmetic for the whole model: every dense kind, po2 kernels included
    (da4ml takes the power-of-two constants as they are: shifts, no exponent storage)."""
    from qkeras import QActivation, quantized_po2, quantized_relu

    from flow.infra.boards import get_board
    from flow.stages.convert import compile_csim, convert_model
    from flow.export import layer_overrides
    from flow.stages.verify import compare_reference_csim, csim_library

    model = chain(8, qdense(6, 'p1', kernel=quantized_po2(4)), QActivation(quantized_relu(6, 2), name='r'),
                  qdense(4, 'd2'), seed=4)
    cfg = FlowConfig.load(None, model='user.h5', strategy=DA)
    in_type = FixedType(8, 0)
    im = to_integer_model(model, in_type, layer_overrides(cfg))
    assert [l.kind for l in im.layers[1:]] == ['dense_po2', 'relu', 'dense']
    convert_model(model, im, cfg, get_board('pynq-z2'), tmp_path / 'hls')
    compile_csim(tmp_path / 'hls')
    lib = csim_library(tmp_path, im, cfg.project_name)
    x_codes = np.random.default_rng(0).integers(in_type.min_code, in_type.max_code + 1, size=(200, 8))
    x_codes[0], x_codes[1] = in_type.max_code, in_type.min_code
    compare_reference_csim(im, lib, in_type.to_float(x_codes), x_codes)
    calls = layer_calls(tmp_path / 'hls')
    assert_shift_and_add(tmp_path / 'hls', calls, ['p1', 'd2'])


# --- bad settings -------------------------------------------------------------------------------


@pytest.mark.parametrize('cfg, message', [
    (dict(layers={'fc1': {'strategy': DA, 'reuse_factor': 4}}),
     r"^layer 'fc1': strategy distributed_arithmetic needs ReuseFactor 1, it has 4; set reuse_factor: 1 for that layer"),
    (dict(strategy=DA, reuse_factor=2),
     r"^layer 'fc1': strategy distributed_arithmetic needs ReuseFactor 1, it has 2 \(the model-wide reuse_factor\); "
     r'set reuse_factor: 1 for that layer'),
    (dict(layers={'relu1': {'strategy': DA}}),
     r"^layer 'relu1' \(relu\): strategy distributed_arithmetic does not apply, it takes no strategy; remove strategy "
     r'for that layer$'),
    (dict(layers={'logits': {'strategy': DA, 'accum': 'ap_fixed<24,8>'}}),
     r"^layer 'logits': strategy distributed_arithmetic adds exactly and has no accumulator type; remove accum"),
])
def test_bad_da_settings_are_refused_naming_the_layer_and_the_fix(cfg, message):
    model = small_mlp(block_sparse=True)
    cfg = FlowConfig.load(None, model='user.h5', **cfg)
    im = to_integer_model(model, FixedType(8, 3))
    with pytest.raises(BadInput, match=message):
        make_plan(im, cfg, get_board('pynq-z2'))


def test_model_wide_da_with_reuse_factor_1_is_accepted():
    model = small_mlp(block_sparse=True)
    plan = make_plan(to_integer_model(model, FixedType(8, 3)), FlowConfig.load(None, model='user.h5', strategy=DA),
                     get_board('pynq-z2'))
    assert {n: p.strategy for n, p in plan.layers.items() if p.reuse_factor} == {'fc1': DA, 'logits': DA}


def test_unknown_strategy_is_a_config_error():
    with pytest.raises(ValueError, match="'latency', 'resource' or 'distributed_arithmetic'"):
        FlowConfig.load(None, layers={'fc1': {'strategy': 'da4ml'}})


@pytest.mark.parametrize('config, message', [
    ('layers: {fc1: {strategy: distributed_arithmetic}}\n',  # the model's default ReuseFactor 16 for fc1
     "bad input: layer 'fc1': strategy distributed_arithmetic needs ReuseFactor 1, it has 16; set reuse_factor: 1 for "
     'that layer (layers: {fc1: {reuse_factor: 1}}) or choose strategy latency/resource'),
    ('layers: {relu1: {strategy: distributed_arithmetic}}\n',
     "bad input: layer 'relu1' (relu): strategy distributed_arithmetic does not apply, it takes no strategy; remove "
     'strategy for that layer'),
])
def test_cli_refuses_bad_da_settings_before_training(tmp_path, config, message):
    (tmp_path / 'flow.yaml').write_text(config)
    res = subprocess.run([sys.executable, '-m', 'flow.cli', '--config', str(tmp_path / 'flow.yaml'),
                          '--build-dir', str(tmp_path / 'b')], capture_output=True, text=True)
    assert res.returncode == 2, res.stderr
    lines = [l for l in (res.stdout + res.stderr).splitlines() if 'bad input' in l]
    assert lines == [message], res.stdout + res.stderr
    manifest = json.loads((tmp_path / 'b' / 'manifest.json').read_text()) if (tmp_path / 'b' / 'manifest.json').exists() else {}
    assert 'train' not in manifest.get('steps', {})  # refused before any training
