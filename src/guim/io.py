"""Atomic file and directory writes: write to a temporary path beside the target, then rename.

Temporaries are named `.<name>.<pid>@<host>.<random>.tmp`. They are removed when the block
fails, when SIGTERM or SIGHUP arrives while a directory is being written (`cleanup_on_signals`
turns them into SystemExit, as Ctrl-C is a KeyboardInterrupt), and, after a kill -9, by the
next write of the same target (`sweep_stale`). What is written gets the permissions the umask
allows, like any other tool's output (mkstemp and mkdtemp alone would make it 0600 / 0700).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from guim.errors import UserError

# a temporary without a PID in its name (written before PIDs were recorded) is stale once it
# has not been touched for this long
LEGACY_STALE_SECONDS = 3600
_TMP_PID = re.compile(r"(\d+)(?:@([0-9a-f]{8}))?\.[A-Za-z0-9_]+")
_TMP_LEGACY = re.compile(r"[a-z0-9_]{8}")
_OLD = re.compile(r"old-(\d+)(?:@([0-9a-f]{8}))?")


def write_json(path: str | Path, obj: Any) -> Path:
    """Write `obj` as indented JSON to `path` atomically (temporary file, fsync, rename)."""
    path = Path(path)
    with atomic_file(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=False, default=_json_default)
        f.write("\n")
    return path


def read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


# ---- permissions -----------------------------------------------------------------------------


def umask() -> int:
    """The process umask, read without changing it where /proc allows (os.umask is not
    thread-safe to read)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a new regular file gets from open(): 0o666 less the umask."""
    return 0o666 & ~umask()


def dir_mode() -> int:
    """The mode a new directory gets from mkdir(): 0o777 less the umask."""
    return 0o777 & ~umask()


# ---- atomic writes -------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is synced and renamed onto `path`."""
    path = Path(path)
    make_parent(path)
    sweep_stale(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=_prefix(path), suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise output_error(path, e) from None
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, file_mode())
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(
    path: str | Path,
    overwrite: bool = False,
    is_ours: Callable[[Path], bool] | None = None,
    what: str = "directory",
) -> Iterator[Path]:
    """Yield a temporary directory beside `path`; on success it replaces `path` in one rename.

    If the block raises (or SIGTERM / SIGHUP arrives), the temporary directory is removed and
    `path` is left untouched. With `overwrite`, an existing `path` is replaced only when
    `is_ours(path)` holds (given): a directory this kind of writer made, never anything else.
    """
    path = Path(path)
    sweep_stale(path)
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise FileExistsError(f"{path} already exists (pass overwrite=True / --overwrite)")
        check_replaceable(path, is_ours, what)
    make_parent(path)
    tmp: Path | None = None
    old = path.with_name(f".{path.name}.old-{_owner()}")
    # the handlers go in before the temporary exists, so no signal can strand it
    with cleanup_on_signals():
        try:
            try:
                tmp = Path(tempfile.mkdtemp(prefix=_prefix(path), suffix=".tmp", dir=path.parent))
            except OSError as e:
                raise output_error(path, e) from None
            os.chmod(tmp, dir_mode())
            yield tmp
            if path.exists() or path.is_symlink():
                os.replace(path, old)
                os.replace(tmp, path)
                _remove(old)
            else:
                os.replace(tmp, path)
        except BaseException:
            if old.exists() and not (path.exists() or path.is_symlink()):
                os.replace(old, path)  # interrupted between the two renames: put it back
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
            raise


def check_replaceable(path: Path, is_ours: Callable[[Path], bool] | None, what: str) -> None:
    """UserError unless `path` may be replaced: a real directory (not a link, not a file) that
    `is_ours` recognises (when given)."""
    if is_ours is None:
        return
    if path.is_symlink() or not path.is_dir():
        kind = "a symbolic link" if path.is_symlink() else "a file"
        raise UserError(f"refusing to replace {path}: it is {kind}, not a {what} guim wrote")
    if not is_ours(path):
        raise UserError(
            f"refusing to replace {path}: it is not a {what} guim wrote; "
            "remove it yourself or choose another output"
        )


