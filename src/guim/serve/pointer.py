"""The live model shared by the worker processes of one server (`guim serve --workers N`).

A swap writes a small JSON pointer (which model is live) to a temporary file and renames it over
the old one, so a reader sees the old pointer or the new one, never part of one. Every worker
watches the file from a background thread; the model it names is loaded off to the side and
swapped in by one reference assignment once it is fully built (`guim.serve.app`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import multiprocessing
import os
import tempfile
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

log = logging.getLogger("guim.serve")


@dataclass(frozen=True)
class Pointer:
    """Which model is live: its source directory and version, the swap's gate record, and a
    token naming this swap (a worker skips a pointer whose token it already serves)."""

    source: str
    version: str
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    pid: int = field(default_factory=os.getpid)  # the worker that made the swap
    candidate: dict | None = None


def default_path(source: Path, store: str) -> Path | None:
    """The pointer of the workers of one uvicorn server: a file in the temp directory named by
    the supervisor process (pid and start time, so a later server never reads a stale one) and
    the settings; None in a single process, which has nobody to tell."""
    parent = multiprocessing.parent_process()
    if parent is None or parent.pid is None:
        return None
    settings = hashlib.blake2b(f"{Path(source).resolve()}|{store}".encode(), digest_size=6)
    name = f"{_prefix(parent.pid)}{_start_time(parent.pid)}-{settings.hexdigest()}"
    return Path(tempfile.gettempdir()) / name / "live-model.json"


def remove_pointers(supervisor_pid: int) -> None:
    """Delete the pointer directories of the workers of the server whose supervisor process is
    `supervisor_pid` (called by `guim serve` once uvicorn has stopped them)."""
    import shutil

    for d in Path(tempfile.gettempdir()).glob(f"{_prefix(supervisor_pid)}*"):
        shutil.rmtree(d, ignore_errors=True)


def _prefix(supervisor_pid: int) -> str:
    """The start of the name of every pointer directory of one server's workers."""
    return f"guim-serve-{supervisor_pid}-"


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux), '' where /proc is absent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, counted after the command name


def write_pointer(path: Path, pointer: Pointer) -> None:
    """Replace the pointer atomically: temp file in the same directory, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(pointer), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_pointer(path: Path) -> Pointer | None:
    """The pointer in `path`, or None when there is none (or it cannot be read)."""
    try:
        return Pointer(**json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as e:
        log.warning("ignoring the model pointer %s: %s", path, e)
        return None


class PointerWatcher:
    """A thread that checks the pointer's file every `interval` seconds (one stat) and hands a
    changed pointer to `on_change`, which loads and installs the model it names."""

    def __init__(
        self, path: Path, on_change: Callable[[Pointer], None], interval: float = 0.5
    ) -> None:
        self.path = path
        self.on_change = on_change
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="guim-model-pointer", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        # loading a model is background work: this thread alone gets the lowest CPU priority
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        seen = None
        while not self._stop.wait(self.interval):
            try:
                st = os.stat(self.path)
            except OSError:
                continue
            key = (st.st_ino, st.st_mtime_ns, st.st_size)  # a rename gives a new inode
            if key == seen:
                continue
            seen = key
            pointer = read_pointer(self.path)
            if pointer is None:
                continue
            try:
                self.on_change(pointer)
            except Exception:  # a broken candidate must not stop the watching
                log.exception("could not load the model %s named by %s", pointer.source, self.path)
