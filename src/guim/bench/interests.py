"""How well K interest vectors recover a user's planted interests (synthetic shop ground truth).

For each user: every interest vector retrieves its top-N items (history masked); the vector's
"interest" is the majority leaf category of those items. With P the planted leaves and R the
set of leaves the K vectors land on:

    interest_recall    = |R & P| / |P|     (how many planted interests some vector found)
    interest_precision = |R & P| / |R|     (how many found leaves are real interests)
    coverage@N         = |leaves(top-N of the merged max-over-K ranking) & P| / |P|

averaged over users with at least `min_interests` planted interests. A single vector (K = 1) can
recover at most one interest; `coverage@N` asks the same question of the actual recommendations.

`interest_routing` asks why K > 1 can lower next-item quality: training reads out the one
interest nearest to the target and ranks the catalogue by that vector alone (guim.losses), while
evaluation merges the K rankings (max over K). It ranks every target under each interest alone
and reports the metrics of the merged ranking next to those of the routed vector training
optimises, the best single vector (an oracle bound) and the vector nearest to the last history
item (a routing rule a server can apply).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from guim.metrics import metrics_from_ranks
from guim.scoring import Scorer, max_dot, rank_targets, top_k


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


def interest_routing(
    user_vecs: np.ndarray,
    item_vecs: np.ndarray,
    targets: np.ndarray,
    history: tuple[np.ndarray, np.ndarray],
    candidates: np.ndarray | None = None,
    ks: Sequence[int] = (10, 20),
) -> dict[str, float]:
    """Next-item metrics of K interest vectors under four ways of choosing what ranks the items.

    Every ranking masks the case's history (the full-ranking protocol of `guim.evaluate`).

    - `merged`: max over the K dot products (what `guim.evaluate` scores with "max");
    - `routed`: the interest whose dot product with the target is highest ranks the catalogue
      alone -- the read-out training optimises (`guim.models.mor.nearest_interest`). It is the
      interest the merged score credits the target to, so the merged rank is never better: the
      difference is the items the other interests place above the target;
    - `oracle`: the best rank any single interest gives the target (an upper bound);
    - `last_item`: the interest nearest to the last history item's vector (deployable).

    Returns `{way}_{metric}` for each way and metric of `guim.metrics.metrics_from_ranks`, plus
    `lost_to_merging@K`: the share of cases that the routed interest ranks within the top K and
    the merged ranking does not.

    Args:
        user_vecs: (N, K, D) interest vectors, one set per case.
        item_vecs: (n_items + 1, D) item vectors by item_idx (row 0 padding).
        targets: (N,) target item_idx per case.
        history: CSR (offsets (N + 1,), item_idx) of each case's history, every case non-empty.
    """
    users = np.asarray(user_vecs, dtype=np.float32)
    items = np.asarray(item_vecs, dtype=np.float32)
    targets = np.asarray(targets, dtype=np.int64)
    offsets, flat = history
    if users.ndim != 3:
        raise ValueError(f"user vectors must be (N, K, D), got shape {users.shape}")
    lengths = np.diff(offsets)
    if (lengths < 1).any():
        raise ValueError(f"{int((lengths < 1).sum())} case(s) with an empty history")
    last = np.asarray(flat, dtype=np.int64)[offsets[1:] - 1]
    n, k = users.shape[:2]

    def rank(u: np.ndarray) -> np.ndarray:
        return rank_targets(u, items, targets, seen=history, candidates=candidates, scorer=max_dot)

    per_interest = np.stack([rank(users[:, j]) for j in range(k)], axis=1)  # (N, K)
    rows = np.arange(n)
    routed = np.einsum("nkd,nd->nk", users, items[targets]).argmax(axis=1)
    nearest_last = np.einsum("nkd,nd->nk", users, items[last]).argmax(axis=1)
    ways = {
        "merged": rank(users),
        "routed": per_interest[rows, routed],
        "oracle": per_interest.min(axis=1),
        "last_item": per_interest[rows, nearest_last],
    }
    out: dict[str, float] = {}
    for way, ranks in ways.items():
        for name, value in metrics_from_ranks(ranks, ks).items():
            out[f"{way}_{name}"] = value
    for cut in ks:
        lost = (ways["routed"] < cut) & (ways["merged"] >= cut)
        out[f"lost_to_merging@{cut}"] = float(lost.mean())
    return out
