"""Reliability drills (issue 11): bad inputs, random corruptions, bad options, dangerous outputs,
broken run files, permissions, kills of `guim prepare`, a full disk under the checkpoint writer
and a planted RecBole pickle, each tried the way a user meets it (the CLI in a subprocess,
except the fuzz cases, run through Typer's CliRunner for speed, and the disk-full cases, which
patch the writer in-process).

    .venv/bin/python benchmarks/reliability.py                    # -> results/reliability.json
    .venv/bin/python benchmarks/reliability.py --fuzz 20 --kills 2 --no-write

Every case is counted in `cases`; a case can find a `traceback` (any Python traceback shown to
the user), a `silent_wrong` result (accepted input that should be refused, an option ignored, a
reading that differs from a strict reference reader, a partial dataset, a planted pickle
loaded), `data_loss` (an input or a previous good output changed or gone) and `leftovers`
(temporaries left once the command, or the run after a kill, has finished). The target is 0 for
all four. `unclear` counts refusals that are not one line naming the thing (reported, not a
result key).
"""

from __future__ import annotations

import argparse
import csv
import errno
import hashlib
import io
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

from guim.progress import console
from guim.provenance import write_results

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "reliability.json"
KEYS = ("cases", "tracebacks", "silent_wrong", "data_loss", "leftovers")
HEADER = "user_id,item_id,timestamp,event\n"


class Tally:
    """Counts per class of drill, and a line for every case that found something."""

    def __init__(self) -> None:
        self.classes: dict[str, Counter] = {}
        self.findings: list[str] = []
        self.notes: dict[str, int] = {}

    def case(self, cls: str, name: str, **found: int | bool) -> None:
        c = self.classes.setdefault(cls, Counter({k: 0 for k in (*KEYS, "unclear")}))
        c["cases"] += 1
        for key, value in found.items():
            c[key] += int(value)
        bad = {k: int(v) for k, v in found.items() if v}
        if bad:
            self.findings.append(f"{cls}/{name}: {bad}")
            console.print(f"[red]{cls}/{name}[/]: {bad}")

    def totals(self) -> dict[str, int]:
        return {k: sum(c[k] for c in self.classes.values()) for k in KEYS}


# ---- running guim and looking at what it left ------------------------------------------------


def guim(*args: object, umask: int | None = None, as_nobody: bool = False) -> tuple[int, str]:
    """(exit status, stdout + stderr) of `guim ARGS` in a fresh interpreter."""
    cmd = [sys.executable, "-m", "guim.cli", *map(str, args)]
    if as_nobody:
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    preexec = (lambda: os.umask(umask)) if umask is not None else None
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=600, env=env, preexec_fn=preexec
    )
    return proc.returncode, proc.stdout + proc.stderr


def snapshot(*paths: Path) -> dict[str, str]:
    """{path: content hash} of every file under `paths` (to detect data loss)."""
    out = {}
    for root in paths:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for f in files:
            out[str(f)] = hashlib.blake2b(f.read_bytes(), digest_size=8).hexdigest()
    return out


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*")) if folder.exists() else []


def judge_refusal(
    tally: Tally,
    cls: str,
    name: str,
    result: tuple[int, str],
    names: list[object],
    folder: Path,
    protected: dict[str, str] | None = None,
    out: Path | None = None,
) -> None:
    """An expected refusal: exit 2, one error line naming `names`, nothing written."""
    rc, text = result
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    clear = rc == 2 and len(errors) == 1 and all(str(n) in errors[0] for n in names)
    lost = protected is not None and any(
        snapshot(Path(p)).get(p) != h if Path(p).exists() else True for p, h in protected.items()
    )
    tally.case(
        cls,
        name,
        tracebacks="Traceback" in text,
        silent_wrong=rc == 0 or (out is not None and out.exists()),
        data_loss=lost,
        leftovers=len(hidden(folder)),
        unclear=not clear and rc != 0 and "Traceback" not in text,
    )
    if not clear:
        console.print(f"[yellow]{cls}/{name}[/]: rc={rc} {text.strip()[-300:]!r}")


def stats(out: Path) -> dict | None:
    try:
        return json.loads((out / "stats.json").read_text())
    except (OSError, ValueError):
        return None


def timestamps(out: Path) -> list[int]:
    return sorted(pl.read_parquet(out / "events.parquet")["timestamp"].to_list())


def clean_rows(n: int = 30, seed: int = 0) -> list[tuple[str, str, int, str]]:
    rng = random.Random(seed)
    events = ("view", "cart", "purchase")
    return [
        (f"u{rng.randrange(5)}", f"i{rng.randrange(9)}", 1_000 + k, rng.choice(events))
        for k in range(n)
    ]


