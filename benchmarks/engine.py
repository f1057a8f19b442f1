"""Training-engine speed on a preset (issue 16): where an epoch's time goes, the old trainer vs
the new one side by side in one invocation, and the FLOP count of an epoch with the limit it
implies at this machine's measured matmul rate.

    python benchmarks/engine.py compare --dataset runs/proto/data/beauty --old-commit b4ec173
    python benchmarks/engine.py flops --dataset runs/proto/data/beauty
    python benchmarks/engine.py profile --dataset runs/proto/data/beauty --old-commit b4ec173

`compare` trains the preset to the end (early stopping as configured) three times, with the
trainer of `--old-commit` (a git worktree of that commit), with this checkout's drawing dropout
masks as the old one did (torch's `bernoulli_`: `guim-torch-masks`, whose figures must equal the
old trainer's) and with this checkout's defaults (`guim`: PCG64 masks, another random stream),
one after the other in child processes with the same threads; each child records its own peak
RSS. `flops` counts the
FLOPs of one epoch's forward and backward passes (torch.utils.flop_counter, matmuls and
attention) and measures the fp32 (and bf16) matmul rate on the shapes an epoch runs and on a
large square product; the limit is FLOPs / the best rate. `profile` runs one epoch of each
trainer under torch.profiler and keeps the operators with the largest self-CPU share. All three
merge their figures into one results file. Time them alone on the machine (flock -x).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "engine.json"

# runs `guim train` as a child: its own peak RSS and (optionally) a torch.profiler table
CHILD = """
import json, resource, sys
report, profile, argv = sys.argv[1], sys.argv[2] == "1", sys.argv[3:]
sys.argv = ["guim", *argv]
prof = None
if profile:
    from torch.profiler import ProfilerActivity, profile as P
    prof = P(activities=[ProfilerActivity.CPU])
    prof.__enter__()
code = 0
try:
    from guim.cli import app  # (older guim versions have no guim.__main__)
    app()
except SystemExit as e:
    code = e.code or 0
out = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "code": code}
if prof is not None:
    prof.__exit__(None, None, None)
    rows = prof.key_averages()
    total = sum(r.self_cpu_time_total for r in rows)
    top = sorted(rows, key=lambda r: -r.self_cpu_time_total)[:15]
    out["profile"] = {r.key: round(r.self_cpu_time_total / total, 4) for r in top}
    out["profile_seconds"] = round(total / 1e6, 2)
