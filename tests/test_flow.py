"""The build-bitstream flow end to end: steps, manifest, resume, corruption, tool stop, user models."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from flow.infra.build_dir import CorruptBuild
from flow.config import FlowConfig
from flow.infra.errors import BadInput
from flow.steps import ToolMissing, run_flow, step_names

pytestmark = pytest.mark.slow
FAST = dict(epochs=15, n_golden=64)


def test_default_flow_is_verified_bit_exact(default_build):
    root = default_build.root
    manifest = json.loads((root / 'manifest.json').read_text())
    assert list(manifest['steps']) == step_names()[: step_names().index('estimate') + 1]
    report = json.loads((root / 'reports' / 'verify.json').read_text())
    assert report['reference_vs_csim'] == {'equal_vectors': 64, 'exact': True}
    assert report['qkeras_vs_reference']['all_layers_exact'] is True
    assert report['qkeras_vs_reference']['exact_layers'] == ['fc1', 'relu1', 'fc2', 'relu2', 'logits']
    assert report['accuracy']['csim'] > 0.85
    assert report['accelerator_testbench'] == 'PASS: 64 samples, 192 output words bit-exact'
    assert (root / 'golden' / 'axi_in_words.hex').read_text().count('\n') == 64 * 8  # 64 pixels / 8 lanes
    golden = np.load(root / 'golden' / 'output_codes.npy')
    assert golden.shape == (64, 10) and golden.dtype == np.int64
    est = json.loads((root / 'reports' / 'estimate.json').read_text())
    assert est['total']['fits'] is True
    fp = json.loads((root / 'reference' / 'footprint.json').read_text())
    assert fp['total']['ratio_vs_float32'] > 10
    assert (root / 'hls' / 'firmware' / 'nnet_utils' / 'nnet_block_sparse_dense.h').is_file()


def test_rerun_keeps_completed_steps(default_build):
    before = json.loads((default_build.root / 'manifest.json').read_text())
    run_flow(FlowConfig.load(None, **FAST), default_build.root, to_step='estimate')
    after = json.loads((default_build.root / 'manifest.json').read_text())
    assert after == before


def test_missing_vendor_tool_stops_with_exit_code_3(default_build):
    res = subprocess.run(
        [sys.executable, '-m', 'flow.cli', '--build-dir', str(default_build.root), '--epochs', '15', '--n-golden', '64'],
        capture_output=True, text=True,
    )
    assert res.returncode == 3, res.stderr
    text = ' '.join(res.stderr.split())
    assert 'Vitis HLS not found on PATH' in text
    assert f'the project is ready at {default_build.root / "hls"}' in text
    assert '--from-step hls_synth' in text
    assert 'deployment package without bitstream' in text
    assert not (default_build.root / '.staging').exists()
    manifest = json.loads((default_build.root / 'manifest.json').read_text())['steps']
    assert 'hls_synth' not in manifest and 'vivado_bitstream' not in manifest and manifest['package']['status'] == 'done'
    assert manifest['package']['summary']['bitstream'] is False


@pytest.fixture
def build_copy(default_build, tmp_path):
    dst = tmp_path / 'copy'
    shutil.copytree(default_build.root, dst)
    return dst


def test_changed_file_is_a_corrupt_build(build_copy):
    (build_copy / 'reference' / 'reference.json').write_text('{}')
    with pytest.raises(CorruptBuild, match=r'reference\.json changed since step export_reference.*--from-step export_reference'):
        run_flow(FlowConfig.load(None, **FAST), build_copy, from_step='verify', to_step='verify')


def test_failed_step_leaves_previous_results_untouched(build_copy, monkeypatch):
    import flow.stages.verify

    good = (build_copy / 'golden' / 'output_codes.npy').read_bytes()

    def broken(ctx):
        (ctx.stage / 'golden' / 'output_codes.npy').write_bytes(b'partial')
        raise RuntimeError('simulated crash in the middle of verify')

    monkeypatch.setattr(flow.stages.verify, 'verify_build', broken)
    with pytest.raises(RuntimeError, match='simulated crash'):
        run_flow(FlowConfig.load(None, **FAST), build_copy, from_step='verify', to_step='verify')
    assert (build_copy / 'golden' / 'output_codes.npy').read_bytes() == good
    # the last good run's results and records stay: nothing finished is lost by a failed rerun
    manifest = json.loads((build_copy / 'manifest.json').read_text())
    assert manifest['steps']['verify']['status'] == 'done' and 'estimate' in manifest['steps']
    assert not (build_copy / '.staging').exists()
    run_flow(FlowConfig.load(None, **FAST), build_copy, from_step='estimate', to_step='estimate')


def test_a_failed_in_place_step_forgets_what_it_may_have_changed(build_copy, monkeypatch):
    import flow.stages.convert

    def broken(hls_dir):
        raise RuntimeError('simulated crash while compiling')

    monkeypatch.setattr(flow.stages.convert, 'compile_csim', broken)
    with pytest.raises(RuntimeError, match='simulated crash'):
        run_flow(FlowConfig.load(None, **FAST), build_copy, from_step='csim_compile', to_step='csim_compile')
    manifest = json.loads((build_copy / 'manifest.json').read_text())['steps']
    assert 'convert' in manifest and 'csim_compile' not in manifest and 'verify' not in manifest
    with pytest.raises(BadInput, match='step csim_compile has not run'):
        run_flow(FlowConfig.load(None, **FAST), build_copy, from_step='verify', to_step='verify')


def test_from_step_requires_earlier_steps(tmp_path):
    with pytest.raises(BadInput, match='step train has not run'):
        run_flow(FlowConfig.load(None, **FAST), tmp_path, from_step='convert')


def test_tool_missing_is_raised_from_python(default_build, tmp_path):
    with pytest.raises(ToolMissing, match='rerun with `--from-step hls_synth`'):
        run_flow(FlowConfig.load(None, **FAST), default_build.root, from_step='hls_synth', to_step='hls_synth')


def test_user_model_file_with_yaml_config(default_build, tmp_path):
    """A user's saved model (with our layers) and a YAML config for precision and ReuseFactor."""
    cfg_file = tmp_path / 'flow.yaml'
    cfg_file.write_text(
        f"model: {default_build.root / 'train' / 'model.h5'}\n"
        'input_precision: ap_fixed<6,2>\n'
        'n_golden: 32\n'
        'layers:\n'
        '  fc1: {reuse_factor: 32}\n'
        '  fc2: {reuse_factor: 4, result: "ap_fixed<10,5,AP_RND_CONV,AP_SAT>"}\n'
        '  logits: {reuse_factor: 4, strategy: resource}\n'
        'rtl: false\n'  # the RTL level has tests of its own (tests/test_rtl.py)
    )
    ctx = run_flow(FlowConfig.load(cfg_file), tmp_path / 'b', to_step='estimate')
    est = json.loads((ctx.root / 'reports' / 'estimate.json').read_text())
    assert est['layers']['fc1']['ours']['multipliers'] == 1024 // 32
    assert est['layers']['fc1']['ours']['cycles'] == 32
    # no RTL level: the block-sparse engines' LUT/FF come from their schedules, and say so
    engines = [est['layers'][n]['ours'] for n in ('fc1', 'fc2')]
    assert est['total']['fit']['lut']['source'] == 'estimated'
    assert est['total']['fit']['lut']['used'] == sum(o['lut_estimate'] for o in engines) > 0
    assert 'logits not estimated' in est['total']['fit']['ff']['detail']
    ref = json.loads((ctx.root / 'reference' / 'reference.json').read_text())
    fc2 = next(l for l in ref['layers'] if l['name'] == 'fc2')
    assert fc2['out_type'] == {'width': 10, 'integer': 5, 'signed': True, 'rounding': 'RND_CONV', 'overflow': 'SAT'}
    report = json.loads((ctx.root / 'reports' / 'verify.json').read_text())
    assert report['reference_vs_csim']['exact'] is True
    # fc2's narrower result type rounds in hardware; QKeras does not model it, so it is compared
    # exactly up to fc1/relu1 and the report says why it stops there
    assert report['qkeras_vs_reference']['exact_layers'] == ['fc1', 'relu1']
    assert "from layer 'fc2' on" in report['qkeras_vs_reference']['reason']


