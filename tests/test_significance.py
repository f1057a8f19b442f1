"""benchmarks/significance.py: the per-case means equal the run's own test metrics, the standard
errors are those of the per-case values, two identical models differ by exactly 0, and a
target's gap is counted in standard errors."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
from benchmark_scripts import load_benchmark


@pytest.mark.slow  # trains one small model (a few seconds)
def test_significance_of_a_bench_directory(tmp_path, monkeypatch):
    from test_train import TINY, s3rec_dataset

    from guim.config import load_config
    from guim.data.dataset import Dataset
    from guim.embed import load_run
    from guim.evaluate import rank_cases
    from guim.metrics import per_case
    from guim.train import train

    sig = load_benchmark("significance.py", "significance")
    ds = s3rec_dataset(tmp_path, n_users=200, n_items=40, length=20)
    run = train(load_config(None, [*TINY, "train.epochs=2"]), ds.path, tmp_path / "run",
                show_progress=False)  # fmt: skip
    twin = tmp_path / "twin"
    shutil.copytree(run, twin)
    bench = tmp_path / "bench"
    bench.mkdir()
    models = {
        "guim": {"kind": "guim", "runs": {"loo": str(run)}},
        "popularity": {"kind": "baseline", "runs": None},  # not a run: left out
    }
    doc = {"dataset": {"path": str(ds.path)}, "models": models}
    (bench / "bench.json").write_text(json.dumps(doc))
    targets = tmp_path / "targets.json"
    targets.write_text(json.dumps({"targets_NDCG_at_10": {Dataset(ds.path).name: 0.5}}))
    out = tmp_path / "significance.json"
    argv = ["significance.py", "--bench", str(bench), "--run", f"{ds.name}:twin={twin}"]
    argv += ["--targets", str(targets), "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    sig.main()

    result = json.loads(out.read_text())
    name = ds.name
    r = result["results"][name]
    assert list(r) == ["guim", "twin"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert r["guim"]["NDCG@10"] == pytest.approx(metrics["test"]["NDCG@10"], abs=1e-6)
    assert r["guim"]["valid_NDCG@10"] == pytest.approx(metrics["valid_NDCG@10"], abs=1e-6)
    values = per_case(rank_cases(load_run(run), ds.eval_cases("loo", "test")), "NDCG@10")
    se = values.std(ddof=1) / np.sqrt(len(values))
    assert r["guim"]["NDCG@10_se"] == pytest.approx(se, abs=1e-6) and se > 0
    assert r["guim"]["cases"] == len(values)
    same = result["paired"][name]["guim - twin"]["test"]["NDCG@10"]
    assert same == {"difference": 0.0, "se": 0.0, "ci95_low": 0.0, "ci95_high": 0.0}
    gap = result["targets"][name]
    assert gap["gap"] == pytest.approx(r["guim"]["NDCG@10"] - 0.5, abs=1e-6)
    assert gap["gap_in_se"] == pytest.approx(gap["gap"] / r["guim"]["NDCG@10_se"], abs=1e-3)
