"""Running a sweep on Ray: one task per point (``tasks.run_point``), each ``run_flow`` on its own
build folder. A rerun skips the points whose steps are all done with their settings and resumes the
others where their build stopped (``run_flow`` keeps finished steps). A point that fails is recorded
with the exit code ``build-bitstream`` would give (2 bad input, 1 failure, 3 a tool missing: its other
steps are done) and its first error line; the sweep goes on. ``sampling: optuna`` runs in ``search.py``.
"""

from __future__ import annotations

import math
from pathlib import Path

from flow.infra.build_dir import write_json
from flow.infra.errors import BadInput
from flow.infra.progress import console
from flow.sweep.points import Point, expand
from flow.sweep.results import SweepResult
from flow.sweep.results import write as write_results
from flow.sweep.spec import SweepSpec
from flow.infra.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED
from flow.sweep.status import DONE_CODES
from flow.sweep.tasks import SweepInterrupted, _cancel, _outcome, _ray_init, _ray_stop, _save, prepare, run_point, stop_expired

__all__ = ['SweepInterrupted', 'run_sweep']


def run_sweep(spec: SweepSpec | str | Path, out: str | Path, address: str | None = None, num_cpus: int | None = None,
              plots: bool = True) -> SweepResult:
    """Run every point of ``spec`` (a SweepSpec or a sweep YAML file) into ``out``; write the
    results table, the Pareto fronts and the plots. ``address``: a running Ray cluster (``auto``
    or ``host:port``); default a local Ray on ``num_cpus`` cores (all)."""
    if not isinstance(spec, SweepSpec):
        spec = SweepSpec.load(Path(spec))
    out = Path(out).resolve()
    try:
        (out / 'points').mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BadInput(f'sweep folder {out} is not writable ({e.strerror}); choose another --out') from e
    if spec.sampling == 'optuna':  # the points are chosen as results come in
        from flow.sweep.search import search

        search(spec, out, address, num_cpus)
        return write_results(out, plots=plots)
    points = expand(spec)
    if not points:
        raise BadInput('the sweep has no points')
    write_json(out / 'sweep.json', {'spec': spec.model_dump(mode='json'), 'points': [p.key for p in points]})

    todo, records = [], {}
    for p in points:
        rec, run = prepare(spec, p, out)
        records[p.key] = rec
        if run:
            todo.append(p)

    reused = sum(r['reused'] for r in records.values())
    bad = sum(r['exit_code'] == EXIT_BAD_INPUT and not r['reused'] for r in records.values())
    console.print(f'sweep {spec.name}: {len(points)} points ({spec.sampling}), {reused} already done, '
                  f'{bad} with bad settings, {len(todo)} to run up to {spec.steps}; folder {out}', soft_wrap=True)
    if todo:
        _run_on_ray(spec, out, todo, records, address, num_cpus)
    return write_results(out, plots=plots)


def _run_on_ray(spec: SweepSpec, out: Path, todo: list[Point], records: dict, address: str | None, num_cpus: int | None):
    try:
        import ray
    except ImportError:
        raise BadInput('sweeps run on Ray, which is not installed: pip install "sparse-fpga-flow[sweep]" '
                       '(or -c requirements/host-constraints.txt ray)') from None
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    started = _ray_init(address, num_cpus)
    try:
        task = ray.remote(run_point)
        needs = dict(num_cpus=spec.resources.num_cpus, memory=int(spec.resources.memory_gb * 2**30), max_retries=0)
        cpus = ray.cluster_resources().get('CPU', 1)
        slots = max(1, math.floor(cpus / spec.resources.num_cpus))
        refs = {task.options(name=f'point-{p.key}', **needs).remote(p.config, str(out / 'points' / p.key), spec.steps): p for p in todo}
        pending = list(refs)
        failed = 0
        columns = (TextColumn('{task.description}'), BarColumn(), MofNCompleteColumn(), TextColumn('{task.fields[info]}'),
                   TimeElapsedColumn(), TextColumn('ETA'), TimeRemainingColumn())
        with Progress(*columns, console=console, transient=False) as progress:
            bar = progress.add_task('points', total=len(pending), info='')

            def show():
                progress.update(bar, info=f'running {min(len(pending), slots)}, queued {max(0, len(pending) - slots)}, '
                                          f'failed {failed}')

            show()
            stopping = {}  # ref -> when it was told to stop for its time
            try:
                while pending:
                    ready, pending = ray.wait(pending, num_returns=1, timeout=1.0)
                    if spec.point_timeout_min:
                        stop_expired(pending, {ref: out / 'points' / refs[ref].key for ref in pending}, spec.point_timeout_min,
                                     stopping)
                    for ref in ready:
                        p = refs[ref]
                        outcome = _outcome(ref, out / 'points' / p.key)
                        records[p.key].update(outcome)
                        _save(out / 'points' / p.key, records[p.key])
                        if outcome['exit_code'] not in DONE_CODES:
                            failed += 1
                            progress.console.print(f'[red]point {p.label}[/]: exit {outcome["exit_code"]}: {outcome["error"]}',
                                                   highlight=False, soft_wrap=True)
                        progress.advance(bar)
                    show()
            except KeyboardInterrupt:
                progress.console.print(f'[yellow bold]interrupted[/]: cancelling {len(pending)} points '
                                       '(their finished steps are kept; rerun the same command to continue)')
                _cancel(pending)
                for ref in pending:
                    p = refs[ref]
                    records[p.key].update(exit_code=EXIT_INTERRUPTED, error='interrupted')
                    _save(out / 'points' / p.key, records[p.key])
                raise SweepInterrupted() from None
    finally:
        if started:
            _ray_stop()
