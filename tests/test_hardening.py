"""Defects found testing as a user would (issue: stale results, silent wrong shapes, raw tracebacks).

Each test reproduces one defect: it failed before the fix."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from user_models import small_mlp

from flow.infra.build_dir import BuildInUse, BuildLock
from flow.config import FlowConfig
from flow.infra.errors import BadInput
from flow.export import Overrides, UnsupportedModel, to_integer_model
from flow.runtime.fixed import FixedType
from flow.steps import run_flow
from flow.stages.verify import FLOAT32_EXACT_INT, qkeras_comparable

REPO = Path(__file__).resolve().parents[1]


def _cli(*args, **kwargs):
    return subprocess.run([sys.executable, '-m', 'flow.cli', *args], capture_output=True, text=True, **kwargs)


def _steps(root):
    path = Path(root) / 'manifest.json'
    return json.loads(path.read_text())['steps'] if path.exists() else {}


def _one_clear_line(res):
    lines = [l for l in res.stderr.splitlines() if l.strip()]
    errors = [l for l in lines if l.startswith('bad input:')]
    assert 'Traceback' not in res.stderr, res.stderr
    assert len(errors) == 1 and lines[-1] == errors[0], res.stderr  # the error is one line, the last
    return errors[0]


# --- 1. a user model is tracked by its content -------------------------------------------------


def test_overwritten_model_file_reruns_and_same_file_elsewhere_does_not(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    small_mlp(tmp_path / 'm.h5', seed=1)
    cfg = dict(input_precision='ap_fixed<6,2>')
    run_flow(FlowConfig.load(None, model='m.h5', **cfg), 'b', to_step='export_reference')
    first = _steps('b')
    ref1 = (tmp_path / 'b' / 'reference' / 'reference.npz').read_bytes()
    # the same file under its absolute path: the same input, nothing reruns
    run_flow(FlowConfig.load(None, model=str(tmp_path / 'm.h5'), **cfg), 'b', to_step='export_reference')
    assert _steps('b') == first
    # overwritten in place with another model: train and everything after it rerun
    small_mlp(tmp_path / 'm.h5', seed=2)
    run_flow(FlowConfig.load(None, model='m.h5', **cfg), 'b', to_step='export_reference')
    second = _steps('b')
    assert second['train']['finished'] >= first['train']['finished'] and second['train']['config'] != first['train']['config']
    assert (tmp_path / 'b' / 'reference' / 'reference.npz').read_bytes() != ref1


def test_a_refused_model_fixed_in_place_is_accepted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    small_mlp(tmp_path / 'm.h5', kernel_alpha='auto')
    cfg = FlowConfig.load(None, model='m.h5', input_precision='ap_fixed<6,2>')
    # refused when loaded (train), naming the layer and the fix, not later at export_reference
    with pytest.raises(UnsupportedModel, match=r"layer 'fc1' kernel: quantized_bits alpha='auto'.*Use alpha=1"):
        run_flow(cfg, 'b', to_step='export_reference')
    assert 'train' not in _steps('b')
    small_mlp(tmp_path / 'm.h5', kernel_alpha=1)
    run_flow(cfg, 'b', to_step='export_reference')
    assert _steps('b')['export_reference']['status'] == 'done'


# --- 2./3. which layers QKeras can match ----------------------------------------------------------


def _one_layer(tmp_path, kernel, bias, in_t, wbits, wint, accum=None, result=None):
    import tensorflow as tf
    from qkeras import QDense, quantized_bits

    inp = tf.keras.Input((len(kernel),), name='x')
    layer = QDense(len(bias), kernel_quantizer=quantized_bits(wbits, wint, alpha=1),
                   bias_quantizer=quantized_bits(wbits, wint, alpha=1), name='d')
    model = tf.keras.Model(inp, layer(inp))
    layer.set_weights([np.asarray(kernel, np.float32), np.asarray(bias, np.float32)])
    return model, to_integer_model(model, in_t, {'d': Overrides(accum, result)} if accum or result else {})


@pytest.mark.parametrize('extra, comparable', [(0, True), (1, False)])
def test_float32_bound_is_exact_at_2_pow_24(tmp_path, extra, comparable):
    """Sums up to 2^24 LSBs are exact in float32 (QKeras matches); 2^24 + 1 is the first that rounds."""
    in_t = FixedType(13, 13)  # integers -4096..4095
    kernel = [[-4096.0], [float(extra)]]  # x = (-4096, 1) reaches 2^24 + extra
    model, im = _one_layer(tmp_path, kernel, [0.0], in_t, 13, 12)
    bound, _ = im.layers[1].sum_bound(in_t)
    assert bound == FLOAT32_EXACT_INT + 4096 * extra
    assert im.layers[1].accum_type.width == (26 if extra else 26)  # 2^24 itself needs 26 signed bits
    names, why = qkeras_comparable(im)
    assert (names == ['d']) is comparable, why
    x = np.array([[-4096, 1], [-4096, -1], [4095, 1]], dtype=np.int64)
    ref = im.predict_codes(x)
    q = model.predict(x.astype(np.float32), verbose=0).astype(np.float64)
    if comparable:
        assert np.array_equal(q, ref.astype(np.float64)), (q, ref)  # exact, also at the bound itself
    else:
        assert 'beyond the 2^24 that float32 holds exactly' in why
        assert not np.array_equal(q, ref.astype(np.float64))  # float32 really rounds 2^24 + 1


def test_narrow_accum_override_that_wraps_is_not_compared_and_says_why(tmp_path):
    in_t = FixedType(6, 2)
    model, exact = _one_layer(tmp_path, np.full((8, 2), 0.875), [0.5, -0.5], in_t, 4, 0)
    assert qkeras_comparable(exact)[0] == ['d']
    _, wraps = _one_layer(tmp_path, np.full((8, 2), 0.875), [0.5, -0.5], in_t, 4, 0, accum='ap_fixed<9,2>')
    names, why = qkeras_comparable(wraps)
    assert names == [] and "from layer 'd' on" in why and 'wraps' in why
    # a wider override than needed, with a lossless result, stays comparable
    _, wide = _one_layer(tmp_path, np.full((8, 2), 0.875), [0.5, -0.5], in_t, 4, 0, accum='ap_fixed<30,12>',
                         result='ap_fixed<24,10>')
    assert qkeras_comparable(wide)[0] == ['d']


def test_flow_with_a_wrapping_accum_override_verifies(tmp_path, monkeypatch):
    """reference == C simulation stays exact; QKeras is compared up to the wrapping layer only."""
    monkeypatch.chdir(tmp_path)
    small_mlp(tmp_path / 'm.h5', n_out=4)
    cfg = FlowConfig.load(None, model='m.h5', input_precision='ap_fixed<6,2>', n_golden=32,
                          layers={'logits': {'accum': 'ap_fixed<12,3>'}})
    run_flow(cfg, 'b', to_step='verify')
    report = json.loads((tmp_path / 'b' / 'reports' / 'verify.json').read_text())
    assert report['reference_vs_csim']['exact'] is True
    assert report['qkeras_vs_reference']['exact_layers'] == ['fc1', 'relu1']
    assert "from layer 'logits' on" in report['qkeras_vs_reference']['reason'] and 'wraps' in report['qkeras_vs_reference']['reason']


# --- 7./8./9. clear errors instead of tracebacks ---------------------------------------------------


@pytest.mark.parametrize('bad', ['fc-1', 'relu.1', 'int'])
def test_layer_names_that_are_not_cpp_identifiers_are_refused_at_load(tmp_path, monkeypatch, bad):
    monkeypatch.chdir(tmp_path)
    names = ('fc1', 'relu1', 'logits')
    small_mlp(tmp_path / 'm.h5', names=(bad, *names[1:]) if bad != 'relu.1' else (names[0], bad, names[2]))
    res = _cli('--model', 'm.h5', '--build-dir', 'b', '--to-step', 'train')
    assert res.returncode == 2
    line = _one_clear_line(res)
    assert f"layer name '{bad}' is not a C++ identifier" in line and 'rename it' in line


def test_a_file_that_is_not_a_model_exits_2_with_one_line(tmp_path):
    junk = tmp_path / 'junk.h5'
    junk.write_bytes(os.urandom(4096))
    res = _cli('--model', str(junk), '--build-dir', str(tmp_path / 'b'))
    assert res.returncode == 2
    assert 'not an HDF5 model file' in _one_clear_line(res)
    res = _cli('--model', str(tmp_path / 'nope.h5'), '--build-dir', str(tmp_path / 'b'))
    assert res.returncode == 2 and "'nope.h5'" not in res.stderr and 'is not a file nor a built-in model' in _one_clear_line(res)


def test_refused_model_exits_2_as_the_docstring_says(tmp_path):
    import flow.cli

    small_mlp(tmp_path / 'm.h5', kernel_alpha='auto')
    res = _cli('--model', str(tmp_path / 'm.h5'), '--build-dir', str(tmp_path / 'b'))
    assert res.returncode == 2 and "alpha='auto'" in _one_clear_line(res)
    assert '2 bad input' in flow.cli.__doc__ and 'cannot be read or deployed' in flow.cli.__doc__


def test_hand_edited_block_shape_names_the_layer_and_the_saved_mask(tmp_path):
    import h5py

    path = tmp_path / 'm.h5'
    small_mlp(path, block_sparse=True)
    with h5py.File(path, 'r+') as f:
        cfg = json.loads(f.attrs['model_config'])
        for layer in cfg['config']['layers']:
            if layer['class_name'] == 'BlockSparseQDense':
                layer['config']['block_shape'] = [4, 4]  # divides 64x16, but the mask was saved for 8x8
        f.attrs['model_config'] = json.dumps(cfg)
    res = _cli('--model', str(path), '--build-dir', str(tmp_path / 'b'))
    assert res.returncode == 2
    line = _one_clear_line(res)
    assert "layer 'fc1': block_shape 4x4" in line and 'restore block_shape=[8, 8]' in line


def test_output_wider_than_the_stream_names_the_layer_and_the_result_fix(tmp_path):
    in_t = FixedType(16, 16)
    with pytest.raises(UnsupportedModel, match=r"layer 'd' \(the output\): its result type ap_fixed<3\d,\d+> is wider than the "
                                               r'32-bit codes.*layers: \{d: \{result: "ap_fixed<32,'):
        _one_layer(None, np.full((64, 2), 2047.0), [0.0, 0.0], in_t, 12, 11)


def test_n_golden_beyond_the_test_set_is_said_and_recorded(default_build, tmp_path):
    import shutil

    root = tmp_path / 'copy'
    shutil.copytree(default_build.root, root)
    res = _cli('--build-dir', str(root), '--epochs', '15', '--n-golden', '1000', '--to-step', 'verify')
    assert res.returncode == 0, res.stderr
    text = ' '.join(res.stderr.split())
    assert 'n_golden 1000 is more than the 360 test vectors' in text
    report = json.loads((root / 'reports' / 'verify.json').read_text())
    assert report['n_golden_requested'] == 1000 and report['n_vectors'] == 360


# --- 8. read-only build folder ---------------------------------------------------------------------


def _as_unprivileged(cmd, cwd):
    """Run ``cmd`` so that file modes apply: root ignores them unless it drops CAP_DAC_OVERRIDE."""
    if os.geteuid() == 0:
        caps = '-dac_override,-dac_read_search'
        cmd = ['setpriv', '--bounding-set', caps, '--inh-caps', caps, *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env={**os.environ, 'PYTHONPATH': str(REPO)})


def test_read_only_build_folder_exits_2_even_for_a_no_op_rerun(tmp_path):
    work = Path(tempfile.mkdtemp(prefix='ro-', dir='/tmp'))
    try:
        small_mlp(work / 'm.h5')
        args = [sys.executable, '-m', 'flow.cli', '--model', 'm.h5', '--build-dir', 'b', '--to-step', 'train',
                '--config', str(_yaml(work))]
        res = subprocess.run(args, capture_output=True, text=True, cwd=work, env={**os.environ, 'PYTHONPATH': str(REPO)})
        assert res.returncode == 0, res.stderr
        for p in [work / 'b', *(work / 'b').rglob('*')]:
            os.chmod(p, 0o555 if p.is_dir() else 0o444)
        res = _as_unprivileged(args, work)
        assert res.returncode == 2
        line = _one_clear_line(res)
        assert f'build folder {work / "b"} is not writable' in line and 'choose another --build-dir' in line
    finally:
        subprocess.run(['rm', '-rf', str(work)])


def _yaml(folder):
    path = folder / 'flow.yaml'
    path.write_text('input_precision: ap_fixed<6,2>\n')
    return path


# --- 10. one run per build folder, tools included ----------------------------------------------------


def test_a_second_run_on_a_locked_build_folder_is_refused(tmp_path):
    with BuildLock(tmp_path):
        with pytest.raises(BuildInUse, match=r'is in use by another build-bitstream run .*pid \d+'):
            run_flow(FlowConfig.load(None), tmp_path, to_step='train')


ORPHAN = '''
import sys
from flow.infra import processes
from flow.infra.build_dir import BuildLock
with BuildLock(sys.argv[1]):
    processes.run(['sleep', '60'])  # the parent is killed -9 while its "compiler" runs
'''


def test_an_orphaned_tool_keeps_the_build_folder_locked(tmp_path):
    parent = subprocess.Popen([sys.executable, '-c', ORPHAN, str(tmp_path)], cwd=REPO)
    try:
        deadline = time.time() + 60
        while 'tool sleep' not in ((tmp_path / '.lock').read_text() if (tmp_path / '.lock').exists() else ''):
            assert time.time() < deadline and parent.poll() is None
            time.sleep(0.2)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        holder = (tmp_path / '.lock').read_text()
        pgid = int(holder.rsplit('process group', 1)[1])
        with pytest.raises(BuildInUse, match=rf'tool sleep: process group {pgid}'):
            run_flow(FlowConfig.load(None), tmp_path, to_step='train')
        os.killpg(pgid, signal.SIGKILL)
        deadline = time.time() + 10
        while True:  # the lock goes with the orphan
            try:
                with BuildLock(tmp_path):
                    break
            except BuildInUse:
                assert time.time() < deadline
                time.sleep(0.1)
    finally:
        parent.kill()


def test_an_interrupted_tool_is_killed_with_its_children():
    from flow.infra import processes

    def interrupt(*_):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, interrupt)
    started = []
    real_popen = subprocess.Popen

    def spy(*a, **k):
        p = real_popen(*a, **k)
        started.append(p.pid)
        return p

    subprocess.Popen, _ = spy, subprocess.Popen
    try:
        signal.alarm(1)
        with pytest.raises(KeyboardInterrupt):
            processes.run(['bash', '-c', 'sleep 60 & sleep 60'])
    finally:
        subprocess.Popen = real_popen
        signal.signal(signal.SIGALRM, old)
    time.sleep(0.2)
    assert _live_members(started[0]) == []  # the whole group (bash and both sleeps) is gone


TERMINATED = '''
import sys
from functools import partial
from flow.infra import processes
from flow.rtl.build import in_parallel
tool = ['bash', '-c', 'echo $$ >> ' + sys.argv[1] + '; sleep 60 & sleep 60']
if sys.argv[2] == 'run':
    processes.run(tool)
else:  # two tools from worker threads, as the rtl step and the benches run yosys
    in_parallel({'a': partial(processes.run, tool), 'b': partial(processes.run, tool)}, 'tools')
'''


@pytest.mark.parametrize('how', ['run', 'in_parallel'])
def test_a_terminated_flow_kills_its_tools(tmp_path, how):
    """SIGTERM (``kill``, a CI timeout) kills the running tools' process groups as Ctrl-C does (an
    interrupt, not death by the signal); by Python's default the flow would exit at once and leave
    them running."""
    pids = tmp_path / 'pids'
    parent = subprocess.Popen([sys.executable, '-c', TERMINATED, str(pids), how], cwd=REPO)
    try:
        deadline = time.time() + 60
        while len(pids.read_text().split() if pids.exists() else []) < (1 if how == 'run' else 2):
            assert time.time() < deadline and parent.poll() is None
            time.sleep(0.2)
        groups = [int(p) for p in pids.read_text().split()]
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(30) != -signal.SIGTERM  # it ended by an interrupt, not by the signal's default
        deadline = time.time() + 10
        while [g for g in groups if _live_members(g)]:
            assert time.time() < deadline, 'tools left running'
            time.sleep(0.1)
    finally:
        parent.kill()
        for g in [int(p) for p in pids.read_text().split()] if pids.exists() else []:
            try:
                os.killpg(g, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _live_members(pgid: int) -> list[int]:
    """Processes of a process group that are not zombies (a container's init may not reap them)."""
    live = []
    for stat in Path('/proc').glob('[0-9]*/stat'):
        try:
            fields = stat.read_text().rsplit(')', 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != 'Z':
            live.append(int(stat.parent.name))
    return live


def test_bad_input_is_a_value_error_for_api_users():
    assert issubclass(BadInput, ValueError) and issubclass(UnsupportedModel, BadInput)


def test_every_setting_a_step_reads_is_in_its_fingerprint(tmp_path, monkeypatch):
    """A rerun after a change of any setting must redo the step that read it: each step may read
    only the settings declared by it or an earlier step (they make up its fingerprint)."""
    import flow.steps as steps

    fields, current, seen = set(FlowConfig.model_fields), [None], {}
    real_getattribute = FlowConfig.__getattribute__

    def recording(self, name):
        if name in fields and current[0]:
            seen.setdefault(current[0], set()).add(name)
        return real_getattribute(self, name)

    def wrap(s):
        def run(ctx):
            current[0] = s.name
            try:
                return s.run(ctx)
            finally:
                current[0] = None
        return run

    for s in steps.STEPS:
        monkeypatch.setattr(s, 'run', wrap(steps.Step(**{**s.__dict__})))
    monkeypatch.setattr(FlowConfig, '__getattribute__', recording)
    small_mlp(tmp_path / 'm.h5', n_in=16, n_out=4)
    cfg = FlowConfig.load(None, model=str(tmp_path / 'm.h5'), input_precision='ap_fixed<6,2>', n_golden=8)
    with pytest.raises(steps.ToolMissing):
        run_flow(cfg, tmp_path / 'b')
    declared = set()
    for s in steps.STEPS:
        declared |= s.settings
        undeclared = seen.get(s.name, set()) - declared - s.checks
        assert not undeclared, f'step {s.name} reads {sorted(undeclared)} undeclared'
        assert all(any(c in later.settings for later in steps.STEPS) for c in s.checks)
    assert {'train', 'verify', 'package'} <= set(seen)
