"""Tool subprocesses (g++, build_lib.sh, testbenches, Vitis HLS, Vivado), run so that none outlives
its build unnoticed.

Each tool runs in its own process group, killed whole when the flow is interrupted (Ctrl-C, or
SIGTERM while a tool runs: ``sigterm_interrupts``). Tools also
inherit the build folder's lock (``build_dir.BuildLock``): if the flow itself is killed (``kill -9``),
an orphaned compiler still holds the lock, so a rerun is refused instead of building into the same
folder beside it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading

_inherited_fds: set[int] = set()  # lock file descriptors every tool keeps open
_running: set[subprocess.Popen] = set()  # tools started by run() that have not finished


def share_with_tools(fd: int) -> None:
    _inherited_fds.add(fd)


def unshare(fd: int) -> None:
    _inherited_fds.discard(fd)


@contextlib.contextmanager
def sigterm_interrupts():
    """While inside, from the main thread and where SIGTERM has Python's default action (exit at once,
    leaving the tools' process groups running): SIGTERM (``kill``, a CI timeout, a batch scheduler)
    raises KeyboardInterrupt as Ctrl-C does, so the code that kills the running tools runs and the
    caller reports an interrupt; a second SIGTERM meanwhile is ignored. The old action comes back on
    leaving (as flow/sweep/tasks.py does for Ray)."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _interrupt(signum, _frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # cleanup is not interrupted again
    raise KeyboardInterrupt


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    """``subprocess.run`` in a new process group (session); the whole group is killed if we are
    interrupted (Ctrl-C, SIGTERM: ``sigterm_interrupts``) or fail while it runs."""
    if kwargs.pop('capture_output', False):
        kwargs.update(stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    data = kwargs.pop('input', None)
    if data is not None:
        kwargs['stdin'] = subprocess.PIPE
    with sigterm_interrupts(), subprocess.Popen(cmd, start_new_session=True, pass_fds=tuple(sorted(_inherited_fds)), **kwargs) as proc:
        for fd in _inherited_fds:  # name the tool in the lock file, for a run refused while it lives
            os.lseek(fd, 0, os.SEEK_END)
            os.write(fd, f'; tool {os.path.basename(cmd[0])}: process group {proc.pid}'.encode())
        _running.add(proc)
        try:
            out, err = proc.communicate(data)
        except BaseException:
            kill_group(proc)
            raise
        finally:
            _running.discard(proc)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def kill_running() -> None:
    """Kill every tool still running. For tools started from worker threads: only the main thread
    sees an interrupt, so the run() inside a worker cannot kill its own tool."""
    for proc in list(_running):
        kill_group(proc)


class CompileError(RuntimeError):
    pass


def compiler_errors(res: subprocess.CompletedProcess, what: str) -> CompileError:
    """The error raised for a failed g++ run: its error lines, or its last lines if none say 'error'."""
    out = (res.stderr + res.stdout).splitlines()
    lines = [l for l in out if 'error' in l.lower()][:15] or out[-15:]
    return CompileError(f'{what} did not compile (g++ exit {res.returncode}):\n' + '\n'.join(lines))
