"""``sampling: optuna``: a multi-objective search when the grid is too big. Ray Tune runs the trials,
Optuna's TPE sampler (multi-objective) chooses each next point from the results so far, trading
off the sweep's ``objectives`` (results columns, e.g. ``{acc_hw: max, stored_bits: min}``).

A trial is an ordinary sweep point: its build folder ``points/<key>/`` (a point Optuna proposes
again is reused, not rebuilt), its task with the sweep's resources and ``point_timeout_min``. The
Optuna study is kept in ``DIR/optuna.db`` (SQLite), named by what the search is over, so a rerun of
the same sweep continues the study: it knows every earlier result and runs the trials still missing
from ``n``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path

from flow.infra.build_dir import write_json
from flow.infra.progress import console
from flow.sweep.points import make_point
from flow.sweep.spec import Range, SweepSpec


TRIAL_CPU = 0.01  # a trial only waits for its point's task, which declares the sweep's resources


class PointFailed(RuntimeError):
    """A trial's point did not finish (its record says why); Optuna counts the trial as failed."""


def study_name(spec: SweepSpec) -> str:
    """What the search is over: a changed base, axis, objective or last step starts a new study."""
    doc = spec.model_dump(mode='json', include={'base', 'model_params', 'axes', 'objectives', 'steps', 'seed'})
    return 'sweep-' + hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def _storage(out: Path):
    import optuna

    return optuna.storages.RDBStorage(f'sqlite:///{out / "optuna.db"}')


def _domain(axis):
    """The Tune search domain of an axis: a list is a categorical choice of its positions (values may
    be lists, which Optuna cannot take as categories), a range uniform / log-uniform / integer."""
    from ray import tune

    if isinstance(axis, list):
        return tune.choice(list(range(len(axis))))
    assert isinstance(axis, Range)
    if axis.integer:
        lo, hi = int(math.ceil(axis.low)), int(math.floor(axis.high)) + 1
        return tune.lograndint(lo, hi) if axis.log else tune.randint(lo, hi)
    return tune.loguniform(axis.low, axis.high) if axis.log else tune.uniform(axis.low, axis.high)


def settings(spec: SweepSpec, params: dict) -> dict:
    """A trial's parameters -> the point's settings (axis -> value)."""
    return {k: axis[params[k]] if isinstance(axis, list) else params[k] for k, axis in spec.axes.items()}


def trial(params: dict, spec_doc: dict, out: str) -> None:
    """One trial, in a Tune trial actor: the point runs as its own Ray task (so the sweep's resources
    and timeout apply as in a grid), then its objectives are reported to Optuna."""
    import ray
    from ray import tune
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    from flow.sweep.fronts import num
    from flow.sweep.results import point_row
    from flow.sweep.tasks import _one_line, _outcome, _save, prepare, run_point, stop_expired
    from flow.sweep.status import DONE_CODES

    spec = SweepSpec.model_validate(spec_doc)
    out = Path(out)
    p = make_point(spec, settings(spec, params))
    folder = out / 'points' / p.key
    rec, run = prepare(spec, p, out)
    if run:
        r = spec.resources
        # outside the trial's placement group (Tune captures child tasks into it): the point asks for its own resources
        anywhere = PlacementGroupSchedulingStrategy(placement_group=None)
        ref = ray.remote(run_point).options(name=f'point-{p.key}', num_cpus=r.num_cpus, memory=int(r.memory_gb * 2**30),
                                            max_retries=0, scheduling_strategy=anywhere).remote(p.config, str(folder), spec.steps)
        stopping = {}
        while not ray.wait([ref], timeout=1.0)[0]:
            if spec.point_timeout_min:
                stop_expired([ref], {ref: folder}, spec.point_timeout_min, stopping)
        rec.update(_outcome(ref, folder))
        _save(folder, rec)
    if rec['exit_code'] not in DONE_CODES:
        raise PointFailed(f'{p.label}: exit {rec["exit_code"]}: {rec["error"]}')
    row = point_row(folder, rec)
    values = {k: num(row.get(k)) for k in spec.objectives}
    missing = [k for k, v in values.items() if v is None]
    if missing:
        raise PointFailed(_one_line(ValueError(f'{p.label}: no {", ".join(missing)} in its reports (the steps up to '
                                               f'{spec.steps} do not measure it): choose other objectives or steps')))
    tune.report({**values, 'point': p.key})


def _finished_trials(spec: SweepSpec, out: Path) -> int:
    import optuna

    try:
        study = optuna.load_study(study_name=study_name(spec), storage=_storage(out))
    except KeyError:  # no such study yet
        return 0
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL)
    return sum(t.state in states for t in study.get_trials(deepcopy=False))


