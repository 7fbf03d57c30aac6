"""A sweep point as a Ray task: running one (``run_point``, in a worker), deciding whether it must run
or is reused (``prepare``, ``finished``), stopping one past its time (``point_timeout_min``), its
outcome, and the local Ray session. Shared by the grid/random runner (``runner.py``) and the Optuna
search (``search.py``).

``DIR/points/<key>/`` is a point's build folder (``key``: a hash of its flow config), with
``point.json`` (its settings and its last outcome) and ``sweep.log`` (the flow's output).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import signal
import threading
import time
import traceback
from pathlib import Path

from flow.infra.build_dir import write_json
from flow.infra.errors import BadInput
from flow.infra.progress import console
from flow.sweep.points import Point, flow_config
from flow.sweep.spec import SweepSpec
from flow.infra.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_TOOL_MISSING


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C: running points were cancelled (their finished steps are kept); results so far written."""


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    first = text[0] if text else ''
    plain = isinstance(e, BadInput) or type(e).__name__ == 'ToolMissing'  # said for the user already
    return (first if plain else f'{type(e).__name__}: {first}')[:400]


def run_point(config: dict, folder: str, to_step: str) -> dict:
    """One point (in a Ray worker): run the flow up to ``to_step`` in ``folder``, its output to
    ``folder/sweep.log``. Never raises: returns the exit code and a one-line error."""
    from flow.infra.build_dir import BuildInUse
    from flow.steps import ToolMissing, run_flow

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / TIMED_OUT).unlink(missing_ok=True)
    write_json(folder / RUNNING, {'started': time.time(), 'pid': os.getpid()})  # the driver's clock for point_timeout_min
    t0 = time.time()
    code, error = EXIT_OK, None
    old_file = console.file
    with open(folder / 'sweep.log', 'a') as log:
        console.file = log
        console.print(f'--- {datetime.datetime.now().isoformat(timespec="seconds")} on {os.uname().nodename}, pid {os.getpid()}')
        try:
            _clear_keras()
            cfg = flow_config(config)
            for attempt in range(30):  # a killed run's orphaned tool still holds the folder: wait for it
                try:
                    run_flow(cfg, folder, to_step=to_step)
                    break
                except BuildInUse:
                    if attempt == 29:
                        raise
                    time.sleep(2)
        except ToolMissing as e:
            code, error = EXIT_TOOL_MISSING, _one_line(e)
        except BadInput as e:
            code, error = EXIT_BAD_INPUT, _one_line(e)
        except KeyboardInterrupt:  # Ctrl-C, or the driver stopped a point that ran out of time
            timed_out = _json(folder / TIMED_OUT)
            code, error = (EXIT_FAILED, timed_out['error']) if timed_out else (EXIT_INTERRUPTED, 'interrupted')
        except Exception as e:  # a step failed
            code, error = EXIT_FAILED, _one_line(e)
        finally:
            (folder / RUNNING).unlink(missing_ok=True)
            if error:
                console.print(f'exit {code}: {error}')
                if code == EXIT_FAILED:
                    console.print(traceback.format_exc())
            console.file = old_file
    return {'exit_code': code, 'error': error, 'seconds': round(time.time() - t0, 1), 'node': os.uname().nodename,
            'node_id': _node_id()}


RUNNING = 'running.json'  # a point's task started (and when); removed when it returns
TIMED_OUT = 'timed_out.json'  # the driver stopped the point for point_timeout_min


def expired(folder: Path, timeout_min: float | None) -> bool:
    """The point in ``folder`` has been running longer than ``timeout_min`` (queued time not counted)."""
    started = (_json(folder / RUNNING) or {}).get('started') if timeout_min else None
    return started is not None and time.time() - started > timeout_min * 60


def stop_timed_out(ref, folder: Path, timeout_min: float) -> None:
    """Stop a point that ran out of time: mark why, then cancel its task (the flow kills its tools and
    keeps its finished steps; run_point records the mark as the point's error)."""
    import ray

    write_json(folder / TIMED_OUT, {'error': f'timed out after {timeout_min:g} min (point_timeout_min); its finished '
                                             'steps are kept: raise point_timeout_min and rerun to continue'})
    ray.cancel(ref)


def _node_id() -> str | None:
    """The Ray node running the point; None outside Ray (asking would start or join a Ray instance)."""
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except Exception:
        return None


def _clear_keras() -> None:
    """A Ray worker runs point after point: start each with a fresh Keras graph."""
    import sys

    if 'tensorflow' in sys.modules:
        sys.modules['tensorflow'].keras.backend.clear_session()


def finished(cfg, folder: Path, to_step: str, previous: dict | None) -> bool:
    """Every step up to ``to_step`` is done with this point's settings (or the last run stopped
    only for a missing tool, with the same settings)."""
    from flow.steps import fingerprints, step_names

    path = folder / 'manifest.json'
    if not path.exists():
        return False
    try:
        steps = json.loads(path.read_text()).get('steps', {})
    except json.JSONDecodeError:
        return False
    fps = fingerprints(cfg)
    names = step_names()[: step_names().index(to_step) + 1]
    if all(steps.get(n, {}).get('status') == 'done' and steps[n].get('config') == fps[n] for n in names):
        return True
    return bool(previous) and previous.get('exit_code') == EXIT_TOOL_MISSING and previous.get('fingerprint') == fps[to_step] \
        and steps.get(names[-1], {}).get('config') in (fps[names[-1]], None)


