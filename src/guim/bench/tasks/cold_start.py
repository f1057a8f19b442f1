"""Cold-start item retrieval: rank the first cold item each user engaged with among the split's
cold items -- items that had no interaction at all in training -- whose vectors the embedder
builds from their attributes or titles alone (exact full ranking over the cold items, history
masked).

Why you care: every day a shop lists items nobody has clicked yet; an embedding that can place
them from their description recommends them from the first minute, instead of waiting for clicks.
"""

from __future__ import annotations

from dataclasses import dataclass

from guim.data.dataset import Dataset
from guim.embed import Embedder
from guim.evaluate import evaluate


@dataclass(frozen=True)
class ColdStart:
    name: str = "cold_start"
    primary_metric: str = "NDCG@10"
    scheme: str = "cold"

    def supports(self, dataset: Dataset) -> bool | str:
        cold = dataset.stats.get("splits", {}).get("cold", {})
        if not (cold.get("valid_items", 0) and cold.get("test_items", 0)):
            return "no cold items in both valid and test (prepare with cold_fraction > 0)"
        if not (dataset.n_attributes or dataset.stats.get("has_titles")):
            return "items have neither attributes nor titles to embed cold items from"
        return True

    def run(self, embedder: Embedder, dataset: Dataset, split: str = "test") -> dict[str, float]:
        out = evaluate(embedder, dataset, "cold", split, ks=(10, 20))  # type: ignore[arg-type]
        # a user's first cold item of the split is never in a history of warm items
        return {
            k: float(v) for k, v in out.items() if not k.startswith("MRR") and k != "repeat_share"
        }


TASK = ColdStart()
