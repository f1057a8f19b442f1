"""Next-item evaluation under the full-ranking protocol (see `guim.metrics` for the exact rules)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from guim.data.dataset import Dataset, EvalCases, Scheme, Split
from guim.embed import Embedder, repeat_bonus_of, scorer_of
from guim.metrics import metrics_from_ranks
from guim.scoring import in_history, rank_targets

DEFAULT_KS = (5, 10, 20)


def rank_cases(
    embedder: Embedder, cases: EvalCases, mask_history: bool = True, show_progress: bool = False
) -> np.ndarray:
    """0-based rank of every case's target under `embedder`.

    `mask_history=True` (default): every history item is removed from the ranking, a repeated
    target too (rank `guim.scoring.MISS`); `False`: nothing is removed, and the embedder's
    repeat-aware term (`repeat_bonus`), if any, is added to the scores of history items.
    """
    users = embedder.embed_users(cases.history)
    items = embedder.embed_items()
    bonus = float("-inf") if mask_history else repeat_bonus_of(embedder)
    return rank_targets(
        users,
        items,
        cases.target,
        seen=(cases.history.offsets, cases.history.item_idx) if bonus != 0.0 else None,
        seen_bonus=bonus,
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
    a repeated target included (the protocol of the published S3-Rec-lineage results);
    `False` removes nothing (RecBole's protocol). The result carries `repeat_share`: the
    fraction of cases whose target repeats a history item (under masking, a share of cases
    that no model can hit).
    """
    cases = dataset.eval_cases(scheme, split)
    ranks = rank_cases(embedder, cases, mask_history=mask_history, show_progress=show_progress)
    out = metrics_from_ranks(ranks, ks)
    out["n_cases"] = len(cases)
    out["repeat_share"] = repeat_share(cases)
    return out


def repeat_share(cases: EvalCases) -> float:
    """Fraction of cases whose target already occurs in the case's history."""
    if len(cases) == 0:
        return 0.0
    return float(in_history((cases.history.offsets, cases.history.item_idx), cases.target).mean())


class RepeatAware:
    """An embedder plus a repeat-aware score term for the unmasked protocol: `bonus` is added to
    the score of every item already in the user's history (positive: a repeat is likelier than
    a new item of the same score; negative: less likely). Embeddings are the wrapped
    embedder's, unchanged."""

    def __init__(self, embedder: Embedder, bonus: float) -> None:
        self.embedder = embedder
        self.repeat_bonus = float(bonus)
        self.name = f"{embedder.name}+repeat"
        self.scorer = scorer_of(embedder)

    def embed_users(self, histories) -> np.ndarray:
        return self.embedder.embed_users(histories)

    def embed_items(self) -> np.ndarray:
        return self.embedder.embed_items()


# multiples of the spread (standard deviation) of a model's scores tried as the repeat term:
# positive where repeats are likelier than their scores say, negative where a model ranks the
# history too high (-inf would be the masked protocol, which misses every repeat)
REPEAT_GRID = (-8.0, -4.0, -2.0, -1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 1000.0)


def fit_repeat_bonus(
    embedder: Embedder,
    dataset: Dataset,
    scheme: Scheme = "loo",
    grid: Sequence[float] = REPEAT_GRID,
    metric: str = "NDCG@10",
) -> tuple[float, dict[float, float]]:
    """The repeat term, in score units, that maximises validation `metric` with nothing masked:
    (bonus, {bonus: metric}). The grid is in multiples of the spread of the embedder's scores
    (std over a sample of validation users and every item), so one grid serves every model; 0
    keeps the plain scores, the largest puts every history item first, negative terms demote
    the history."""
    cases = dataset.eval_cases(scheme, "valid")
    users = embedder.embed_users(cases.history)
    items = embedder.embed_items()
    scorer = scorer_of(embedder)
    sample = torch.from_numpy(np.asarray(users[:512], dtype=np.float32))
    spread = float(scorer(sample, torch.from_numpy(np.asarray(items[1:], np.float32))).std())
    seen = (cases.history.offsets, cases.history.item_idx)
    curve: dict[float, float] = {}
    for g in grid:
        bonus = g * spread
        ranks = rank_targets(
            users,
            items,
            cases.target,
            seen=seen if bonus else None,
            candidates=cases.candidates,
            scorer=scorer,
            seen_bonus=bonus,
        )
        curve[bonus] = metrics_from_ranks(ranks, ks=(10,))[metric]
    best = max(curve, key=lambda b: (curve[b], -abs(b)))  # ties: the smaller term
    return best, curve
