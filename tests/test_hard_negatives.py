"""Retrieved hard negatives (CARDS, loss.hard_negatives) and the CL4SRec reorder view."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from guim.config import ConfigError, LossConfig, load_config
from guim.data.batches import Batch, contrastive_view
from guim.sampling import NegativeSampler

# ---- the reorder view ----------------------------------------------------------------------


def test_reorder_view_shuffles_one_contiguous_span_of_each_row():
    """Each row keeps its padding and its multiset of items; the positions that changed lie in
    one span of at most max(1, rate x n) real positions; events move with their items."""
    cfg = load_config(None, ["loss.contrastive_view=reorder", "loss.contrastive_rate=0.4"])
    rng = np.random.default_rng(0)
    b, t = 64, 12
    items = torch.zeros((b, t), dtype=torch.long)
    for row in range(b):
        n = int(rng.integers(0, t + 1))
        items[row, t - n :] = torch.from_numpy(rng.permutation(np.arange(1, 40))[:n])
    batch = Batch(items, items * 10, torch.zeros_like(items), torch.zeros_like(items), None)
    changed_rows = 0
    for seed in range(5):
        view = contrastive_view(batch, cfg, torch.Generator().manual_seed(seed))
        assert torch.equal(view.events, view.items * 10)  # each event moved with its item
        for row in range(b):
            before, after = items[row], view.items[row]
            n = int((before > 0).sum())
            assert torch.equal(before[: t - n], after[: t - n])  # padding untouched
            assert sorted(before.tolist()) == sorted(after.tolist())
            moved = (before != after).nonzero().flatten()
            if len(moved):
                changed_rows += 1
                assert int(moved[-1] - moved[0]) + 1 <= max(1, int(n * 0.4))
    assert changed_rows > b  # really reordered, in many rows


def test_reorder_view_moves_the_masked_flags_with_their_items():
    cfg = load_config(None, ["loss.contrastive_view=reorder", "loss.contrastive_rate=1.0"])
    items = torch.arange(1, 9).repeat(3, 1)
    masked = items % 3 == 0
    batch = Batch(items, items, items, torch.zeros_like(items), masked)
    view = contrastive_view(batch, cfg, torch.Generator().manual_seed(0))
    assert not torch.equal(view.items, items)
    assert torch.equal(view.masked, view.items % 3 == 0)


# ---- the index of the current item vectors -------------------------------------------------


def sampler_with(vectors: np.ndarray, known: np.ndarray, **cfg) -> NegativeSampler:
    pop = known.astype(np.int64)
    s = NegativeSampler(LossConfig(kind="sampled", **cfg), pop, known)
    s.refresh(vectors)
    return s


def test_refresh_keeps_each_items_nearest_known_items_by_inner_product():
    # items on a line: item i has vector (i, 1); inner products with item j: i*j + 1, so the
    # nearest of every item are the largest known items, in decreasing order
    n = 6
    vectors = np.zeros((n + 1, 2), dtype=np.float32)
    vectors[1:, 0] = np.arange(1, n + 1)
    vectors[1:, 1] = 1.0
    known = np.array([False, True, True, False, True, True, True])  # item 3 never trained
    s = sampler_with(vectors, known, hard_neighbours=2, hard_skip=1)
    table = s.neighbours.numpy()
    assert table.shape == (n + 1, 3)
    assert (table[[0, 3]] == -1).all()  # padding and unknown items have none
    np.testing.assert_array_equal(table[1], [6, 5, 4])
    np.testing.assert_array_equal(table[6], [5, 4, 2])  # never itself
    np.testing.assert_array_equal(table[4], [6, 5, 2])
    assert 3 not in table  # an unknown item is never a negative


def test_refresh_with_fewer_items_than_asked_pads_with_none():
    vectors = np.eye(4, dtype=np.float32)
    s = sampler_with(vectors, np.array([False, True, True, True]), hard_neighbours=8, hard_skip=2)
    table = s.neighbours.numpy()
    assert table.shape == (4, 10)
    for item in (1, 2, 3):
        others = set(table[item][table[item] > 0].tolist())
        assert others == {1, 2, 3} - {item}


# ---- hard negatives in the candidate set ---------------------------------------------------


def ring_sampler(**cfg) -> NegativeSampler:
    """20 items on a circle: item i's nearest are i +- 1, then i +- 2, ..."""
    n = 20
    angle = 2 * np.pi * np.arange(n) / n
    vectors = np.zeros((n + 1, 2), dtype=np.float32)
    vectors[1:] = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return sampler_with(vectors, np.ones(n + 1, dtype=bool) & (np.arange(n + 1) > 0), **cfg)


