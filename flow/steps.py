"""The named build steps of ``build-bitstream``, in order, each resumable (see build_dir.py).

Every step is a function ``step(ctx) -> summary`` that writes only into ``ctx.stage`` (moved into
place on success) or, for tool runs inside the HLS project, records the files it produced.
The same functions are the Python API: ``run_flow(config, build_dir, from_step=..., to_step=...)``.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from flow.infra.build_dir import BuildDir, BuildLock, make_folder, sha256, write_json
from flow.config import FlowConfig
from flow.infra.errors import BadInput
from flow.infra.progress import console
from flow.runtime.fixed import FixedType
from flow.runtime.reference import IntegerModel


class HLSLintFailed(RuntimeError):
    """The generated C++ has a pattern Vitis HLS would not build as the estimate and the RTL assume."""


class ToolMissing(RuntimeError):
    """A vendor tool this step needs is not installed here (exit code 3: not a failure)."""


@dataclass
class Context:
    config: FlowConfig
    build: BuildDir
    stage: Path = None
    produced_in_place: list[Path] = field(default_factory=list)  # files a step made outside its stage

    @property
    def root(self) -> Path:
        return self.build.root

    def board(self):
        from flow.infra.boards import get_board

        return get_board(self.config.board)

    def reference(self) -> IntegerModel:
        return IntegerModel.load(self.root / 'reference')

    def plan(self):
        from flow.plan import Plan

        return Plan.load(self.root / 'plan')


@dataclass
class Step:
    name: str
    run: Callable[[Context], dict]
    outputs: list[str]  # paths under the build folder this step owns
    doc: str
    needs_tool: bool  # needs Vitis HLS / Vivado: skipped once one of them is missing
    settings: frozenset[str]  # the FlowConfig fields it reads; with its predecessors' they decide reruns
    in_place: bool  # also writes inside an earlier step's outputs (the HLS project), not only its stage
    checks: frozenset[str]  # settings it reads only to refuse bad input early; a later step depends on them


STEPS: list[Step] = []


def step(name: str, outputs: list[str], settings: tuple[str, ...] = (), needs_tool: bool = False, in_place: bool = False,
         checks: tuple[str, ...] = ()):
    def deco(fn):
        doc = (fn.__doc__ or '').strip().splitlines()[0]
        STEPS.append(Step(name, fn, outputs, doc, needs_tool, frozenset(settings), in_place, frozenset(checks)))
        return fn

    return deco


def fingerprints(config: FlowConfig) -> dict[str, str]:
    """Per step: a hash of the settings it and every earlier step read."""
    out, fields, digests = {}, set(), config.input_digests()
    for s in STEPS:
        fields |= s.settings
        out[s.name] = config.fingerprint(fields, digests)
    return out


def step_names() -> list[str]:
    return [s.name for s in STEPS]


# --- steps --------------------------------------------------------------------------------------


@step('train', ['train'], settings=('model', 'model_params', 'dataset', 'seed', 'epochs', 'batch_size', 'learning_rate',
                                   'input_precision', 'lr_schedule', 'warmup_epochs', 'distill', 'distill_temperature',
                                   'distill_alpha'),
      checks=('layers', 'output', 'strategy', 'reuse_factor', 'io_type', 'board', 'sparse', 'default_precision'))
def train(ctx: Context) -> dict:
    """Train the built-in model (or load the user's model file), check it and its data can be deployed."""
    import tensorflow as tf

    from flow.data.datasets import for_model
    from flow.data.targets import regression_error
    from flow.export import reference_for
    from flow.infra.model_file import load_user_model
    from flow.plan import make_plan
    from flow.training import Recipe, fit
    from keras_models import BUILTIN, get

    cfg, recipe = ctx.config, None
    if cfg.model in BUILTIN:
        tf.keras.utils.set_random_seed(cfg.seed)
        model = get(cfg.model).build(cfg.seed, **cfg.model_params)
        params = ', '.join(f'{k}={v!r}' for k, v in cfg.model_params.items())
        source = f'built-in {cfg.model}{f" ({params})" if params else ""}, trained {cfg.epochs} epochs, seed {cfg.seed}'
    else:
        path = Path(cfg.model)
        model = load_user_model(path)
        source = f'user model {path.resolve()} (sha256 {sha256(path)[:16]})'
    # every layer, quantizer, type and name, and how each layer is built, checked before any training
    make_plan(reference_for(model, cfg), cfg, ctx.board())
    data, notes = for_model(cfg.dataset, cfg.seed, FixedType.parse(cfg.input_precision),
                            tuple(model.inputs[0].shape[1:]), tuple(model.outputs[0].shape[1:]))
    for note in notes:
        console.print(f'[yellow]note:[/] {note}')
    if cfg.model in BUILTIN:
        if data.task != 'classification':
            raise BadInput(f'data {cfg.dataset!r} has {data.task} targets, but the built-in models are classifiers trained on '
                           'integer class labels; give labels, or bring your own trained model with --model file.h5')
        recipe = fit(model, data.x_train, data.y_train, Recipe.from_config(cfg), name=cfg.model,
                     note=lambda text: console.print(f'[yellow]note:[/] {text}', soft_wrap=True))
    model.save(ctx.stage / 'train' / 'model.h5')
    summary = {'source': source, 'recipe': recipe,
               'data': data.source if data else 'random vectors', 'notes': notes,
               'task': data.task if data else None, 'test_accuracy_qkeras': None, 'n_test': 0}
    if data is not None and data.task != 'inputs only':
        out = model.predict(data.x_test.reshape(len(data.x_test), *model.input_shape[1:]), verbose=0)
        summary['n_test'] = len(data.y_test)
        if data.task == 'classification':
            summary['test_accuracy_qkeras'] = float(np.mean(np.argmax(out, axis=1) == data.y_test))
        else:  # the float model's error against the targets (no accuracy for a regressor)
            summary['test_error_qkeras'] = regression_error(out, data.y_test)
    write_json(ctx.stage / 'train' / 'train.json', summary)
    return summary


@step('export_reference', ['reference'], settings=('input_precision', 'layers', 'output', 'sparse', 'default_precision'))
def export_reference(ctx: Context) -> dict:
    """Build the integer reference (exact types for every tensor) and the footprint report."""
    from flow.export import reference_for
    from flow.stages.footprint import footprint, print_footprint
    from flow.stages.verify import reference_accuracy
    from keras_models.layers import load_model

    im = reference_for(load_model(ctx.root / 'train' / 'model.h5'), ctx.config)
    out = ctx.stage / 'reference'
    im.save(out)
    fp = footprint(im)
    write_json(out / 'footprint.json', fp)
    print_footprint(fp, console)
    accuracy = reference_accuracy(ctx.config, im)
    write_json(out / 'accuracy.json', accuracy)
    if accuracy['test_accuracy_reference'] is not None:
        console.print(f"test accuracy of the integer reference (what the hardware computes; verify checks it bit for bit) on "
                      f"all {accuracy['n_test']} test samples: {accuracy['test_accuracy_reference']:.2%}", soft_wrap=True)
    return {'layers': [f'{l.name}:{l.kind}:{l.out_type.hls()}' for l in im.layers], 'compression_vs_float32': fp['total']['ratio_vs_float32'],
            **accuracy}


@step('plan', ['plan'], settings=('board', 'io_type', 'reuse_factor', 'strategy'))
def plan(ctx: Context) -> dict:
    """Decide once how each layer is built: ReuseFactor, strategy, the accelerator's io_type."""
    from flow.plan import make_plan, print_plan

    p = make_plan(ctx.reference(), ctx.config, ctx.board())
    p.save(ctx.stage / 'plan')
    print_plan(p, console)
    return {'io_type': p.io_type, 'layers': {n: [l.reuse_factor, l.strategy] for n, l in p.layers.items()}}


@step('convert', ['hls'], settings=('project_name', 'clock_period_ns'))
def convert(ctx: Context) -> dict:
    """Convert with hls4ml (our templates via its extension API) and write the HLS project."""
    from flow.stages.accel import stream_format, write_sources
    from flow.stages.convert import convert_model
    from flow.stages.scripts import write_scripts
    from keras_models.layers import load_model

    cfg, board, hls = ctx.config, ctx.board(), ctx.stage / 'hls'
    im, plan = ctx.reference(), ctx.plan()
    hls_model = convert_model(load_model(ctx.root / 'train' / 'model.h5'), im, cfg, board, hls, plan)
    fmt = stream_format(im)
    write_json(hls / 'stream_format.json', fmt.to_dict())
    write_sources(hls, cfg.project_name, fmt, plan.io_type)
    scripts = write_scripts(hls, cfg.project_name, board, fmt, cfg.clock_period_ns or board.clock_period_ns)
    return {'project': str(ctx.root / 'hls'), 'io_type': plan.io_type, 'layers': [n for n in hls_model.graph],
            'board': board.name, 'scripts': [p.name for p in scripts], 'stream_format': fmt.to_dict()}


@step('hls_lint', ['reports/hls_lint.json'])
def hls_lint(ctx: Context) -> dict:
    """Lint the HLS C++ as Vitis HLS reads it: no table-indexed access in a pipelined loop, ROM ports, pragmas."""
    from dataclasses import asdict

    from flow.stages.hls_lint import lint_project, print_findings

    hls, notes = ctx.root / 'hls', []
    findings = lint_project(hls, notes=notes)
    write_json(ctx.stage / 'reports' / 'hls_lint.json', {'findings': [asdict(f) for f in findings], 'parse_notes': notes})
    print_findings(findings, console, root=hls)
    for note in notes:
        console.print(f'[yellow]note:[/] {note}', soft_wrap=True)
    if findings:
        f = findings[0]
        raise HLSLintFailed(f'{len(findings)} HLS lint finding(s) in the generated C++, the first: {f.rule} at '
                            f'{Path(f.file).relative_to(hls) if Path(f.file).is_relative_to(hls) else f.file}:{f.line} '
                            f'({f.function}): {f.message}')
    return {'findings': 0, 'parse_notes': len(notes)}


@step('csim_compile', [], in_place=True)
def csim_compile(ctx: Context) -> dict:
    """Compile the C simulation with g++: the hls4ml model and the AXI-Stream accelerator top."""
    from flow.stages.accel import compile_host
    from flow.stages.convert import compile_csim

    t0 = time.time()
    with console.status('compiling the C simulation (g++)'):
        lib = compile_csim(ctx.root / 'hls')
        accel = compile_host(ctx.root / 'hls', ctx.config.project_name)
    ctx.produced_in_place += [lib, *accel]
    return {'library': str(lib.relative_to(ctx.root)), 'compile_seconds': round(time.time() - t0, 1)}


@step('verify', ['golden', 'reports/verify.json'], settings=('n_golden',))
def verify(ctx: Context) -> dict:
    """Golden vectors through QKeras, the integer reference and the C simulation; exact compare."""
    from flow.stages.verify import verify_build

    return verify_build(ctx)


@step('rtl', ['rtl', 'reports/rtl_resources.json'], settings=('rtl',))
def rtl(ctx: Context) -> dict:
    """da4ml RTL of the network and the kernels' time-multiplexed engines: Verilator on the golden vectors (exact), yosys."""
    from flow.rtl import tools
    from flow.rtl.build import build_rtl, engine_layers, not_built
    from flow.rtl.logic import no_rtl, too_big_for_auto

    if not ctx.config.rtl:
        return not_built(ctx, 'rtl: false in the config')
    im = ctx.reference()
    # a network with a layer da4ml cannot build (a convolution, an LSTM) still gets its engines
    no_network = NO_NETWORK if ctx.config.rtl == 'engines' else no_rtl(im)
    engines = engine_layers(im, ctx.plan()) if no_network else None  # built once: listed here, simulated by build_rtl
    layers = None if engines is None else [layer for layer, _, _ in engines]
    if ctx.config.rtl == 'auto' and (reason := too_big_for_auto(im, layers)):
        return not_built(ctx, reason)
    if no_network and not engines:  # before the tools: installing them would not help
        return not_built(ctx, no_network)
    missing = tools.missing()
    if missing:
        raise ToolMissing(f'the RTL level needs {"; ".join(missing)}; rerun with `--from-step rtl` once installed')
    return build_rtl(ctx, no_network, engines)


NO_NETWORK = 'rtl: engines in the config (the layers\' time-multiplexed engines only, not the fully parallel da4ml network)'


@step('estimate', ['reports/estimate.json'])
def estimate(ctx: Context) -> dict:
    """Per-layer kept weights, multipliers, cycles, memory bits, BRAM18: ours vs hls4ml (Dense, Conv2D)."""
    from flow.stages.estimate import estimate_model, print_estimate

    rtl = ctx.root / 'reports' / 'rtl_resources.json'
    est = estimate_model(ctx.reference(), ctx.plan(), ctx.board(), json.loads(rtl.read_text()) if rtl.exists() else None)
    write_json(ctx.stage / 'reports' / 'estimate.json', est)
    print_estimate(est, console)
    return est['total']


def _require_tool(names: list[str], what: str, from_step: str, ctx: Context) -> str:
    for n in names:
        path = shutil.which(n)
        if path:
            return path
    raise ToolMissing(
        f'{what} not found on PATH (looked for {", ".join(names)}); the project is ready at {ctx.root / "hls"}, '
        f'rerun with `--from-step {from_step}` where the tools exist'
    )


@step('hls_synth', ['hls_report'], settings=('hls_cosim',), needs_tool=True, in_place=True)
def hls_synth(ctx: Context) -> dict:
    """Vitis HLS: C synthesis and IP export of the HLS project."""
    tool = _require_tool(['vitis-run', 'vitis_hls'], 'Vitis HLS', 'hls_synth', ctx)
    from flow.stages.vendor import run_hls_synth

    return run_hls_synth(ctx, tool)


@step('vivado_bitstream', ['bitstream'], needs_tool=True, in_place=True)
def vivado_bitstream(ctx: Context) -> dict:
    """Vivado: block design with the PS and AXI DMA, implementation, bitstream and .hwh."""
    tool = _require_tool(['vivado'], 'Vivado', 'vivado_bitstream', ctx)
    from flow.stages.vendor import run_vivado_bitstream

    return run_vivado_bitstream(ctx, tool)


@step('package', ['package'])
def package(ctx: Context) -> dict:
    """Deployment package for the board: bitstream, driver, notebook, golden vectors, manifest."""
    from flow.stages.package import make_package

    return make_package(ctx)


# --- running ------------------------------------------------------------------------------------


def run_flow(config: FlowConfig, build_dir: Path, from_step: str | None = None, to_step: str | None = None) -> Context:
    """Run steps in order. Without ``from_step``, steps already done with this config are kept.

    A step whose vendor tool is absent is not run, later tool steps are skipped, the other steps
    still run, and ToolMissing is raised at the end. BadInput for the user's errors (model,
    config, build folder); any other exception when a step fails."""
    names = step_names()
    for s in (from_step, to_step):
        if s is not None and s not in names:
            raise BadInput(f'unknown step {s!r}; steps: {", ".join(names)}')
    fps = fingerprints(config)  # before touching the build folder: a missing model file is bad input
    root = make_folder(build_dir)  # the lock lives in it
    with BuildLock(root):  # one run per build folder, tools included
        return _run_locked(config, BuildDir(root), names, fps, from_step, to_step)


def _run_locked(config: FlowConfig, build: BuildDir, names: list[str], fps: dict[str, str], from_step, to_step) -> Context:
    ctx = Context(config, build)
    last = names.index(to_step) if to_step else len(names) - 1
    if from_step is None:
        start = next((i for i, n in enumerate(names) if not build.done(n, fps[n])), len(names))
    else:
        start = names.index(from_step)
    for i in range(start):  # everything we build on must be intact
        if not build.done(names[i], fps[names[i]]):
            raise BadInput(f'step {names[i]} has not run with this configuration; rerun from it (--from-step {names[i]})')
        build.check_files(names[i], names[i])
    if start > last:
        console.print(f'all steps up to {names[last]} are done with this configuration (use --from-step to rerun)')
        return ctx
    write_json(build.root / 'config.json', config.model_dump())
    missing: list[ToolMissing] = []  # tools not installed, in step order
    vendor_missing = False
    for i in range(start, last + 1):
        s = STEPS[i]
        console.rule(f'[bold]{s.name}[/]')
        console.print(f'[dim]{s.doc}[/]', soft_wrap=True)
        # A step that fails leaves the results of its last good run in place, so their records
        # stay valid, unless it writes in place (then they are forgotten before it starts).
        if s.in_place:
            build.forget_from(names, s.name)
        if vendor_missing and s.needs_tool:
            console.print(f'[yellow]skipped[/] {s.name}: needs the vendor tools')
            continue
        ctx.stage = build.staging(s.name, s.outputs)
        t0 = time.time()
        try:
            summary = s.run(ctx)
        except ToolMissing as e:
            # Not a failure: record nothing for the step, go on with the steps that need no tool
            # (the package is still useful without a bitstream), and report the stop at the end.
            build.discard_staging(s.name)
            console.print(f'[yellow]not run[/] {s.name}: {e}')
            missing.append(e)
            vendor_missing = vendor_missing or s.needs_tool
            continue
        except BaseException:
            build.discard_staging(s.name)
            raise
        summary['seconds'] = round(time.time() - t0, 1)
        build.forget_from(names, s.name)  # later steps were built on the results this replaces
        build.commit(s.name, fps[s.name], s.outputs, summary)
        build.add_files(s.name, ctx.produced_in_place)
        ctx.produced_in_place.clear()
        console.print(f'[green]done[/] {s.name} ({summary["seconds"]} s)')
    if missing:
        raise missing[0] if len(missing) == 1 else ToolMissing('; '.join(str(e) for e in missing))
    return ctx
