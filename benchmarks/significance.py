"""How sure are the next-item figures? Standard errors over the evaluation cases, paired
differences between models on the same cases, and each published target's distance in
standard errors.

A test NDCG@10 is a mean over the dataset's test users, one case each: the same model on another
draw of users would score differently. For every GUIM-bench directory given, the GUIM run of the
leave-one-out scheme and every RecBole peer are loaded and ranked again (full ranking, history
masked, as `guim.evaluate`), and per split (valid, test) and model this records the mean and
standard error of NDCG@10 and HR@10; for every other model the paired difference to GUIM (on the
same cases: the standard error of the per-case differences) with its normal 95% interval; and
with `--targets` the gap from a published figure in units of GUIM's standard error (the
published model's own error on the same test users is of the same size and unknown).

    .venv/bin/python benchmarks/significance.py --bench runs/bench/beauty runs/bench/lastfm \
        [--run lastfm:LABEL=RUN_DIR ...] [--targets benchmarks/results/quality.json] \
        [--out benchmarks/results/significance.json]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "significance.json"
METRICS = ("NDCG@10", "HR@10")
SPLITS = ("valid", "test")


def per_case_values(embedder: Any, cases: Any) -> dict[str, Any]:
    """{metric: per-case values} of one model on one split's cases."""
    from guim.evaluate import rank_cases
    from guim.metrics import per_case

    ranks = rank_cases(embedder, cases)
    return {m: per_case(ranks, m) for m in METRICS}


def summarise(values: dict[str, dict[str, Any]]) -> dict[str, float]:
    """{split: {metric: values}} -> flat result keys (test unprefixed, valid_ prefixed)."""
    from guim.metrics import standard_error

    out: dict[str, float] = {}
    for split, by_metric in values.items():
        prefix = "" if split == "test" else f"{split}_"
        for metric, v in by_metric.items():
            out[f"{prefix}{metric}"] = round(float(v.mean()), 6)
            out[f"{prefix}{metric}_se"] = round(standard_error(v), 6)
        out[f"{prefix}cases"] = len(next(iter(by_metric.values())))
    return out


def models_of(bench_dir: Path) -> tuple[Path, list[tuple[str, str, Path]]]:
    """(dataset dir, [(label, kind, run dir)]) of a GUIM-bench directory: its GUIM run of the
    leave-one-out scheme first, then its peers."""
    from guim.io import read_json

    doc = read_json(bench_dir / "bench.json")
    data = Path(doc["dataset"]["path"])
    models = []
    for label, info in doc["models"].items():
        if info.get("kind") in ("guim", "peer") and (info.get("runs") or {}).get("loo"):
            run = Path(info["runs"]["loo"])
            models.append((label, info["kind"], run if run.is_absolute() else REPO / run))
    models.sort(key=lambda m: m[1] != "guim")  # GUIM first: the others are paired with it
    return data, models


def load(kind: str, run: Path) -> Any:
    if kind == "peer":
        from guim.peers.recbole import load_peer

        return load_peer(run).embedder
    from guim.embed import load_run

    return load_run(run)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bench", nargs="+", type=Path, required=True, help="GUIM-bench dirs")
    ap.add_argument("--run", action="append", default=[], help="DATASET:LABEL=RUN_DIR, more")
    ap.add_argument("--targets", type=Path, help="a results file with targets_NDCG_at_10")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()

    from guim.data.dataset import Dataset
    from guim.io import read_json
    from guim.metrics import paired_difference
    from guim.progress import console
    from guim.provenance import write_results

    extra: dict[str, list[tuple[str, Path]]] = {}
    for text in args.run:
        name, _, rest = text.partition(":")
        label, _, run = rest.partition("=")
        if not (name and label and run):
            ap.error(f"--run {text!r}: expected DATASET:LABEL=RUN_DIR")
        extra.setdefault(name, []).append((label, Path(run)))
    targets = read_json(args.targets).get("targets_NDCG_at_10", {}) if args.targets else {}

    results, paired, anchors, sources = {}, {}, {}, {}
    for bench_dir in args.bench:
        data, models = models_of(bench_dir)
        ds = Dataset(data)
        name = ds.name
        models += [(label, "guim", run) for label, run in extra.get(name, [])]
        cases = {split: ds.eval_cases("loo", split) for split in SPLITS}
        values: dict[str, dict[str, dict[str, Any]]] = {}
        for label, kind, run in models:
            console.print(f"{name}: ranking {label} ({run})")
            embedder = load(kind, run)
            values[label] = {s: per_case_values(embedder, cases[s]) for s in SPLITS}
        results[name] = {label: summarise(v) for label, v in values.items()}
        sources[name] = {label: str(run) for label, _, run in models}
        first = models[0][0]
        paired[name] = {
            f"{first} - {label}": {
                split: {
                    m: {
                        k: round(x, 6)
                        for k, x in paired_difference(
                            values[first][split][m], values[label][split][m]
                        ).items()
                    }
                    for m in METRICS
                }
                for split in SPLITS
            }
            for label, _, _ in models[1:]
        }
        if name in targets:
            own = results[name][first]
            gap = own["NDCG@10"] - targets[name]
            anchors[name] = {
                "model": first,
                "target_NDCG@10": targets[name],
                "gap": round(gap, 6),
                "gap_in_se": round(gap / own["NDCG@10_se"], 3),
            }
        for label, r in results[name].items():
            console.print(
                f"  {label:14s} test NDCG@10 {r['NDCG@10']:.4f} +/- {r['NDCG@10_se']:.4f} "
                f"(valid {r['valid_NDCG@10']:.4f} +/- {r['valid_NDCG@10_se']:.4f}, "
                f"{r['cases']} cases)"
            )
        for pair, d in paired[name].items():
            t = d["test"]["NDCG@10"]
            console.print(
                f"  {pair}: test NDCG@10 {t['difference']:+.4f} +/- {t['se']:.4f} "
                f"[{t['ci95_low']:+.4f}, {t['ci95_high']:+.4f}]"
            )
        if name in anchors:
            console.print(f"  against the target: {anchors[name]}")
    write_results(
        args.out,
        results,
        paired=paired,
        targets=anchors,
        runs=sources,
        protocol="leave-one-out, full ranking, history masked; se = sample standard deviation "
        "of the per-case values / sqrt(cases); paired: the same of the per-case differences, "
        "normal 95% interval",
    )
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
