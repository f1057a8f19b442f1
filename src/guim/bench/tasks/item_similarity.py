"""Item-item similarity: held-out co-engagement pairs. For each user, the item engaged with just
before the split's target (for "test": the validation item) queries the catalogue, and the target
must rank high among ALL items by the dot product of item vectors (the query itself excluded).

Why you care: "similar items" and "customers also viewed" carousels use item vectors alone, with
no user in the loop; this checks that item-item neighbourhoods predict what people engage with
next, on pairs the embedder never saw.

Pairs (query, target) are dropped when query == target (a repeat) or when the two items are
adjacent, in either order, anywhere in the training sequences, so no pair was trained on.
Metrics (exact ranking with `guim.metrics.rank_targets`, each query as a "user", pessimistic
ties): Recall@10 and Recall@20 (= hit rate: one target per pair), NDCG@10; primary Recall@10.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from guim.data.dataset import Dataset
from guim.embed import Embedder
from guim.metrics import metrics_from_ranks, rank_targets


@dataclass(frozen=True)
class ItemSimilarity:
    name: str = "item_similarity"
    primary_metric: str = "Recall@10"
    scheme: str = "loo"

    def supports(self, dataset: Dataset) -> bool | str:
        return True

    def run(self, embedder: Embedder, dataset: Dataset, split: str = "test") -> dict[str, float]:
        query, target = held_out_pairs(dataset, split)
        if len(query) == 0:
            raise ValueError(f"{dataset.name}: no held-out pair unseen in training")
        items = np.asarray(embedder.embed_items(), dtype=np.float32)
        seen = (np.arange(len(query) + 1, dtype=np.int64), query)  # mask the query itself
        ranks = rank_targets(items[query], items, target, seen=seen)
        m = metrics_from_ranks(ranks, ks=(10, 20))
        return {
            "Recall@10": m["HR@10"],
            "Recall@20": m["HR@20"],
            "NDCG@10": m["NDCG@10"],
            "n_pairs": float(len(query)),
        }


def held_out_pairs(dataset: Dataset, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """(query item_idx, target item_idx), one pair per user at most: the last history item and
    the loo target of `split`, minus repeats and pairs adjacent in the training sequences."""
    cases = dataset.eval_cases("loo", split)  # type: ignore[arg-type]
    h = cases.history
    query = h.item_idx[h.offsets[1:] - 1].astype(np.int64)
    target = cases.target.astype(np.int64)
    train = dataset.train_sequences("loo")
    a, b = train.item_idx[:-1].astype(np.int64), train.item_idx[1:].astype(np.int64)
    same_user = np.ones(len(a), dtype=bool)
    same_user[train.offsets[1:-1] - 1] = False  # the step from one user's row to the next
    n = dataset.n_items + 1
    trained = np.unique(_pair_key(a[same_user], b[same_user], n))
    keep = (query != target) & ~np.isin(_pair_key(query, target, n), trained)
    return query[keep], target[keep]


def _pair_key(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """One int64 per unordered item pair."""
    return np.minimum(a, b) * n + np.maximum(a, b)


TASK = ItemSimilarity()
