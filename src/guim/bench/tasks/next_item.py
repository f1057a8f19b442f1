"""Next-item retrieval: rank the item each user actually interacted with next among ALL items
(leave-one-out, history masked, exact full ranking).

Why you care: this is the recommendation use of the user vector -- "what will they engage with
next?" -- and the metric every sequential-recommendation paper reports, so it ties the
benchmark to published results.
"""

from __future__ import annotations

from dataclasses import dataclass

from guim.data.dataset import Dataset
from guim.embed import Embedder
from guim.evaluate import evaluate


@dataclass(frozen=True)
class NextItem:
    name: str = "next_item"
    primary_metric: str = "NDCG@10"
    scheme: str = "loo"

    def supports(self, dataset: Dataset) -> bool | str:
        return True

    def run(self, embedder: Embedder, dataset: Dataset, split: str = "test") -> dict[str, float]:
        out = evaluate(embedder, dataset, "loo", split, ks=(10, 20))  # type: ignore[arg-type]
        return {k: v for k, v in out.items() if not k.startswith("MRR")}


TASK = NextItem()
