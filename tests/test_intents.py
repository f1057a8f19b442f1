"""Intent contrastive learning (ICLRec): the intents' k-means, the loss against hand-computed
values, and training with it (every epoch's E-step, determinism)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from guim.config import ConfigError, load_config
from guim.losses import intent_info_nce
from guim.trainer.intents import fit_intents, n_intents_for, sequence_vectors


def test_at_most_one_intent_per_39_points():
    assert n_intents_for(100_000, 256) == 256
    assert n_intents_for(1090, 256) == 27  # LastFM's users
    assert n_intents_for(78, 256) == 2
    assert n_intents_for(30, 256) == 1


def planted(n_per: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Points around three orthogonal directions of R^8, with small noise."""
    rng = np.random.default_rng(seed)
    directions = np.eye(8, dtype=np.float32)[[0, 3, 6]]
    x = np.repeat(directions, n_per, axis=0) + 0.05 * rng.standard_normal((3 * n_per, 8))
    return x.astype(np.float32), directions


def test_fit_intents_finds_the_planted_directions_and_is_deterministic():
    x, directions = planted()
    c = fit_intents(x, n_intents=3, seed=1)
    assert c.shape == (3, 8)
    np.testing.assert_allclose(np.linalg.norm(c, axis=1), 1.0, rtol=1e-5)
    cos = c @ directions.T  # every planted direction has one centroid on it
    assert sorted(cos.argmax(axis=0).tolist()) == [0, 1, 2]
    assert (cos.max(axis=0) > 0.99).all()
    np.testing.assert_array_equal(c, fit_intents(x, n_intents=3, seed=1))


def test_too_few_points_for_two_intents_give_the_mean_direction():
    x = np.array([[3.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    c = fit_intents(x, n_intents=16, seed=0)
    np.testing.assert_allclose(c, [[3 / math.sqrt(10), 1 / math.sqrt(10)]], rtol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        fit_intents(np.zeros((0, 4), dtype=np.float32), 4, 0)


def test_sequence_vectors_average_the_interests_and_normalise():
    users = np.array([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 2.0], [0.0, 4.0]]], dtype=np.float32)
    z = sequence_vectors(users)
    np.testing.assert_allclose(z, [[1 / math.sqrt(2), 1 / math.sqrt(2)], [0.0, 1.0]], rtol=1e-6)


def states_of(vectors: list[list[float]]) -> torch.Tensor:
    """(B, T=2, K=1, D) states whose last position holds the given vectors."""
    last = torch.tensor(vectors, dtype=torch.float32)[:, None, None, :]
    return torch.cat([torch.zeros_like(last), last], dim=1).requires_grad_(True)


def test_intent_loss_equals_the_hand_computed_value():
    intents = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    states = states_of([[3.0, 4.0], [2.0, 0.0]])  # normalised: (0.6, 0.8) and (1, 0)
    tau = 0.5
    # window 0 is nearest to intent 1 (0.8 > 0.6), window 1 to intent 0
    first = -math.log(math.exp(0.8 / tau) / (math.exp(0.6 / tau) + math.exp(0.8 / tau)))
    second = -math.log(math.exp(1.0 / tau) / (math.exp(1.0 / tau) + math.exp(0.0)))
    loss = intent_info_nce(states, intents, tau)
    assert loss.item() == pytest.approx((first + second) / 2, rel=1e-6)
    loss.backward()
    assert states.grad is not None and states.grad[:, -1].abs().sum() > 0
    assert states.grad[:, 0].abs().sum() == 0  # only the last position is read


def test_a_second_view_is_pulled_to_the_first_views_intent():
    intents = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    states = states_of([[3.0, 4.0]])  # intent 1
    view = states_of([[4.0, 3.0]])  # nearer intent 0 itself, but scored against intent 1
    tau = 1.0
    first = -math.log(math.exp(0.8) / (math.exp(0.6) + math.exp(0.8)))
    second = -math.log(math.exp(0.6) / (math.exp(0.8) + math.exp(0.6)))
    loss = intent_info_nce(states, intents, tau, view)
    assert loss.item() == pytest.approx((first + second) / 2, rel=1e-6)


def test_intent_settings_are_checked():
    with pytest.raises(ConfigError, match="n_intents"):
        load_config(None, ["loss.n_intents=1"])
    with pytest.raises(ConfigError, match="intent_weight"):
        load_config(None, ["loss.intent_weight=-0.1"])
    with pytest.raises(ConfigError, match="intent_temperature"):
        load_config(None, ["loss.intent_temperature=0"])


def test_training_refits_the_intents_every_epoch_and_is_deterministic(tmp_path, monkeypatch):
    from test_train import TINY, s3rec_dataset

    from guim import train as train_module
    from guim.checkpoint import load_weights

    ds = s3rec_dataset(tmp_path, n_users=300, n_items=60, length=30)
    base = [*TINY, "train.epochs=3", "train.patience=100"]
    cfg = load_config(None, [*base, "loss.intent_weight=0.5", "loss.n_intents=6"])
    fitted = []
    original = train_module.intent_centroids

    def spy(model, cfg, seqs, seed):
        c = original(model, cfg, seqs, seed)
        fitted.append((seed, tuple(c.shape)))
        return c

    monkeypatch.setattr(train_module, "intent_centroids", spy)
    a = train_module.train(cfg, ds.path, tmp_path / "a", show_progress=False)
    assert [shape for _, shape in fitted] == [(6, 16)] * 3  # 300 users allow 7; 6 asked
    assert len({seed for seed, _ in fitted}) == 3  # a fresh k-means seed every epoch
    b = train_module.train(cfg, ds.path, tmp_path / "b", show_progress=False)
    plain = train_module.train(load_config(None, base), ds.path, tmp_path / "plain",
                               show_progress=False)  # fmt: skip
    wa, wb = load_weights(a / "model.safetensors"), load_weights(b / "model.safetensors")
    wp = load_weights(plain / "model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert any(not torch.equal(wa[k], wp[k]) for k in wa)  # the term changed the training