def write_csv(path: Path, rows, sep: str = ",") -> Path:
    path.write_text(
        sep.join(HEADER.strip().split(","))
        + "\n"
        + "".join(sep.join(map(str, r)) + "\n" for r in rows)
    )
    return path


def write_jsonl(path: Path, rows) -> Path:
    keys = HEADER.strip().split(",")
    path.write_text("".join(json.dumps(dict(zip(keys, r, strict=True))) + "\n" for r in rows))
    return path


# ---- 1. bad input files ------------------------------------------------------------------------


def bad_inputs(tally: Tally, root: Path) -> None:
    rows = clean_rows()
    good = "".join(",".join(map(str, r)) + "\n" for r in rows)
    cases: dict[str, tuple[str, bytes]] = {
        "ragged-row": ("log.csv", (HEADER + good + "u1,i1,5\n" + good).encode()),
        "not-utf8": ("log.csv", (HEADER + good).encode() + b"u1,i\xff,5,view\n"),
        "empty": ("log.csv", b""),
        "header-only": ("log.csv", HEADER.encode()),
        "missing-column": ("log.csv", b"user_id,item_id,event\nu1,i1,view\n"),
        "bad-timestamp": ("log.csv", (HEADER + good + "u1,i1,yesterday,view\n").encode()),
        "unknown-event": ("log.csv", (HEADER + good + "u1,i1,5,teleport\n").encode()),
        "duplicate-header": ("log.csv", b"user_id,user_id,timestamp\nu,i,1\n"),
        "missing-id": ("log.csv", (HEADER + good + ",i1,5,view\n").encode()),
        "stray-quote": ("log.csv", (HEADER + 'u1,i"1,5,view\n').encode()),
        "invalid-json": (
            "log.jsonl",
            b'{"user_id": "u", "item_id": "i", "timestamp": 1}\n{"user_id": \n',
        ),
        "nested-json": (
            "log.jsonl",
            b'{"user_id": "u", "item_id": "i", "timestamp": 1}\n{"user_id": ["u"], "item_id": "i", "timestamp": 2}\n',
        ),
        "json-array-line": (
            "log.jsonl",
            b'{"user_id": "u", "item_id": "i", "timestamp": 1}\n[1, 2]\n',
        ),
        "empty-json-id": ("log.jsonl", b'{"user_id": "", "item_id": "i", "timestamp": 1}\n'),
        "boolean-json-id": ("log.jsonl", b'{"user_id": true, "item_id": "i", "timestamp": 1}\n'),
        "not-parquet": ("log.parquet", b"PAR1 this is not parquet"),
        "unknown-extension": ("log.xml", b"<log/>"),
        "s3rec-word": ("Toy.txt", b"1 2 3\n2 x 4\n"),
        "s3rec-user-only": ("Toy.txt", b"1 2 3\n2\n"),
        "recbole-bad-type": ("toy.inter", b"user_id:token\titem_id:int\nu\ti\n"),
        "recbole-ragged": ("toy.inter", b"user_id:token\titem_id:token\nu\ti\nu2\n"),
    }
    for name, (filename, content) in cases.items():
        folder = root / name
        folder.mkdir()
        path = folder / filename
        path.write_bytes(content)
        protected = snapshot(path)
        out = folder / "out"
        judge_refusal(
            tally,
            "bad_input",
            name,
            guim("prepare", path, "--out", out),
            [path],
            folder,
            protected,
            out,
        )
    # a truncated Parquet file and a missing path
    folder = root / "truncated-parquet"
    folder.mkdir()
    path = folder / "log.parquet"
    pl.DataFrame(clean_rows(), orient="row", schema=HEADER.strip().split(",")).write_parquet(path)
    path.write_bytes(path.read_bytes()[:-40])
    judge_refusal(
        tally,
        "bad_input",
        "truncated-parquet",
        guim("prepare", path, "--out", folder / "out"),
        [path],
        folder,
        None,
        folder / "out",
    )
    missing = root / "nope.csv"
    judge_refusal(
        tally,
        "bad_input",
        "missing-path",
        guim("prepare", missing, "--out", root / "o"),
        [missing],
        root / "nope",
        None,
        root / "o",
    )


# ---- 2. random corruptions (the property test's oracle, more examples) --------------------------


_INT = re.compile(r"-?\d+")


