"""Design-space sweeps on Ray (flow/sweep): expansion, a 2x2 sweep of the default model, reuse on a
rerun, failing points, a two-node Ray cluster, resuming an interrupted sweep.

The slow tests share one sweep folder (module scope): a point whose resolved config equals an
earlier one reuses its build folder, which keeps the file at a few minutes on 2 cores.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flow.infra.errors import BadInput
from flow.sweep.points import expand
from flow.sweep.spec import SweepSpec

ROOT = Path(__file__).resolve().parents[1]
BASE = {'model': 'digits_mlp', 'epochs': 2, 'rtl': False, 'n_golden': 64}


def _env():
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join([str(ROOT), *[p for p in env.get('PYTHONPATH', '').split(os.pathsep) if p]])
    return env


def _ray_bin() -> str:
    return str(Path(sys.executable).parent / 'ray')


def _cli(*args, **kw):
    return subprocess.run([sys.executable, '-m', 'flow.cli', 'sweep', *args], cwd=ROOT, env=_env(), capture_output=True,
                          text=True, **kw)


def _manifest(out: Path, key: str) -> dict:
    return json.loads((out / 'points' / key / 'manifest.json').read_text())['steps']


def _rows(out: Path) -> list[dict]:
    with open(out / 'results.csv') as f:
        return list(csv.DictReader(f))


# --- fast: the sweep file and its points ---------------------------------------------------------


def test_grid_expansion_and_keys():
    spec = SweepSpec.parse({'base': BASE, 'axes': {'model_params.drop_rate': [0.5, 0.75], 'layers.fc1.reuse_factor': [8, 16]}})
    points = expand(spec)
    assert len(points) == 4 and len({p.key for p in points}) == 4
    assert all(p.error is None for p in points)
    # drop_rate 0.75 and fc1 at 16 are the built-in's defaults: that point is the plain default model
    default = [p for p in points if p.settings == {'model_params.drop_rate': 0.75, 'layers.fc1.reuse_factor': 16}][0]
    assert (default.flow_config.model, default.flow_config.model_params) == ('digits_mlp', {})
    assert default.flow_config.reuse_for('fc1') == 16
    other = [p for p in points if p.settings == {'model_params.drop_rate': 0.5, 'layers.fc1.reuse_factor': 8}][0]
    assert other.flow_config.model_params == {'drop_rate': 0.5} and other.flow_config.reuse_for('fc1') == 8
    # written differently, the same resolved config: the same build folder
    same = expand(SweepSpec.parse({'base': {**BASE, 'layers': {'fc1': {'reuse_factor': 16}}}, 'model_params': {'weight_bits': 4}}))
    assert same[0].key == default.key


@pytest.mark.parametrize('path', sorted((ROOT / 'sweeps').glob('*.yaml')), ids=lambda p: p.stem)
def test_shipped_sweeps_expand_to_valid_points(path):
    """Every sweep the project ships resolves: each point's config and model parameters are valid
    (a typo in a parameter or a built-in's name is a point error here, not an hour into the sweep)."""
    points = expand(SweepSpec.load(path))
    assert points and all(p.error is None for p in points), [p.error for p in points if p.error]
    assert len({p.key for p in points}) == len(points)


def test_seeds_are_summarized_per_setting(tmp_path):
    """Points differing only in their seed form one setting: its accuracy's mean and sample standard
    deviation; a failed point and a sweep without a seed axis add nothing."""
    from flow.sweep import over_seeds

    def row(seed, bits, acc, code=0):
        return {'point': f'p{seed}{bits}', 'label': f'seed={seed}, weight_bits={bits}', 'setting': f'weight_bits={bits}',
                'method': 'm', 'exit_code': code, 'acc_reference_test': acc, 'stored_bits': 100 * bits, 'multipliers': 7}

    rows = [row(0, 3, 0.80), row(1, 3, 0.84), row(2, 3, 0.9, code=1), row(0, 4, 0.86)]
    summary = over_seeds.summarize(rows)
    assert [(s['setting'], s['seeds']) for s in summary] == [('weight_bits=3', 2), ('weight_bits=4', 1)]
    assert summary[0]['mean'] == pytest.approx(0.82) and summary[0]['spread'] == pytest.approx(0.02 * 2 ** 0.5)
    assert summary[1]['spread'] is None and summary[0]['stored_bits'] == 300
    files = over_seeds.write(tmp_path, rows)
    assert '| m | weight_bits=3 | 2 | 82.00 +- 2.83 | 300 |' in (tmp_path / 'summary.md').read_text() and len(files) == 2
    no_seed = [{k: v for k, v in r.items() if k != 'setting'} for r in rows]
    assert over_seeds.summarize(no_seed) == [] and over_seeds.write(tmp_path / 'x', no_seed) == []


def test_random_sampling_is_seeded():
    spec = {'base': BASE, 'sampling': 'random', 'n': 3, 'seed': 5,
            'axes': {'seed': {'low': 0, 'high': 1000, 'integer': True}, 'learning_rate': {'low': 1e-4, 'high': 1e-2, 'log': True}}}
    a, b = expand(SweepSpec.parse(spec)), expand(SweepSpec.parse(spec))
    assert [p.settings for p in a] == [p.settings for p in b] and len(a) == 3
    assert all(1e-4 <= p.settings['learning_rate'] <= 1e-2 and isinstance(p.settings['seed'], int) for p in a)
    grid = expand(SweepSpec.parse({**spec, 'n': 10, 'axes': {'seed': [1, 2, 3]}}))  # a finite grid: without replacement
    assert sorted(p.settings['seed'] for p in grid) == [1, 2, 3]


@pytest.mark.parametrize('bad, says', [
    ({'axes': {'nonsense': [1]}}, "'nonsense' is neither a flow setting"),
    ({'axes': {'layers.fc1': [1]}}, 'layers.<layer>.<setting>'),
    ({'axes': {'seed': {'low': 0, 'high': 3}}}, 'is a range (use sampling: random)'),
    ({'sampling': 'random'}, 'random sampling needs n'),
    ({'steps': 'bitstream'}, "unknown step 'bitstream'"),
    ({'sampling': 'optuna', 'axes': {'seed': [1, 2]}}, 'optuna sampling needs n (how many trials)'),
    ({'sampling': 'optuna', 'n': 2, 'axes': {'seed': [1, 2]}, 'objectives': {'speed': 'max'}}, "objectives ['speed']"),
    ({'sampling': 'optuna', 'n': 2}, 'optuna sampling needs axes'),
    ({'point_timeout_min': 0}, 'point_timeout_min: Input should be greater than 0'),
])
def test_bad_sweep_files(bad, says):
    with pytest.raises(BadInput, match=None) as e:
        SweepSpec.parse({'base': BASE, **bad})
    assert says in str(e.value)


def test_bad_points_are_recorded_not_raised():
    points = expand(SweepSpec.parse({'base': BASE, 'axes': {'model_params.nope': [1]}}))
    assert "has no parameter nope" in points[0].error
    points = expand(SweepSpec.parse({'base': BASE, 'axes': {'layers.fc1.reuse_factor': [0]}}))
    assert 'greater than or equal to 1' in points[0].error and points[0].key.startswith('invalid-')


def test_cli_bad_input():
    r = _cli('no_such.yaml')
    assert r.returncode == 2 and 'does not exist' in r.stderr
    r = _cli('--report', str(ROOT / 'tests'))
    assert r.returncode == 2 and 'holds no sweep' in r.stderr


# --- slow: real sweeps on Ray --------------------------------------------------------------------


@pytest.fixture(scope='module')
def sweep_dir(tmp_path_factory):
    return tmp_path_factory.mktemp('sweep')


GRID = {'name': 'grid', 'base': BASE, 'axes': {'model_params.drop_rate': [0.5, 0.75], 'model_params.weight_bits': [3, 4]}}


@pytest.mark.slow
def test_grid_sweep_then_rerun_reuses_every_point(sweep_dir):
    from flow.sweep import run_sweep

    res = run_sweep(SweepSpec.parse(GRID), sweep_dir, num_cpus=2)
    assert len(res.rows) == 4 and not res.failed
    rows = _rows(sweep_dir)
    assert len(rows) == 4 and {r['status'] for r in rows} == {'done'}
    for r in rows:
        assert float(r['acc_hw']) > 0.5 and r['acc_hw'] == r['acc_reference']  # hardware == reference, bit for bit
        assert 0.5 < float(r['acc_reference_test']) <= 1  # the reference on the whole test split (export_reference)
        assert r['exact_csim'] == 'True' and r['exact_accel'] == 'True' and r['exact_qkeras'] == 'True'
        assert int(r['stored_bits']) > 0 and int(r['multipliers']) > 0 and int(r['lut']) > 0
        assert r['epochs'] == '2' and r['layers.fc1.reuse_factor'] == '16'
    bits = {(r['model_params.drop_rate'], r['model_params.weight_bits']): int(r['stored_bits']) for r in rows}
    assert bits[('0.75', '3')] < bits[('0.75', '4')] < bits[('0.5', '4')]  # fewer kept weights, fewer bits: fewer stored bits
    assert any(r['front_bits'] == 'True' for r in rows) and any(r['front_mults'] == 'True' for r in rows)
    # the sparsest, narrowest point has the fewest stored bits: nothing beats it there
    assert [r for r in rows if (r['model_params.drop_rate'], r['model_params.weight_bits']) == ('0.75', '3')][0]['front_bits'] == 'True'
    for name in ('accuracy_vs_bits.png', 'accuracy_vs_hardware.png'):
        assert (sweep_dir / name).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert json.loads((sweep_dir / 'results.json').read_text())['rows'][0]['point'] == rows[0]['point']

    trained = {r['point']: _manifest(sweep_dir, r['point'])['train']['finished'] for r in rows}
    before = {r['point']: (sweep_dir / 'points' / r['point'] / 'manifest.json').stat().st_mtime_ns for r in rows}
    t0 = time.time()
    again = run_sweep(SweepSpec.parse(GRID), sweep_dir, num_cpus=2)
    assert all(r['reused'] for r in again.rows) and time.time() - t0 < 30  # no Ray task, no training
    for r in rows:
        assert _manifest(sweep_dir, r['point'])['train']['finished'] == trained[r['point']]
        assert (sweep_dir / 'points' / r['point'] / 'manifest.json').stat().st_mtime_ns == before[r['point']]

    # --report redraws from the build folders without running anything
    (sweep_dir / 'results.csv').unlink()
    r = _cli('--report', str(sweep_dir), '--no-plots')
    assert r.returncode == 0, r.stderr
    assert len(_rows(sweep_dir)) == 4


@pytest.mark.slow
def test_failing_points_are_recorded_and_the_others_finish(sweep_dir):
    # fc1 at 16 (the default: reused when the grid test ran first in this process), 0 (refused by the config: exit
    # 2, never run), 5000
    # (more than fc1's 1024 kept weights: refused by the plan before training, exit 2, as build-bitstream does)
    spec = {'name': 'bad', 'base': BASE, 'axes': {'layers.fc1.reuse_factor': [16, 0, 5000]}}
    r = _cli(str(_write(sweep_dir / 'bad.yaml', spec)), '--out', str(sweep_dir), '--no-plots', timeout=300)
    assert r.returncode == 1 and '2 of 3 points did not finish' in r.stderr, r.stderr[-3000:]
    rows = {row['label']: row for row in _rows(sweep_dir)}
    assert rows['fc1.reuse_factor=16']['exit_code'] == '0' and rows['fc1.reuse_factor=16']['status'] == 'done'
    bad = rows['fc1.reuse_factor=0']
    assert bad['exit_code'] == '2' and bad['status'] == 'bad input' and 'greater than or equal to 1' in bad['error']
    failed = rows['fc1.reuse_factor=5000']
    assert failed['exit_code'] == '2' and 'ReuseFactor 5000 is not one it can be built with' in failed['error'] \
        and '\n' not in failed['error']
    assert failed['acc_qkeras'] == ''  # refused before training: nothing was trained


def _write(path: Path, spec: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(spec))
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_node_cluster(sweep_dir, tmp_path):
    port = _free_port()
    ray = _ray_bin()
    # a cluster on the loopback only, without token authentication (Ray turns it on when a local
    # ray.init has left a token in ~/.ray, and then refuses the second node)
    env = {**_env(), 'RAY_AUTH_MODE': 'disabled', 'SPARSE_FLOW_TEST_CLUSTER': str(port)}  # the mark _stop_cluster looks for
    local = ['--node-ip-address', '127.0.0.1', '--num-cpus', '1', '--disable-usage-stats']
    try:
        _start([ray, 'start', '--head', '--port', str(port), '--include-dashboard=false', *local], env)
        _start([ray, 'start', '--address', f'127.0.0.1:{port}', *local], env)
        spec = _write(tmp_path / 'two.yaml', {'name': 'two', 'base': {**BASE, 'epochs': 1}, 'axes': {'seed': [11, 12]},
                                              'steps': 'convert'})
        r = subprocess.run([sys.executable, '-m', 'flow.cli', 'sweep', str(spec), '--out', str(sweep_dir), '--address',
                            f'127.0.0.1:{port}', '--no-plots'], cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
        assert r.returncode == 0, r.stderr[-3000:]
        rows = [row for row in _rows(sweep_dir) if row['seed'] in ('11', '12')]
        assert len(rows) == 2 and {row['status'] for row in rows} == {'done'}
        nodes = {json.loads((sweep_dir / 'points' / row['point'] / 'point.json').read_text())['node_id'] for row in rows}
        assert len(nodes) == 2  # one CPU per node, both points at once: each ran on its own node
    finally:
        _stop_cluster(port)


def _start(cmd: list[str], env: dict) -> None:
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f'{" ".join(cmd[1:3])} failed: {(r.stdout + r.stderr)[-2000:]}'


def _stop_cluster(port: int) -> None:
    """Stop the processes of the cluster this test started, and only those (``ray stop --force``
    would end every Ray on the machine): those with the mark in their environment, and the agents
    the raylets start without it, which hold files of the same Ray session open."""
    mark = f'SPARSE_FLOW_TEST_CLUSTER={port}'.encode()
    sessions: set[bytes] = set()

    def ours():
        procs = []
        for proc in Path('/proc').iterdir():
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            try:
                marked = mark in (proc / 'environ').read_bytes().split(b'\0')
                cmd = (proc / 'cmdline').read_bytes()
                files = [os.readlink(fd).encode() for fd in (proc / 'fd').iterdir()]
            except OSError:
                continue
            if marked:
                sessions.update(re.findall(rb'session_[0-9_-]+', cmd))
            procs.append((int(proc.name), marked, cmd, files))
        return [pid for pid, marked, cmd, files in procs
                if marked or any(sess in text for sess in sessions for text in [cmd, *files])]

    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in ours():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + 10
        while ours() and time.time() < deadline:
            time.sleep(0.3)


@pytest.mark.slow
def test_interrupted_sweep_resumes(sweep_dir, tmp_path):
    # the default point is done (first test); the other is interrupted once it has trained
    spec = _write(tmp_path / 'resume.yaml', {'name': 'resume', 'base': BASE,
                                            'axes': {'model_params.drop_rate': [0.75, 0.625]}})
    proc = subprocess.Popen([sys.executable, '-m', 'flow.cli', 'sweep', str(spec), '--out', str(sweep_dir), '--no-plots',
                             '--num-cpus', '1'], cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # a test run started in the background ignores SIGINT, and a child inherits that: Ctrl-C as in a terminal
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + 180
        manifests = None
        while time.time() < deadline:
            manifests = [m for m in (sweep_dir / 'points').glob('*/manifest.json') if _trained_625(m)]
            if manifests or proc.poll() is not None:
                break
            time.sleep(0.1)  # the window between its train step and its last is some seconds: poll often
        assert manifests, 'the point never finished training'
        assert proc.poll() is None, 'the point finished before the test could interrupt it (a machine this busy cannot test it)'
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-3000:]
    key = manifests[0].parent.name
    assert json.loads((sweep_dir / 'points' / key / 'point.json').read_text())['exit_code'] == 130
    trained = _manifest(sweep_dir, key)['train']['finished']
    r = _cli(str(spec), '--out', str(sweep_dir), '--no-plots', '--num-cpus', '1', timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    steps = _manifest(sweep_dir, key)
    assert steps['train']['finished'] == trained and steps['estimate']['status'] == 'done'  # resumed, not retrained
    rows = [row for row in _rows(sweep_dir)]
    assert len(rows) == 2 and {row['status'] for row in rows} == {'done'}


def _trained_625(manifest: Path) -> bool:
    config = manifest.parent / 'config.json'
    try:
        return json.loads(config.read_text())['model_params'].get('drop_rate') == 0.625 and \
            'train' in json.loads(manifest.read_text())['steps']
    except (OSError, ValueError, KeyError):
        return False


@pytest.mark.slow
def test_optuna_search_continues_its_study(tmp_path):
    """Optuna (multi-objective TPE on Ray Tune) picks the points; a rerun with a larger n continues the
    same study (it knows the earlier results) and runs only the missing trials."""
    import optuna

    from flow.sweep import run_sweep
    from flow.sweep.search import study_name

    spec = {'name': 'search', 'base': {**BASE, 'epochs': 1}, 'sampling': 'optuna', 'n': 2, 'seed': 3,
            'axes': {'model_params.drop_rate': {'low': 0.3, 'high': 0.9}, 'model_params.weight_bits': [3, 4]},
            'objectives': {'acc_reference': 'max', 'stored_bits': 'min'}, 'steps': 'verify'}
    first = run_sweep(SweepSpec.parse(spec), tmp_path, num_cpus=2, plots=False)
    assert not first.failed and 1 <= len(first.rows) <= 2
    for r in first.rows:
        assert r['exact_csim'] and 0.3 <= r['model_params.drop_rate'] <= 0.9 and r['model_params.weight_bits'] in (3, 4)
    again = run_sweep(SweepSpec.parse({**spec, 'n': 3}), tmp_path, num_cpus=2, plots=False)
    assert {r['point'] for r in first.rows} <= {r['point'] for r in again.rows}
    study = optuna.load_study(study_name=study_name(SweepSpec.parse(spec)), storage=f'sqlite:///{tmp_path / "optuna.db"}')
    trials = study.get_trials()
    assert len(trials) == 3 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    by_key = {r['point']: r for r in again.rows}
    for t in trials:  # what Optuna was told is what the table holds
        from flow.sweep.points import make_point
        from flow.sweep.search import settings

        row = by_key[make_point(SweepSpec.parse(spec), settings(SweepSpec.parse(spec), t.params)).key]
        assert t.values == [row['acc_reference'], row['stored_bits']]


@pytest.mark.slow
def test_a_point_past_its_timeout_is_stopped_and_recorded(tmp_path):
    spec = _write(tmp_path / 'slow.yaml', {'name': 'slow', 'base': {**BASE, 'epochs': 500}, 'point_timeout_min': 0.1,
                                          'axes': {'model_params.drop_rate': [0.5]}})
    t0 = time.time()
    r = _cli(str(spec), '--out', str(tmp_path / 'out'), '--no-plots', '--num-cpus', '1', timeout=300)
    assert r.returncode == 1 and time.time() - t0 < 120, r.stderr[-3000:]
    row, = _rows(tmp_path / 'out')
    assert row['exit_code'] == '1' and row['error'].startswith('timed out after 0.1 min (point_timeout_min)')


def test_sigterm_stops_a_sweep_like_ctrl_c_and_is_restored_after():
    """A batch scheduler's SIGTERM raises KeyboardInterrupt in the driver (the Ctrl-C path: points
    cancelled, finished steps kept) while our Ray runs; the one before (Ray's) is back afterwards."""
    from flow.sweep.tasks import _interrupt, _ray_init, _ray_stop

    assert _ray_init(None, 1)
    assert signal.getsignal(signal.SIGTERM) is _interrupt
    try:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler runs at the next bytecode
    finally:
        _ray_stop()
    assert signal.getsignal(signal.SIGTERM) not in (_interrupt, None)
