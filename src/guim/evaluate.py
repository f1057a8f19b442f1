"""Next-item evaluation under the full-ranking protocol (see `guim.metrics` for the exact rules)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from guim.data.dataset import Dataset, EvalCases, Scheme, Split
from guim.embed import Embedder, scorer_of
from guim.metrics import metrics_from_ranks, rank_targets

DEFAULT_KS = (5, 10, 20)


def rank_cases(
    embedder: Embedder, cases: EvalCases, mask_history: bool = True, show_progress: bool = False
) -> np.ndarray:
    """0-based rank of every case's target under `embedder` (history masked by default)."""
    users = embedder.embed_users(cases.history)
    items = embedder.embed_items()
    seen = (cases.history.offsets, cases.history.item_idx) if mask_history else None
    return rank_targets(
        users,
        items,
        cases.target,
        seen=seen,
        candidates=cases.candidates,
        scorer=scorer_of(embedder),
        show_progress=show_progress,
    )


def evaluate(
    embedder: Embedder,
    dataset: Dataset,
    scheme: Scheme = "loo",
    split: Split = "test",
    ks: Sequence[int] = DEFAULT_KS,
    mask_history: bool = True,
    show_progress: bool = False,
) -> dict[str, float]:
    """HR@K, NDCG@K, MRR@K of `embedder` on `dataset`'s `split` cases under `scheme`.

    `mask_history=True` (the default) removes each user's already-seen items from the ranking,
    the protocol of the published S3-Rec-lineage results.
    """
    cases = dataset.eval_cases(scheme, split)
    ranks = rank_cases(embedder, cases, mask_history=mask_history, show_progress=show_progress)
    out = metrics_from_ranks(ranks, ks)
    out["n_cases"] = len(cases)
    return out
