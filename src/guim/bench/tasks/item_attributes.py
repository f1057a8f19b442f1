"""Item attribute prediction: a linear probe from the frozen item vector to the item's category,
brand or genres, scored out-of-fold on items seen in training (item-disjoint 5-fold CV).

Why you care: a shop that uses item vectors for search, catalogue cleaning or analytics needs
them to know what an item is; if a linear map recovers the category, the vector carries it.

Fields probed (those present, see `_probe.CATEGORY_FIELDS`): single-valued fields (the synthetic
shop's and MerRec's c0, c2 and brand) are multi-class -- micro-F1 (= accuracy) and macro-F1,
over classes with at least 5 items; multi-valued fields (MovieLens genres, the anonymous "attr" of
Beauty and LastFM) are multi-label over their TOP_LABELS most frequent values, one-vs-rest --
mAP. Primary metric "score": the mean over fields of macro-F1 (single-valued) or mAP
(multi-valued), both of which weigh rare categories as much as frequent ones, so a probe that
only learns the big categories scores low.

Head: `_probe.head()` (StandardScaler fitted on the training fold, logistic regression, C = 1),
multinomial for multi-class fields, one binary head per label for multi-label fields.

Caveat: models that take attribute ids as input (GUIM, item2vec+attributes) can copy the answer
from their input, so for them this task partly measures memorisation of an input, not what was
learnt from behaviour; compare them with each other and read ID-only models (item2vec) as what
behaviour alone teaches. "unseen_*" metrics apply the probe, fitted on all seen items, to items
with no training interaction (reported when there are at least MIN_UNSEEN of them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from guim.bench.tasks._probe import (
    CATEGORY_FIELDS,
    N_FOLDS,
    common_classes,
    f1s,
    field_labels,
    fields_present,
    fold_scores,
    folds,
    mean_average_precision,
    run_side_by_side,
)
from guim.data.dataset import Dataset
from guim.embed import Embedder

TOP_LABELS = 30  # labels of a multi-valued field: its most frequent values among seen items
MIN_UNSEEN = 20  # fewest unseen items for which the unseen_* metrics are reported
BINARY = np.array([False, True])  # the classes of a one-vs-rest head


@dataclass(frozen=True)
class ItemAttributes:
    name: str = "item_attributes"
    primary_metric: str = "score"
    scheme: str = "loo"

    def supports(self, dataset: Dataset) -> bool | str:
        if not fields_present(dataset, CATEGORY_FIELDS):
            return f"no category-like item attribute field (one of {', '.join(CATEGORY_FIELDS)})"
        return True

    def run(self, embedder: Embedder, dataset: Dataset, split: str = "test") -> dict[str, float]:
        """Probe every category-like field; `split` is unused (item vectors do not depend on it)."""
        items = np.asarray(embedder.embed_items(), dtype=np.float64)
        seen = dataset.item_popularity("loo") > 0
        seen[0] = False
        unseen = ~seen
        unseen[0] = False
        out: dict[str, float] = {}
        headline = []
        for field in fields_present(dataset, CATEGORY_FIELDS):
            labels = field_labels(dataset, field)
            n_labels = np.array([len(x) for x in labels])
            if (n_labels > 1).any():
                result = _multilabel(items, labels, n_labels, seen, unseen)
                key = "mAP"
            else:
                result = _multiclass(items, labels, n_labels, seen, unseen)
                key = "macro_F1"
            if result is None:
                continue
            out.update({f"{field}/{k}": v for k, v in result.items()})
            headline.append(result[key])
        if not headline:
            raise ValueError(f"{dataset.name}: no attribute field has enough labelled items")
        out["score"] = float(np.mean(headline))
        return out


def _multiclass(
    items: np.ndarray,
    labels: list[np.ndarray],
    n_labels: np.ndarray,
    seen: np.ndarray,
    unseen: np.ndarray,
) -> dict[str, float] | None:
    """Multinomial probe of a single-valued field; None when fewer than 2 classes qualify."""
    y_all = np.array([x[0] if len(x) else -1 for x in labels], dtype=np.int64)
    rows = np.flatnonzero(seen & (n_labels == 1))
    rows = rows[common_classes(y_all[rows])]
    classes = np.unique(y_all[rows])
    if len(classes) < 2:
        return None
    y = y_all[rows]
    splits = folds(y, rows)
    # the fold heads and the unseen items' head (fitted on every seen row), side by side
    calls = [(items, y_all, rows[train], rows[test], classes) for train, test in splits]
    cold = np.flatnonzero(unseen & (n_labels == 1) & np.isin(y_all, classes))
    if len(cold) >= MIN_UNSEEN:
        calls.append((items, y_all, rows, cold, classes))
    scores = run_side_by_side(fold_scores, calls)
    proba = np.zeros((len(rows), len(classes)))
    for (_, test), s in zip(splits, scores, strict=False):
        proba[test] = s
    micro, macro = f1s(y, classes[proba.argmax(axis=1)])
    out = {"micro_F1": micro, "macro_F1": macro, "n_items": float(len(rows))}
    if len(cold) >= MIN_UNSEEN:
        micro, macro = f1s(y_all[cold], classes[scores[-1].argmax(axis=1)])
        out.update(unseen_micro_F1=micro, unseen_macro_F1=macro, n_unseen=float(len(cold)))
    return out


def _multilabel(
    items: np.ndarray,
    labels: list[np.ndarray],
    n_labels: np.ndarray,
    seen: np.ndarray,
    unseen: np.ndarray,
) -> dict[str, float] | None:
    """One-vs-rest probes of the TOP_LABELS most frequent values of a multi-valued field."""
    rows = np.flatnonzero(seen & (n_labels > 0))
    flat = np.concatenate([labels[i] for i in rows])
    values, counts = np.unique(flat, return_counts=True)
    order = np.lexsort((values, -counts))  # most items first, ties by attribute id
    top = values[order][counts[order] >= N_FOLDS][:TOP_LABELS]
    if len(top) == 0:
        return None

    # (n_items + 1, L) bool: does each item carry each top label
    y_all = np.stack([np.isin(top, item_labels) for item_labels in labels])
    y = y_all[rows]
    # stratify by each item's rarest top label, so that rare labels are spread over the folds
    rank = np.where(y, np.arange(len(top))[None, :], -1).max(axis=1)
    splits = folds(rank, rows)
    cold = np.flatnonzero(unseen & (n_labels > 0))
    with_cold = len(cold) >= MIN_UNSEEN
    # per label: one head per fold and the unseen items' head (fitted on every seen row)
    heads = [(rows[train], rows[test]) for train, test in splits]
    heads += [(rows, cold)] if with_cold else []
    calls = [(items, y_all[:, j], tr, te, BINARY) for j in range(len(top)) for tr, te in heads]
    results = iter(run_side_by_side(fold_scores, calls))
    scores, cold_scores = np.zeros(y.shape), np.zeros((len(cold), len(top)))
    for j in range(len(top)):
        for _, test in splits:
            scores[test, j] = next(results)[:, 1]
        if with_cold:
            cold_scores[:, j] = next(results)[:, 1]
    out = {"mAP": mean_average_precision(y, scores), "n_items": float(len(rows))}
    if with_cold:
        out.update(
            unseen_mAP=mean_average_precision(y_all[cold], cold_scores), n_unseen=float(len(cold))
        )
    out["n_labels"] = float(len(top))
    return out


TASK = ItemAttributes()
