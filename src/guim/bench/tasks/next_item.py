"""Next-item retrieval: rank the item each user actually interacted with next among ALL items
(leave-one-out, history masked, exact full ranking).

The primary metric uses the S3-Rec protocol: everything the user has seen is masked, so a
target that repeats a history item is a miss. On datasets with such repeat targets the RecBole
protocol (nothing masked) is reported beside it (`*_unmasked`), with the share of repeat
targets (`repeat_share`).

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
    protocol: str = "history masked"  # of the primary metric
    # reported beside the primary metric (datasets with repeat targets only), with its protocol
    extra_metrics: tuple[tuple[str, str], ...] = (("NDCG@10_unmasked", "nothing masked"),)

    def supports(self, dataset: Dataset) -> bool | str:
        return True

    def run(self, embedder: Embedder, dataset: Dataset, split: str = "test") -> dict[str, float]:
        masked = evaluate(embedder, dataset, "loo", split, ks=(10, 20))  # type: ignore[arg-type]
        out = {k: float(v) for k, v in masked.items() if not k.startswith("MRR")}
        if out["repeat_share"] > 0:
            plain = evaluate(  # type: ignore[arg-type]
                embedder, dataset, "loo", split, ks=(10, 20), mask_history=False
            )
            out.update({f"{k}_unmasked": plain[k] for k in plain if k[:2] in ("HR", "ND")})
        return out


TASK = NextItem()
