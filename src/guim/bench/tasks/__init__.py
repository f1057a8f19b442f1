"""Benchmark tasks: one file each, all with the same small interface.

A task scores FROZEN embeddings (an `Embedder`: embed_users(histories) -> (N, K, D),
embed_items() -> (n_items + 1, D)) with fixed, seeded heads, so embeddings -- not heads -- are
compared. Each task module defines a `TASK` object with:

    name: str               e.g. "next_item"
    primary_metric: str     e.g. "NDCG@10"
    scheme: str             the split scheme the embedder must have been trained on
                            ("loo", "cold" or "temporal")
    supports(dataset) -> bool | str   True, or the reason the dataset cannot run it
    run(embedder, dataset, split="test") -> dict[str, float]

and a docstring saying why a user would care about the number.
"""

from __future__ import annotations

from typing import Protocol

from guim.data.dataset import Dataset
from guim.embed import Embedder


class Task(Protocol):
    name: str
    primary_metric: str
    scheme: str

    def supports(self, dataset: Dataset) -> bool | str: ...

    def run(
        self, embedder: Embedder, dataset: Dataset, split: str = "test"
    ) -> dict[str, float]: ...
