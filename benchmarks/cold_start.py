"""Cold-start items: 10% of the interacted items are removed from training entirely (half for
validation, half for test); a user's first interaction with a test cold item is ranked among
the test cold items (history masked). GUIM embeds those items from their attribute ids (and,
where the dataset has titles, from title text too) through the same item-token path as warm
items; popularity ranks them by their attributes' popularity; item2vec+attributes and CML map
attribute vectors to item vectors (ridge regression fitted on warm items).

    .venv/bin/python benchmarks/cold_start.py [--datasets beauty synthetic ml-100k]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "runs" / "cold"
RESULTS = REPO / "benchmarks" / "results" / "cold-start.json"
sys.path.insert(0, str(REPO / "benchmarks"))


def data_dir(name: str) -> Path:
    if name == "synthetic":
        from mor import synthetic_data

        return synthetic_data()
    from guim_quality import prepared

    return prepared(name)


def metrics(res: dict[str, float]) -> dict[str, float]:
    return {
        "NDCG@10": res["NDCG@10"],
        "HR@10": res["HR@10"],
        "Recall@20": res["HR@20"],  # one target per case
        "n_cases": res["n_cases"],
    }


def guim_cold(name: str, data: Path, label: str, overrides: list[str]) -> dict[str, Any]:
    from guim.config import load_config
    from guim.data.dataset import Dataset
    from guim.embed import load_run
    from guim.evaluate import evaluate
    from guim.train import train

    run_dir = WORK / "runs" / f"{name}-{label}"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    cfg = load_config(name, ["data.scheme=cold", *overrides])
    t0 = time.perf_counter()
    train(cfg, data, run_dir, evaluate_test=False)
    seconds = time.perf_counter() - t0
    res = evaluate(load_run(run_dir), Dataset(data), "cold", "test", ks=(10, 20))
    return {**metrics(res), "train_seconds": round(seconds, 1)}


def baselines_cold(data: Path) -> dict[str, dict[str, Any]]:
    from guim.baselines import build, tuned
    from guim.data.dataset import Dataset
    from guim.evaluate import evaluate

    ds = Dataset(data)
    out = {}
    for label, name, settings in (
        ("popularity", "popularity", {}),
        ("item2vec+attr", "item2vec", {"attributes": True, **tuned("item2vec", ds.name)}),
        ("cml", "cml", {}),
    ):
        t0 = time.perf_counter()
        emb = build(name, ds, "cold", **settings)
        fit = time.perf_counter() - t0
        res = evaluate(emb, ds, "cold", "test", ks=(10, 20))
        out[label] = {**metrics(res), "fit_seconds": round(fit, 1)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--datasets", nargs="+", default=["beauty", "synthetic", "ml-100k"])
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--merge", action="store_true", help="keep the other datasets already in --out")
    args = ap.parse_args()

    from guim.data.dataset import Dataset
    from guim.provenance import write_results

    results: dict[str, dict[str, dict[str, Any]]] = {}
    for name in args.datasets:
        data = data_dir(name)
        has_titles = Dataset(data).stats["has_titles"]
        results[name] = {"guim": guim_cold(name, data, "attributes", ["data.use_text=false"])}
        if has_titles:
            results[name]["guim+text"] = guim_cold(name, data, "text", ["data.use_text=true"])
        results[name].update(baselines_cold(data))
        print(name, results[name], flush=True)
    write_results(
        args.out,
        results,
        merge=args.merge,
        protocol="cold scheme, test split: a user's first interaction with a test cold item, "
        "ranked among all test cold items, history masked, full ranking over that set",
    )


if __name__ == "__main__":
    main()