def reference(data: bytes, fmt: str) -> list[tuple[str, str, int]] | None:
    """A strict reading of a 3-column log: the rows, or None for an invalid record."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    rows = []
    if fmt == "csv":
        records = list(csv.reader(io.StringIO(text, newline="")))
        if not records or records[0] != ["user_id", "item_id", "timestamp"]:
            return None
        for rec in records[1:]:
            if not rec:
                continue
            if (
                len(rec) != 3
                or not all(v.strip() for v in rec[:2])
                or not _INT.fullmatch(rec[2].strip())
            ):
                return None
            rows.append((rec[0], rec[1], int(rec[2])))
        return rows
    for line in text.split("\n"):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            return None
        if not isinstance(rec, dict):
            return None
        u, i, t = (rec.get(k) for k in ("user_id", "item_id", "timestamp"))
        if not all(_is_id(v) for v in (u, i)) or type(t) not in (int, float):
            return None
        rows.append((str(u), str(i), math.floor(t)))  # times are floored (documented)
    return rows


def _is_id(value: object) -> bool:
    """An id in JSON: a non-empty string or a number (read as its text), not a boolean."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int | float) or (isinstance(value, str) and bool(value.strip()))


def corrupt(data: bytes, fmt: str, rng: random.Random) -> tuple[str, bytes]:
    kind = rng.choice(["drop_field", "bad_byte", "truncate_line", "truncate_file", "wrong_type"])
    starts = [0] + [k + 1 for k, b in enumerate(data) if b == 10 and k + 1 < len(data)]
    first = 1 if fmt == "csv" else 0
    start = starts[rng.randrange(first, len(starts))]
    end = data.index(b"\n", start)
    line = data[start:end]
    if kind == "bad_byte":
        at = rng.randrange(len(data) + 1)
        return kind, data[:at] + rng.choice([b"\xff", b"\xfe", b"\xc3", b"\x80"]) + data[at:]
    if kind == "truncate_file":
        return kind, data[: rng.randrange(starts[first], len(data))]
    if kind == "truncate_line":
        return kind, data[: start + rng.randrange(len(line))] + data[end:]
    if fmt == "csv":
        fields = line.split(b",")
        col = rng.randrange(3)
        if kind == "drop_field":
            del fields[col]
        else:
            fields[col] = rng.choice([b"", b"abc", b"1.5e", b"2020-13-45x", b" "])
        return kind, data[:start] + b",".join(fields) + data[end:]
    rec = json.loads(line)
    key = rng.choice(["user_id", "item_id", "timestamp"])
    if kind == "drop_field":
        del rec[key]
    else:
        rec[key] = rng.choice([None, "", " ", [1, 2], {"a": 1}, "abc", True, 1.5, 7])
    return kind, data[:start] + json.dumps(rec).encode() + data[end:]


def fuzz(tally: Tally, root: Path, n: int, seed: int) -> None:
    from typer.testing import CliRunner

    from guim.cli import app

    rng = random.Random(seed)
    runner = CliRunner()
    for k in range(n):
        fmt = rng.choice(["csv", "jsonl"])
        rows = [
            (f"u{rng.randrange(4)}", f"i{rng.randrange(6)}", rng.randrange(10**9))
            for _ in range(rng.randint(1, 25))
        ]
        folder = root / f"fuzz-{k}"
        folder.mkdir()
        path = folder / f"log.{fmt}"
        if fmt == "csv":
            path.write_text(
                "user_id,item_id,timestamp\n" + "".join(f"{u},{i},{t}\n" for u, i, t in rows)
            )
        else:
            path.write_text(
                "".join(
                    json.dumps({"user_id": u, "item_id": i, "timestamp": t}) + "\n"
                    for u, i, t in rows
                )
            )
        kind, bad = corrupt(path.read_bytes(), fmt, rng)
        path.write_bytes(bad)
        ref = reference(bad, fmt)
        out = folder / "out"
        result = runner.invoke(app, ["prepare", str(path), "--out", str(out), "--no-collapse"])
        crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
        wrong = False
        if result.exit_code == 0:
            if not ref:
                wrong = True
            else:
                expected = sorted((u, i, t) for u, i, t in ref)
                ev = pl.read_parquet(out / "events.parquet")
                users = dict(pl.read_parquet(out / "vocab" / "users.parquet").iter_rows())
                items = dict(pl.read_parquet(out / "vocab" / "items.parquet").iter_rows())
                got = sorted(
                    (str(users[u]), str(items[i]), t)
                    for u, i, t in ev.select("user_idx", "item_idx", "timestamp").iter_rows()
                )
                wrong = got != expected
        else:
            wrong = out.exists()
            errors = [line for line in result.output.splitlines() if line.startswith("error:")]
            clear = len(errors) == 1 and str(path) in errors[0]
            if not clear and not crashed:
                tally.classes.setdefault("fuzz", Counter({k: 0 for k in (*KEYS, "unclear")}))[
                    "unclear"
                ] += 1
        tally.case(
            "fuzz",
            f"{k}-{fmt}-{kind}",
            tracebacks=crashed,
            silent_wrong=wrong,
            leftovers=len(hidden(folder)),
        )


