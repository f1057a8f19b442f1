"""Event-type propensity (MerRec-style): for each user's held-out interaction with an item they
viewed, predict from the user and item vectors whether it went on to the cart and whether it
ended in a purchase.

Why you care: ranking by "will they buy it?" rather than "will they look at it?" is what earns a
shop money; a user-item pair embedding that separates browsing from buying serves conversion
models, bidding and re-targeting without new features.

Cases: the leave-one-out target of every user ("loo": the same trained run as next-item, one
case per user) whose event is a funnel stage (view or deeper; logs without event types are not
supported). Interactions are collapsed to their deepest stage (`guim.data.schema.EVENT_TYPES`),
so the labels are: cart = the stage reached add_to_cart or beyond (cart, offer, buy_start,
purchase), purchase = the stage is purchase. The user vector embeds the history BEFORE the target
only, so the target's own event is never an input (models that read event types, as GUIM does,
see those of past positions only).
Head: features [u, v, u * v] -- v the target item's vector, u the user's interest vector the
embedder's scorer would use for that item (the best one under "max", the softmax-weighted mean
under "softmax"; the one vector when K = 1) -- standardised in the fold, `_probe.head()`;
user-disjoint 5-fold CV stratified by the label; out-of-fold ROC AUC per label ("cart/AUC", the
primary metric, and "purchase/AUC"; NaN when a label has fewer than 5 positives or negatives).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from guim.bench.tasks._probe import (
    N_FOLDS,
    binary_auc,
    folds,
    interest_weights,
    out_of_fold,
)
from guim.data.dataset import Dataset
from guim.data.schema import EVENT_CODE
from guim.embed import Embedder, scorer_of

LABELS = {"cart": EVENT_CODE["add_to_cart"], "purchase": EVENT_CODE["purchase"]}


@dataclass(frozen=True)
class EventPropensity:
    name: str = "event_propensity"
    primary_metric: str = "cart/AUC"
    scheme: str = "loo"

    def supports(self, dataset: Dataset) -> bool | str:
        if not dataset.stats.get("has_event_types"):
            return "the log has no event types (view, cart, purchase)"
        return True

    def run(self, embedder: Embedder, dataset: Dataset, split: str = "test") -> dict[str, float]:
        cases = dataset.eval_cases("loo", split)  # type: ignore[arg-type]
        rows = np.flatnonzero(cases.target_event >= EVENT_CODE["view"])
        if len(rows) == 0:
            raise ValueError(f"{dataset.name}: no held-out interaction with a funnel event")
        users = np.asarray(embedder.embed_users(cases.history.take(rows)), dtype=np.float64)
        items = np.asarray(embedder.embed_items(), dtype=np.float64)[cases.target[rows]]
        if users.ndim == 3:
            weights = interest_weights(scorer_of(embedder), users, items)  # (N, K)
            users = np.einsum("nk,nkd->nd", weights, users)
        x = np.hstack([users, items, users * items])
        groups = cases.user_idx[rows]
        event = cases.target_event[rows]
        out: dict[str, float] = {"n_cases": float(len(rows))}
        for name, code in LABELS.items():
            y = event >= code
            out[f"{name}/rate"] = float(y.mean())
            if min(y.sum(), (~y).sum()) < N_FOLDS:
                out[f"{name}/AUC"] = float("nan")
                continue
            proba = out_of_fold(x, y, folds(y, groups))
            out[f"{name}/AUC"] = binary_auc(y, proba[:, 1])
        return out


TASK = EventPropensity()
