"""Training cheaply (issue 12): wall-clock time to quality of MSLT, SRU++, CoRe and SAS (and of
the masked-item objective SAS builds on) against the plain Transformer of the same final depth,
trained side by side on one dataset per call.

Each method is the dataset's preset plus benchmarks/efficiency/METHOD.toml (differences only,
stage plans included) plus the `--set` overrides common to all. Per method: the curve of
validation NDCG@10 against cumulative training seconds (evaluation excluded), best validation
and test NDCG@10, total training seconds, the seconds to reach the reference's best validation
NDCG@10 minus 1% (relative), the speed-up (the reference's seconds to that quality divided by
the method's; null if never reached), parameters and FLOPs of one training step (forward +
backward, torch.utils.flop_counter, per stage). Writes benchmarks/results/efficiency.json and a
PNG of the curves beside it.

    .venv/bin/python benchmarks/efficiency.py --dataset beauty [--methods transformer mslt ...]
        [--set train.threads=4] [--epochs-scale 1.0] [--out benchmarks/results/efficiency.json]
        [--collect]   # assemble finished runs of an invocation cut off before it wrote

--dataset: beauty, lastfm (../shared/datasets), synthetic-2m (a seeded 2M-event shop), tiny
(the test shop, for smoke runs), or the path of a prepared dataset directory.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "runs" / "efficiency"
RESULTS = REPO / "benchmarks" / "results" / "efficiency.json"
METHOD_DIR = REPO / "benchmarks" / "efficiency"
METHODS = ("transformer", "mslt", "sru", "core", "sas", "masked")
REFERENCE = "transformer"
PRESETS = {"tiny": "tiny", "synthetic-2m": "synthetic", "beauty": "beauty", "lastfm": "lastfm"}
QUALITY_MARGIN = 0.01  # "to quality": the reference's best validation NDCG@10 minus 1% of it


def dataset_dir(name: str) -> Path:
    """The prepared dataset directory of `name` (prepared once under runs/efficiency/data)."""
    if name not in PRESETS:
        return Path(name)
    if name in ("beauty", "lastfm"):
        sys.path.insert(0, str(REPO / "benchmarks"))
        from guim_quality import prepared

        return prepared(name)
    from guim.data.loaders.merrec import load_merrec
    from guim.data.prepare import PrepareConfig, prepare
    from guim.data.synthetic import SynthConfig, synth

    out = WORK / "data" / name
    if not (out / "stats.json").exists():
        shop_cfg = SynthConfig.tiny() if name == "tiny" else SynthConfig.for_events(2_000_000)
        shop = synth(WORK / "data" / f"{name}-shop", shop_cfg, overwrite=True)
        prepare(load_merrec(shop), out, PrepareConfig(name=name), overwrite=True)
    return out


def method_config(preset: str | None, method: str, overrides: list[str], scale: float) -> Any:
    """preset -> METHOD.toml -> --set overrides; every epoch count (train.epochs and each
    stage's) times `scale`, at least 1."""
    from guim.config import check, from_dict, load_config, parse_override

    cfg = load_config(preset)
    with open(METHOD_DIR / f"{method}.toml", "rb") as f:
        cfg = from_dict(tomllib.load(f), cfg, source=f"{method}.toml")
    for text in overrides:
        cfg = from_dict(parse_override(text), cfg, source=f"--set {text}")
    if scale != 1.0:
        tr = cfg.train
        stages = tuple(replace(s, epochs=max(1, round(s.epochs * scale))) for s in tr.stages)
        cfg = replace(
            cfg, train=replace(tr, epochs=max(1, round(tr.epochs * scale)), stages=stages)
        )
    return check(cfg, source=method)


def final_depth(cfg: Any) -> int:
    depth = cfg.model.n_layers
    for s in cfg.train.stages:
        depth = s.n_layers or depth
    return depth


def curve(run: Path) -> list[tuple[float, float]]:
    """(cumulative training seconds, validation NDCG@10) after every validated epoch."""
    from guim.checkpoint import read_log

    out, seconds = [], 0.0
    for record in read_log(run):
        seconds += record["train_seconds"]
        if "valid_NDCG@10" in record:
            out.append((round(seconds, 3), record["valid_NDCG@10"]))
    return out


def seconds_to(points: list[tuple[float, float]], target: float) -> float | None:
    """The first cumulative training seconds at which validation NDCG@10 reached `target`."""
    return next((s for s, v in points if v >= target), None)


def step_costs(cfg: Any, data: Path) -> list[dict[str, Any]]:
    """Parameters (all / trainable) and FLOPs of one training step (forward + backward, the
    largest batch of an epoch) in every stage of the plan."""
    import numpy as np
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from guim.data.batches import make_batches
    from guim.data.dataset import Dataset
    from guim.train import build, enter_stage, step_loss

    t = build(cfg, Dataset(data))
    out = []
    for index, stage in enumerate(t.stages):
        if index:
            enter_stage(t, index, restore_best=False)
        tr = replace(t.cfg.train, objective=stage.objective)
        batches = make_batches(t.seqs, t.cfg.data, tr, np.random.default_rng(0))
        batch = max(batches, key=lambda b: b.items.numel())
        if stage.objective == "sas":  # count the detection head and the sampling too
            t.sas_previous = torch.zeros(len(t.seqs.item_idx), dtype=torch.long)
            t.sas_current = torch.zeros_like(t.sas_previous)
        generator = torch.Generator().manual_seed(0)
        t.model.train()
        with FlopCounterMode(display=False) as counter:
            loss = step_loss(t, batch, generator, float(stage.contrastive_weight))
            loss.backward()
        t.model.zero_grad(set_to_none=True)
        params = list(t.model.parameters())
        out.append(
            {
                "stage": index,
                "n_layers": t.cfg.model.n_layers,
                "parameters": sum(p.numel() for p in params),
                "trainable_parameters": sum(p.numel() for p in params if p.requires_grad),
                "flops_per_step": int(counter.get_total_flops()),
                "batch": list(batch.items.shape),
            }
        )
    return out


def markdown_table(path: Path) -> str:
    """The README table of a recorded efficiency.json: per dataset and method the best
    validation and test NDCG@10, training seconds, seconds per epoch of each stage, seconds to
    the quality target and the speed-up, and GFLOPs per training step of each stage."""
    from guim.io import read_json

    doc = read_json(path)
    rows = [
        "| dataset | method | best valid NDCG@10 | test NDCG@10 | train s | s / epoch "
        "| s to target | speed-up | GFLOP / step |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for ds, methods in doc["results"].items():
        details = doc.get("details", {}).get(ds, {})
        for method, r in methods.items():
            d = details.get(method, {})
            per_stage = " / ".join(f"{x:.1f}" for x in d.get("stage_epoch_seconds", []))
            flops = " / ".join(f"{s['flops_per_step'] / 1e9:.1f}" for s in d.get("steps", []))
            stq = "never" if r["seconds_to_quality"] is None else f"{r['seconds_to_quality']:.0f}"
            speed = "-" if r["speedup"] is None else f"{r['speedup']:.2f}x"
            rows.append(
                f"| {ds} | {method} | {r['valid_NDCG@10']:.4f} | {r['NDCG@10']:.4f} "
                f"| {r['train_seconds']:.0f} | {per_stage} | {stq} | {speed} | {flops} |"
            )
    return "\n".join(rows)


def stage_epoch_seconds(run: Path) -> list[float]:
    """Mean training seconds of one epoch in each stage of the run (evaluation excluded)."""
    from guim.checkpoint import read_log

    by_stage: dict[int, list[float]] = {}
    for record in read_log(run):
        by_stage.setdefault(record.get("stage", 0), []).append(record["train_seconds"])
    return [round(sum(v) / len(v), 2) for _, v in sorted(by_stage.items())]


def check_collected(run: Path, cfg: Any) -> None:
    """--collect: `run` must be a finished run of `cfg`'s method (same encoder, objective, final
    depth and stage plan), or the assembly stops naming what differs."""
    from guim.config import config_from_json

    if not (run / "metrics.json").exists():
        raise SystemExit(f"{run}: no metrics.json, the run did not finish; train it again")
    saved = config_from_json(run / "config.json")  # records the architecture at the end

    def signature(c: Any, depth: int) -> dict[str, Any]:
        return {
            "encoder": c.model.encoder,
            "objective": c.train.objective,
            "final depth": depth,
            "stages": [s.epochs for s in c.train.stages],
            "dim": c.model.dim,
        }

    want, got = signature(cfg, final_depth(cfg)), signature(saved, saved.model.n_layers)
    if want != got:
        raise SystemExit(f"{run} is not a run of this method: {got} != {want}")


def plot(
    name: str, curves: dict[str, list[tuple[float, float]]], target: float, path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, points in curves.items():
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker=".", label=method, linewidth=2 if method == REFERENCE else 1)
    ax.axhline(target, color="grey", linestyle="--", linewidth=0.8, label="reference best - 1%")
    ax.set_xlabel("cumulative training seconds")
    ax.set_ylabel("validation NDCG@10")
    ax.set_title(f"time to quality: {name}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", help="required unless --table")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--preset", help="base preset (default: the dataset's, if it has one)")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--epochs-scale", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--note", default="", help="recorded with the results (e.g. smoke run)")
    parser.add_argument(
        "--collect",
        action="store_true",
        help="train nothing: assemble the results from the finished runs an earlier invocation "
        "trained under runs/efficiency/runs/DATASET (after it was cut off before writing)",
    )
    parser.add_argument("--table", action="store_true", help="print --out as a Markdown table")
    args = parser.parse_args()
    if args.table:
        print(markdown_table(args.out))
        return
    if args.dataset is None:
        parser.error("--dataset is required")

    import shutil

    from guim.io import read_json
    from guim.provenance import CpuWatch, write_results
    from guim.train import train

    watch = CpuWatch()  # what else used the CPU while the methods trained
    methods = [REFERENCE, *(m for m in args.methods if m != REFERENCE)]
    name = Path(args.dataset).name if args.dataset not in PRESETS else args.dataset
    preset = args.preset or PRESETS.get(args.dataset)
    data = dataset_dir(args.dataset)
    configs = {m: method_config(preset, m, args.overrides, args.epochs_scale) for m in methods}
    depths = {m: final_depth(c) for m, c in configs.items()}
    if len(set(depths.values())) != 1:
        raise SystemExit(f"the methods' final depths differ: {depths}")

    runs, curves = {}, {}
    for method in methods:
        run = WORK / "runs" / name / method
        if args.collect:
            check_collected(run, configs[method])
            runs[method] = run
        else:
            shutil.rmtree(run, ignore_errors=True)
            print(f"== {name}: {method}", flush=True)
            runs[method] = train(configs[method], data, run, show_progress=False)
        curves[method] = curve(run)
    metrics = {m: read_json(runs[m] / "metrics.json") for m in methods}
    reference_best = metrics[REFERENCE]["valid_NDCG@10"]
    target = reference_best * (1 - QUALITY_MARGIN)
    reached = {m: seconds_to(curves[m], target) for m in methods}
    results, details = {}, {}
    for method in methods:
        m, stq, ref = metrics[method], reached[method], reached[REFERENCE]
        results[method] = {
            "NDCG@10": m["test"]["NDCG@10"],
            "valid_NDCG@10": m["valid_NDCG@10"],
            "train_seconds": m["train_seconds"],
            "seconds_to_quality": stq,
            "speedup": None if stq is None or ref is None else round(ref / max(stq, 1e-9), 3),
        }
        details[method] = {
            "curve": [{"train_seconds": s, "valid_NDCG@10": v} for s, v in curves[method]],
            "epochs_run": m["epochs_run"],
            "best_epoch": m["best_epoch"],
            "stopped": m["stopped"],
            "stage_epoch_seconds": stage_epoch_seconds(runs[method]),
            "config_hash": m["config_hash"],
            "config": str(METHOD_DIR.relative_to(REPO) / f"{method}.toml"),
            "steps": step_costs(configs[method], data),
        }
        print(f"{method:12s} {results[method]}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    png = args.out.with_name(f"{args.out.stem}-{name}.png")
    plot(name, curves, target, png)
    write_results(
        args.out,
        {name: results},
        merge=True,
        details={name: details},
        settings={
            name: {
                "dataset": str(data),
                "preset": preset,
                "overrides": args.overrides,
                "epochs_scale": args.epochs_scale,
                "final_depth": depths[REFERENCE],
                "quality_target": round(target, 6),
                "plot": png.name,
                "note": args.note,
                "collected": args.collect,
                # with --collect this covers the assembling only, not the earlier training
                "run_conditions": watch.read(),
            }
        },
    )
    print(f"wrote {args.out} and {png}")


if __name__ == "__main__":
    main()