def test_hard_negatives_skip_the_nearest_and_have_log_q_zero():
    s = ring_sampler(n_negatives=1, hard_negatives=2, hard_neighbours=2, hard_skip=2)
    gen = torch.Generator().manual_seed(0)
    targets = torch.tensor([10])
    c = s.candidates(targets, gen)
    hard = set(c.items[c.hard].tolist())
    # the skipped two are 9 and 11 (distance 1); the next two are 8 and 12 (distance 2)
    assert hard == {8, 12}
    assert (c.log_q[c.hard] == 0).all()
    others = ~c.hard
    assert (c.log_q[others] < 0).all()  # sampled by chance: inclusion probability below 1
    # without hard negatives the candidates are the ones the sampler gave before
    plain = ring_sampler(n_negatives=1)
    d = plain.candidates(targets, torch.Generator().manual_seed(0))
    assert d.hard is None and d.allowed is None


def test_a_hard_negative_in_the_rows_own_window_is_masked_for_that_row_only():
    s = ring_sampler(n_negatives=1, hard_negatives=8, hard_neighbours=4, hard_skip=0)
    targets = torch.tensor([10, 3])
    windows = torch.tensor([[0, 9, 11, 10], [0, 0, 2, 3]])  # row 0 holds 9 and 11
    c = s.candidates(targets, torch.Generator().manual_seed(1), windows, torch.tensor([0, 1]))
    assert c.allowed is not None and c.allowed.shape == (2, len(c.items))
    col = {int(item): j for j, item in enumerate(c.items)}
    for item in (9, 11):
        if item in col and c.hard[col[item]]:
            assert not c.allowed[0, col[item]]  # row 0's own history: a false negative
            assert c.allowed[1, col[item]]  # a true negative for row 1
    assert c.allowed[0, c.positive[0]] and c.allowed[1, c.positive[1]]
    blocked = (~c.allowed).nonzero()
    assert len(blocked) and c.hard[blocked[:, 1]].all()  # only hard negatives are masked


def test_before_the_first_refresh_there_are_no_hard_negatives():
    pop = np.array([0, 3, 2, 1])
    s = NegativeSampler(LossConfig(kind="sampled", hard_negatives=4), pop, pop > 0)
    c = s.candidates(torch.tensor([1]), torch.Generator().manual_seed(0))
    assert c.hard is None


def test_hard_negatives_need_the_sampled_loss():
    with pytest.raises(ConfigError, match="hard_negatives"):
        load_config(None, ["loss.hard_negatives=64"])
    with pytest.raises(ConfigError, match="hard_skip"):
        load_config(None, ["loss.kind=sampled", "loss.hard_skip=-1"])


# ---- training with them ----------------------------------------------------------------------


def test_training_with_hard_negatives_learns_and_is_deterministic(tmp_path, monkeypatch):
    """Item cycles (every user walks i -> i + step): the sampled loss with retrieved hard
    negatives learns them; the index is rebuilt every epoch and every `hard_refresh_steps`
    steps; two runs give the same weights."""
    from test_train import TINY, s3rec_dataset

    from guim import train as train_module
    from guim.checkpoint import load_weights
    from guim.io import read_json

    ds = s3rec_dataset(tmp_path, n_users=300, n_items=60, length=30)
    overrides = [
        *TINY,
        "model.dropout=0.1",
        "model.attn_dropout=0.1",
        "train.epochs=4",
        "loss.kind=sampled",
        "loss.n_negatives=8",
        "loss.hard_negatives=16",
        "loss.hard_neighbours=4",
        "loss.hard_skip=1",
        "loss.hard_refresh_steps=5",
    ]
    cfg = load_config(None, overrides)
    refreshes = []
    original = train_module.refresh_hard_negatives
    monkeypatch.setattr(
        train_module,
        "refresh_hard_negatives",
        lambda t: (refreshes.append(t.state.step), original(t)),
    )
    a = train_module.train(cfg, ds.path, tmp_path / "a", show_progress=False)
    assert refreshes[:2] == [0, 5] and len(refreshes) >= 8  # each epoch's start, every 5 steps
    metrics = read_json(a / "metrics.json")
    assert metrics["valid_NDCG@10"] > 0.3  # popularity is ~0.1 on 60 uniform items
    b = train_module.train(cfg, ds.path, tmp_path / "b", show_progress=False)
    wa, wb = load_weights(a / "model.safetensors"), load_weights(b / "model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
