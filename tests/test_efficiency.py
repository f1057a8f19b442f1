"""benchmarks/efficiency.py: the method configs share the reference's final depth and are valid
stage plans; time to quality is read off the curve; a smoke run on the tiny shop writes exactly
the issue's result keys, with the speed-ups consistent with the seconds to quality."""

from __future__ import annotations

import json
import sys

import pytest
from benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def efficiency():
    return load_benchmark("efficiency.py", "efficiency")


@pytest.mark.parametrize("preset", ["beauty", "lastfm", "synthetic", "tiny"])
def test_every_method_has_the_references_final_depth(efficiency, preset):
    configs = {m: efficiency.method_config(preset, m, [], 1.0) for m in efficiency.METHODS}
    assert {efficiency.final_depth(c) for c in configs.values()} == {4}
    assert configs["sru"].model.encoder == "sru"
    assert configs["sas"].train.objective == "sas"
    assert configs["masked"].train.objective == "masked"
    assert configs["masked"].data.window_stride == configs["sas"].data.window_stride == 0
    assert configs["core"].model.ffn_rank > 0 and configs["core"].train.stages[-1].expand
    assert configs["mslt"].train.stages[1].trainable == "top:2"
    scaled = efficiency.method_config(preset, "mslt", [], 0.2)
    assert [s.epochs for s in scaled.train.stages] == [3, 3, 1]


def test_seconds_to_quality_is_the_first_epoch_at_the_target(efficiency):
    points = [(1.0, 0.10), (2.5, 0.30), (4.0, 0.29), (6.0, 0.35)]
    assert efficiency.seconds_to(points, 0.297) == 2.5
    assert efficiency.seconds_to(points, 0.35) == 6.0
    assert efficiency.seconds_to(points, 0.36) is None


@pytest.mark.slow  # trains six small models (about 20 s)
def test_smoke_run_writes_the_issue_keys(efficiency, tmp_path, monkeypatch):
    monkeypatch.setattr(efficiency, "WORK", tmp_path / "work")
    out = tmp_path / "efficiency.json"
    argv = ["efficiency.py", "--dataset", "tiny", "--set", "train.threads=1"]
    argv += ["--set", "train.epochs=2", "--epochs-scale", "0.2", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    efficiency.main()
    doc = json.loads(out.read_text())
    results = doc["results"]["tiny"]
    assert list(results) == ["transformer", "mslt", "sru", "core", "sas", "masked"]
    keys = {"NDCG@10", "valid_NDCG@10", "train_seconds", "seconds_to_quality", "speedup"}
    assert all(set(r) == keys for r in results.values())
    ref = results["transformer"]
    assert ref["speedup"] == 1.0
    # metrics.json rounds train_seconds to 2 decimals, the curve to 3
    assert ref["seconds_to_quality"] <= ref["train_seconds"] + 0.01
    for r in results.values():
        if r["seconds_to_quality"] is None:
            assert r["speedup"] is None
        else:
            expected = ref["seconds_to_quality"] / r["seconds_to_quality"]
            assert r["speedup"] == pytest.approx(expected, rel=1e-2)
    steps = doc["details"]["tiny"]["mslt"]["steps"]
    assert [s["n_layers"] for s in steps] == [2, 4, 4]
    assert steps[1]["trainable_parameters"] < steps[2]["trainable_parameters"]
    assert all(s["flops_per_step"] > 0 for s in steps)
    per_stage = doc["details"]["tiny"]["mslt"]["stage_epoch_seconds"]
    assert len(per_stage) == 3 and all(x > 0 for x in per_stage)
    table = efficiency.markdown_table(out).splitlines()
    assert len(table) == 2 + 6 and table[2].startswith("| tiny | transformer |")
    assert (tmp_path / "efficiency-tiny.png").stat().st_size > 0
    # --collect assembles the same results from the finished runs without training again
    again = tmp_path / "again.json"
    monkeypatch.setattr(sys, "argv", [*argv[:-1], str(again), "--collect"])
    efficiency.main()
    collected = json.loads(again.read_text())
    assert collected["results"] == doc["results"]
    assert collected["settings"]["tiny"]["collected"] is True
    conditions = doc["settings"]["tiny"]["run_conditions"]  # measured over the training
    assert conditions["torch_threads"] >= 1 and conditions["own_cpu_seconds"] > 0
    # a run that is not the method's (here: another encoder) is refused, naming the difference
    sru_run = tmp_path / "work" / "runs" / "tiny" / "sru"
    saved = json.loads((sru_run / "config.json").read_text())
    saved["model"]["encoder"] = "transformer"
    (sru_run / "config.json").write_text(json.dumps(saved))
    with pytest.raises(SystemExit, match="not a run of this method"):
        efficiency.main()