# ---- 3. options ----------------------------------------------------------------------------------


def options(tally: Tally, root: Path) -> None:
    rows = clean_rows()
    log = write_csv(root / "log.csv", rows)
    s3rec = root / "Toy.txt"
    s3rec.write_text("1 2 3 4\n2 3 4 5\n")
    parquet = root / "log.parquet"
    frame = pl.DataFrame(
        [(u, i, t * 1000) for u, i, t, _ in rows],
        orient="row",
        schema=["user_id", "item_id", "timestamp"],
    )
    frame.write_parquet(parquet)
    dated = root / "dated.parquet"
    frame.with_columns(pl.from_epoch("timestamp", "ms")).write_parquet(dated)
    refusals = {
        "time-unit-days": ([log, "--time-unit", "days"], ["--time-unit", "days"]),
        "temporal-one": ([log, "--temporal", "0.8"], ["--temporal"]),
        "temporal-words": ([log, "--temporal", "a,b"], ["--temporal"]),
        "temporal-order": ([log, "--temporal", "0.9,0.8"], ["--temporal"]),
        "temporal-bounds": ([log, "--temporal", "0,1"], ["--temporal"]),
        "cold-fraction": ([log, "--cold-fraction", "2"], ["--cold-fraction"]),
        "separator-parquet": ([parquet, "--separator", ";"], ["--separator"]),
        "separator-two-chars": ([log, "--separator", "::"], ["--separator"]),
        "separator-quote": ([log, "--separator", '"'], ["--separator"]),
        "time-unit-s3rec": ([s3rec, "--time-unit", "ms"], ["--time-unit"]),
        "time-unit-datetimes": ([dated, "--time-unit", "ms"], ["--time-unit"]),
        "unknown-format": ([log, "--format", "xml"], ["xml"]),
        "map-without-equals": ([log, "--map", "user_id"], ["--map"]),
        "map-unknown-column": ([log, "--map", "shopper=user_id"], ["shopper"]),
        "items-for-s3rec": ([s3rec, "--format", "s3rec", "--items", log], ["--items"]),
        "no-input": ([], ["INPUT"]),
    }
    for name, (args, names) in refusals.items():
        folder = root / name
        folder.mkdir()
        out = folder / "out"
        protected = snapshot(log, s3rec, parquet)
        judge_refusal(
            tally,
            "options",
            name,
            guim("prepare", *args, "--out", out),
            names,
            folder,
            protected,
            out,
        )
    # options that must act
    expected = sorted(t for _, _, t, _ in rows)
    rc, text = guim("prepare", parquet, "--out", root / "ms", "--time-unit", "ms", "--no-collapse")
    tally.case(
        "options",
        "time-unit-ms-parquet",
        tracebacks="Traceback" in text,
        silent_wrong=rc != 0 or timestamps(root / "ms") != expected,
    )
    colon = write_csv(root / "colon.csv", rows, sep=":")
    guim("prepare", log, "--out", root / "comma")
    rc, text = guim("prepare", colon, "--out", root / "colon", "--separator", ":")
    same = rc == 0 and stats(root / "colon")["hash"] == stats(root / "comma")["hash"]
    tally.case("options", "separator-colon", tracebacks="Traceback" in text, silent_wrong=not same)
    tabs = write_csv(root / "tabs.txt", rows, sep="\t")
    rc, text = guim("prepare", tabs, "--out", root / "tabs", "--separator", "tab")
    same = rc == 0 and stats(root / "tabs")["hash"] == stats(root / "comma")["hash"]
    tally.case("options", "separator-tab", tracebacks="Traceback" in text, silent_wrong=not same)
    inter = root / "toy"
    inter.mkdir()
    (inter / "toy.inter").write_text(
        "user_id:token\titem_id:token\ttimestamp:float\n"
        + "".join(f"{u}\t{i}\t{t * 1000}\n" for u, i, t, _ in rows)
    )
    rc, text = guim("prepare", inter, "--out", root / "inter", "--time-unit", "ms", "--no-collapse")
    tally.case(
        "options",
        "time-unit-ms-recbole",
        tracebacks="Traceback" in text,
        silent_wrong=rc != 0 or timestamps(root / "inter") != expected,
    )
    jsonl = root / "us.jsonl"
    jsonl.write_text(
        "".join(
            json.dumps({"user_id": u, "item_id": i, "timestamp": t * 1_000_000}) + "\n"
            for u, i, t, _ in rows
        )
    )
    rc, text = guim("prepare", jsonl, "--out", root / "us", "--time-unit", "us", "--no-collapse")
    tally.case(
        "options",
        "time-unit-us-jsonl",
        tracebacks="Traceback" in text,
        silent_wrong=rc != 0 or timestamps(root / "us") != expected,
    )


