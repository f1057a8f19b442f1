"""Both evaluation protocols side by side: every model's test NDCG@10 / HR@10 with the whole
history masked (S3-Rec) and with nothing masked (RecBole), the share of repeat targets of each
dataset, and -- where targets repeat -- the unmasked metrics with a repeat-aware score term
chosen on validation (`guim.evaluate.fit_repeat_bonus`).

Uses trained GUIM runs (one per dataset, leave-one-out) and fits the baselines with the settings
GUIM-bench uses (cached beside the runs). Writes benchmarks/results/protocol.json.

    python benchmarks/protocol.py --data beauty=runs/proto/data/beauty \
        --run beauty=runs/proto/guim-beauty ...
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "protocol.json"
BASELINES = ("popularity", "item2vec", "cml")


def pairs(values: list[str], what: str) -> dict[str, Path]:
    out = {}
    for v in values:
        name, sep, path = v.partition("=")
        if not sep:
            raise SystemExit(f"{what} {v!r} must look like DATASET=PATH")
        out[name] = Path(path)
    return out


def score(embedder: Any, dataset: Any, repeats: bool) -> tuple[dict[str, float], dict[str, float]]:
    """(metrics, validation NDCG@10 unmasked by repeat term) of one model on one dataset."""
    from guim.evaluate import RepeatAware, evaluate, fit_repeat_bonus

    masked = evaluate(embedder, dataset, "loo", "test", ks=(10,))
    plain = evaluate(embedder, dataset, "loo", "test", ks=(10,), mask_history=False)
    out = {
        "NDCG@10_masked": masked["NDCG@10"],
        "NDCG@10_unmasked": plain["NDCG@10"],
        "HR@10_masked": masked["HR@10"],
        "HR@10_unmasked": plain["HR@10"],
    }
    curve: dict[float, float] = {}
    if repeats:
        bonus, curve = fit_repeat_bonus(embedder, dataset)
        aware = evaluate(
            RepeatAware(embedder, bonus), dataset, "loo", "test", ks=(10,), mask_history=False
        )
        out.update(
            {
                "NDCG@10_unmasked_repeat_aware": aware["NDCG@10"],
                "HR@10_unmasked_repeat_aware": aware["HR@10"],
                "repeat_bonus": bonus,
            }
        )
    return out, {f"{b:.4g}": v for b, v in curve.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", nargs="+", required=True, help="DATASET=prepared dataset dir")
    ap.add_argument("--run", nargs="+", required=True, help="DATASET=GUIM run dir (loo)")
    ap.add_argument("--cache", type=Path, default=REPO / "runs" / "protocol")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--merge", action="store_true", help="keep the other datasets in --out")
    args = ap.parse_args()

    from guim.bench.run import fit_baseline
    from guim.data.dataset import Dataset
    from guim.embed import load_run
    from guim.provenance import write_results

    data, runs = pairs(args.data, "--data"), pairs(args.run, "--run")
    results: dict[str, dict[str, dict[str, Any]]] = {}
    curves: dict[str, dict[str, dict[str, float]]] = {}
    for name, path in data.items():
        ds = Dataset(path)
        share = {s: ds.repeat_share("loo", s) for s in ("valid", "test")}
        repeats = share["valid"] > 0 or share["test"] > 0
        res: dict[str, dict[str, Any]] = {
            "data": {
                "repeat_target_share": share["test"],
                "repeat_target_share_valid": share["valid"],
            }
        }
        res["guim"], curve = score(load_run(runs[name]), ds, repeats)
        curves.setdefault(name, {})["guim"] = curve
        print(name, "guim", res["guim"], flush=True)
        for key in BASELINES:
            embedder, _, _ = fit_baseline(key, ds, "loo", args.cache / name, seed=0)
            label = "item2vec+attr" if key == "item2vec" else key
            res[label], curves[name][label] = score(embedder, ds, repeats)
            print(name, label, res[label], flush=True)
        results[name] = res
    write_results(
        args.out,
        results,
        merge=args.merge,
        protocol=(
            "leave-one-out test split, full ranking, ties against the target. *_masked: every "
            "item of the user's history is removed from the ranking, a repeated target too "
            "(S3-Rec protocol; a repeat target is a miss); *_unmasked: nothing removed (RecBole "
            "protocol); *_unmasked_repeat_aware: unmasked, plus a repeat term added to the "
            "scores of history items, chosen on the validation split (repeat_bonus, in score "
            "units) -- only on datasets with repeat targets"
        ),
        runs={name: str(runs[name]) for name in data},
        # validation NDCG@10 (nothing masked) for each repeat term tried, per dataset and model
        repeat_term_curves={k: v for k, v in curves.items() if any(v.values())},
    )


if __name__ == "__main__":
    main()