def search(spec: SweepSpec, out: Path, address: str | None, num_cpus: int | None) -> None:
    """Run the trials still missing from ``spec.n``; record every point tried in ``sweep.json``."""
    os.environ.setdefault('TUNE_DISABLE_AUTO_CALLBACK_LOGGERS', '1')  # our table is the result, not Tune's loggers
    os.environ.setdefault('RAY_CHDIR_TO_TRIAL_DIR', '0')
    os.environ.setdefault('RAY_AIR_NEW_OUTPUT', '0')  # with verbose=0: no experiment banner or status tables
    try:
        import optuna
        from ray import tune
        from ray.tune.search.optuna import OptunaSearch
    except ImportError:
        from flow.infra.errors import BadInput

        raise BadInput('sampling: optuna runs on Ray Tune with Optuna, which are not installed: '
                       'pip install "sparse-fpga-flow[sweep]"') from None
    from flow.sweep.tasks import SweepInterrupted, _json, _ray_init, _ray_stop

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    done = _finished_trials(spec, out)
    todo = max(0, spec.n - done)
    known = (_json(out / 'sweep.json') or {}).get('points', [])
    console.print(f'sweep {spec.name}: optuna search over {len(spec.axes)} axes for '
                  f'{", ".join(f"{k} ({m})" for k, m in spec.objectives.items())}: {spec.n} trials, {done} already done, '
                  f'{todo} to run up to {spec.steps}; folder {out}', soft_wrap=True)
    keys = list(known)
    started = _ray_init(address, num_cpus)
    try:
        if todo:
            import ray

            slots = max(1, math.floor(ray.cluster_resources().get('CPU', 1) / spec.resources.num_cpus))
            algo = OptunaSearch(metric=list(spec.objectives), mode=list(spec.objectives.values()),
                                sampler=optuna.samplers.TPESampler(seed=spec.seed + done),
                                storage=_storage(out), study_name=study_name(spec))
            progress = _progress(todo, spec)
            fn = tune.with_parameters(tune.with_resources(trial, {'cpu': TRIAL_CPU}), spec_doc=spec.model_dump(mode='json'),
                                      out=str(out))
            tuner = tune.Tuner(
                fn, param_space={k: _domain(a) for k, a in spec.axes.items()},
                tune_config=tune.TuneConfig(search_alg=algo, num_samples=todo, max_concurrent_trials=slots),
                run_config=tune.RunConfig(name=f'{spec.name}-{time.strftime("%Y%m%d-%H%M%S")}', storage_path=str(out / 'tune'),
                                          verbose=0, callbacks=[progress], log_to_file=True))
            try:
                with progress:
                    results = tuner.fit()
            except KeyboardInterrupt:
                raise SweepInterrupted() from None
            for r in results:
                if r.config:
                    key = make_point(spec, settings(spec, r.config)).key
                    keys += [key] if key not in keys else []
            if progress.interrupted:
                raise SweepInterrupted()
    finally:
        write_json(out / 'sweep.json', {'spec': spec.model_dump(mode='json'), 'points': keys, 'study': study_name(spec)})
        if started:
            _ray_stop()


def _progress(total: int, spec: SweepSpec):
    """The sweep's progress bar, a Tune callback fed by its trial events (Tune is imported only here)."""
    from ray.tune import Callback

    class Progress(_Progress, Callback):
        pass

    return Progress(total, spec)


class _Progress:
    """The sweep's progress bar: trials done / running / failed, failed trials printed in one line."""

    def __init__(self, total: int, spec: SweepSpec):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.spec = spec
        self.failed = 0
        self.interrupted = False
        self.bar = Progress(TextColumn('{task.description}'), BarColumn(), MofNCompleteColumn(), TextColumn('{task.fields[info]}'),
                            TimeElapsedColumn(), TextColumn('ETA'), TimeRemainingColumn(), console=console, transient=False)
        self.task = self.bar.add_task('trials', total=total, info='')

    def __getstate__(self):  # Tune pickles its run config for restoring; a live bar holds locks
        return {'spec': self.spec, 'failed': self.failed, 'interrupted': self.interrupted}

    def __enter__(self):
        self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        return self.bar.__exit__(*exc)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.bar.advance(self.task)
        self._info(trials)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.failed += 1
        self.bar.advance(self.task)
        error = _trial_error(trial)
        self.bar.console.print(f'[red]trial {settings(self.spec, trial.config)}[/]: {error}', highlight=False, soft_wrap=True)
        self._info(trials)

    def on_experiment_end(self, trials, **info):
        self.interrupted = any(t.status not in ('TERMINATED', 'ERROR') for t in trials)

    def _info(self, trials):
        running = sum(t.status == 'RUNNING' for t in trials)
        self.bar.update(self.task, info=f'running {running}, failed {self.failed}')


def _trial_error(trial) -> str:
    """The last line of a trial's error (PointFailed's one line)."""
    path = getattr(trial, 'error_file', None) or ''
    try:
        text = Path(path).read_text().strip().splitlines()
    except OSError:
        return 'failed'
    line = next((l for l in reversed(text) if 'PointFailed' in l), text[-1] if text else 'failed')
    return line.split('PointFailed: ', 1)[-1][:400]
