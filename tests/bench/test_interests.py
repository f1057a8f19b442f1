"""Interest recovery of K vectors against planted interests, on hand-made vectors."""

from __future__ import annotations

import numpy as np
import pytest

from guim.bench.interests import interest_recovery


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
