"""The build folder and its manifest: what each step produced, with checksums.

Rules that keep a build trustworthy and resumable:
- a step writes into ``.staging/<step>/`` and its outputs are moved into place only on success;
- the manifest (``manifest.json``, replaced atomically) marks a step done only after that;
- running a step forgets every later step, so stale results are never trusted;
- before a step runs, the outputs of the steps it depends on are checked against their
  checksums; a changed or missing file is a corrupt build folder, reported with the step to rerun.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import hashlib
import json
import os
import shutil
from pathlib import Path

from flow.infra import processes
from flow.infra.errors import BadInput

MANIFEST = 'manifest.json'
LOCK = '.lock'


class CorruptBuild(BadInput):
    pass


class BuildInUse(BadInput):
    pass


def not_writable(root: Path, e: OSError) -> BadInput:
    return BadInput(f'build folder {root} is not writable ({e.strerror}); make it writable or choose another --build-dir')


def make_folder(root: Path) -> Path:
    """The build folder, created if needed (resolved); bad input if it is a file or cannot be made."""
    root = Path(root).resolve()
    if root.exists() and not root.is_dir():
        raise BadInput(f'build folder {root} is a file; choose another --build-dir')
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise not_writable(root, e) from e
    return root


class BuildLock:
    """An exclusive lock on a build folder for one run of the flow (``flock`` on ``.lock``).

    Tool subprocesses inherit it (flow.infra.processes), so an orphan of a killed run keeps the folder
    locked until it exits. The file names the holder, for the message a second run gets."""

    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        self.fd = None

    def __enter__(self):
        try:
            self.fd = os.open(self.root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise not_writable(self.root, e) from e
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            holder = os.read(self.fd, 200).decode(errors='replace').strip() or 'unknown'
            os.close(self.fd)
            raise BuildInUse(
                f'build folder {self.root} is in use by another build-bitstream run or a tool it started '
                f'({holder}); wait for it to finish or stop it (kill -- -<process group>), then rerun'
            ) from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f'pid {os.getpid()}, process group {os.getpgid(0)}'.encode(), 0)
        processes.share_with_tools(self.fd)
        return self

    def __exit__(self, *exc):
        processes.unshare(self.fd)
        os.close(self.fd)  # releases the lock unless a tool still holds it


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def write_json(path: Path, data) -> None:
    """Atomic JSON write: a reader sees the old file or the new one, never half of one."""
    path = Path(path)
    tmp = path.with_name(path.name + '.tmp')
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


class BuildDir:
    def __init__(self, root: Path):
        self.root = make_folder(root)
        path = self.root / MANIFEST
        if path.exists():
            try:
                self.manifest = json.loads(path.read_text())
            except json.JSONDecodeError as e:
                raise CorruptBuild(f'{path} is not valid JSON ({e}); delete the build folder or restore the manifest') from e
        else:
            self.manifest = {'steps': {}}

    def save(self) -> None:
        write_json(self.root / MANIFEST, self.manifest)

    # --- step records ----------------------------------------------------------------------------

    def record(self, step: str) -> dict | None:
        return self.manifest['steps'].get(step)

    def done(self, step: str, fingerprint: str | None = None) -> bool:
        rec = self.record(step)
        return bool(rec) and rec.get('status') == 'done' and (fingerprint is None or rec.get('config') == fingerprint)

    def forget_from(self, steps_in_order: list[str], step: str) -> None:
        """Drop the records of ``step`` and every later step: they are about to be stale."""
        for s in steps_in_order[steps_in_order.index(step) :]:
            self.manifest['steps'].pop(s, None)
        self.save()

    def staging(self, step: str, outputs: list[str]) -> Path:
        """A fresh staging folder with the folders the step's outputs go into."""
        path = self.root / '.staging' / step
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        for rel in outputs:
            (path / rel).parent.mkdir(parents=True, exist_ok=True) if Path(rel).suffix else (path / rel).mkdir(parents=True)
        return path

    def commit(self, step: str, fingerprint: str, outputs: list[str], summary: dict | None = None, status: str = 'done') -> None:
        """Move staged outputs into place (replacing older ones) and record the step."""
        staged = self.root / '.staging' / step
        for rel in outputs:
            src, dst = staged / rel, self.root / rel
            if src.exists():
                if dst.is_dir():
                    shutil.rmtree(dst)
                elif dst.exists():
                    dst.unlink()
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dst)
        shutil.rmtree(staged, ignore_errors=True)
        self.clean_staging()
        files = {}
        for rel in outputs:
            p = self.root / rel
            if not p.exists():
                raise CorruptBuild(f'step {step} did not produce {rel}')
            for f in sorted(p.rglob('*')) if p.is_dir() else [p]:
                if f.is_file():
                    files[str(f.relative_to(self.root))] = sha256(f)
        self.manifest['steps'][step] = {
            'status': status,
            'config': fingerprint,
            'finished': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
            'outputs': outputs,
            'files': files,
            'summary': summary or {},
        }
        self.save()

    def discard_staging(self, step: str) -> None:
        """Throw away what a step wrote before it failed or stopped: nothing half-written stays."""
        shutil.rmtree(self.root / '.staging' / step, ignore_errors=True)
        self.clean_staging()

    def clean_staging(self) -> None:
        try:
            (self.root / '.staging').rmdir()  # only when empty
        except OSError:
            pass

    def add_files(self, step: str, paths: list[Path]) -> None:
        """Record files a step created in place (e.g. the C-sim library inside hls/)."""
        rec = self.manifest['steps'][step]
        for p in paths:
            rec['files'][str(Path(p).resolve().relative_to(self.root))] = sha256(p)
        self.save()

    def amend_json(self, owner: str, rel: str, update: dict) -> None:
        """Add keys to a JSON report of an earlier step (the rtl step's level in verify.json), keeping
        that step's record of the file true. Atomic: readers see the old report or the new one."""
        path = self.root / rel
        write_json(path, {**json.loads(path.read_text()), **update})
        self.manifest['steps'][owner]['files'][rel] = sha256(path)
        self.save()

    def check_files(self, step: str, rerun_hint: str) -> None:
        rec = self.record(step)
        for rel, digest in rec.get('files', {}).items():
            p = self.root / rel
            if not p.is_file():
                raise CorruptBuild(f'{p} (made by step {step}) is missing; rerun with --from-step {rerun_hint}')
            if sha256(p) != digest:
                raise CorruptBuild(f'{p} changed since step {step} wrote it; rerun with --from-step {rerun_hint}')