# ---- 4. dangerous outputs ------------------------------------------------------------------------


def outputs(tally: Tally, root: Path) -> None:
    shop = root / "shop"
    shop.mkdir()
    log = write_csv(shop / "clicks.csv", clean_rows())
    (shop / "notes.txt").write_text("keep")
    shards = root / "shards"
    shards.mkdir()
    pl.DataFrame(
        [r[:3] for r in clean_rows()], orient="row", schema=["user_id", "item_id", "timestamp"]
    ).write_parquet(shards / "part-0.parquet")
    mine = root / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    (mine / "stats.json").write_text('{"not": "guim"}')
    afile = root / "afile"
    afile.write_text("x")
    protect = lambda: snapshot(shop, shards, mine, afile)  # noqa: E731
    cases = {
        "out-is-input-dir": ([log, "--out", shop, "--overwrite"], [shop]),
        "out-is-input-file": ([log, "--out", log, "--overwrite"], [log]),
        "out-contains-input": ([log, "--out", root, "--overwrite"], [root]),
        "out-inside-input-dir": ([shards, "--out", shards / "dataset"], ["inside"]),
        "overwrite-not-guim": ([log, "--out", mine, "--overwrite"], [mine]),
        "overwrite-a-file": ([log, "--out", afile, "--overwrite"], [afile]),
        "out-through-a-file": ([log, "--out", afile / "d"], ["is a file"]),
        "out-exists": ([log, "--out", mine], [mine, "--overwrite"]),
    }
    for name, (args, names) in cases.items():
        judge_refusal(tally, "outputs", name, guim("prepare", *args), names, root, protect())
    rc, text = guim("synth", "--out", mine, "--size", "tiny", "--overwrite")
    judge_refusal(tally, "outputs", "synth-overwrite-not-shop", (rc, text), [mine], root, protect())
    # a read-only parent (as an unprivileged user when run as root)
    ro = root / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    public = Path(tempfile.mkdtemp(prefix="guim-ro-"))
    public.chmod(0o755)
    open_log = write_csv(public / "clicks.csv", clean_rows())
    open_log.chmod(0o644)
    ro_public = public / "ro"
    ro_public.mkdir(mode=0o555)
    ro_public.chmod(0o555)
    root_user = os.geteuid() == 0
    result = guim("prepare", open_log, "--out", ro_public / "d", as_nobody=root_user)
    judge_refusal(
        tally,
        "outputs",
        "read-only-parent",
        result,
        ["permission denied", ro_public],
        ro_public,
        None,
        ro_public / "d",
    )
    # --overwrite of a dataset guim wrote acts
    out = root / "data"
    guim("prepare", log, "--out", out)
    rc, text = guim("prepare", log, "--out", out, "--overwrite", "--seed", "5")
    acted = rc == 0 and stats(out)["config"]["seed"] == 5
    tally.case(
        "outputs",
        "overwrite-dataset",
        tracebacks="Traceback" in text,
        silent_wrong=not acted,
        leftovers=len(hidden(root)),
    )


# ---- 5. broken run files -------------------------------------------------------------------------


