"""How well K interest vectors recover a user's planted interests (synthetic shop ground truth).

For each user: every interest vector retrieves its top-N items (history masked); the vector's
"interest" is the majority leaf category of those items. With P the planted leaves and R the
set of leaves the K vectors land on:

    interest_recall    = |R & P| / |P|     (how many planted interests some vector found)
    interest_precision = |R & P| / |R|     (how many found leaves are real interests)
    coverage@N         = |leaves(top-N of the merged max-over-K ranking) & P| / |P|

averaged over users with at least `min_interests` planted interests. A single vector (K = 1) can
recover at most one interest; `coverage@N` asks the same question of the actual recommendations.
"""

from __future__ import annotations

import numpy as np
import torch

from guim.scoring import Scorer, max_dot, top_k


def interest_recovery(
    user_vecs: np.ndarray,
    item_vecs: np.ndarray,
    planted: list[set[int]],
    item_leaf: np.ndarray,
    seen: tuple[np.ndarray, np.ndarray],
    n: int = 20,
    min_interests: int = 2,
    scorer: Scorer = max_dot,
    batch_size: int = 512,
) -> dict[str, float]:
    """Interest recall / precision of the K vectors and coverage@n of the merged ranking.

    Args:
        user_vecs: (U, K, D) interest vectors.
        item_vecs: (M, D) item vectors by item_idx (row 0 padding).
        planted: per user, the set of planted leaf ids.
        item_leaf: (M,) leaf id of each item_idx (row 0 ignored).
        seen: CSR (offsets (U + 1,), item_idx) of each user's history, masked out.
    """
    users = torch.from_numpy(np.asarray(user_vecs, dtype=np.float32))
    items = torch.from_numpy(np.asarray(item_vecs, dtype=np.float32))
    offsets, flat = seen
    recall, precision, coverage = [], [], []
    for b0 in range(0, len(users), batch_size):
        b1 = min(b0 + batch_size, len(users))
        sub_offsets = offsets[b0 : b1 + 1] - offsets[b0]
        sub_seen = (sub_offsets, flat[offsets[b0] : offsets[b1]])
        merged = top_k(users[b0:b1], items, n, seen=sub_seen, scorer=scorer)[0]  # (B, n)
        per_vector = [
            top_k(users[b0:b1, k : k + 1], items, n, seen=sub_seen, scorer=scorer)[0]
            for k in range(users.shape[1])
        ]
        for i in range(b1 - b0):
            p = planted[b0 + i]
            if len(p) < min_interests:
                continue
            found = set()
            for top in per_vector:
                leaves, counts = np.unique(item_leaf[top[i]], return_counts=True)
                found.add(int(leaves[np.argmax(counts)]))  # ties: the smallest leaf id
            recall.append(len(found & p) / len(p))
            precision.append(len(found & p) / len(found))
            coverage.append(len(set(item_leaf[merged[i]].tolist()) & p) / len(p))
    if not recall:
        raise ValueError(f"no user has at least {min_interests} planted interests")
    return {
        "interest_recall": float(np.mean(recall)),
        "interest_precision": float(np.mean(precision)),
        f"coverage@{n}": float(np.mean(coverage)),
        "n_users": len(recall),
    }