def make_parent(path: Path) -> None:
    """Create `path`'s parent directories; a UserError naming the blocker when a file stands in
    the way or the location is not writable."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next(
            (p for p in reversed(path.parents) if p.exists() and not p.is_dir()), path.parent
        )
        raise UserError(f"cannot write {path}: {blocker} is a file, not a directory") from None
    except OSError as e:
        raise output_error(path, e) from None


def output_error(path: Path, e: OSError) -> OSError | UserError:
    """A one-line UserError for the environment refusing a write to `path` (permissions, a
    read-only or full file system), else `e` itself."""
    reasons = {
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.EROFS: "read-only file system",
        errno.ENOSPC: "no space left on the device",
        errno.EDQUOT: "disk quota exceeded",
    }
    if e.errno not in reasons:
        return e
    where = e.filename or path.parent
    return UserError(f"cannot write {path}: {reasons[e.errno]} ({where})")


def _prefix(path: Path) -> str:
    return f".{path.name}.{_owner()}."


def _owner() -> str:
    """`<pid>@<host>`: who writes a temporary (the host as 8 hex digits, so that a PID is only
    ever judged on the machine it belongs to, on a shared file system too)."""
    return f"{os.getpid()}@{_host()}"


def _host() -> str:
    return hashlib.blake2b(socket.gethostname().encode(), digest_size=4).hexdigest()


def _dead(pid: str, host: str | None) -> bool:
    """Whether the writer of a temporary is gone: its PID is not running on this host (a
    temporary of another host is never judged dead)."""
    return (host is None or host == _host()) and not pid_alive(int(pid))


def _fsync(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


# ---- leftovers ----------------------------------------------------------------------------------


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists (a PID owned by someone else counts as alive)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_temporaries(path: str | Path) -> list[Path]:
    """Temporaries of `path` left by a process that is gone: `.<name>.<pid>@<host>.<random>.tmp`
    and `.<name>.old-<pid>@<host>` whose PID is dead on this host, and `.<name>.<random>.tmp` (no PID, an older guim)
    untouched for LEGACY_STALE_SECONDS."""
    path = Path(path)
    prefix = f".{path.name}."
    try:
        entries = [e for e in os.scandir(path.parent) if e.name.startswith(prefix)]
    except OSError:
        return []
    stale = []
    for entry in entries:
        rest = entry.name[len(prefix) :]
        if m := _OLD.fullmatch(rest):
            if _dead(m[1], m[2]):
                stale.append(Path(entry.path))
            continue
        if not rest.endswith(".tmp"):
            continue
        rest = rest[: -len(".tmp")]
        if m := _TMP_PID.fullmatch(rest):
            if _dead(m[1], m[2]):
                stale.append(Path(entry.path))
        elif _TMP_LEGACY.fullmatch(rest):
            with contextlib.suppress(OSError):
                if time.time() - entry.stat(follow_symlinks=False).st_mtime > LEGACY_STALE_SECONDS:
                    stale.append(Path(entry.path))
    return sorted(stale)


def sweep_stale(path: str | Path) -> list[Path]:
    """Remove the stale temporaries of `path` (see `stale_temporaries`); returns them.

    A process killed between the two renames that replace a directory leaves the old one as
    `.<name>.old-<pid>@<host>` and no `<name>`: it is renamed back, so nothing is lost."""
    path = Path(path)
    stale = stale_temporaries(path)
    for p in stale:
        if p.name.startswith(f".{path.name}.old-") and not (path.exists() or path.is_symlink()):
            with contextlib.suppress(OSError):  # left as it is when it cannot be put back
                os.replace(p, path)
            continue
        _remove(p)
    return stale


# ---- signals ------------------------------------------------------------------------------------

_CLEANUP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n))


def _exit_on_signal(signum: int, frame: Any) -> None:
    # a second signal must not interrupt the clean-up the first one starts
    signal.signal(signum, signal.SIG_IGN)
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def cleanup_on_signals() -> Iterator[None]:
    """While the block runs, SIGTERM and SIGHUP raise SystemExit(128 + signal) so that
    `except`/`finally` clean-up runs; only signals left at their default action are taken
    over, and only in the main thread. The previous handlers are restored afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for sig in _CLEANUP_SIGNALS:
        if signal.getsignal(sig) is signal.SIG_DFL:
            previous[sig] = signal.signal(sig, _exit_on_signal)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
