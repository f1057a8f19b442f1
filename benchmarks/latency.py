"""Latency of embedding users: p50/p99 per call for one user (batch 1) and 64 users, one torch /
ONNX Runtime thread and two, PyTorch eager (`GuimRun.embed_users`) vs ONNX Runtime
(`guim.onnx.OnnxRun.embed_users`), plus FLOPs per user. Histories are the dataset's real test
histories; a call includes padding the histories, as a served request would.

Models: the run given (the teacher), any `--student NAME=RUN_DIR`, and by default the shapes of
the issue-13 students built around the teacher with untrained weights (latency and FLOPs depend
on the shapes, not on the weights): MiniLM half depth, MiniLM half width, BERT2DNN MLP reading
the teacher's frozen item table. Exports go to `--work` (reused when present). Run it alone:

    flock -x /tmp/guim-cpu.lock .venv/bin/python benchmarks/latency.py --run RUN_DIR

The JSON records whether the parent process held that exclusive lock, and the load average.
"""

from __future__ import annotations

import argparse
import os
import shlex
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "latency.json"
LOCK = "/tmp/guim-cpu.lock"


def held_lock() -> tuple[bool, str | None]:
    """Whether the parent process is `flock -x LOCK ...` (and its command line)."""
    try:
        raw = Path(f"/proc/{os.getppid()}/cmdline").read_bytes()
    except OSError:
        return False, None
    argv = [a.decode() for a in raw.split(b"\0") if a]
    is_flock = bool(argv) and Path(argv[0]).name == "flock"
    exclusive = is_flock and "-x" in argv and LOCK in argv
    return exclusive, shlex.join(argv) if is_flock else None


def lock_record(exclusive: bool, load_before: tuple[float, ...], t_start: float) -> dict[str, Any]:
    """What a timing results file says about how it was run: under the exclusive CPU lock or
    not, the load averages around it and how long the timing took."""
    return {
        "exclusive_cpu_lock": exclusive,
        "alone": (
            f"run under `flock -x {LOCK}`, alone on the CPUs"
            if exclusive
            else f"NOT run under `flock -x {LOCK}`: other jobs may have shared the CPUs"
        ),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "timing_seconds": round(time.perf_counter() - t_start, 1),
    }


