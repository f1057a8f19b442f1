"""benchmarks/step_profile.py and benchmarks/sampled_loss.py: the profile's bookkeeping (kinds
of kernel, stratified batches, phases that add up, the frozen MSLT stage without an encoder
backward) on the tiny shop, and the two sampled-loss kernels computing the same loss."""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace

import pytest
import torch
from benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def step_profile():
    return load_benchmark("step_profile.py", "step_profile")


def test_operators_fall_into_their_kind(step_profile):
    kind = step_profile.kind_of
    assert kind("aten::mm") == kind("aten::addmm") == "matmul"
    assert kind("aten::_scaled_dot_product_flash_attention_for_cpu") == (
        "attention (fused softmax)"
    )
    assert kind("aten::_log_softmax") == kind("_FusedSoftmaxNCE") == "loss softmax"
    assert kind("Optimizer.step#AdamW.step") == kind("aten::_foreach_add_") == "optimizer"
    assert kind("aten::embedding_dense_backward") == kind("aten::index") == "embedding"
    assert kind("aten::cumsum") == "scan"
    assert kind("aten::gelu") == "elementwise & other"


def test_stratified_batches_span_the_sizes(step_profile):
    batches = [SimpleNamespace(items=torch.zeros(1, n)) for n in (5, 1, 9, 3, 7, 2, 8, 4, 6, 10)]
    picked = [b.items.numel() for b in step_profile.stratified(batches, 5, 0.5)]
    assert picked == [2, 4, 6, 8, 10]  # evenly spaced quantiles, small to large
    other = [b.items.numel() for b in step_profile.stratified(batches, 5, 0.0)]
    assert other == [1, 3, 5, 7, 9]  # another offset: a disjoint sample


@pytest.mark.slow  # profiles six methods on the tiny shop (about 15 s)
def test_profile_of_every_method_on_the_tiny_shop(step_profile, tmp_path, monkeypatch):
    out = tmp_path / "profile.json"
    argv = ["step_profile.py", "--dataset", "tiny", "--set", "train.threads=1"]
    argv += ["--steps", "3", "--warmup", "1", "--profile-steps", "2", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    step_profile.main()
    doc = json.loads(out.read_text())
    results, details = doc["results"]["tiny"], doc["details"]["tiny"]
    assert list(results) == ["transformer", "mslt", "sru", "core", "sas", "masked"]
    assert results["transformer"]["step_time_ratio"] == [1.0]
    assert [s["n_layers"] for s in details["mslt"]] == [2, 4, 4]
    for stages in details.values():
        for s in stages:
            parts = s["forward_seconds"] + s["backward_seconds"] + s["optimizer_seconds"]
            assert s["step_seconds"] == pytest.approx(parts, abs=2e-4)
            assert 0 < s["encoder_forward_seconds"] <= s["forward_seconds"]
            assert sum(s["self_cpu_share"].values()) == pytest.approx(1.0, abs=1e-3)
            assert s["gflops_per_step"] > 0 and s["steps_timed"] == 3
    frozen = details["mslt"][1]  # top:2: no encoder backward is timed, fewer FLOPs than all
    assert frozen["trainable"] == "top:2" and frozen["encoder_backward_seconds"] is None
    assert frozen["gflops_per_step"] < details["mslt"][2]["gflops_per_step"]
    assert details["mslt"][2]["encoder_backward_seconds"] > 0
    assert len(details["core"]) == 2  # relaxed, then expanded


def test_sampled_loss_kernels_agree():
    sampled_loss = load_benchmark("sampled_loss.py", "sampled_loss")
    threads = torch.get_num_threads()
    try:
        a = sampled_loss.one_case("sampled-materialised", 64, 8, 32, steps=2, threads=1)
        b = sampled_loss.one_case("sampled-fused", 64, 8, 32, steps=2, threads=1)
    finally:
        torch.set_num_threads(threads)
    assert a["candidates"] == b["candidates"] == 96
    assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
    assert a["seconds"] > 0 and b["peak_rss_mb"] > 0
