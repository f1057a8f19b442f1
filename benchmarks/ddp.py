"""One process with 2 threads vs 2 processes (torch.distributed, gloo) with 1 thread each, on
the same preset and data (issue 16): events per second, time to the same validation NDCG@10,
final test NDCG@10.

    python benchmarks/ddp.py --dataset runs/quickstart/dataset --name synthetic --preset synthetic
    python benchmarks/ddp.py --dataset runs/proto/data/beauty --preset beauty

Both runs train the preset as configured (early stopping included; `--set` overrides both),
one after the other. "Time to the same validation NDCG@10" is the training time (validation
excluded) until a run first reaches the lower of the two runs' best validation NDCG@10.
Time it alone on the machine (flock -x).
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
RESULTS = ROOT / "benchmarks" / "results" / "ddp.json"


def run(
    dataset: Path, out: Path, preset: str, overrides: list[str], nproc: int, threads: int
) -> dict[str, Any]:
    """`guim train` (under torchrun when nproc > 1); its log and metrics."""
    if out.exists():
        raise SystemExit(f"{out} exists: remove it or pass another --work")
    cmd = [sys.executable, "-m", "guim", "train", "-d", str(dataset), "-o", str(out)]
    cmd += ["--preset", preset, "--nproc", str(nproc)]
    for o in [f"train.threads={threads}", *overrides]:
        cmd += ["--set", o]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env)
    wall = time.perf_counter() - t0
    from guim.checkpoint import read_log
    from guim.io import read_json

    log, metrics = read_log(out), read_json(out / "metrics.json")
    return {"log": log, "metrics": metrics, "wall_seconds": round(wall, 1)}


def seconds_to_reach(log: list[dict[str, Any]], target: float) -> float | None:
    """Training seconds (validation excluded) until valid NDCG@10 first reaches `target`."""
    total = 0.0
    for record in log:
        total += record["train_seconds"]
        if record.get("valid_NDCG@10", -1.0) >= target:
            return round(total, 2)
    return None


def main() -> None:
    from guim.provenance import write_results

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", type=Path, required=True)
    p.add_argument("--name", default=None, help="dataset name in the results (default: dir)")
    p.add_argument("--preset", required=True)
    p.add_argument("--set", action="append", default=[], help="config override (both runs)")
    p.add_argument("--work", type=Path, default=Path("runs/ddp"))
    p.add_argument("--ran-alone", action="store_true", help="say so: run under flock -x")
    p.add_argument("--note", default="")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()
    name = args.name or args.dataset.name
    load_before = os.getloadavg()
    runs = {
        "guim-1proc": run(args.dataset, args.work / f"{name}-1proc", args.preset, args.set, 1, 2),
        "guim-2proc": run(args.dataset, args.work / f"{name}-2proc", args.preset, args.set, 2, 1),
    }
    target = min(r["metrics"]["valid_NDCG@10"] for r in runs.values())
    rows = {}
    for model, r in runs.items():
        log, metrics = r["log"], r["metrics"]
        rows[model] = {
            "events_per_second": round(sum(x["events_per_second"] for x in log) / len(log), 1),
            "epoch_seconds": round(sum(x["train_seconds"] for x in log) / len(log), 2),
            "seconds_to_valid_NDCG@10": seconds_to_reach(log, target),
            "valid_NDCG@10": metrics["valid_NDCG@10"],
            "NDCG@10": metrics["test"]["NDCG@10"],
            "HR@10": metrics["test"]["HR@10"],
            "epochs_run": metrics["epochs_run"],
            "train_seconds": metrics["train_seconds"],
            "wall_seconds": r["wall_seconds"],
        }
        print(model, json.dumps(rows[model]), flush=True)
    settings = {
        name: {
            "preset": args.preset,
            "overrides": args.set,
            "target_valid_NDCG@10": target,
            "processes_x_threads": {"guim-1proc": "1 x 2", "guim-2proc": "2 x 1 (gloo)"},
            "ran_alone": args.ran_alone,
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
            **({"note": args.note} if args.note else {}),
        }
    }
    write_results(args.out, {name: rows}, merge=True, settings=settings)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
