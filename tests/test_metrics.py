"""Exact metric values against hand computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from guim.metrics import (
    MISS,
    max_dot,
    metrics_from_ranks,
    paired_difference,
    per_case,
    rank_targets,
    standard_error,
)


def test_metrics_from_ranks_hand_computed():
    # ranks 0, 3, 12, 25: HR@10 = 2/4; NDCG@10 = (1/log2(2) + 1/log2(5)) / 4
    m = metrics_from_ranks(np.array([0, 3, 12, 25]), ks=(10, 20))
    assert m["HR@10"] == pytest.approx(0.5)
    assert m["NDCG@10"] == pytest.approx((1.0 + 1.0 / math.log2(5)) / 4)
    assert m["MRR@10"] == pytest.approx((1.0 + 0.25) / 4)
    assert m["HR@20"] == pytest.approx(0.75)
    assert m["NDCG@20"] == pytest.approx((1.0 + 1.0 / math.log2(5) + 1.0 / math.log2(14)) / 4)
    assert m["MRR@20"] == pytest.approx((1.0 + 0.25 + 1.0 / 13) / 4)


def test_rank_with_masking_candidates_and_ties():
    # 6 rows: padding + 5 items with 1-d "vectors" = their scores for a user vector [1]
    items = np.array([[100.0], [5.0], [4.0], [4.0], [3.0], [1.0]])
    users = np.ones((4, 1))
    targets = np.array([3, 3, 4, 1])
    # case 0: target 3 (score 4) ties with item 2 -> pessimistic: items 1, 2 above -> rank 2
    # case 1: same but item 1 masked as seen -> rank 1; padding (score 100) is never ranked
    # case 2: target 4 with items 1, 2 seen and the target itself seen -> masked: a miss
    # case 3: target 1 restricted later to candidates; here plain rank 0
    seen_offsets = np.array([0, 0, 1, 4, 4])
    seen_items = np.array([1, 1, 2, 4])
    ranks = rank_targets(users, items, targets, seen=(seen_offsets, seen_items), chunk_size=2)
    assert ranks.tolist() == [2, 1, MISS, 0]
    cand = np.array([False, False, True, True, True, False])
    r = rank_targets(users[:1], items, targets[:1], candidates=cand)
    assert r.tolist() == [1]  # only item 2 (tie) above among candidates {2, 3, 4}


def test_all_equal_scores_get_worst_rank():
    items = np.zeros((11, 4))
    ranks = rank_targets(np.ones((3, 4)), items, np.array([1, 5, 10]))
    assert ranks.tolist() == [9, 9, 9]


def test_identical_vectors_tie_despite_rounding():
    rng = np.random.default_rng(0)
    items = rng.normal(size=(50, 16)).astype(np.float32)
    items[7] = items[3]
    users = rng.normal(size=(5, 16)).astype(np.float32)
    r3 = rank_targets(users, items, np.full(5, 3))
    r7 = rank_targets(users, items, np.full(5, 7))
    assert (r3 == r7).all()


def test_chunking_and_batching_do_not_change_ranks():
    rng = np.random.default_rng(1)
    items = rng.normal(size=(101, 8))
    users = rng.normal(size=(37, 3, 8))
    targets = rng.integers(1, 101, size=37)
    offsets = np.arange(0, 38 * 2, 2)
    seen = rng.integers(1, 101, size=offsets[-1])
    a = rank_targets(users, items, targets, seen=(offsets, seen))
    b = rank_targets(users, items, targets, seen=(offsets, seen), batch_size=5, chunk_size=7)
    assert (a == b).all()
    # brute force reference
    scores = (users @ items.T).max(axis=1)
    for i in range(37):
        s = scores[i].copy()
        s[0] = -np.inf
        mask = seen[offsets[i] : offsets[i + 1]]
        if targets[i] in mask:
            assert a[i] == MISS
            continue
        s[mask] = -np.inf
        others = np.delete(s, targets[i])
        assert a[i] == int((others >= s[targets[i]]).sum())


def test_max_dot_k1_equals_dot():
    u = torch.randn(4, 1, 6)
    v = torch.randn(9, 6)
    assert torch.allclose(max_dot(u, v), u[:, 0] @ v.T)


def test_bad_targets_rejected():
    with pytest.raises(ValueError, match="candidate"):
        rank_targets(
            np.ones((1, 1)), np.ones((3, 1)), np.array([1]), candidates=np.array([0, 0, 1])
        )
    with pytest.raises(ValueError, match="item indices"):
        rank_targets(np.ones((1, 1)), np.ones((3, 1)), np.array([0]))


def test_repeat_target_is_ranked_without_mask_and_a_miss_with_it():
    # items scored 5, 4, 3, 2, 1 (item 1 best); history [1, 3], target 3 (a repeat purchase)
    items = np.array([[0.0], [5.0], [4.0], [3.0], [2.0], [1.0]])
    users, target = np.ones((1, 1)), np.array([3])
    history = (np.array([0, 2]), np.array([1, 3]))
    # RecBole protocol (nothing masked): items 1 and 2 above -> rank 2, a hit at 10
    assert rank_targets(users, items, target).tolist() == [2]
    # S3-Rec protocol: the whole history is masked, the repeated target too -> a miss
    masked = rank_targets(users, items, target, seen=history)
    assert masked.tolist() == [MISS]
    m = metrics_from_ranks(masked, ks=(1, 10))
    assert m["HR@10"] == 0.0 and m["NDCG@10"] == 0.0 and m["MRR@10"] == 0.0
    # the leaky protocol guim used before (history masked but not the target) gave rank 1
    leaky = rank_targets(users, items, target, seen=(np.array([0, 1]), np.array([1])))
    assert leaky.tolist() == [1]
    # a repeat-aware term (+2.5 on history items) lifts the repeat above item 2: rank 1
    bonus = rank_targets(users, items, target, seen=history, seen_bonus=2.5)
    assert bonus.tolist() == [1]  # item 1 (5 + 2.5) above, item 2 (4) below 3 + 2.5


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_masked_metric_never_exceeds_the_leaky_or_the_target_masked_one(data):
    """For random vectors and histories: masking the whole history never ranks a target better
    than masking the history except the target (the old, leaky rule), every repeated target is a
    miss, and every other target gets exactly the leaky rank."""
    n_items = data.draw(st.integers(3, 30))
    n_cases = data.draw(st.integers(1, 12))
    seed = data.draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    items = rng.normal(size=(n_items + 1, 4)).round(1)  # rounding makes ties common
    users = rng.normal(size=(n_cases, 2, 4)).round(1)
    targets = rng.integers(1, n_items + 1, size=n_cases)
    lengths = rng.integers(0, 6, size=n_cases)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    flat = rng.integers(1, n_items + 1, size=offsets[-1])
    masked = rank_targets(users, items, targets, seen=(offsets, flat), chunk_size=7)
    keep = np.concatenate(
        [[f for f in flat[offsets[i] : offsets[i + 1]] if f != targets[i]] for i in range(n_cases)]
        + [np.zeros(0, dtype=np.int64)]
    ).astype(np.int64)
    leaky_lengths = [
        int((flat[offsets[i] : offsets[i + 1]] != targets[i]).sum()) for i in range(n_cases)
    ]
    leaky_offsets = np.concatenate([[0], np.cumsum(leaky_lengths)])
    leaky = rank_targets(users, items, targets, seen=(leaky_offsets, keep))
    repeat = np.array([targets[i] in flat[offsets[i] : offsets[i + 1]] for i in range(n_cases)])
    assert (masked[repeat] == MISS).all()
    assert (masked[~repeat] == leaky[~repeat]).all()
    for k in (1, 5, 10):
        m, ref = metrics_from_ranks(masked, (k,)), metrics_from_ranks(leaky, (k,))
        assert m[f"NDCG@{k}"] <= ref[f"NDCG@{k}"] + 1e-12
        assert m[f"HR@{k}"] <= ref[f"HR@{k}"]
    # and no mask at all never ranks a non-repeated target better than the masked protocol
    plain = rank_targets(users, items, targets)
    assert (masked[~repeat] <= plain[~repeat]).all()


# ---- per-case values and their uncertainty ---------------------------------------------------


def test_per_case_values_average_to_the_reported_metrics():
    ranks = np.array([0, 1, 4, 9, 10, 57])
    reported = metrics_from_ranks(ranks, ks=(10,))
    for metric in ("HR@10", "NDCG@10", "MRR@10"):
        assert per_case(ranks, metric).mean() == pytest.approx(reported[metric], abs=1e-15)
    np.testing.assert_allclose(
        per_case(ranks, "NDCG@10"), [1.0, 1 / np.log2(3), 1 / np.log2(6), 1 / np.log2(11), 0, 0]
    )
    with pytest.raises(ValueError, match="unknown metric"):
        per_case(ranks, "AUC")


def test_standard_error_by_hand():
    # values 0, 0, 1, 1: mean 0.5, sample variance (4 x 0.25) / 3 = 1/3, se = sqrt(1/3 / 4)
    assert standard_error(np.array([0, 0, 1, 1])) == pytest.approx(np.sqrt(1 / 12))
    with pytest.raises(ValueError, match="two cases"):
        standard_error(np.array([1.0]))


def test_paired_difference_by_hand():
    a = np.array([1.0, 0.5, 0.0, 1.0])
    b = np.array([0.0, 0.5, 0.0, 0.0])  # differences 1, 0, 0, 1: mean 0.5, se sqrt(1/12)
    out = paired_difference(a, b)
    se = np.sqrt(1 / 12)
    assert out["difference"] == pytest.approx(0.5) and out["se"] == pytest.approx(se)
    assert out["ci95_low"] == pytest.approx(0.5 - 1.96 * se)
    assert out["ci95_high"] == pytest.approx(0.5 + 1.96 * se)
    # a case both models find equally hard adds nothing to the difference's uncertainty
    same = paired_difference(np.array([1.0, 0.2, 0.7]), np.array([1.0, 0.2, 0.7]))
    assert same["difference"] == 0 and same["se"] == 0
    with pytest.raises(ValueError, match="same cases"):
        paired_difference(a, b[:3])