def test_a_reuse_factor_hls4ml_would_change_is_refused_before_training(default_build, tmp_path):
    cfg = FlowConfig.load(None, model=str(default_build.root / 'train' / 'model.h5'), input_precision='ap_fixed<6,2>',
                          layers={'logits': {'reuse_factor': 7, 'strategy': 'resource'}})
    with pytest.raises(BadInput, match=r"layer 'logits' \(dense\): ReuseFactor 7 is not one it can be built with: 1, 2, 4, "
                                       r".*\(the values hls4ml's Resource Dense keeps for 32x10 products\)"):
        run_flow(cfg, tmp_path / 'b', to_step='convert')
    assert not (tmp_path / 'b' / 'train').exists()


def test_a_changed_setting_reruns_only_the_steps_that_read_it(build_copy):
    before = json.loads((build_copy / 'manifest.json').read_text())['steps']
    run_flow(FlowConfig.load(None, epochs=15, n_golden=32, rtl=False), build_copy, to_step='estimate')
    after = json.loads((build_copy / 'manifest.json').read_text())['steps']
    for kept in ('train', 'export_reference', 'plan', 'convert', 'hls_lint', 'csim_compile'):
        assert after[kept] == before[kept]
    assert after['verify']['summary']['n_vectors'] == 32 and before['verify']['summary']['n_vectors'] == 64
