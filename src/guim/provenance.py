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
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpu}, {cores} cores{mem}, {platform.system()} {platform.machine()}, {_gpu()}"


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


def current_command() -> str:
    """The command line of this process, as a user would type it."""
    argv = list(sys.argv)
    if argv and argv[0].endswith(("guim", "guim.exe")):
        argv[0] = "guim"
    elif argv and argv[0].endswith(".py"):
        argv = ["python", os.path.relpath(argv[0]), *argv[1:]]
    return shlex.join(argv)


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
