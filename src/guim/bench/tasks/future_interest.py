"""Future interest (next-category) prediction: from the user vector alone, rank the categories of
the interest field and check that the categories of the user's next item come first
(leave-one-out target, all categories ranked).

Why you care: "which categories will this user shop next?" drives category banners, e-mails and
audience building, and is coarser -- and more stable -- than guessing the exact next item.

Field: the first of `_probe.INTEREST_FIELDS` that the dataset has (the leaf category c2 of the
synthetic shop and MerRec, MovieLens genres, the anonymous attributes of Beauty and LastFM).
Head, with nothing learnt: an attribute's vector is the mean of the vectors of the items seen in
training that carry it; an attribute is scored for a user by the embedder's own scorer (the
max over interests of dot products by default), exactly as an item would be. Attributes that no
seen item carries have no vector and are left out, as targets too; cases whose target has no
remaining attribute are dropped. A mean over many unlike items is short, so dot products favour
narrow, coherent attributes over broad ones; unrelated (random) vectors therefore score below the
K / n_attributes of a random ranking on fields with attributes of very different sizes (LastFM
tags, Beauty) -- read the random baseline of the same report as chance, not K / n_attributes.

Metrics, averaged over cases: Recall@K (K = 5, 10) = the fraction of the target's attributes
ranked in the top K; NDCG@10 with binary relevance (ideal DCG of min(#relevant, 10) hits). Tie
rule (pessimistic, as in `guim.metrics`): an attribute tied with a relevant one is ranked above it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from guim.bench.tasks._probe import INTEREST_FIELDS, fields_present
from guim.data.dataset import Dataset
from guim.embed import Embedder, scorer_of

KS = (5, 10)
NDCG_K = 10
BATCH = 1024


@dataclass(frozen=True)
class FutureInterest:
    name: str = "future_interest"
    primary_metric: str = "Recall@10"
    scheme: str = "loo"

    def supports(self, dataset: Dataset) -> bool | str:
        if not fields_present(dataset, INTEREST_FIELDS):
            return f"no category-like item attribute field (one of {', '.join(INTEREST_FIELDS)})"
        return True

    def run(self, embedder: Embedder, dataset: Dataset, split: str = "test") -> dict[str, float]:
        field = fields_present(dataset, INTEREST_FIELDS)[0]
        cases = dataset.eval_cases("loo", split)  # type: ignore[arg-type]
        attr_ids, attr_vecs = attribute_vectors(embedder.embed_items(), dataset, field)
        relevant = target_attributes(dataset, cases.target, attr_ids)  # (N, A) bool
        keep = relevant.any(axis=1)
        if not keep.any():
            raise ValueError(f"{dataset.name}: no case has a target with a known {field!r}")
        users = torch.from_numpy(np.asarray(embedder.embed_users(cases.history), np.float64))
        attrs = torch.from_numpy(attr_vecs)
        score = scorer_of(embedder)
        sums = np.zeros(len(KS) + 1)
        rows = np.flatnonzero(keep)
        for b0 in range(0, len(rows), BATCH):
            b = rows[b0 : b0 + BATCH]
            s = score(users[torch.from_numpy(b)], attrs).numpy()  # (B, A)
            sums += ranking_metrics(s, relevant[b]).sum(axis=0)
        means = sums / len(rows)
        out = {f"Recall@{k}": float(means[i]) for i, k in enumerate(KS)}
        out[f"NDCG@{NDCG_K}"] = float(means[-1])
        out["n_cases"] = float(len(rows))
        out["n_attributes"] = float(len(attr_ids))
        return out


def attribute_vectors(
    item_vecs: np.ndarray, dataset: Dataset, field: str
) -> tuple[np.ndarray, np.ndarray]:
    """(attribute ids (A,), vectors (A, D) float64): each attribute of `field` carried by at least
    one item seen in training (loo), as the mean vector of those items."""
    items = np.asarray(item_vecs, dtype=np.float64)
    offsets, flat = dataset.item_attributes
    owner = np.repeat(np.arange(dataset.n_items + 1), np.diff(offsets))
    seen = dataset.item_popularity("loo") > 0
    sel = (dataset.attribute_field[flat] == field) & seen[owner]
    total = np.zeros((dataset.n_attributes + 1, items.shape[1]))
    np.add.at(total, flat[sel], items[owner[sel]])
    count = np.bincount(flat[sel], minlength=dataset.n_attributes + 1)
    ids = np.flatnonzero(count)
    return ids, total[ids] / count[ids, None]


def target_attributes(dataset: Dataset, targets: np.ndarray, attr_ids: np.ndarray) -> np.ndarray:
    """(N, A) bool: which of `attr_ids` each target item carries."""
    offsets, flat = dataset.item_attributes
    column = np.full(dataset.n_attributes + 1, -1, dtype=np.int64)
    column[attr_ids] = np.arange(len(attr_ids))
    out = np.zeros((len(targets), len(attr_ids)), dtype=bool)
    lengths = offsets[targets + 1] - offsets[targets]
    case = np.repeat(np.arange(len(targets)), lengths)
    first_of_case = np.repeat(np.cumsum(lengths) - lengths, lengths)
    positions = np.repeat(offsets[targets], lengths) + np.arange(len(case)) - first_of_case
    cols = column[flat[positions]]
    out[case[cols >= 0], cols[cols >= 0]] = True
    return out


def ranking_metrics(scores: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """(B, len(KS) + 1): Recall@K for each K of KS, then NDCG@NDCG_K, for each case.

    scores (B, A) and relevant (B, A) bool, every row with at least one relevant attribute; ties
    are broken against relevant attributes.
    """
    order = np.lexsort((relevant, -scores), axis=1)
    hits = np.take_along_axis(relevant, order, axis=1)
    n_rel = relevant.sum(axis=1)
    recalls = [hits[:, :k].sum(axis=1) / n_rel for k in KS]
    gain = 1.0 / np.log2(np.arange(NDCG_K) + 2.0)
    dcg = (hits[:, :NDCG_K] * gain[: hits[:, :NDCG_K].shape[1]]).sum(axis=1)
    ideal = np.cumsum(gain)[np.minimum(n_rel, NDCG_K) - 1]
    return np.stack([*recalls, dcg / ideal], axis=1)


TASK = FutureInterest()
