"""SAS objective: detection labels by hand; replacements read in epoch e are exactly what epoch
e - 1 stored (nothing of the current epoch leaks in), drawn only at the events masked then and
never the true item (no-hit); a SAS run trains end to end, saves no detection head, resumes
bit for bit, and load_run + `guim eval` work on it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_engine import small  # noqa: F401  (module fixture)
from test_train import TINY

import guim.train as engine
from guim.checkpoint import load_weights
from guim.config import load_config
from guim.data.batches import make_batches
from guim.sas import apply_replacements, sample_replacements
from guim.train import build, train, train_epoch

SAS = [*TINY, "train.objective=sas", "train.patience=100", "train.epochs=3"]


def test_detection_labels_by_hand():
    items = torch.tensor([[0, 5, 0, 7, 8], [3, 4, 6, 0, 9]])  # row 0: padding, masked at 2
    masked = torch.tensor([[False, False, True, False, False], [False, False, False, True, False]])
    index = torch.tensor([[-1, 0, 1, 2, 3], [4, 5, 6, 7, 8]])
    previous = torch.tensor([9, 2, 0, 8, 1, 0, 6, 2, 0])  # event -> stored item (0 = none)
    inputs, replaced = apply_replacements(items, masked, index, previous)
    # event 0 (pos 1) -> 9 replaces 5; event 1 is masked now: stays masked (0); event 2 has none;
    # event 3 stored its own item 8 (a "hit"): input unchanged, not replaced; event 4 -> 1
    # replaces 3; event 6 stored 6 = its item; event 7 masked; event 8 none
    assert inputs.tolist() == [[0, 9, 0, 7, 8], [1, 4, 6, 0, 9]]
    assert replaced.tolist() == [
        [False, True, False, False, False],
        [True, False, False, False, False],
    ]
    same, none = apply_replacements(items, masked, index, None)  # cold start
    assert torch.equal(same, items) and not none.any()


def test_no_hit_sampling_never_draws_the_true_item():
    scores = torch.zeros(200, 6)
    scores[:, 3] = 50.0  # the true item would be drawn almost surely
    true = torch.full((200,), 3)
    allowed = torch.tensor([False, True, True, True, True, False])
    g = torch.Generator().manual_seed(0)
    drawn = sample_replacements(scores, true, allowed, 1.0, True, g)
    assert set(drawn.tolist()) == {1, 2, 4}
    hit = sample_replacements(scores, true, allowed, 1.0, False, g)
    assert (hit == 3).all()


def test_replacements_are_the_previous_epochs_only(small, monkeypatch):  # noqa: F811
    """Epoch 0 reads nothing; every step of epoch e reads the buffer epoch e - 1 finished with,
    unchanged during epoch e (this epoch's samples go to another buffer); the buffer epoch e
    leaves holds a replacement exactly at the events it masked, never the true item."""
    cfg = load_config(None, SAS)
    t = build(cfg, small)
    seen: list[torch.Tensor | None] = []

    def spy(items, masked, index, previous):
        seen.append(None if previous is None else previous.clone())
        return apply_replacements(items, masked, index, previous)

    monkeypatch.setattr(engine, "apply_replacements", spy)
    written = []
    for epoch in range(3):
        seen.clear()
        before = None if t.sas_previous is None else t.sas_previous.clone()
        train_epoch(t, epoch, show_progress=False)
        assert seen, "no SAS step ran"
        if epoch == 0:
            assert all(s is None for s in seen)
        else:
            assert all(torch.equal(s, written[-1]) for s in seen)
            assert torch.equal(before, written[-1])
        written.append(t.sas_previous.clone())
        # the events this epoch masked: rebuild its batches from the same random stream
        rng = np.random.default_rng([cfg.train.seed, epoch])
        batches = make_batches(t.seqs, cfg.data, cfg.train, rng)
        masked_events = torch.cat([b.event_index[b.targets > 0] for b in batches])
        stored = written[-1].nonzero().squeeze(1)
        assert torch.equal(stored, masked_events.unique())
        truth = torch.from_numpy(np.asarray(t.seqs.item_idx))
        assert (written[-1][stored] != truth[stored]).all()  # no-hit
    assert not torch.equal(written[1], written[2])


def test_sas_run_trains_resumes_and_loads(small, tmp_path, monkeypatch):  # noqa: F811
    from typer.testing import CliRunner

    from guim.cli import app
    from guim.embed import load_run
    from guim.evaluate import evaluate

    cfg = load_config(None, SAS)
    run = train(cfg, small.path, tmp_path / "sas", show_progress=False)
    log = [json.loads(x) for x in (run / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 3 and log[2]["loss"] < log[0]["loss"] * 1.5
    weights = load_weights(run / "model.safetensors")
    assert not any(k.startswith("detector.") for k in weights)
    loaded = load_run(run)
    assert not loaded.model.causal
    metrics = json.loads((run / "metrics.json").read_text())
    again = evaluate(loaded, small, "loo", "test", ks=(10,))
    assert again["NDCG@10"] == pytest.approx(metrics["test"]["NDCG@10"], abs=1e-12)
    assert metrics["test"]["NDCG@10"] > 0
    out = CliRunner().invoke(app, ["eval", str(run), "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output[out.output.index("{") :])["guim"]["NDCG@10"] == pytest.approx(
        metrics["test"]["NDCG@10"], abs=1e-9
    )

    # killed after epoch 2 (its replacements saved with the checkpoint) and resumed
    class Killed(BaseException):
        pass

    save = engine.save_checkpoint

    def save_then_die(run_dir, epoch, *args, **kwargs):
        save(run_dir, epoch, *args, **kwargs)
        if epoch == 1:
            raise Killed

    monkeypatch.setattr(engine, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        train(cfg, small.path, tmp_path / "killed", show_progress=False)
    monkeypatch.setattr(engine, "save_checkpoint", save)
    resumed = train(cfg, small.path, tmp_path / "killed", resume=True, show_progress=False)
    wb = load_weights(resumed / "model.safetensors")
    assert all(torch.equal(weights[k], wb[k]) for k in weights)


def test_candidate_sampling_stays_in_the_candidates_and_applies_log_q():
    scores = torch.zeros(300, 4)
    columns = torch.tensor([5, 2, 9, 7])  # the items of the four candidate columns
    true = torch.tensor([2, 7, 5] * 100)
    allowed = torch.ones(10, dtype=torch.bool)
    allowed[[0, 9]] = False  # item 9 never seen in training
    g = torch.Generator().manual_seed(0)
    drawn = sample_replacements(scores, true, allowed, 1.0, True, g, columns=columns)
    assert set(drawn.tolist()) <= {5, 2, 7}
    assert (drawn != true).all() and (drawn > 0).all()
    assert set(drawn[true == 2].tolist()) == {5, 7}  # both others, equally likely
    # logQ: a candidate expected e^30 times in the sample is (almost) never drawn
    log_q = torch.tensor([0.0, 0.0, 0.0, 30.0])
    drawn = sample_replacements(scores, true, allowed, 1.0, True, g, columns, log_q)
    assert (drawn[true == 2] == 5).all()
    # a row whose every candidate is excluded stores no replacement
    lone = sample_replacements(torch.zeros(1, 2), torch.tensor([5]), allowed, 1.0, True, g,
                               columns=torch.tensor([5, 9]))  # fmt: skip
    assert lone.tolist() == [0]


def test_sampled_loss_draws_among_the_candidates(small):  # noqa: F811
    """Under the sampled loss the forward scores only the candidates, and the replacements are
    drawn among them (logQ-corrected): items seen in training, never padding, never the true
    item."""
    cfg = load_config(None, [*SAS, "loss.kind=sampled", "loss.n_negatives=7"])
    t = build(cfg, small)
    for epoch in range(2):
        train_epoch(t, epoch, show_progress=False)
    stored = t.sas_previous.nonzero().squeeze(1)
    assert len(stored) > 0
    drawn = t.sas_previous[stored]
    assert t.known[drawn].all()
    truth = torch.from_numpy(np.asarray(t.seqs.item_idx))
    assert (drawn != truth[stored]).all()


@pytest.mark.slow  # starts and kills a real training process
def test_kill_9_mid_run_then_resume(tmp_path):
    """The stored replacements travel with the checkpoint: the resumed run reads the same."""
    from test_train import kill_and_resume

    kill_and_resume(tmp_path, [*SAS[:-1], "train.epochs=5"], 2)


def test_detection_head_trains_in_a_top_n_stage(small):  # noqa: F811
    from guim.train import enter_stage

    stages = "train.stages=[{epochs=1}, {epochs=1, n_layers=2, trainable='top:1'}]"
    t = build(load_config(None, [*SAS[:-1], stages]), small)
    enter_stage(t, 1, restore_best=False)
    assert all(p.requires_grad for p in t.model.detector.parameters())
    assert not any(p.requires_grad for p in t.model.layers()[0].parameters())