def shape_students(run: Any, mlp_recent: int, mlp_hidden: tuple[int, ...]) -> dict[str, Any]:
    """Untrained models of the students' shapes around the teacher run (a GuimRun each)."""
    from guim.embed import GuimRun
    from guim.models import build_model
    from guim.models.mlp import MLPConfig, MLPStudent
    from guim.models.tokens import ItemTables

    cfg, teacher = run.cfg, run.model
    tok = teacher.tokens
    tables = ItemTables(
        n_items=tok.n_items,
        n_attributes=tok.attr_emb.weight.shape[0] - 1 if tok.use_attributes else 0,
        attr_offsets=tok.attr_offsets if tok.use_attributes else torch.zeros(tok.n_items + 2),
        attr_flat=tok.attr_flat if tok.use_attributes else torch.zeros(0, dtype=torch.int64),
        known=tok.known.bool(),
        text=tok.text if tok.use_text else None,
    )
    causal = bool(teacher.causal)
    m = cfg.model
    shapes = {
        "minilm-half-depth-shape": replace(m, n_layers=max(1, m.n_layers // 2)),
        "minilm-half-width-shape": replace(m, dim=m.dim // 2, ffn_dim=m.ffn_dim // 2),
    }
    out: dict[str, Any] = {}
    for name, model_cfg in shapes.items():
        torch.manual_seed(0)
        model = build_model(model_cfg, cfg.data, tables, causal).eval()
        out[name] = GuimRun(model, replace(cfg, model=model_cfg))
    mlp = MLPConfig(n_recent=mlp_recent, pooling="weighted", hidden=mlp_hidden, tokens="teacher")
    torch.manual_seed(0)
    student = MLPStudent.from_teacher(teacher, cfg.data, mlp, m).eval()
    out["bert2dnn-shape"] = GuimRun(student, cfg)
    return out


def flops_per_user(run: Any, histories: Any) -> int:
    """FLOPs of `user_vectors` per user (torch.utils.flop_counter: matrix products and
    attention; element-wise work is not counted), histories padded to max_len as in ONNX."""
    from torch.utils.flop_counter import FlopCounterMode

    p = histories.padded(run.cfg.data.max_len)
    args = [torch.from_numpy(p[k]) for k in ("item_idx", "event", "timestamp")]
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        run.model.user_vectors(*args)
    return round(counter.get_total_flops() / len(histories))


def percentiles(embed: Any, batches: list[Any], warmup: int) -> dict[str, float]:
    """p50 / p99 / mean milliseconds of embed(batch) over `batches` (after `warmup` calls)."""
    for b in batches[:warmup]:
        embed(b)
    times = []
    for b in batches:
        t0 = time.perf_counter()
        embed(b)
        times.append(time.perf_counter() - t0)
    ms = 1e3 * np.asarray(times)
    return {
        "p50": round(float(np.percentile(ms, 50)), 4),
        "p99": round(float(np.percentile(ms, 99)), 4),
        "mean": round(float(ms.mean()), 4),
        "calls": len(ms),
    }


def time_model(
    run: Any,
    onnx_path: Path,
    histories: Any,
    repeats_1: int,
    repeats_64: int,
    threads: tuple[int, ...],
) -> dict[str, Any]:
    from guim.onnx import OnnxRun

    n = len(histories)
    rng = np.random.default_rng(0)
    single = [histories.take([int(i)]) for i in rng.integers(0, n, size=repeats_1)]
    many = [histories.take(rng.integers(0, n, size=64)) for _ in range(repeats_64)]
    out: dict[str, Any] = {}
    for t in threads:
        torch.set_num_threads(t)
        onnx_run = OnnxRun(run, onnx_path, threads=t)
        suffix = f"{t}thread" if t == 1 else f"{t}threads"
        for backend, embed in (("torch", run.embed_users), ("onnx", onnx_run.embed_users)):
            for size, batches in ((1, single), (64, many)):
                stats = percentiles(embed, batches, warmup=max(3, len(batches) // 20))
                key = f"batch{size}_{backend}_{suffix}"
                out[f"p50_ms_{key}"] = stats["p50"]
                out[f"p99_ms_{key}"] = stats["p99"]
                out[f"mean_ms_{key}"] = stats["mean"]
                out[f"calls_{key}"] = stats["calls"]
                print(f"  {key}: p50 {stats['p50']} ms, p99 {stats['p99']} ms", flush=True)
    return out


def main() -> None:
    from guim.data.dataset import Dataset
    from guim.embed import load_run
    from guim.io import read_json
    from guim.onnx import export_run
    from guim.provenance import write_results

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, required=True, help="the teacher's run directory")
    p.add_argument("--student", action="append", default=[], help="NAME=RUN_DIR (repeatable)")
    p.add_argument("--no-shapes", action="store_true", help="skip the untrained student shapes")
    p.add_argument("--mlp-recent", type=int, default=20)
    p.add_argument("--mlp-hidden", type=int, nargs="+", default=[256, 256])
    p.add_argument("--repeats-1", type=int, default=400, help="calls with one user")
    p.add_argument("--repeats-64", type=int, default=100, help="calls with 64 users")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--work", type=Path, default=Path("runs/latency"), help="ONNX files")
    p.add_argument("--export-only", action="store_true", help="write the ONNX files and stop")
    p.add_argument("--note", default="", help="recorded as is (e.g. how long the run trained)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--merge", action="store_true")
    args = p.parse_args()

    teacher = load_run(args.run)
    info = read_json(args.run / "dataset.json")
    dataset = Dataset(info["path"])
    runs: dict[str, Any] = {"teacher": teacher}
    for spec in args.student:
        name, _, path = spec.partition("=")
        runs[name] = load_run(path)
    if not args.no_shapes:
        runs.update(shape_students(teacher, args.mlp_recent, tuple(args.mlp_hidden)))
    histories = dataset.eval_cases(teacher.cfg.data.scheme, "test").history

    args.work.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, run in runs.items():
        paths[name] = args.work / f"{dataset.name}-{name}.onnx"
        if not paths[name].exists():
            t0 = time.perf_counter()
            export_run(run, paths[name])
            print(f"exported {name} in {time.perf_counter() - t0:.1f}s", flush=True)
    if args.export_only:
        return

    load_before = os.getloadavg()
    t_start = time.perf_counter()
    results: dict[str, Any] = {}
    sample = histories.take(np.arange(min(64, len(histories))))
    for name, run in runs.items():
        print(name, flush=True)
        run.model.eval()
        row: dict[str, Any] = {
            "parameters": sum(p.numel() for p in run.model.parameters()),
            "flops_per_user": flops_per_user(run, sample),
        }
        row.update(
            time_model(
                run, paths[name], histories, args.repeats_1, args.repeats_64, tuple(args.threads)
            )
        )
        # the headline keys: batch 1, one thread, ONNX Runtime
        row["p50_ms"] = row.get("p50_ms_batch1_onnx_1thread")
        row["p99_ms"] = row.get("p99_ms_batch1_onnx_1thread")
        results[name] = row
    teacher_row = results["teacher"]
    for row in results.values():
        row["flops_fraction"] = round(row["flops_per_user"] / teacher_row["flops_per_user"], 4)
        if row["p50_ms"] and teacher_row["p50_ms"]:
            row["p50_speedup"] = round(teacher_row["p50_ms"] / row["p50_ms"], 2)

    exclusive, wrapper = held_lock()
    cfg = teacher.cfg
    write_results(
        args.out,
        {dataset.name: results},
        command=wrapper,
        merge=args.merge,
        setting=(
            f"teacher {args.run} (model dim {cfg.model.dim}, {cfg.model.n_layers} layers, "
            f"{cfg.model.n_heads} heads, K {cfg.model.n_interests}, max_len {cfg.data.max_len}, "
            f"{cfg.model.encoder}, objective {cfg.train.objective}); real test histories of "
            f"{dataset.name}; batch 1: {args.repeats_1} calls, batch 64: {args.repeats_64} "
            "calls, each after a warm-up; a call = embed_users(Sequences) incl. padding "
            "(PyTorch pads each batch to its longest history, ONNX to max_len); threads = "
            "torch.set_num_threads / ONNX Runtime intra-op threads; *-shape models are "
            "untrained students of the issue-13 shapes (MiniLM half depth, half width; "
            f"BERT2DNN MLP: last {args.mlp_recent} items, weighted pooling, hidden "
            f"{tuple(args.mlp_hidden)}, the teacher's frozen item table); flops_per_user: "
            "torch.utils.flop_counter (matrix products and attention only) at max_len padding; "
            f"torch {torch.__version__}"
        ),
        note=(args.note + " " if args.note else "")
        + "Latency depends on the model's shapes, not on how long it trained.",
        **lock_record(exclusive, load_before, t_start),
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