def _ray_init(address: str | None, num_cpus: int | None) -> bool:
    """Start a quiet local Ray (or join ``address``); True when we started it (then we stop it)."""
    import ray

    if ray.is_initialized():
        return False
    # Workers import this checkout's flow package, wherever it is (also on a cluster's nodes,
    # which must see the same paths: build folders are read back from the shared file system).
    here = str(Path(__file__).resolve().parents[2])
    pythonpath = os.pathsep.join([here, *[p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p and p != here]])
    env = {'PYTHONPATH': pythonpath, 'TF_CPP_MIN_LOG_LEVEL': os.environ.get('TF_CPP_MIN_LOG_LEVEL', '3'),
           'SPARSE_FLOW_VERBOSE': os.environ.get('SPARSE_FLOW_VERBOSE', '0')}
    os.environ.setdefault('RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO', '0')
    common = dict(log_to_driver=False, logging_level=logging.ERROR, runtime_env={'env_vars': env})
    if address:
        ray.init(address=address, **common)
    else:
        # 'local': always a new instance of our own, never another Ray already running on this machine
        ray.init(address='local', num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False,
                 object_store_memory=128 * 2**20, **common)
    if threading.current_thread() is threading.main_thread():
        # a batch scheduler (SLURM, Kubernetes) stops a job with SIGTERM: stop as Ctrl-C does (points
        # cancelled, finished steps kept), not with Ray's crash dump; _ray_stop puts the old handler back
        _SIGTERM.append(signal.signal(signal.SIGTERM, _interrupt))
    return True


_SIGTERM: list = []  # the SIGTERM handler _ray_init replaced


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _ray_stop() -> None:
    """Stop the Ray that _ray_init started and restore the SIGTERM handler."""
    import ray

    ray.shutdown()
    if _SIGTERM and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _SIGTERM.pop())


def prepare(spec: SweepSpec, p: Point, out: Path) -> tuple[dict, bool]:
    """A point's record, and whether it must run: False for bad settings (recorded, exit 2) and for a
    point whose build folder already holds every step with these settings (reused)."""
    folder = out / 'points' / p.key
    folder.mkdir(parents=True, exist_ok=True)
    previous = _json(folder / 'point.json')
    rec = {'key': p.key, 'label': p.label, 'settings': p.settings, 'model_params': p.model_params, 'config': p.config,
           'to_step': spec.steps, 'exit_code': None, 'error': None, 'seconds': None, 'reused': False}
    run = False
    if p.error:
        rec.update(exit_code=EXIT_BAD_INPUT, error=_one_line(BadInput(p.error)))
    else:
        from flow.steps import fingerprints

        rec['fingerprint'] = fingerprints(p.flow_config)[spec.steps]
        if finished(p.flow_config, folder, spec.steps, previous):
            rec.update(exit_code=previous.get('exit_code', EXIT_OK) if previous else EXIT_OK,
                       error=(previous or {}).get('error'), seconds=(previous or {}).get('seconds'), reused=True)
        else:
            run = True
    if rec['exit_code'] is not None:
        _save(folder, rec)
    return rec, run


def _json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _save(folder: Path, rec: dict) -> None:
    rec = {**rec, 'recorded': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}
    write_json(folder / 'point.json', rec)


def stop_expired(pending: list, folders: dict, timeout_min: float, stopping: dict) -> None:
    """Stop the pending points that ran out of time; one that ignores it for 30 s is killed."""
    import ray

    now = time.time()
    for ref in pending:
        if ref not in stopping and expired(folders[ref], timeout_min):
            stop_timed_out(ref, folders[ref], timeout_min)
            stopping[ref] = now
        elif ref in stopping and now - stopping[ref] > 30:
            ray.cancel(ref, force=True)


def _outcome(ref, folder: Path) -> dict:
    import ray

    try:
        return ray.get(ref)
    except ray.exceptions.TaskCancelledError:
        timed_out = _json(folder / TIMED_OUT)
        if timed_out:
            return {'exit_code': EXIT_FAILED, 'error': timed_out['error'], 'seconds': None}
        return {'exit_code': EXIT_INTERRUPTED, 'error': 'cancelled', 'seconds': None}
    except Exception as e:  # the worker died (out of memory, killed): the point failed, the sweep goes on
        return {'exit_code': EXIT_FAILED, 'error': _one_line(e), 'seconds': None}


def _cancel(pending: list) -> None:
    """Cancel gently first (the flow kills its tools and discards its staging), then by force."""
    import ray

    for ref in pending:
        ray.cancel(ref)
    try:
        _, left = ray.wait(pending, num_returns=len(pending), timeout=15)
    except KeyboardInterrupt:
        left = pending
    # force only what is still running: force-cancelling a task whose cancelled reply has arrived can
    # abort the driver inside Ray (a failed check in TaskManager::CompletePendingTask, seen once in CI)
    for ref in left:
        try:
            ray.cancel(ref, force=True)
        except Exception:
            pass
