"""Where a result came from: the machine, the git revision, the command; the results-JSON shape.

Every recorded result is `{"command", "machine", "git", "results": {dataset: {model: {metric:
value}}}}` plus optional extra keys, written atomically.
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from guim.io import write_json


def machine() -> str:
    """A one-line description of this machine (CPU model, cores, memory, torch threads)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        mem = f", {pages * size / 2**30:.0f} GiB RAM"
    except (ValueError, OSError, AttributeError):
        pass
    return f"{cpu}, {cores()} cores{mem}, {platform.system()} {platform.machine()}, {_gpu()}"


def cores() -> int | None:
    """The cores this process may run on (its CPU affinity where the OS tells it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _gpu() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return f"GPU {torch.cuda.get_device_name(0)} (not used unless stated)"
    except ImportError:
        pass
    return "no GPU"


def git_revision(repo: str | Path | None = None) -> str:
    """Current commit (short SHA), '+dirty' when tracked files have uncommitted changes or
    untracked files exist under src/ or benchmarks/ (code the commit does not hold)."""
    repo = Path(repo) if repo else Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            [
                "git",
                "status",
                "--porcelain",
                "--untracked-files=all",
                "--",
                "src",
                "benchmarks",
                ":(exclude)benchmarks/results",
            ],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# environment variables that change how many threads a run uses: part of the command a result
# came from (the CLI arguments alone do not say that a run had one thread or two)
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def thread_env() -> dict[str, str]:
    """The variables of THREAD_VARS that are set, with their values."""
    return {k: os.environ[k] for k in THREAD_VARS if k in os.environ}


def current_command() -> str:
    """The command line of this process, as a user would type it, prefixed with the thread
    variables of THREAD_VARS that are set (e.g. `OMP_NUM_THREADS=2 guim bench ...`)."""
    argv = list(sys.argv)
    if argv and argv[0].endswith(("guim", "guim.exe")):
        argv[0] = "guim"
    elif argv and argv[0].endswith(".py"):
        argv = ["python", os.path.relpath(argv[0]), *argv[1:]]
    env = [f"{k}={shlex.quote(v)}" for k, v in thread_env().items()]
    return " ".join([*env, shlex.join(argv)])


def _busy_cpu_seconds() -> float | None:
    """CPU seconds every process of the machine has used since boot (/proc/stat's first line:
    user, nice, system, irq, softirq, steal; guest time is already inside user), or None where
    /proc/stat does not exist."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = [int(v) for v in fields[1:]]
    busy = sum(ticks[i] for i in (0, 1, 2, 5, 6, 7) if i < len(ticks))
    return busy / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    """CPU seconds of this process and of the children it has waited for."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


# "alone": other processes used less than this many cores on average over the interval
ALONE_CORES = 0.05
_now = time.perf_counter  # the watch's clock (a module attribute, so tests can set it)


class CpuWatch:
    """Evidence for "alone on the machine": over an interval, the wall time, this process's CPU
    time and the CPU time every other process used (the machine's busy time from /proc/stat
    minus this process's own), so a recorded timing says how busy the machine was beside it."""

    def __init__(self) -> None:
        self.wall = _now()
        self.busy = _busy_cpu_seconds()
        self.own = _own_cpu_seconds()

    def read(self, **extra: Any) -> dict[str, Any]:
        """The conditions since this watch started: threads, cores, wall and CPU seconds, the
        mean number of cores other processes used, and `alone` (under ALONE_CORES of them);
        the CPU fields are None where /proc/stat is missing."""
        wall = _now() - self.wall
        own = _own_cpu_seconds() - self.own
        busy = _busy_cpu_seconds()
        other = None if busy is None or self.busy is None else max(0.0, busy - self.busy - own)
        try:
            import torch

            threads: int | None = torch.get_num_threads()
        except ImportError:
            threads = None
        other_cores = None if other is None or wall <= 0 else other / wall
        return {
            "torch_threads": threads,
            "env": thread_env(),
            "cores": cores(),
            "wall_seconds": round(wall, 2),
            "own_cpu_seconds": round(own, 2),
            "other_cpu_seconds": None if other is None else round(other, 2),
            "other_cores_mean": None if other_cores is None else round(other_cores, 3),
            "alone": None if other_cores is None else other_cores < ALONE_CORES,
            **extra,
        }


def write_results(
    path: str | Path,
    results: dict[str, dict[str, dict[str, Any]]],
    command: str | None = None,
    **extra: Any,
) -> Path:
    """Write a results JSON in the project's shape (see module docstring).

    With `merge=True` (a keyword in `extra`) an existing file at `path` keeps the datasets this
    call does not produce: the file then records every command that contributed, joined by
    " && ", and the machine and revision of each."""
    merge = bool(extra.pop("merge", False))
    doc = {
        "command": command or current_command(),
        "machine": machine(),
        "git": git_revision(),
        "results": results,
        **extra,
    }
    path = Path(path)
    if merge and path.exists():
        from guim.io import read_json

        old = read_json(path)
        kept = {k: v for k, v in old.get("results", {}).items() if k not in results}
        if kept:  # the earlier invocation still contributes: record it too
            doc["results"] = {**kept, **results}
            for key in ("command", "machine", "git"):
                if not old.get(key) or old[key] == doc[key]:
                    continue
                # a command that rewrites the file after each of its runs is recorded once
                last = old[key].split(" && ")[-1]
                doc[key] = old[key] if last == doc[key] else f"{old[key]} && {doc[key]}"
        # other top-level keys stay (notes, per-dataset extras), this call's winning; a
        # per-dataset entry of a dataset this call re-measured is not carried over
        for key, value in old.items():
            if isinstance(value, dict) and (key not in doc or isinstance(doc[key], dict)):
                stale = {k: v for k, v in value.items() if k not in results}
                doc[key] = {**stale, **doc.get(key, {})}  # e.g. per-dataset settings
            else:
                doc.setdefault(key, value)
    return write_json(path, doc)
