"""The per-layer plan (flow/plan.py) and the layering it rests on: every setting a layer cannot take is
refused before training with exit 2, the plan is saved and read by the later steps, the kinds' facts
agree with hls4ml, and shared modules neither name a kind nor import in a cycle."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flow.config import FlowConfig
from flow.infra.boards import get_board
from flow.infra.errors import BadInput
from flow.plan import Plan, make_plan
from flow.runtime.fixed import FixedType
from flow.runtime.ref_layers import LAYER_KINDS, hls4ml_resource_reuse_factors
from user_models import small_mlp

REPO = Path(__file__).resolve().parents[1]


@given(n_in=st.integers(1, 40), n_out=st.integers(1, 40))
def test_resource_reuse_factors_are_hls4mls(n_in, n_out):
    import hls4ml

    backend = hls4ml.backends.get_backend('Vitis')
    assert hls4ml_resource_reuse_factors(n_in, n_out) == backend.get_valid_reuse_factors(n_in, n_out)


def _plan(**cfg):
    from flow.export import to_integer_model

    im = to_integer_model(small_mlp(block_sparse=True), FixedType(8, 3))  # fc1: 64x16, half of its 8x8 blocks kept
    return make_plan(im, FlowConfig.load(None, model='user.h5', **cfg), get_board('pynq-z2'))


def test_the_plan_resolves_each_layer_once_and_round_trips(tmp_path):
    plan = _plan(reuse_factor=4, layers={'logits': {'reuse_factor': 8, 'strategy': 'resource'}})
    assert plan.io_type == 'io_parallel'
    assert (plan['fc1'].reuse_factor, plan['fc1'].strategy, plan['fc1'].reuse_factors) == (4, None, '1 .. 512')
    assert (plan['logits'].reuse_factor, plan['logits'].strategy) == (8, 'resource')
    assert plan['relu1'].reuse_factor is None and plan['relu1'].strategy is None
    plan.save(tmp_path)
    assert Plan.load(tmp_path) == plan


@pytest.mark.parametrize('cfg, message', [
    (dict(layers={'fc1': {'reuse_factor': 513}}),
     r"^layer 'fc1' \(block_sparse_dense\): ReuseFactor 513 is not one it can be built with: 1 \.\. 512 \(its 512 kept "
     r'weights\); set reuse_factor for that layer'),
    (dict(reuse_factor=600),
     r"^layer 'fc1' \(block_sparse_dense\): ReuseFactor 600 \(the model-wide reuse_factor\) is not one"),
    (dict(layers={'logits': {'reuse_factor': 3, 'strategy': 'resource'}}),
     r"^layer 'logits' \(dense\): ReuseFactor 3 is not one it can be built with: 1, 2, 4, 8, 16, 32, 80, 160 "),
    (dict(layers={'fc1': {'strategy': 'resource'}}),
     r"^layer 'fc1' \(block_sparse_dense\): strategy resource does not apply, it takes strategy distributed_arithmetic only"),
    (dict(layers={'relu1': {'reuse_factor': 2}}),
     r"^layer 'relu1' \(relu\): reuse_factor applies to dense, convolution and LSTM layers only"),
    (dict(io_type='io_stream', layers={'fc1': {'reuse_factor': 0}}), 'greater than or equal to 1'),
])
def test_settings_a_layer_cannot_take_are_refused_naming_it(cfg, message):
    with pytest.raises((BadInput, ValueError), match=message):
        _plan(**cfg)


def test_out_of_range_reuse_factor_exits_2_before_training(tmp_path):
    """Before, a ReuseFactor above the kept weights failed only at conversion, as exit 1."""
    (tmp_path / 'c.yaml').write_text('layers: {fc1: {reuse_factor: 100000}}\n')
    res = subprocess.run([sys.executable, '-m', 'flow.cli', '--config', str(tmp_path / 'c.yaml'), '--build-dir',
                          str(tmp_path / 'b')], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 2, res.stderr
    lines = [l for l in res.stderr.splitlines() if l.strip()]
    assert lines[-1].startswith("bad input: layer 'fc1' (block_sparse_dense): ReuseFactor 100000 is not one") and \
        'kept weights' in lines[-1] and 'Traceback' not in res.stderr
    assert not (tmp_path / 'b' / 'train').exists() and 'training' not in res.stderr


def test_convert_estimate_and_rtl_read_the_saved_plan(default_build):
    plan = Plan.load(default_build.root / 'plan')
    est = json.loads((default_build.root / 'reports' / 'estimate.json').read_text())
    for name, layer in est['layers'].items():
        assert layer['reuse_factor'] == (plan[name].reuse_factor or 1)
    manifest = json.loads((default_build.root / 'manifest.json').read_text())['steps']
    assert manifest['plan']['summary']['io_type'] == plan.io_type == manifest['convert']['summary']['io_type']


# --- layering ------------------------------------------------------------------------------------

SHARED = ['flow/plan.py', 'flow/steps.py', 'flow/cli.py', 'flow/config.py', *map(str, Path(REPO, 'flow/stages').glob('*.py')),
          'flow/rtl/build.py', 'flow/rtl/logic.py', 'flow/rtl/synth.py', 'flow/rtl/simulate.py', 'flow/export/model.py',
          'flow/export/registry.py']


@pytest.mark.parametrize('path', SHARED)
def test_shared_modules_name_no_layer_kind(path):
    """A kind's facts live with the kind (flow/runtime/ref_*.py, its exporter, its hls4ml extension):
    shared code iterates over layers and reads them."""
    strings = {n.value for n in ast.walk(ast.parse(Path(REPO, path).read_text())) if isinstance(n, ast.Constant)}
    named = sorted(k for k in LAYER_KINDS if k != 'input' and k in strings)
    assert not named, f'{path} names the layer kinds {named}'


def _imports(root: Path) -> dict[str, set[str]]:
    """Module -> the project modules it imports, at any depth of the code (not under TYPE_CHECKING)."""
    mods = {}
    for p in [*root.glob('flow/**/*.py'), *root.glob('keras_models/**/*.py')]:
        name = '.'.join(p.relative_to(root).with_suffix('').parts)
        mods[name.removesuffix('.__init__')] = p
    graph = {}
    for name, p in mods.items():
        tree = ast.parse(p.read_text())
        pkg = name if p.name == '__init__.py' else name.rsplit('.', 1)[0]
        hidden = {id(n) for i in ast.walk(tree) if isinstance(i, ast.If) and getattr(i.test, 'id', '') == 'TYPE_CHECKING'
                  for b in i.body for n in ast.walk(b)}
        deps = set()
        for node in ast.walk(tree):
            if id(node) in hidden:
                continue
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = '.'.join(pkg.split('.')[:len(pkg.split('.')) - node.level + 1] + [node.module or '']).strip('.') \
                    if node.level else node.module
                deps |= {base} | {f'{base}.{a.name}' for a in node.names}
        graph[name] = {d for d in deps if d in mods and d != name}
    return graph


def test_no_import_cycles():
    graph = _imports(REPO)

    def reach(start):
        seen, todo = set(), [start]
        while todo:
            for d in graph[todo.pop()]:
                if d not in seen:
                    seen.add(d)
                    todo.append(d)
        return seen

    cycles = sorted(m for m in graph if m in reach(m))
    assert not cycles, f'modules on an import cycle: {cycles}'


def test_the_board_runtime_imports_nothing_above_it():
    graph = _imports(REPO)
    up = {m: sorted(d for d in deps if not d.startswith('flow.runtime')) for m, deps in graph.items()
          if m.startswith('flow.runtime')}
    assert not any(up.values()), up


# --- autofit ------------------------------------------------------------------------------------


def test_autofit_finds_reuse_factors_that_fit_and_the_flow_takes_them(default_build, tmp_path):
    """On a board with few DSPs autofit slows the layers with the most multipliers down until the
    estimate fits; its config is one the plan accepts and the estimate agrees with."""
    from types import SimpleNamespace

    import yaml

    from flow.autofit import autofit, config_yaml, interval
    from flow.runtime.reference import IntegerModel

    im, plan = IntegerModel.load(default_build.root / 'reference'), Plan.load(default_build.root / 'plan')
    roomy = get_board('pynq-z2')
    fast, est, _ = autofit(im, plan, roomy)
    assert est['total']['fits']
    small = SimpleNamespace(name='small', resources=SimpleNamespace(dsp=40, bram18=280, lut=53200, ff=106400))
    fitted, est, log = autofit(im, plan, small)
    assert est['total']['fits'] and est['total']['fit']['dsp']['used'] <= 40 and log
    assert interval(est) > interval(estimate_of(im, fast, roomy))  # fewer DSPs: more cycles
    cfg = FlowConfig.load(None, **yaml.safe_load(config_yaml(fitted)))
    again = make_plan(im, cfg, roomy)
    assert {n: p.reuse_factor for n, p in again.layers.items()} == {n: p.reuse_factor for n, p in fitted.layers.items()}


def estimate_of(im, plan, board):
    from flow.stages.estimate import estimate_model

    return estimate_model(im, plan, board)


def test_autofit_cli_prints_a_config_and_refuses_a_folder_without_plan(default_build, tmp_path):
    res = subprocess.run([sys.executable, '-m', 'flow.cli', 'autofit', '--build-dir', str(default_build.root),
                          '--write', str(tmp_path / 'fit.yaml')], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stderr
    assert 'fits pynq-z2' in res.stderr + res.stdout and 'layers:' in (tmp_path / 'fit.yaml').read_text()
    (tmp_path / 'empty').mkdir()
    res = subprocess.run([sys.executable, '-m', 'flow.cli', 'autofit', '--build-dir', str(tmp_path / 'empty')],
                         capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 2 and 'has no plan' in res.stderr
