"""benchmarks/quality.py's summary of a variant's seeds: means, the seeds' standard deviation,
and one command that stands for every seed."""

from __future__ import annotations

from pathlib import Path

import pytest
from benchmark_scripts import load_benchmark

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quality():
    return load_benchmark("quality.py", "quality_bench")


def run(ndcg: float) -> dict:
    metrics = {"HR@10": 0.1, "NDCG@10": ndcg, "HR@20": 0.2, "NDCG@20": 0.05}
    return {**metrics, "valid_NDCG@10": 0.07, "train_seconds": 10.0}


def test_summary_names_no_single_seed(quality):
    cmd = [
        "guim", "train", "-d", "runs/quality/data/beauty", "-o",
        str(REPO / "runs/quality-seeds/beauty/guim-default-s2"),
        "--preset", "auto", "--set", "train.seed=2", "--set", "train.threads=2",
    ]  # fmt: skip
    out = quality.summarise({0: run(0.06), 1: run(0.062), 2: run(0.064)}, cmd)
    assert out["command"] == (
        "guim train -d runs/quality/data/beauty -o runs/quality-seeds/beauty/guim-default-sSEED "
        "--preset auto --set train.seed=SEED --set train.threads=2"
    )
    assert out["NDCG@10"] == pytest.approx(0.062)
    assert out["NDCG@10_std"] == pytest.approx(0.002)  # sample standard deviation of 3 seeds
    assert out["seeds"] == [0, 1, 2]