json.dump(out, open(report, "w"))
sys.exit(code)
"""


def old_source(commit: str, work: Path) -> Path:
    """A git worktree of `commit` under `work` (made once); returns its src directory."""
    tree = work / f"src-{commit}"
    if not tree.exists():
        work.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), commit],
            check=True,
            capture_output=True,
        )
    return tree / "src"


def train_child(
    src: Path,
    dataset: Path,
    out: Path,
    preset: str,
    overrides: list[str],
    threads: int,
    profile: bool = False,
) -> dict[str, Any]:
    """`guim train` with the guim of `src`, in a child process; its report + run summary."""
    if out.exists():
        raise SystemExit(f"{out} exists: remove it or pass another --work")
    report = out.with_suffix(".child.json")
    env = dict(os.environ, PYTHONPATH=str(src), OMP_NUM_THREADS=str(threads))
    argv = ["train", "-d", str(dataset), "-o", str(out), "--preset", preset]
    for o in [f"train.threads={threads}", *overrides]:
        argv += ["--set", o]
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", CHILD, str(report), "1" if profile else "0", *argv],
        env=env,
        check=True,
    )
    wall = time.perf_counter() - t0
    child = json.loads(report.read_text())
    from guim.checkpoint import read_log
    from guim.io import read_json

    log, metrics = read_log(out), read_json(out / "metrics.json")
    epochs = [r["train_seconds"] for r in log]
    return {
        "epoch_seconds": round(sum(epochs) / len(epochs), 2),
        "epoch_seconds_min": round(min(epochs), 2),
        "events_per_second": round(sum(r["events_per_second"] for r in log) / len(log), 1),
        "eval_seconds_per_epoch": round(sum(r.get("eval_seconds", 0) for r in log) / len(log), 2),
        "valid_NDCG@10": metrics["valid_NDCG@10"],
        "NDCG@10": metrics.get("test", {}).get("NDCG@10"),
        "HR@10": metrics.get("test", {}).get("HR@10"),
        "epochs_run": metrics["epochs_run"],
        "best_epoch": metrics["best_epoch"],
        "train_seconds": metrics["train_seconds"],
        "wall_seconds": round(wall, 1),
        "peak_rss_mb": round(child["peak_rss_mb"], 1),
        **({"profile": child["profile"]} if "profile" in child else {}),
    }


# ---- FLOPs and the machine's matmul rate -----------------------------------------------------


def epoch_flops(dataset: Path, preset: str, overrides: list[str]) -> dict[str, Any]:
    """FLOPs of one epoch (epoch 0's batches) of the preset: forward + backward of every batch,
    counted by torch.utils.flop_counter (the optimiser's elementwise work is not counted)."""
    import numpy as np
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from guim.config import load_config
    from guim.data.batches import make_batches
    from guim.data.dataset import Dataset
    from guim.train import build, step_loss

    cfg = load_config(preset, overrides)
    t = build(cfg, Dataset(dataset))
    tr = t.cfg.train
    batches = make_batches(t.seqs, t.cfg.data, tr, np.random.default_rng([tr.seed, 0]))
    generator = torch.Generator().manual_seed(0)
    t.model.train()
    counter = FlopCounterMode(display=False)
    n_targets = 0
    with counter:
        for batch in batches:
            step_loss(t, batch, generator, float(t.stages[0].contrastive_weight)).backward()
            t.model.zero_grad(set_to_none=True)
            n_targets += int((batch.targets > 0).sum())
    by_op = {str(k): int(v) for k, v in counter.get_flop_counts()["Global"].items()}
    return {"flops": counter.get_total_flops(), "by_op": by_op, "targets": n_targets}


def matmul_rates(shapes: dict[str, tuple[int, int, int]], threads: int) -> dict[str, float]:
    """GFLOP/s of (m, k) @ (k, n) products, fp32 and bf16, on `threads` threads (best of 5)."""
    import torch

    torch.set_num_threads(threads)
    rates: dict[str, float] = {}
    for dtype in (torch.float32, torch.bfloat16):
        for name, (m, k, n) in shapes.items():
            a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
            for _ in range(2):
                a @ b
            best = float("inf")
            for _ in range(5):
                t0 = time.perf_counter()
                a @ b
                best = min(best, time.perf_counter() - t0)
            rates[f"{name} {str(dtype).removeprefix('torch.')}"] = round(
                2 * m * k * n / best / 1e9, 1
            )
    return rates


def cpu_flags() -> list[str]:
    """The CPU's AVX-512 / AMX flags (bf16 matmuls are fast only with avx512_bf16 or amx)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = set(text.split("flags", 1)[1].split("\n", 1)[0].split()) if "flags" in text else set()
    return sorted(f for f in flags if f.startswith(("avx512", "amx")))


def main() -> None:
    from guim.provenance import current_command, write_results

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=["compare", "flops", "profile"])
    p.add_argument("--dataset", type=Path, required=True)
    p.add_argument("--name", default=None, help="dataset name in the results (default: dir)")
    p.add_argument("--preset", default="beauty")
    p.add_argument("--set", action="append", default=[], help="config override (both trainers)")
    p.add_argument("--old-commit", default="b4ec173", help="the trainer before issue 16")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", type=Path, default=Path("runs/engine"))
    p.add_argument("--ran-alone", action="store_true", help="say so: run under flock -x")
    p.add_argument("--note", default="")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()
    name = args.name or args.dataset.name
    load_before = os.getloadavg()
    extra: dict[str, Any] = {}
    results: dict[str, Any] = {}
    if args.what in ("compare", "profile"):
        old_src = old_source(args.old_commit, args.work)
        overrides = list(args.set)
        if args.what == "profile":
            overrides.append("train.epochs=1")
        rows = {}
        # compare also trains this checkout with torch's dropout masks (the old trainer's random
        # stream: its figures must equal guim-before's); the default draws them with PCG64
        variants = [("guim-before", old_src, []), ("guim", ROOT / "src", [])]
        if args.what == "compare":
            torch_masks = ["model.dropout_masks=torch"]
            variants.insert(1, ("guim-torch-masks", ROOT / "src", torch_masks))
        for model, src, own in variants:
            out = args.work / f"{args.what}-{name}-{model}"
            rows[model] = train_child(
                src, args.dataset, out, args.preset, [*overrides, *own], args.threads,
                profile=args.what == "profile",
            )  # fmt: skip
            print(model, json.dumps(rows[model]), flush=True)
        if args.what == "compare":
            results[name] = rows
            extra["compare_settings"] = {
                "preset": args.preset,
                "overrides": args.set,
                "threads": args.threads,
                "old_commit": args.old_commit,
                "ran_alone": args.ran_alone,
                "load_average_before": load_before,
                "load_average_after": os.getloadavg(),
            }
        else:
            extra["profile"] = {
                name: {m: {"seconds": r.get("epoch_seconds"), "self_cpu_share": r["profile"]}
                       for m, r in rows.items()}
            }  # fmt: skip
    else:
        counted = epoch_flops(args.dataset, args.preset, args.set)
        shapes = {
            "square 2048": (2048, 2048, 2048),
            "scores chunk 128x128x12101": (128, 128, 12101),
            "ffn 12800x128x512": (12800, 128, 512),
        }
        rates = matmul_rates(shapes, args.threads)
        peak = max(v for k, v in rates.items() if k.endswith("float32"))
        results[name] = {
            "limit": {
                "epoch_seconds": round(counted["flops"] / (peak * 1e9), 2),
                "flops_per_epoch": counted["flops"],
                "peak_gflops": peak,
            }
        }
        extra["flops_details"] = {
            name: {
                "flops_by_op": counted["by_op"],
                "targets_per_epoch": counted["targets"],
                "matmul_gflops": rates,
                "threads": args.threads,
                "cpu_flags": cpu_flags(),
                "ran_alone": args.ran_alone,
            }
        }
    if args.note:
        extra[f"note_{args.what}"] = args.note
    command = current_command()
    if args.out.exists():  # keep the other subcommands' figures (model by model)
        old = json.loads(args.out.read_text())
        for dataset, models in old.get("results", {}).items():
            for model, row in models.items():
                results.setdefault(dataset, {}).setdefault(model, row)
        for key, value in old.items():
            if key not in ("command", "machine", "git", "results"):
                if isinstance(value, dict) and isinstance(extra.get(key), dict):
                    extra[key] = {**value, **extra[key]}
                else:
                    extra.setdefault(key, value)
        kept = [c for c in old.get("command", "").split(" && ") if c and c != command]
        command = " && ".join([*kept, command])
    write_results(args.out, results, command=command, **extra)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