def run_files(tally: Tally, root: Path) -> None:
    import torch

    from guim.checkpoint import save_weights
    from guim.config import Config
    from guim.io import write_json

    run = root / "run"
    run.mkdir()
    write_json(run / "config.json", Config().to_dict())
    save_weights(run / "model.safetensors", {"w": torch.randn(64, 8)})
    weights = (run / "model.safetensors").read_bytes()
    for size in (0, 7, 100, len(weights) // 2, len(weights) - 1):
        (run / "model.safetensors").write_bytes(weights[:size])
        judge_refusal(
            tally,
            "run_files",
            f"truncated-weights-{size}",
            guim("eval", run),
            [run / "model.safetensors"],
            run,
        )
        code = f"import guim\ntry:\n    guim.load_run({str(run)!r})\nexcept guim.errors.CheckpointError as e:\n    print('error:', e)\n    raise SystemExit(2)"
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        judge_refusal(
            tally,
            "run_files",
            f"load-run-truncated-{size}",
            (proc.returncode, proc.stdout + proc.stderr),
            [run / "model.safetensors"],
            run,
        )
    (run / "model.safetensors").write_bytes(weights)
    for name, text in {
        "truncated": '{"model": ',
        "not-utf8": "\udcff",
        "a-list": "[1, 2]",
        "empty": "",
    }.items():
        (run / "config.json").write_bytes(text.encode("utf-8", "surrogateescape"))
        judge_refusal(
            tally, "run_files", f"config-{name}", guim("eval", run), [run / "config.json"], run
        )
    (run / "model.safetensors").unlink()
    judge_refusal(
        tally, "run_files", "missing-weights", guim("eval", run), ["model.safetensors"], run
    )
    judge_refusal(
        tally, "run_files", "missing-run", guim("eval", root / "nope"), [root / "nope"], root
    )


# ---- 6. permissions ------------------------------------------------------------------------------


def permissions(tally: Tally, root: Path) -> None:
    log = write_csv(root / "clicks.csv", clean_rows())
    for mask in (0o022, 0o027, 0o002):
        out = root / f"d{mask:03o}"
        rc, text = guim("prepare", log, "--out", out, umask=mask)
        wrong = (
            [
                p.name
                for p in [out, *out.rglob("*")]
                if p.stat().st_mode & 0o777 != (0o777 if p.is_dir() else 0o666) & ~mask
            ]
            if rc == 0
            else ["failed"]
        )
        tally.case(
            "permissions",
            f"umask-{mask:03o}",
            tracebacks="Traceback" in text,
            silent_wrong=bool(wrong),
        )


# ---- 7. kills of guim prepare --------------------------------------------------------------------


def kills(tally: Tally, root: Path, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    log = root / "big.csv"
    k = 150_000
    u, i, t = rng.integers(0, 10_000, k), rng.integers(0, 30_000, k), rng.integers(0, 10**9, k)
    log.write_text(
        "user_id,item_id,timestamp\n"
        + "".join(f"u{a},i{b},{c}\n" for a, b, c in zip(u, i, t, strict=True))
    )
    cmd = [sys.executable, "-m", "guim.cli", "prepare", str(log), "--out"]
    start, seconds = write_window([*cmd, str(root / "ref")], root)
    guim("prepare", log, "--out", root / "ref1", "--seed", "1")
    ref, ref1 = stats(root / "ref")["hash"], stats(root / "ref1")["hash"]
    jitter = random.Random(seed)
    landed = 0
    for sig, overwrite in (
        (signal.SIGKILL, False),
        (signal.SIGTERM, False),
        (signal.SIGKILL, True),
    ):
        for j in range(n):
            folder = root / f"kill-{sig.name}-{'ow' if overwrite else 'new'}-{j}"
            folder.mkdir()
            out = folder / "data"
            if overwrite:
                guim("prepare", log, "--out", out, "--seed", "1")
            proc = subprocess.Popen(
                [*cmd, str(out), *(["--overwrite"] if overwrite else [])],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            # the first kill while the log is read (it comes first and takes longest), the
            # others once the temporary directory exists, spread over the time writing takes
            if j == 0:
                time.sleep(start * jitter.random())
            else:
                wait_for_temporary(folder, proc)
                time.sleep(0.7 * (seconds - start) * (j - 1 + jitter.random()) / (n - 1))
            during = any(p.name.endswith(".tmp") for p in folder.iterdir())
            landed += during
            proc.send_signal(sig)
            rc = proc.wait(timeout=300)
            console.print(
                f"  {folder.name}: {'during' if during else 'outside'} the write, exit {rc}"
            )
            err = proc.stderr.read()
            h = stats(out)["hash"] if stats(out) else None
            parked = any(".old-" in name for name in hidden(folder))
            partial = out.exists() and h not in (ref, ref1)
            lost = overwrite and not out.exists() and not parked
            left_now = len(hidden(folder)) if sig == signal.SIGTERM else 0
            # the next run: --overwrite when something is there
            again = guim(
                "prepare", log, "--out", out, *(["--overwrite"] if (out.exists() or parked) else [])
            )
            ok = again[0] == 0 and stats(out) and stats(out)["hash"] == ref
            tally.case(
                "kills",
                folder.name,
                tracebacks="Traceback" in err + again[1],
                silent_wrong=partial or not ok,
                data_loss=lost,
                leftovers=left_now + len(hidden(folder)),
            )
    console.print(f"kills: {landed} of {3 * n} landed while a temporary directory existed")
    tally.notes["kills_during_write"] = landed


def wait_for_temporary(folder: Path, proc: subprocess.Popen) -> None:
    """Return once a temporary directory exists in `folder` (or `proc` has ended)."""
    while proc.poll() is None and not any(p.name.endswith(".tmp") for p in folder.iterdir()):
        time.sleep(0.002)


def write_window(cmd: list[str], folder: Path) -> tuple[float, float]:
    """Run `cmd` (a prepare into `folder`) and return (seconds until its temporary directory
    appeared, seconds until it finished), polling every 5 ms."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    start = None
    while proc.poll() is None:
        if start is None and any(p.name.endswith(".tmp") for p in folder.iterdir()):
            start = time.perf_counter() - t0
        time.sleep(0.005)
    total = time.perf_counter() - t0
    return (start if start is not None else 0.0), total


# ---- 8. a full disk under the checkpoint writer ----------------------------------------------------


def disk_full(tally: Tally, root: Path) -> None:
    import torch

    import guim.checkpoint as ckpt_module
    from guim.checkpoint import load_checkpoint, save_checkpoint

    def state(seed: int):
        torch.manual_seed(seed)
        model = torch.nn.Linear(5, 3)
        opt = torch.optim.Adam(model.parameters(), lr=0.1)
        model(torch.randn(7, 5)).sum().backward()
        opt.step()
        return model, {"adam": opt}

    real_save, real_json = ckpt_module.save_file, ckpt_module.write_json
    for same_epoch in (False, True):
        for fail_at in range(1, 6):
            run = root / f"disk-{same_epoch}-{fail_at}"
            model, opts = state(0)
            save_checkpoint(run, 1, model, model.state_dict(), opts, {"step": 1})
            saved = {k: v.clone() for k, v in model.state_dict().items()}
            calls: list[str] = []

            def full(tensors, filename, *a, _calls=calls, _at=fail_at, **kw):
                _calls.append(filename)
                if len(_calls) == _at:
                    Path(filename).write_bytes(b"\0" * 10)
                    raise OSError(errno.ENOSPC, "No space left on device", filename)
                return real_save(tensors, filename, *a, **kw)

            def full_json(path, obj, _calls=calls, _at=fail_at):
                _calls.append(str(path))
                if len(_calls) == _at:
                    raise OSError(errno.ENOSPC, "No space left on device", str(path))
                return real_json(path, obj)

            ckpt_module.save_file, ckpt_module.write_json = full, full_json
            try:
                model2, opts2 = state(1)
                raised = False
                try:
                    save_checkpoint(
                        run, 1 if same_epoch else 2, model2, model2.state_dict(), opts2, {"step": 2}
                    )
                except OSError:
                    raised = True
            finally:
                ckpt_module.save_file, ckpt_module.write_json = real_save, real_json
            fresh, fresh_opts = state(2)
            try:
                st, _, _ = load_checkpoint(run, fresh, fresh_opts)
                intact = st["step"] == 1 and all(
                    torch.equal(v, saved[k]) for k, v in fresh.state_dict().items()
                )
            except Exception:
                intact = False
            extra = [
                p.name
                for p in (run / "checkpoints").iterdir()
                if p.name not in ("epoch-0001", "latest.json")
            ]
            tally.case(
                "disk_full",
                run.name,
                silent_wrong=not raised,
                data_loss=not intact,
                leftovers=len(extra) + len(hidden(run)),
            )


# ---- 9. a planted RecBole pickle -----------------------------------------------------------------


def planted_pickle(tally: Tally, root: Path) -> None:
    try:
        import recbole  # noqa: F401
    except ImportError:
        console.print("[yellow]RecBole not installed: planted-pickle drill skipped[/]")
        return
    code = f"""
import pickle, sys
from pathlib import Path
from guim.data.loaders import load_raw
from guim.data.prepare import prepare
from guim.peers.recbole import run_peer
root = Path({str(root)!r})
log = root / "log.csv"
log.write_text("user_id,item_id,timestamp\\n" + "".join(f"u{{u}},i{{(u * 7 + k) % 41}},{{k}}\\n" for u in range(40) for k in range(6)))
prepare(load_raw(log), root / "data", show_progress=False)
out = root / "peers" / "sasrec"
marker = root / "pwned"
class Exploit:
    def __reduce__(self):
        return (open, (str(marker), "w"))
for sub in ("recbole/saved", "saved", "recbole", ""):
    for name in ("guim-SequentialDataset.pth", "guim-for-SASRec-dataloader.pth"):
        p = out / sub / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(pickle.dumps(Exploit()))
run_peer("sasrec", root / "data", out, 1, max_epochs=1, threads=1, show_progress=False,
         overrides={{"MAX_ITEM_LIST_LENGTH": 5, "hidden_size": 8, "inner_size": 8}})
print("pwned" if marker.exists() else "clean")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    tally.case(
        "pickle",
        "planted-recbole-pth",
        tracebacks="Traceback" in out,
        silent_wrong="pwned" in proc.stdout or proc.returncode != 0,
        leftovers=len(
            [p for p in (root / "peers" / "sasrec").iterdir() if p.name.startswith(".recbole")]
        ),
    )


def train_kills(tally: Tally, root: Path) -> None:
    """kill -9 of `guim train` placed exactly in each phase of an epoch (the wraps of
    tests/test_train_drills.py), then `guim train --resume`: the final weights must equal an
    uninterrupted run's, and nothing temporary may be left."""
    import torch

    sys.path.insert(0, str(REPO / "tests"))
    from test_train import s3rec_dataset
    from test_train_drills import EPOCH_TRACKER, KILL_EPOCH, OVERRIDES, WRAPS

    from guim.checkpoint import load_weights

    ds = s3rec_dataset(root, n_users=200, n_items=40, length=20)
    # the drills' own settings on the bare config defaults (not the dataset-derived recipe)
    sets = ["--preset", "none", *(x for o in OVERRIDES for x in ("--set", o))]
    ref = root / "straight"
    guim("train", "--dataset", ds.path, "--out", ref, *sets)
    reference = load_weights(ref / "model.safetensors")
    for phase, wrap in WRAPS.items():
        out = root / f"killed-{phase}"
        code = "\n".join(
            [
                "import os, signal, sys",
                f"KILL_EPOCH = {KILL_EPOCH}",
                EPOCH_TRACKER,
                wrap,
                "from guim.cli import app",
                "sys.argv = ['guim', 'train', '--dataset', sys.argv[1], '--out', sys.argv[2], "
                "*sys.argv[3:]]",
                "app()",
            ]
        )
        killed = subprocess.run(
            [sys.executable, "-c", code, str(ds.path), str(out), *sets],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO / "src")},
        )
        code_, text = guim("train", "--dataset", ds.path, "--out", out, "--resume", *sets)
        weights = out / "model.safetensors"
        same = weights.exists() and all(
            torch.equal(reference[k], v) for k, v in load_weights(weights).items()
        )
        tally.case(
            "train_kills",
            phase,
            tracebacks="Traceback" in text,
            data_loss=killed.returncode != -9 or code_ != 0 or not same,
            leftovers=len([p for p in out.rglob("*") if p.name.endswith(".tmp")]),
        )


# ---- main ----------------------------------------------------------------------------------------


DRILLS: dict[str, Callable] = {
    "bad_input": bad_inputs,
    "fuzz": fuzz,
    "options": options,
    "outputs": outputs,
    "run_files": run_files,
    "permissions": permissions,
    "kills": kills,
    "disk_full": disk_full,
    "pickle": planted_pickle,
    "train_kills": train_kills,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fuzz", type=int, default=120, help="random corruptions to try")
    parser.add_argument("--kills", type=int, default=6, help="kills per kind (3 kinds)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--only", nargs="*", choices=list(DRILLS), help="run these drills only")
    parser.add_argument("--no-write", action="store_true", help="do not write the results file")
    args = parser.parse_args()
    tally = Tally()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="guim-reliability-") as tmp:
        for name, drill in DRILLS.items():
            if args.only and name not in args.only:
                continue
            root = Path(tmp) / name
            root.mkdir()
            console.print(f"[bold]{name}[/] ...")
            if name == "fuzz":
                drill(tally, root, args.fuzz, args.seed)
            elif name == "kills":
                drill(tally, root, args.kills, args.seed)
            else:
                drill(tally, root)
    totals = tally.totals()
    console.print({"totals": totals, "by class": {k: dict(v) for k, v in tally.classes.items()}})
    if args.no_write or args.only:
        return
    write_results(
        RESULTS,
        {"cli": {"guim": totals}},
        by_class={k: dict(v) for k, v in tally.classes.items()},
        findings=tally.findings,
        notes=tally.notes,
        seconds=round(time.perf_counter() - t0, 1),
        settings={"fuzz": args.fuzz, "kills_per_kind": args.kills, "seed": args.seed},
    )
    console.print(f"[green]wrote[/] {RESULTS}")


if __name__ == "__main__":
    main()
