"""Popularity baseline (PopRec): every user gets the same ranking, items by training count.

Item vector = [count] (1-d), user vector = [1], so the score is the count. Items with no training
interaction (the cold items of the "cold" scheme, or items seen only as valid/test targets) are
scored by the popularity of their attributes instead: the mean, over the item's attributes, of
the mean training count of the warm items carrying that attribute (0 when none is known).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from guim.data.dataset import Dataset, Scheme, Sequences


@dataclass(frozen=True)
class PopularityConfig:
    """What is counted.

    count_on: "train" counts the scheme's training interactions (the honest baseline); "all" also
        counts the valid and test targets. "all" LEAKS the targets and exists only to reproduce
        published PopRec numbers (S3-Rec, CIKM 2020, which counts the whole file).
    attribute_fallback: score zero-count items by their attributes' popularity (module docstring).
    """

    count_on: Literal["train", "all"] = "train"
    attribute_fallback: bool = True

    def __post_init__(self) -> None:
        if self.count_on not in ("train", "all"):
            raise ValueError(f"count_on must be 'train' or 'all', got {self.count_on!r}")


class PopularityEmbedder:
    """Scores items by a fixed popularity value.

    Ties: items with equal counts get identical vectors and are left tied. The evaluation counts a
    tie against the target (pessimistic rule of `guim.metrics`), and `guim.embed.recommend`
    returns tied items in increasing item_idx order; both are deterministic. Counts are exact
    integers in float32 (up to 2**24), so no rounding creates or breaks a tie.
    """

    def __init__(self, config: PopularityConfig, item_scores: np.ndarray) -> None:
        self.config = config
        self.name = "popularity-all-leaky" if config.count_on == "all" else "popularity"
        self.item_scores = np.asarray(item_scores, dtype=np.float32)  # (n_items + 1,)

    def embed_users(self, histories: Sequences) -> np.ndarray:
        """(N, 1, 1) float32 ones: every user ranks items the same way."""
        return np.ones((len(histories), 1, 1), dtype=np.float32)

    def embed_items(self) -> np.ndarray:
        """(n_items + 1, 1) float32 popularity scores; row 0 (padding) is 0."""
        return self.item_scores[:, None]

    def arrays(self) -> dict[str, np.ndarray]:
        return {"item_scores": self.item_scores}

    @classmethod
    def from_arrays(
        cls, config: PopularityConfig, arrays: dict[str, np.ndarray]
    ) -> PopularityEmbedder:
        return cls(config, arrays["item_scores"])


def fit(
    dataset: Dataset, scheme: Scheme = "loo", config: PopularityConfig | None = None
) -> PopularityEmbedder:
    """Count interactions per item under `scheme` (see `PopularityConfig.count_on`)."""
    config = config or PopularityConfig()
    if config.count_on == "train":
        counts = dataset.item_popularity(scheme).astype(np.float64)
    else:
        items = dataset.events["item_idx"].to_numpy()
        counts = np.bincount(items, minlength=dataset.n_items + 1).astype(np.float64)
    counts[0] = 0.0
    scores = counts.copy()
    if config.attribute_fallback:
        zero = counts == 0
        zero[0] = False
        scores[zero] = attribute_popularity(dataset, counts)[zero]
    return PopularityEmbedder(config, scores)


def attribute_popularity(dataset: Dataset, counts: np.ndarray) -> np.ndarray:
    """(n_items + 1,) float64: for each item, the mean over its attributes of the mean count of the
    items with count > 0 that carry the attribute; 0 for items without such an attribute."""
    offsets, flat = dataset.item_attributes
    n_rows = dataset.n_items + 1
    owner = np.repeat(np.arange(n_rows), np.diff(offsets))  # item of each (item, attr) entry
    warm = (counts[owner] > 0).astype(np.float64)
    n_attr = dataset.n_attributes + 1
    attr_sum = np.bincount(flat, weights=counts[owner] * warm, minlength=n_attr)
    attr_n = np.bincount(flat, weights=warm, minlength=n_attr)
    attr_pop = np.divide(attr_sum, attr_n, out=np.zeros(n_attr), where=attr_n > 0)
    known = (attr_n[flat] > 0).astype(np.float64)
    item_sum = np.bincount(owner, weights=attr_pop[flat] * known, minlength=n_rows)
    item_n = np.bincount(owner, weights=known, minlength=n_rows)
    return np.divide(item_sum, item_n, out=np.zeros(n_rows), where=item_n > 0)
