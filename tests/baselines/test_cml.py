"""CML baseline: the dot-product augmentation ranks exactly like distance, hand-computed loss and
training pairs, unit-ball constraint, planted groups, determinism, cold items from attributes,
save/load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from guim import baselines
from guim.baselines.cml import (
    FAR,
    FROM_ATTRIBUTES,
    TRAINED,
    augment_items,
    augment_users,
    cml_loss,
    covariance_loss,
    training_pairs,
)
from guim.data.dataset import Dataset, Sequences
from guim.data.prepare import PrepareConfig, prepare
from guim.data.raw import ROW, Locator, RawData, Table
from guim.embed import recommend
from guim.evaluate import rank_cases
from guim.metrics import MISS, rank_targets

SMALL = {"dim": 12, "epochs": 30, "batch_size": 64, "lr": 0.02, "last_n": 1}


def make_dataset(
    path: Path,
    sequences: list[list[int]],
    item_fields: dict[str, dict[int, str]] | None = None,
    cold_fraction: float = 0.0,
) -> Dataset:
    """A prepared dataset from per-user item sequences (timestamps = positions) and optional
    categorical item fields {field: {item_id: value}}."""
    users = [f"u{u:04d}" for u, seq in enumerate(sequences) for _ in seq]
    items = [i for seq in sequences for i in seq]
    times = [t for seq in sequences for t in range(len(seq))]
    events = pl.DataFrame(
        {"user_id": users, "item_id": items, "timestamp": times, ROW: range(len(users))},
        schema_overrides={ROW: pl.UInt64},
    )
    table = None
    if item_fields:
        ids = sorted(set(items))
        frame = pl.DataFrame(
            {
                "item_id": ids,
                **{f: [values.get(i) for i in ids] for f, values in item_fields.items()},
                ROW: range(len(ids)),
            },
            schema_overrides={ROW: pl.UInt64},
        )
        table = Table(frame, Locator(files=("items",), is_text=False))
    raw = RawData(events.lazy(), Locator(files=("events",)), items=table)
    config = PrepareConfig(name=path.name, cold_fraction=cold_fraction)
    return Dataset(prepare(raw, path, config, show_progress=False))


@pytest.fixture(scope="module")
def groups_dataset(tmp_path_factory) -> Dataset:
    """24 items in 6 planted groups of 4 (items 4g+1..4g+4); a user consumes one group's items
    twice over in random orders, so items of a group always co-occur and never with others."""
    rng = np.random.default_rng(0)
    sequences = []
    for u in range(240):
        first, second = rng.permutation(4), rng.permutation(4)
        if second[0] == first[-1]:  # no immediate repeat (prepare would merge it)
            second = second[::-1]
        sequences.append([int(i) + 1 + 4 * (u % 6) for i in np.concatenate([first, second])])
    return make_dataset(tmp_path_factory.mktemp("groups") / "groups", sequences)


@pytest.fixture(scope="module")
def clusters_dataset(tmp_path_factory) -> Dataset:
    """Two brands of 12 items; each user buys within one brand; colour is noise. 25% of the items
    are cold (never in training)."""
    rng = np.random.default_rng(1)
    sequences = [list(rng.choice(12, size=6, replace=False) + 1 + 12 * (u % 2)) for u in range(300)]
    fields = {
        "brand": {i: "AB"[(i - 1) // 12] for i in range(1, 25)},
        "colour": {i: str(rng.choice(["red", "green", "blue"])) for i in range(1, 25)},
    }
    path = tmp_path_factory.mktemp("clusters") / "clusters"
    return make_dataset(path, sequences, fields, cold_fraction=0.25)


# ---- scoring by augmented dot products ---------------------------------------------------------


def test_augmented_dot_product_is_negative_squared_distance() -> None:
    rng = np.random.default_rng(3)
    users, items = rng.standard_normal((40, 9)), rng.standard_normal((300, 9))
    users /= np.maximum(np.linalg.norm(users, axis=1, keepdims=True), 1.0)  # into the unit ball
    items /= np.maximum(np.linalg.norm(items, axis=1, keepdims=True), 1.0)
    known = rng.random(300) > 0.1
    dist = ((users[:, None, :] - items[None, :, :]) ** 2).sum(axis=2)  # (40, 300) float64
    scores = augment_users(users).astype(np.float64) @ augment_items(items, known).T
    np.testing.assert_allclose(scores[:, known], -dist[:, known], atol=1e-6)
    # items without a vector sit at squared distance |u|^2 + FAR, below every in-ball item
    sq = (users**2).sum(axis=1)
    far = np.broadcast_to(-(sq + FAR)[:, None], (40, (~known).sum()))
    np.testing.assert_allclose(scores[:, ~known], far, atol=1e-6)
    assert (scores[:, ~known].max(axis=1) < scores[:, known].min(axis=1)).all()

    # exact ranks through the evaluation path equal ranks by distance (pessimistic ties)
    targets = rng.choice(np.flatnonzero(known), size=40)
    item_table = np.vstack([np.zeros((1, 11), np.float32), augment_items(items, known)])
    ranks = rank_targets(augment_users(users)[:, None, :], item_table, targets + 1)
    d_known = np.where(known, dist, np.inf)
    expected = [(d_known[c] <= d_known[c, t]).sum() - 1 for c, t in enumerate(targets)]
    assert ranks.tolist() == expected


def test_recommend_orders_by_distance(groups_dataset: Dataset) -> None:
    model = baselines.build("cml", groups_dataset, **{**SMALL, "epochs": 3})
    histories = Sequences.from_lists([[1], [5, 9], [2, 3, 4]])
    top, scores = recommend(model, histories, k=24, mask_history=False)
    users = model.user_vectors(histories).astype(np.float64)
    items = model.item_vectors[1:].astype(np.float64)
    dist = ((users[:, None, :] - items[None]) ** 2).sum(axis=2)  # (3, 24)
    np.testing.assert_array_equal(top, np.argsort(dist, axis=1, kind="stable") + 1)
    np.testing.assert_allclose(scores, -np.sort(dist, axis=1), atol=1e-5)


# ---- loss and training pairs by hand -------------------------------------------------------------


def test_cml_loss_by_hand() -> None:
    users = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    positives = torch.tensor([[0.5, 0.0], [0.1, 0.0]])  # d^2 = 0.25, 0.01
    negatives = torch.tensor(
        [[[0.6, 0.0], [0.0, 0.4], [1.0, 0.0]], [[0.0, 0.9], [0.5, 0.5], [1.0, 0.0]]]
    )  # d^2: [0.36, 0.16, 1.0], [0.81, 0.5, 1.0]
    # margin 0.3: user 0 violators 0.36 and 0.16 (0.55 > both), hinge vs the closest 0.16 -> 0.39;
    # user 1: 0.31 > none -> 0
    unweighted = cml_loss(users, positives, negatives, margin=0.3, n_items=None)
    assert unweighted.item() == pytest.approx((0.39 + 0.0) / 2)
    # rank weight with N = 30, U = 3: log(1 + floor(30 * 2 / 3)) = log(21)
    weighted = cml_loss(users, positives, negatives, margin=0.3, n_items=30)
    assert weighted.item() == pytest.approx(np.log(21) * 0.39 / 2)
    # an excluded negative (the positive itself) is neither the closest nor a violator
    excluded = torch.tensor([[False, True, False], [False, False, False]])
    out = cml_loss(users, positives, negatives, 0.3, n_items=30, excluded=excluded)
    assert out.item() == pytest.approx(np.log(1 + 10) * (0.55 - 0.36) / 2)


def test_covariance_loss_by_hand() -> None:
    points = torch.tensor([[1.0, 1.0, 0.0], [-1.0, -1.0, 0.0], [1.0, -1.0, 2.0], [-1.0, 1.0, 2.0]])
    # centred; cov = [[1, 0, 0], [0, 1, 0], [0, 0, 1]] -> no off-diagonal mass
    assert covariance_loss(points).item() == pytest.approx(0.0)
    correlated = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])  # cov = [[1, 1], [1, 1]]
    assert covariance_loss(correlated).item() == pytest.approx(2.0 / 2)


def test_training_pairs_are_prefixes_and_next_items() -> None:
    train = Sequences.from_lists([[4, 5, 6, 7], [8], [9, 3]])
    contexts, targets = training_pairs(train, last_n=2)
    assert targets.tolist() == [5, 6, 7, 3]
    assert contexts.tolist() == [[0, 4], [4, 5], [5, 6], [0, 9]]


# ---- fitting ---------------------------------------------------------------------------------


def test_embeddings_stay_in_the_unit_ball(groups_dataset: Dataset) -> None:
    # a large learning rate and margin push rows outwards; the clip must hold them
    model = baselines.build("cml", groups_dataset, **{**SMALL, "lr": 0.2, "margin": 2.0})
    for table in (model.item_vectors, model.context_vectors):
        norms = np.linalg.norm(table, axis=1)
        assert norms.max() <= 1.0 + 1e-5
        assert norms[1:].max() > 0.99  # the constraint is active, not vacuous
    users = model.user_vectors(Sequences.from_lists([[1, 7, 13, 20], [2], []]))
    assert (np.linalg.norm(users, axis=1) <= 1.0 + 1e-5).all()
    assert not users[2].any()  # an empty history is the origin


def test_cml_learns_planted_groups_and_beats_random(groups_dataset: Dataset) -> None:
    model = baselines.build("cml", groups_dataset, **SMALL)
    assert (model.item_source[1:] == TRAINED).all()
    items = np.arange(1, 25)
    group = (items - 1) // 4
    top, _ = recommend(model, Sequences.from_lists([[i] for i in items]), k=3)
    for item, found in zip(items, top, strict=True):
        assert set(found) == set(items[group == group[item - 1]]) - {item}, item
    # leave-one-out test: every target repeats an item of the user's group (a miss when the
    # history is masked); unmasked, the target is among the 4 group items at the top
    cases = groups_dataset.eval_cases("loo", "test")
    ranks = rank_cases(model, cases, mask_history=False)
    chance = rank_cases(baselines.build("random", groups_dataset, dim=12), cases, False)
    assert (ranks < 4).mean() > 0.95
    assert (chance < 4).mean() < 0.3
    assert (rank_cases(model, cases) == MISS).all()


def test_cml_is_deterministic(groups_dataset: Dataset) -> None:
    settings = {**SMALL, "epochs": 3, "last_n": 2}
    a = baselines.build("cml", groups_dataset, **settings)
    b = baselines.build("cml", groups_dataset, **settings)
    np.testing.assert_array_equal(a.item_vectors, b.item_vectors)
    np.testing.assert_array_equal(a.context_vectors, b.context_vectors)
    c = baselines.build("cml", groups_dataset, **{**settings, "seed": 1})
    assert not np.allclose(a.item_vectors, c.item_vectors)
    # fit trains with `threads` torch threads and gives the caller's setting back
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        d = baselines.build("cml", groups_dataset, **settings)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    np.testing.assert_array_equal(a.item_vectors, d.item_vectors)


def test_cold_items_land_near_warm_items_of_their_brand(clusters_dataset: Dataset) -> None:
    ds = clusters_dataset
    cold = np.flatnonzero(ds.item_cold > 0)
    assert len(cold) == 6
    model = baselines.build("cml", ds, "cold", **SMALL)
    assert (model.item_source[cold] == FROM_ATTRIBUTES).all()
    vecs = model.item_vectors
    assert np.isfinite(vecs[cold]).all()
    assert (np.linalg.norm(vecs[cold], axis=1) <= 1.0 + 1e-5).all()
    brand = (np.arange(25) - 1) // 12  # 0 = A (items 1..12), 1 = B (13..24)
    warm = np.flatnonzero(ds.item_cold == 0)[1:]
    for item in cold:
        dist = ((vecs[warm] - vecs[item]) ** 2).sum(axis=1)
        same, other = dist[brand[warm] == brand[item]], dist[brand[warm] != brand[item]]
        assert same.mean() < other.mean(), (item, same.mean(), other.mean())
    # through the evaluation path: a user's first cold item is of the user's brand, so it must
    # rank among the cold test items of that brand
    cases = ds.eval_cases("cold", "test")
    test_cold = np.flatnonzero(ds.item_cold == 2)
    assert len(set(brand[test_cold])) == 2
    same_brand = np.array([(brand[test_cold] == brand[t]).sum() for t in cases.target])
    assert (rank_cases(model, cases) < same_brand).all()


def test_save_load_round_trip(clusters_dataset: Dataset, tmp_path: Path) -> None:
    model = baselines.build("cml", clusters_dataset, "cold", **{**SMALL, "epochs": 2})
    baselines.save(model, tmp_path / "cml", fit_seconds=0.5)
    again = baselines.load(tmp_path / "cml")
    assert type(again) is type(model)
    assert again.name == "cml" and again.config == model.config
    np.testing.assert_array_equal(again.embed_items(), model.embed_items())
    np.testing.assert_array_equal(again.item_source, model.item_source)
    cases = clusters_dataset.eval_cases("cold", "test")
    np.testing.assert_array_equal(
        again.embed_users(cases.history), model.embed_users(cases.history)
    )


def test_config_is_validated(groups_dataset: Dataset) -> None:
    with pytest.raises(ValueError, match="margin"):
        baselines.build("cml", groups_dataset, margin=0.0)
    with pytest.raises(ValueError, match="optimizer"):
        baselines.build("cml", groups_dataset, optimizer="sgd")
    with pytest.raises(ValueError, match="unknown cml setting"):
        baselines.build("cml", groups_dataset, window=3)
