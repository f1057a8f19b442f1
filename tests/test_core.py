"""CoRe (coarse-refined training): the low-rank FFN expands exactly into full weights; linear
attention (prefix sums) agrees with its (T, T) reference; switching linear -> softmax changes
the function; a CoRe stage plan trains, load_run rebuilds the expanded model, and --resume
across the phase boundary gives the uninterrupted run's weights."""

from __future__ import annotations

import json

import pytest
import torch
from test_engine import small  # noqa: F401  (module fixture)
from test_train import TINY, kill_and_resume

from guim.checkpoint import load_weights
from guim.config import ConfigError, load_config
from guim.models.transformer import LINEAR_ATTENTION, LowRankLinear
from guim.train import build, train

CORE = [
    *TINY,
    "model.n_layers=2",
    "model.ffn_rank=3",
    "model.attention=linear",
    "train.patience=100",
    "train.stages=[{epochs=2}, {epochs=2, expand=true}]",
]


def _histories(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    items = torch.randint(1, 20, (7, 9), generator=g)
    items[:3, :4] = 0  # left padding
    return items, (items > 0).long(), torch.arange(9).expand(7, 9) * 3600


@pytest.mark.parametrize("objective", ["next", "masked"])
def test_expanding_the_low_rank_ffn_is_exact(small, objective):  # noqa: F811
    """Attention kept softmax, only the FFN is relaxed: right after `relax(0, "softmax")` the
    full model (W = V @ U multiplied out) gives the relaxed model's outputs to 1e-5."""
    cfg = load_config(
        None, [*TINY, "model.n_layers=2", "model.ffn_rank=3", f"train.objective={objective}"]
    )
    t = build(cfg, small)
    model = t.model.eval()
    assert isinstance(model.layers()[0].ffn[0], LowRankLinear)
    items, events, times = _histories(model)
    with torch.no_grad():
        before = model.user_vectors(items, events, times)
        model.relax(0, "softmax")
        after = model.user_vectors(items, events, times)
    assert model.model_cfg.ffn_rank == 0
    assert isinstance(model.layers()[1].ffn[3], torch.nn.Linear)
    assert not any(isinstance(m, LowRankLinear) for m in model.modules())
    assert (before - after).abs().max().item() <= 1e-5


def test_switching_linear_to_softmax_attention_changes_the_outputs(small):  # noqa: F811
    """What is NOT exact: linear (kernel) attention and softmax attention are different
    functions of the same q/k/v projections, so after the switch the model's outputs differ
    (the projections are carried over as a warm start, not as an equivalent model). Phase 2
    of CoRe continues training to close that gap."""
    cfg = load_config(None, [*TINY, "model.n_layers=2", "model.attention=linear"])
    model = build(cfg, small).model.eval()
    with torch.no_grad():  # trained-sized projections (at init, attention barely matters)
        for layer in model.layers():
            layer.qkv.weight.normal_(std=0.5)
            layer.out.weight.normal_(std=0.5)
    items, events, times = _histories(model)
    qkv = model.layers()[0].qkv.weight.clone()
    with torch.no_grad():
        before = model.user_vectors(items, events, times)
        model.relax(0, "softmax")
        after = model.user_vectors(items, events, times)
    assert torch.equal(model.layers()[0].qkv.weight, qkv)  # projections carried over
    assert (before - after).abs().max().item() > 0.05  # the function changed


@pytest.mark.parametrize("kernel", ["prefix", "chunked"])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("t", [7, 150])  # 150: two full chunks of 64 and a partial one
def test_linear_attention_kernels_match_the_reference(kernel, causal, t):
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(3, 2, t, 5, generator=g).requires_grad_() for _ in range(3))
    real = torch.ones(3, t, dtype=torch.bool)
    real[0, :3] = False  # left padding
    real[2, : t - 2] = False  # a history of two items
    fast = LINEAR_ATTENTION[kernel](q, k, v, real, causal)
    slow = LINEAR_ATTENTION["reference"](q, k, v, real, causal)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-4)
    weights = torch.randn(fast.shape, generator=g)  # and the same gradients
    got = torch.autograd.grad((fast * weights).sum(), (q, k, v))
    want = torch.autograd.grad((slow * weights).sum(), (q, k, v))
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_core_stage_plan_expands_and_load_run_rebuilds_it(small, tmp_path):  # noqa: F811
    from guim.embed import load_run
    from guim.evaluate import evaluate

    run = train(load_config(None, CORE), small.path, tmp_path / "run", show_progress=False)
    saved = json.loads((run / "config.json").read_text())
    assert saved["model"]["ffn_rank"] == 0 and saved["model"]["attention"] == "softmax"
    assert [(s["ffn_rank"], s["attention"]) for s in saved["train"]["stages"]] == [
        (3, "linear"),
        (0, "softmax"),
    ]
    weights = load_weights(run / "model.safetensors")
    assert "encoder.blocks.0.ffn.0.weight" in weights
    assert not any(".down." in k for k in weights)
    loaded = load_run(run)
    again = evaluate(loaded, small, "loo", "test", ks=(10,))
    metrics = json.loads((run / "metrics.json").read_text())
    assert again["NDCG@10"] == pytest.approx(metrics["test"]["NDCG@10"], abs=1e-12)


class Killed(BaseException):
    """Stands in for kill -9 right after a checkpoint was written."""


def test_resume_across_the_core_phase_boundary(small, tmp_path, monkeypatch):  # noqa: F811
    """A run killed after epoch 2 (its last relaxed epoch) or 3 (its first full one) and
    resumed ends with the uninterrupted run's weights and losses, bit for bit (the kill -9
    version of this test, with a real process, is tests/test_engine.py's stage test)."""
    import guim.train as engine

    cfg = load_config(None, CORE)
    straight = train(cfg, small.path, tmp_path / "straight", show_progress=False)
    save = engine.save_checkpoint
    for killed_after in (2, 3):

        def save_then_die(run_dir, epoch, *args, _n=killed_after, **kwargs):
            save(run_dir, epoch, *args, **kwargs)
            if epoch + 1 == _n:
                raise Killed

        run = tmp_path / f"killed-{killed_after}"
        monkeypatch.setattr(engine, "save_checkpoint", save_then_die)
        with pytest.raises(Killed):
            train(cfg, small.path, run, show_progress=False)
        monkeypatch.setattr(engine, "save_checkpoint", save)
        train(cfg, small.path, run, resume=True, show_progress=False)
        wa, wb = (
            load_weights(straight / "model.safetensors"),
            load_weights(run / "model.safetensors"),
        )
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), killed_after
        losses = [
            [json.loads(x)["loss"] for x in (r / "train_log.jsonl").read_text().splitlines()]
            for r in (straight, run)
        ]
        assert losses[0] == losses[1] and len(losses[0]) == 4


def test_core_config_checks():
    with pytest.raises(ConfigError, match="ffn_rank"):
        load_config(None, [*TINY, "model.ffn_rank=-1"])
    with pytest.raises(ConfigError, match="not change it"):
        load_config(
            None, [*TINY, "model.ffn_rank=4", "train.stages=[{epochs=1}, {epochs=1, ffn_rank=2}]"]
        )
    with pytest.raises(ConfigError, match="transformer"):
        load_config(None, [*TINY, "model.encoder=sru", "model.ffn_rank=4"])


@pytest.mark.slow  # starts and kills a real training process
def test_kill_9_in_phase_2_then_resume(tmp_path):
    kill_and_resume(tmp_path, [*CORE[:-1], "train.stages=[{epochs=2}, {epochs=3, expand=true}]"], 2)
