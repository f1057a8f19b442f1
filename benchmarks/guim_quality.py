"""GUIM next-item quality on Beauty, LastFM and ml-100k with each dataset's preset, next to the
baselines: test HR/NDCG@10/20 (full ranking, history masked), training wall time and epochs.

`guim train` is run exactly as the README documents it (a subprocess, timed from start to exit,
so the wall time includes loading, every validation pass and the final test evaluation).

    .venv/bin/python benchmarks/guim_quality.py [--datasets beauty lastfm ml-100k]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("GUIM_DATA_DIR", REPO.parent / "shared" / "datasets"))
WORK = REPO / "runs" / "quality"
RESULTS = REPO / "benchmarks" / "results" / "guim-quality.json"
SOURCES = {
    "beauty": ("s3rec", DATA_DIR / "s3rec" / "Beauty.txt"),
    "lastfm": ("s3rec", DATA_DIR / "s3rec" / "LastFM.txt"),
    "ml-100k": ("recbole", DATA_DIR / "ml-100k"),
}
# published full-ranking NDCG@10 on these exact files (S3-Rec README and later papers)
PUBLISHED = {
    "beauty": {"SASRec (S3-Rec paper)": 0.0318, "S3-Rec": 0.0327, "BSARec / TV-Rec": 0.061},
    "lastfm": {"SASRec (S3-Rec paper)": 0.0390, "S3-Rec": 0.0427, "best published": 0.0484},
}
METRICS = ("HR@10", "NDCG@10", "HR@20", "NDCG@20")


def prepared(name: str) -> Path:
    """The dataset directory of `name`, prepared once under runs/quality/data."""
    from guim.data.loaders import load_raw
    from guim.data.prepare import PrepareConfig, prepare

    out = WORK / "data" / name
    if not (out / "stats.json").exists():
        fmt, path = SOURCES[name]
        prepare(load_raw(path, fmt), out, PrepareConfig(name=name), overwrite=True)
    return out


def train_guim(name: str, data: Path, extra: list[str]) -> dict[str, Any]:
    from guim.io import read_json

    run = WORK / "runs" / name
    if run.exists():
        shutil.rmtree(run)
    guim = str(Path(sys.executable).with_name("guim"))
    cmd = [guim, "train", "--dataset", str(data), "--out", str(run), "--preset", name, *extra]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - t0
    m = read_json(run / "metrics.json")
    shown = " ".join(["guim", "train", "--dataset", f"data/{name}", "--out", f"runs/{name}"])
    return {
        **{k: m["test"][k] for k in METRICS},
        "wall_seconds": round(wall, 1),
        "train_seconds": m["train_seconds"],
        "epochs": m["epochs_run"],
        "best_epoch": m["best_epoch"],
        "valid_NDCG@10": m["valid_NDCG@10"],
        "command": f"{shown} --preset {name} {' '.join(extra)}".strip(),
    }


def baselines(name: str, data: Path) -> dict[str, dict[str, Any]]:
    sys.path.insert(0, str(REPO / "benchmarks"))
    from baselines import ITEM2VEC  # the validation-tuned item2vec settings per dataset

    from guim.baselines import build
    from guim.data.dataset import Dataset
    from guim.evaluate import evaluate

    ds = Dataset(data)
    tuned = ITEM2VEC.get(name, {}).get("item2vec+attributes", {})
    out = {}
    for label, base, settings in (
        ("popularity", "popularity", {}),
        ("item2vec+attr", "item2vec", {"attributes": True, **tuned}),
    ):
        t0 = time.perf_counter()
        emb = build(base, ds, "loo", **settings)
        fit = time.perf_counter() - t0
        res = evaluate(emb, ds, "loo", "test", ks=(10, 20))
        out[label] = {**{k: res[k] for k in METRICS}, "fit_seconds": round(fit, 1)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--datasets", nargs="+", default=list(SOURCES), choices=list(SOURCES))
    ap.add_argument("--set", action="append", default=[], help="extra --set for guim train")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--merge", action="store_true", help="keep the other datasets already in --out")
    args = ap.parse_args()

    from guim.provenance import write_results

    extra = [x for s in args.set for x in ("--set", s)]
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for name in args.datasets:
        data = prepared(name)
        results[name] = {"guim": train_guim(name, data, extra), **baselines(name, data)}
        print(name, results[name], flush=True)
    write_results(
        args.out,
        results,
        merge=args.merge,
        protocol="leave-one-out test split, full ranking over all items, history masked, "
        "pessimistic ties",
        published_NDCG_at_10=PUBLISHED,
        targets={
            "beauty": {
                "NDCG@10 required": 0.055,
                "NDCG@10 target": 0.061,
                "train + eval wall seconds max": 1800,
            },
            "lastfm": {"NDCG@10 required": 0.045},
        },
    )


if __name__ == "__main__":
    main()
