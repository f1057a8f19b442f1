"""Mixture of Representations: K = 1 vs 2, 4, 8 interest vectors per user.

On the synthetic shop (users with 1-4 planted interests): next-item Recall@20 / NDCG@10 and how
well the K vectors recover the planted interests (guim.bench.interests). On Beauty: the same K
sweep on next-item quality. Every model is `--preset` (default "auto", the default recipe;
"DATASET" for the dataset's own preset) with only model.n_interests changed, trained and
evaluated on the same splits. For every K the test targets are also ranked by each interest
alone (guim.bench.interests.interest_routing): the merged max-over-K ranking that evaluation
uses, the interest nearest to the target that training optimises, the best single interest (an
oracle bound) and the interest nearest to the last history item. `--readouts nearest scored`
trains every K > 1 a second time with `loss.interest_readout=scored` (recorded as guim-kK-scored):
the max-over-K score that evaluation ranks by, instead of the interest nearest to the target.

    .venv/bin/python benchmarks/mor.py [--datasets synthetic beauty] [--ks 1 2 4 8] \
        [--readouts nearest scored] [--preset auto|DATASET] [--set k=v]

`--set` overrides apply to every K; each entry records its `preset` and `overrides`. The file
is written after every run; with `--merge` the other datasets, a dataset's other entries and the
other top-level keys stay (mor.json keeps its earlier 6-minute Beauty sweep, trained with the
dataset's preset, under "earlier_6_minute_budget").
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "runs" / "mor"
RESULTS = REPO / "benchmarks" / "results" / "mor.json"


def synthetic_data() -> Path:
    from guim.data.loaders.merrec import load_merrec
    from guim.data.prepare import PrepareConfig, prepare
    from guim.data.synthetic import SynthConfig, synth

    out = WORK / "data" / "synthetic"
    if not (out / "stats.json").exists():
        shop = synth(WORK / "data" / "shop", SynthConfig.small(seed=0), overwrite=True)
        prepare(load_merrec(shop), out, PrepareConfig(name="synthetic"), overwrite=True)
    return out


def beauty_data() -> Path:
    sys.path.insert(0, str(REPO / "benchmarks"))
    from guim_quality import prepared

    return prepared("beauty")


def planted_interests(data: Path, user_idx: np.ndarray) -> tuple[list[set[int]], np.ndarray]:
    """Planted leaf ids per user (in `user_idx` order) and the leaf of every item_idx."""
    from guim.data.dataset import Dataset

    ds = Dataset(data)
    truth_users = pl.read_parquet(data / "truth" / "users.parquet")
    truth_items = pl.read_parquet(data / "truth" / "items.parquet")
    users = ds.users.select("user_idx", "user_id").join(
        truth_users.with_columns(pl.col("user_id").cast(pl.String)), on="user_id"
    )
    by_user = dict(zip(users["user_idx"].to_list(), users["interests"].to_list(), strict=True))
    items = ds.items.select("item_idx", "item_id").join(
        truth_items.with_columns(pl.col("item_id").cast(pl.String)), on="item_id"
    )
    leaf = np.zeros(ds.n_items + 1, dtype=np.int64)
    leaf[items["item_idx"].to_numpy()] = items["c2_id"].to_numpy()
    return [set(by_user[int(u)]) for u in user_idx], leaf


def run_k(
    dataset: str, data: Path, k: int, readout: str, preset: str, extra: list[str]
) -> dict[str, Any]:
    from guim.bench.interests import interest_recovery, interest_routing
    from guim.config import load_config
    from guim.data.dataset import Dataset
    from guim.embed import load_run
    from guim.evaluate import evaluate
    from guim.train import train

    run_dir = WORK / "runs" / f"{dataset}-k{k}-{readout}"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    name = dataset if preset == "DATASET" else preset
    sets = [f"model.n_interests={k}", f"loss.interest_readout={readout}", *extra]
    cfg = load_config(name, sets, dataset=data)
    t0 = time.perf_counter()
    train(cfg, data, run_dir)
    seconds = time.perf_counter() - t0
    run, ds = load_run(run_dir), Dataset(data)
    res = evaluate(run, ds, "loo", "test", ks=(10, 20))
    out: dict[str, Any] = {
        "Recall@20": res["HR@20"],
        "NDCG@10": res["NDCG@10"],
        "HR@10": res["HR@10"],
        "train_seconds": round(seconds, 1),
    }
    cases = ds.eval_cases("loo", "test")
    users, items = run.embed_users(cases.history), run.embed_items()
    history = (cases.history.offsets, cases.history.item_idx)
    if run.scorer.mode == "max":  # the routing ways are defined for max-over-K scoring
        routing = interest_routing(users, items, cases.target, history, cases.candidates)
        out.update({key: v for key, v in routing.items() if "MRR" not in key})
    if (data / "truth").exists():
        planted, leaf = planted_interests(data, cases.user_idx)
        rec = interest_recovery(
            users,
            items,
            planted,
            leaf,
            history,
            n=20,
            scorer=run.scorer,
        )
        out.update(rec)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--datasets", nargs="+", default=["synthetic", "beauty"])
    ap.add_argument("--ks", nargs="+", type=int, default=[1, 2, 4, 8])
    ap.add_argument("--readouts", nargs="+", default=["nearest"], choices=["nearest", "scored"])
    ap.add_argument(
        "--preset", default="auto", help='"auto" (the default recipe) or "DATASET" (its preset)'
    )
    ap.add_argument("--set", action="append", default=[], help="extra config overrides")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--merge", action="store_true", help="keep the other datasets already in --out")
    args = ap.parse_args()

    from guim.io import read_json
    from guim.provenance import write_results

    data = {"synthetic": synthetic_data, "beauty": beauty_data}
    old = read_json(args.out) if args.merge and args.out.exists() else {}
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for name in args.datasets:
        path = data[name]()
        # with --merge a dataset keeps its other entries; each entry carries its own settings
        results[name] = dict(old.get("results", {}).get(name, {}))
        for k in args.ks:  # both readouts of one K before the next K
            for readout in args.readouts:
                if k == 1 and readout != "nearest":
                    continue  # one interest: both readouts are the same loss
                label = f"guim-k{k}" + ("" if readout == "nearest" else f"-{readout}")
                entry = run_k(name, path, k, readout, args.preset, args.set)
                entry.update(preset=args.preset, overrides=args.set)
                results[name][label] = entry
                print(name, label, entry, flush=True)
                write_results(  # after every run, so a stopped sweep keeps what it measured
                    args.out,
                    results,
                    merge=args.merge,
                    protocol="leave-one-out test split, full ranking, history masked; Recall@20 "
                    "= HR@20 (one target per user); interest recovery and the merged / routed / "
                    "oracle / last_item rankings: see guim.bench.interests",
                )


if __name__ == "__main__":
    main()
