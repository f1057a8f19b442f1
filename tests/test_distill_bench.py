"""benchmarks/distill.py's bookkeeping: retained / FLOPs / speed-up over the set's own teacher,
a second teacher's set under a suffix, and --merge keeping the dataset's other rows."""

from __future__ import annotations

import json
from argparse import Namespace

import pytest
from benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def distill():
    return load_benchmark("distill.py", "distill_bench")


def row(ndcg: float, flops: int, p50: float) -> dict:
    return {"NDCG@10": ndcg, "flops_per_user": flops, "p50_ms": p50}


def test_a_suffixed_set_is_scored_against_its_own_teacher_and_merged_by_model(distill, tmp_path):
    out = tmp_path / "distill.json"
    first = {"teacher": row(0.05, 100, 1.0), "bert2dnn": row(0.04, 1, 0.25)}
    args = Namespace(suffix="", merge=True, out=out)
    rows = distill.with_kept(first, args, "beauty")
    assert rows["bert2dnn"]["retained"] == 0.8
    assert rows["bert2dnn"]["flops_fraction"] == 0.01 and rows["bert2dnn"]["p50_speedup"] == 4.0
    out.write_text(json.dumps({"results": {"beauty": rows, "lastfm": {"teacher": {}}}}))

    deeper = {"teacher": row(0.06, 400, 2.0), "bert2dnn": row(0.03, 2, 0.5)}
    merged = distill.with_kept(deeper, Namespace(suffix="-4l", merge=True, out=out), "beauty")
    assert list(merged) == ["teacher", "bert2dnn", "teacher-4l", "bert2dnn-4l"]
    assert merged["bert2dnn"] == rows["bert2dnn"]  # the first set's rows are kept as they were
    assert merged["bert2dnn-4l"]["retained"] == 0.5  # over teacher-4l, not teacher
    assert merged["bert2dnn-4l"]["p50_speedup"] == 4.0
    alone = distill.with_kept(
        {"teacher": row(0.06, 400, 2.0)}, Namespace(suffix="", merge=False, out=out), "beauty"
    )
    assert list(alone) == ["teacher"]  # without --merge nothing is kept
    with pytest.raises(KeyError):  # a set always needs its teacher
        distill.with_kept({"bert2dnn": row(0.03, 2, 0.5)}, args, "beauty")


def test_bench_primaries_take_each_tasks_primary_metric_and_skip_tasks_not_scored(distill):
    record = {
        "tasks": {
            "next_item": {"primary_metric": "NDCG@10"},
            "cold_start": {"primary_metric": "NDCG@10"},
            "item_attributes": {"primary_metric": "score"},
        },
        "results": {
            "beauty": {
                "teacher": {
                    "next_item/NDCG@10": 0.05,
                    "next_item/HR@10": 0.09,  # not a primary metric
                    "cold_start/NDCG@10": 0.12,
                    "item_attributes/score": 0.7,
                },
                "bert2dnn": {"next_item/NDCG@10": 0.03, "item_attributes/score": None},
            }
        },
    }
    assert distill.primaries_of(record) == {
        "teacher": {
            "next_item/NDCG@10": 0.05,
            "cold_start/NDCG@10": 0.12,
            "item_attributes/score": 0.7,
        },
        "bert2dnn": {"next_item/NDCG@10": 0.03},
    }
