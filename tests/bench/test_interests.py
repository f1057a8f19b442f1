"""Interest recovery of K vectors against planted interests, on hand-made vectors."""

from __future__ import annotations

import numpy as np
import pytest

from guim.bench.interests import interest_recovery, interest_routing
from guim.metrics import metrics_from_ranks


def test_hand_computed_recovery():
    # 9 items: leaf 1 = items 1-3 (direction e0), leaf 2 = items 4-6 (e1), leaf 3 = items 7-8 (e2)
    items = np.zeros((9, 3), dtype=np.float32)
    items[1:4, 0] = [3, 2, 1]
    items[4:7, 1] = [3, 2, 1]
    items[7:9, 2] = [2, 1]
    leaf = np.array([0, 1, 1, 1, 2, 2, 2, 3, 3])
    users = np.zeros((2, 2, 3), dtype=np.float32)
    users[0, 0] = [1, 0, 0]  # user 0: one vector per planted interest (leaves 1 and 2)
    users[0, 1] = [0, 1, 0]
    users[1, 0] = [1, 0, 0]  # user 1: both vectors on leaf 1; planted {1, 3}
    users[1, 1] = [0.9, 0, 0]
    planted = [{1, 2}, {1, 3}]
    seen = (np.array([0, 0, 1]), np.array([1]))  # user 1 has seen item 1
    out = interest_recovery(users, items, planted, leaf, seen, n=2)
    # user 0: found {1, 2} -> recall 1, precision 1; merged top-2 = items 1 and 4 -> leaves {1, 2}
    # user 1: found {1} -> recall 1/2, precision 1; merged top-2 = items 2, 3 -> leaves {1}
    assert out["interest_recall"] == pytest.approx((1 + 0.5) / 2)
    assert out["interest_precision"] == pytest.approx(1.0)
    assert out["coverage@2"] == pytest.approx((1 + 0.5) / 2)
    assert out["n_users"] == 2


def test_single_vector_recovers_at_most_one_interest():
    rng = np.random.default_rng(0)
    items = rng.normal(size=(50, 8)).astype(np.float32)
    leaf = rng.integers(1, 6, size=50)
    users = rng.normal(size=(30, 1, 8)).astype(np.float32)
    planted = [set(rng.choice(np.arange(1, 6), size=3, replace=False).tolist()) for _ in range(30)]
    seen = (np.zeros(31, dtype=np.int64), np.zeros(0, dtype=np.int64))
    out = interest_recovery(users, items, planted, leaf, seen, n=10)
    assert out["interest_recall"] <= 1 / 3 + 1e-9


def routing_case():
    # items (row 0 padding): 1 = (1, 0), 2 = (0.9, 0), 3 = (0, 1), 4 = (0, 0.8), 5 = (0.5, 0.5)
    items = np.array([[0, 0], [1, 0], [0.9, 0], [0, 1], [0, 0.8], [0.5, 0.5]], dtype=np.float32)
    users = np.array(
        [[[1, 0], [0.1, 1]], [[1, 0.05], [0.1, 1]]], dtype=np.float32
    )  # (2 cases, K = 2, D = 2)
    targets = np.array([2, 4])
    history = (np.array([0, 1, 2]), np.array([5, 1]))  # case 0 saw item 5, case 1 saw item 1
    return users, items, targets, history


def test_routing_hand_computed():
    users, items, targets, history = routing_case()
    # case 0 (target 2): interest 0 ranks it 1 (item 1 above), interest 1 ranks it 3 (1, 3, 4);
    # merged max scores 1: 1, 2: 0.9, 3: 1, 4: 0.8 -> rank 2; the target's own interest is 0;
    # the last item (5) is nearest to interest 1 (0.55 > 0.5) -> rank 3.
    # case 1 (target 4): interest 0 ranks it 3 (2, 3, 5), interest 1 ranks it 1 (item 3);
    # merged 2: 0.9, 3: 1, 4: 0.8, 5: 0.55 -> rank 2; own interest 1; last item 1 -> interest 0.
    out = interest_routing(users, items, targets, history, ks=(2, 3))
    assert out["merged_HR@2"] == 0.0 and out["merged_HR@3"] == 1.0
    assert out["merged_NDCG@3"] == pytest.approx(0.5)  # both at rank 2: 1 / log2(4)
    assert out["routed_HR@2"] == 1.0 and out["oracle_HR@2"] == 1.0
    assert out["routed_NDCG@2"] == pytest.approx(1 / np.log2(3))
    assert out["last_item_HR@3"] == 0.0 and out["oracle_HR@3"] == 1.0
    assert out["lost_to_merging@2"] == 1.0 and out["lost_to_merging@3"] == 0.0


def test_routing_single_interest_is_the_evaluated_ranking():
    from guim.scoring import rank_targets

    rng = np.random.default_rng(1)
    items = rng.normal(size=(40, 6)).astype(np.float32)
    users = rng.normal(size=(25, 1, 6)).astype(np.float32)
    targets = rng.integers(1, 40, size=25)
    lengths = rng.integers(1, 5, size=25)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    flat = rng.integers(1, 40, size=int(offsets[-1]))
    out = interest_routing(users, items, targets, (offsets, flat), ks=(10,))
    ranks = rank_targets(users, items, targets, seen=(offsets, flat))
    expected = metrics_from_ranks(ranks, (10,))["NDCG@10"]
    for way in ("merged", "routed", "oracle", "last_item"):
        assert out[f"{way}_NDCG@10"] == pytest.approx(expected)
    assert out["lost_to_merging@10"] == 0.0


def test_merging_never_ranks_better_than_the_routed_interest():
    rng = np.random.default_rng(2)
    items = rng.normal(size=(60, 8)).astype(np.float32)
    users = rng.normal(size=(50, 4, 8)).astype(np.float32)
    targets = rng.integers(1, 60, size=50)
    offsets = np.arange(0, 101, 2)
    flat = rng.integers(1, 60, size=100)
    out = interest_routing(users, items, targets, (offsets, flat), ks=(5, 10, 20))
    for cut in (5, 10, 20):
        assert out[f"merged_HR@{cut}"] <= out[f"routed_HR@{cut}"] <= out[f"oracle_HR@{cut}"]
        assert out[f"last_item_HR@{cut}"] <= out[f"oracle_HR@{cut}"]


def test_routing_refuses_empty_histories():
    users, items, targets, _ = routing_case()
    with pytest.raises(ValueError, match="empty history"):
        interest_routing(users, items, targets, (np.array([0, 0, 1]), np.array([1])))
