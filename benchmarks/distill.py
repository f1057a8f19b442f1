"""Serving-sized students against their teacher (issue 13): test NDCG@10 / HR@10 (full ranking,
history masked), the retained share of the teacher's NDCG@10, FLOPs per user relative to the
teacher, and p50 / p99 latency of embedding one user with ONNX Runtime on one thread.

The runs are trained first by benchmarks/distill_train.sh (each capped in minutes); this script
only measures them. Test metrics are computed once per run and cached beside it
(distill_test.json, keyed by the weights' digest), so the timing pass can run alone on the CPUs:

    flock -s /tmp/guim-cpu.lock .venv/bin/python benchmarks/distill.py --quality-only \\
        --teacher runs/proto/guim-beauty --runs runs/distill/beauty
    flock -x /tmp/guim-cpu.lock .venv/bin/python benchmarks/distill.py \\
        --teacher runs/proto/guim-beauty --runs runs/distill/beauty --merge
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "distill.json"
MODELS = (
    "minilm-half-depth",
    "minilm-half-depth-no-distill",
    "minilm-half-width",
    "bert2dnn",
    "bert2dnn-stacked",
    "bert2dnn-no-temperature",
    "bert2dnn-long",  # LONG=M in distill_train.sh: the same students trained for M minutes
    "bert2dnn-concat-long",
    "bert2dnn-concat-t1-long",  # LONGER=M: concatenated, no temperature
)
sys.path.insert(0, str(REPO / "benchmarks"))

from latency import (  # noqa: E402
    flops_per_user,
    held_lock,
    lock_record,
    percentiles,
    time_model,
)


def test_metrics(run: Any, run_dir: Path, dataset: Any) -> dict[str, float]:
    """Test HR@10 / NDCG@10 (guim.evaluate: full ranking, history masked), cached per weights."""
    from guim.evaluate import evaluate
    from guim.io import read_json, write_json
    from guim.onnx import weights_digest

    cache, digest = run_dir / "distill_test.json", weights_digest(run.model)
    if cache.exists() and read_json(cache).get("weights") == digest:
        return read_json(cache)["test"]
    res = evaluate(run, dataset, run.cfg.data.scheme, "test")
    out = {"NDCG@10": res["NDCG@10"], "HR@10": res["HR@10"]}
    write_json(cache, {"weights": digest, "test": out})
    return out


def bench_primaries(
    runs: dict[str, Any], dirs: dict[str, Path], dataset_dir: Path, out: Path
) -> dict[str, Any]:
    """GUIM-bench's primary metric of every task that runs on a loo run (`guim.bench.run.bench`
    on the frozen runs, no baselines, written to `out`), per model: {"next_item/NDCG@10": ...}.
    The bench is reused when it scored the same weights (digests of the loaded `runs`)."""
    from guim.bench.run import ModelSpec, bench
    from guim.io import read_json, write_json
    from guim.onnx import weights_digest

    digests = {name: weights_digest(run.model) for name, run in runs.items()}
    stamp = out / "digests.json"
    if not (stamp.exists() and read_json(stamp) == digests and (out / "bench.json").exists()):
        specs = [ModelSpec.from_runs(name, [d]) for name, d in dirs.items()]
        bench(specs, dataset_dir, out, baselines=())
        write_json(stamp, digests)
    return primaries_of(read_json(out / "bench.json"))


def primaries_of(record: dict[str, Any]) -> dict[str, dict[str, float]]:
    """{model: {"task/primary metric": value}} of a bench.json record (tasks a model was not
    scored on are left out)."""
    primary = {task: info["primary_metric"] for task, info in record["tasks"].items()}
    (scores_by_model,) = record["results"].values()  # one dataset
    return {
        model: {
            key: scores[key]
            for key in (f"{task}/{metric}" for task, metric in primary.items())
            if scores.get(key) is not None
        }
        for model, scores in scores_by_model.items()
    }


def describe(run_dir: Path) -> dict[str, Any]:
    """How the run was trained: its stop reason, epochs, cap, teachers."""
    from guim.io import read_json

    metrics = read_json(run_dir / "metrics.json")
    cfg = read_json(run_dir / "config.json")
    return {
        "stopped": metrics.get("stopped"),
        "epochs_run": metrics.get("epochs_run"),
        "best_epoch": metrics.get("best_epoch"),
        "train_seconds": metrics.get("train_seconds"),
        "max_minutes": cfg["train"]["max_minutes"],
        "teachers": cfg.get("distill", {}).get("teachers", []),
        "model_kind": cfg["model"].get("kind", "guim"),
    }


def finish(results: dict[str, Any]) -> None:
    """Add retained, flops_fraction and p50_speedup (each over the teacher's) to every row."""
    teacher = results["teacher"]
    for row in results.values():
        row["retained"] = round(row["NDCG@10"] / teacher["NDCG@10"], 4)
        row["flops_fraction"] = round(row["flops_per_user"] / teacher["flops_per_user"], 4)
        row["p50_speedup"] = round(teacher["p50_ms"] / row["p50_ms"], 2)


def with_kept(results: dict[str, Any], args: Any, dataset: str) -> dict[str, Any]:
    """The rows of this call (retained etc. over its own teacher, names with --suffix), after
    the rows --out already holds for `dataset` when --merge (same-named rows replaced)."""
    from guim.io import read_json

    finish(results)
    results = {f"{name}{args.suffix}": row for name, row in results.items()}
    if not (args.merge and args.out.exists()):
        return results
    kept = read_json(args.out).get("results", {}).get(dataset, {})
    return {**{k: v for k, v in kept.items() if k not in results}, **results}


BENCH_COLUMNS = {
    "future_interest/Recall@10": "future interest R@10",
    "item_attributes/score": "item attributes mAP",
    "item_similarity/Recall@10": "item similarity R@10",
}


def markdown_table(path: Path) -> str:
    """The README tables of a recorded distill.json: quality (test metrics, retained share,
    GUIM-bench primaries, training) and cost (FLOPs, latency), one row per dataset and model."""
    from guim.io import read_json

    def num(value: Any, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    results = read_json(path)["results"]
    quality = [
        "| dataset | model | test NDCG@10 | HR@10 | retained | "
        + " | ".join(BENCH_COLUMNS.values())
        + " | trained |",
        "|---|---|---|---|---|" + "---|" * len(BENCH_COLUMNS) + "---|",
    ]
    cost = [
        "| dataset | model | FLOPs / teacher | p50 ms | p99 ms | p50 speed-up | session.run p50 ms "
        "| batch 64 ms | PyTorch p50 ms | PyTorch batch 64 ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for ds, models in results.items():
        for name, r in models.items():
            bench = r.get("bench", {})
            trained = f"{r['epochs_run']} epochs, {r['train_seconds'] / 60:.1f} min"
            quality.append(
                f"| {ds} | {name} | {r['NDCG@10']:.4f} | {r['HR@10']:.4f} | {r['retained']:.3f} | "
                + " | ".join(num(bench.get(key), ".4f") for key in BENCH_COLUMNS)
                + f" | {trained} |"
            )
            cost.append(
                f"| {ds} | {name} | {r['flops_fraction']:.4f} | {r['p50_ms']:.3f} "
                f"| {r['p99_ms']:.3f} | {r['p50_speedup']:.1f}x "
                f"| {num(r.get('p50_ms_session_only'), '.3f')} "
                f"| {num(r.get('p50_ms_batch64_onnx_1thread'), '.2f')} "
                f"| {num(r.get('p50_ms_batch1_torch_1thread'), '.3f')} "
                f"| {num(r.get('p50_ms_batch64_torch_1thread'), '.2f')} |"
            )
    return "\n".join(quality) + "\n\n" + "\n".join(cost)


# --latency-from: the row of benchmarks/results/latency.json with each model's shape
SHAPES = {
    "teacher": "teacher",
    "minilm-half-depth": "minilm-half-depth-shape",
    "minilm-half-depth-no-distill": "minilm-half-depth-shape",
    "minilm-half-width": "minilm-half-width-shape",
    "bert2dnn": "bert2dnn-shape",
    "bert2dnn-stacked": "bert2dnn-shape",
    "bert2dnn-no-temperature": "bert2dnn-shape",
    "bert2dnn-long": "bert2dnn-shape",
}


def recorded(dirs: dict[str, Path], latency: Path) -> dict[str, Any]:
    """Rows without measuring anything here: test metrics from each run's metrics.json (the
    same protocol as guim.evaluate), FLOPs and batch-1 ONNX one-thread latency from the rows
    of a latency.json measured for the same shapes (latency depends on shapes, not weights)."""
    from guim.io import read_json

    shapes = read_json(latency)["results"]["beauty"]
    rows = {}
    for name, d in dirs.items():
        if name not in SHAPES:
            print(f"{name}: latency.json has no row of its shape; left out")
            continue
        test, shape = read_json(d / "metrics.json")["test"], shapes[SHAPES[name]]
        rows[name] = {
            "NDCG@10": test["NDCG@10"],
            "HR@10": test["HR@10"],
            "flops_per_user": shape["flops_per_user"],
            "parameters": shape["parameters"],
            "p50_ms": shape["p50_ms"],
            "p99_ms": shape["p99_ms"],
            "latency_source": f"{latency.name}: {SHAPES[name]}",
            **describe(d),
        }
    return rows


def main() -> None:
    from guim.data.dataset import Dataset
    from guim.embed import load_run
    from guim.io import read_json
    from guim.onnx import OnnxUserEncoder, export_run
    from guim.provenance import write_results

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--table", action="store_true", help="print --out as a Markdown table")
    p.add_argument("--teacher", type=Path, help="the teacher's run directory")
    p.add_argument("--runs", type=Path, help="directory of the student runs")
    p.add_argument("--repeats", type=int, default=400, help="batch-1 calls per model")
    p.add_argument("--repeats-64", type=int, default=100, help="calls with 64 users per model")
    p.add_argument(
        "--bench",
        action="store_true",
        help="also score every run on GUIM-bench (guim.bench, no baselines; RUNS/bench) and "
        "record each task's primary metric",
    )
    p.add_argument("--quality-only", action="store_true", help="test metrics only (cached)")
    p.add_argument(
        "--latency-from",
        type=Path,
        help="measure nothing: test metrics from metrics.json, FLOPs and latency from this "
        "latency.json's rows of the same shapes",
    )
    p.add_argument("--note", default="")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument(
        "--merge",
        action="store_true",
        help="keep what --out holds: other datasets, and this dataset's other models",
    )
    p.add_argument(
        "--suffix",
        default="",
        help="appended to every model name (a second teacher's set on the same dataset, e.g. "
        "'-4l' for a deeper teacher: teacher-4l, minilm-half-depth-4l, ...)",
    )
    args = p.parse_args()
    if args.table:
        print(markdown_table(args.out))
        return
    if args.teacher is None or args.runs is None:
        p.error("--teacher and --runs are required")

    dataset = Dataset(read_json(args.teacher / "dataset.json")["path"])
    dirs = {"teacher": args.teacher}
    dirs |= {m: args.runs / m for m in MODELS if (args.runs / m / "metrics.json").exists()}
    if args.latency_from is not None:
        results = with_kept(recorded(dirs, args.latency_from), args, dataset.name)
        source = read_json(args.latency_from)
        write_results(
            args.out,
            {dataset.name: results},
            merge=args.merge,
            setting=(
                "NDCG@10 / HR@10: test split, full ranking over the catalogue, history masked "
                "(each run's metrics.json, written by guim train); retained = NDCG@10 / the "
                "teacher's; flops_per_user, p50_ms, p99_ms: NOT measured on these runs but "
                f"copied from {args.latency_from} (rows named in latency_source: the same "
                "shapes with untrained weights, batch 1, ONNX Runtime, one thread; its "
                f"command: {source['command']}; {source.get('alone')}); p50_speedup = the "
                "teacher's p50 / the model's"
            ),
            note=args.note,
        )
        print(f"wrote {args.out}")
        return
    runs = {name: load_run(d) for name, d in dirs.items()}
    quality = {}
    for name, run in runs.items():
        t0 = time.perf_counter()
        quality[name] = test_metrics(run, dirs[name], dataset)
        print(f"{name}: {quality[name]} ({time.perf_counter() - t0:.0f}s)", flush=True)
    primaries = {}
    if args.bench:
        primaries = bench_primaries(runs, dirs, Path(dataset.path), args.runs / "bench")
    if args.quality_only:
        return

    histories = dataset.eval_cases(runs["teacher"].cfg.data.scheme, "test").history
    sample = histories.take(np.arange(min(64, len(histories))))
    rng = np.random.default_rng(0)
    single = [histories.take([int(i)]) for i in rng.integers(0, len(histories), args.repeats)]
    torch.set_num_threads(1)
    load_before = os.getloadavg()
    t_start = time.perf_counter()
    results: dict[str, Any] = {}
    for name, run in runs.items():
        print(name, flush=True)
        path = dirs[name] / "user_encoder.onnx"
        export_run(run, path)
        run.model.eval()
        # batch 1 and 64, PyTorch eager and ONNX Runtime, one thread: a call includes turning
        # the histories into padded arrays, as a served request does
        grid = time_model(run, path, histories, args.repeats, args.repeats_64, (1,))
        # the model alone: ONNX Runtime's session on arrays already padded (batch 1)
        encoder = OnnxUserEncoder(path, run.cfg.data.max_len, threads=1)
        padded = [h.padded(encoder.max_len) for h in single]
        session = percentiles(
            lambda p, e=encoder: e.run_padded(p["item_idx"], p["event"], p["timestamp"]),
            padded,
            warmup=max(3, len(padded) // 20),
        )
        results[name] = {
            **quality[name],
            **({"bench": primaries[name]} if name in primaries else {}),
            "flops_per_user": flops_per_user(run, sample),
            "parameters": sum(p.numel() for p in run.model.parameters()),
            "p50_ms": grid["p50_ms_batch1_onnx_1thread"],
            "p99_ms": grid["p99_ms_batch1_onnx_1thread"],
            "p50_ms_session_only": session["p50"],
            "p99_ms_session_only": session["p99"],
            **grid,
            "latency_source": "measured",
            **describe(dirs[name]),
        }
        print(f"{name}: p50 {results[name]['p50_ms']} ms, session {session['p50']} ms", flush=True)
    results = with_kept(results, args, dataset.name)

    exclusive, wrapper = held_lock()
    write_results(
        args.out,
        {dataset.name: results},
        command=wrapper,
        merge=args.merge,
        setting=(
            "NDCG@10 / HR@10: test split, full ranking over the catalogue, history masked "
            "(guim.evaluate); retained = NDCG@10 / the teacher's; flops: torch.utils.flop_counter "
            "(matrix products and attention) of user_vectors at max_len padding; p50/p99 "
            f"(rows with latency_source 'measured'): {args.repeats} calls embedding one real test "
            "history (batch 1) with ONNX Runtime, one intra-op thread, after a warm-up; rows whose "
            "latency_source names latency.json copy FLOPs and latency from its rows of the same "
            "shapes (untrained weights); p50_speedup = the set's teacher's p50 / the model's; "
            "p50_ms_session_only: ONNX Runtime's session.run alone on histories already padded "
            "(the model's own cost, without the per-call Python of turning a history into "
            "arrays); p{50,99}_ms_batch{1,64}_{torch,onnx}_1thread: per call (of 1 or 64 "
            "users), PyTorch eager and ONNX Runtime; bench: GUIM-bench primary metrics "
            "(guim.bench on the frozen runs, test split); a "
            "set with a suffix (e.g. -4l) is scored against its own teacher (teacher-4l)"
        ),
        note=args.note,
        **lock_record(exclusive, load_before, t_start),
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
