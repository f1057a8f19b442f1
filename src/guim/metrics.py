"""Exact full-ranking metrics: the rank of each target among all candidate items, then HR/NDCG/MRR.

Protocol (the S3-Rec / SASRec lineage, "full ranking"):
- the target is ranked against every item of the catalogue except padding (or, when
  `candidates` is given, every candidate item);
- history: with `seen` given (`mask_history=True`, the default of `guim.evaluate`, the S3-Rec
  protocol) every item of the case's history is removed from the ranking, the target included
  when it repeats a history item -- such a target cannot be hit and gets rank `MISS`; without
  it (`mask_history=False`, RecBole's protocol) nothing is removed. There is nothing in between:
  masking the history but not a repeated target would remove the target's strongest
  competitors and leak the answer;
- tie rule (pessimistic): an item whose score equals the target's counts as ranked above it, so
  a model that scores everything equally gets the worst rank, never a lucky one;
- exactness: scores are computed in float32 in bulk; every item whose float32 score lies within
  the float32 rounding bound of the target's is re-scored in float64 together with the target,
  and ties there are equality within 1e-12 x max(1, |score|). The ranks are therefore those of
  float64 arithmetic, and two identical item vectors tie however a matrix product rounded;
- rank is 0-based; HR@K = [rank < K], NDCG@K = 1/log2(rank + 2) if rank < K else 0,
  MRR@K = 1/(rank + 1) if rank < K else 0, each averaged over cases.

The ranking itself (chunked over items, batched over cases) lives in `guim.scoring`, shared with
`recommend`; this module turns ranks into metrics.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from guim.scoring import MISS, Scorer, max_dot, rank_targets

__all__ = [
    "MISS",
    "Scorer",
    "max_dot",
    "metrics_from_ranks",
    "paired_difference",
    "per_case",
    "rank_targets",
    "standard_error",
]


def metrics_from_ranks(ranks: np.ndarray, ks: Sequence[int] = (10, 20)) -> dict[str, float]:
    """HR@K, NDCG@K and MRR@K from 0-based ranks (see module docstring for definitions)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    if len(ranks) == 0:
        raise ValueError("no evaluation cases")
    return {
        f"{name}@{k}": float(_case_values(ranks, name, k).mean())
        for k in ks
        for name in ("HR", "NDCG", "MRR")
    }


def per_case(ranks: np.ndarray, metric: str) -> np.ndarray:
    """Each case's value of `metric` ("HR@K", "NDCG@K" or "MRR@K"): the values whose mean
    `metrics_from_ranks` reports."""
    name, _, cut = metric.partition("@")
    if name not in ("HR", "NDCG", "MRR") or not cut.isdigit():
        raise ValueError(f"unknown metric {metric!r}: expected HR@K, NDCG@K or MRR@K")
    return _case_values(np.asarray(ranks, dtype=np.float64), name, int(cut))


def _case_values(ranks: np.ndarray, name: str, k: int) -> np.ndarray:
    """Per-case HR / NDCG / MRR at cut-off k of float64 0-based ranks (module docstring)."""
    hit = ranks < k
    if name == "HR":
        return hit.astype(np.float64)
    value = 1.0 / np.log2(ranks + 2.0) if name == "NDCG" else 1.0 / (ranks + 1.0)
    return np.where(hit, value, 0.0)


def standard_error(values: np.ndarray) -> float:
    """Standard error of the mean of per-case values (sample standard deviation / sqrt(n)): how
    far a metric measured on these cases may lie from the same model's metric on the population
    the cases were drawn from."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        raise ValueError("a standard error needs at least two cases")
    return float(values.std(ddof=1) / np.sqrt(len(values)))


def paired_difference(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Mean difference a - b of two models' per-case values on the same cases, its standard error
    (of the per-case differences: the shared hardness of each case cancels) and the normal 95%
    interval."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired values need the same cases, got {a.shape} and {b.shape}")
    d = a - b
    se = standard_error(d)
    mean = float(d.mean())
    return {
        "difference": mean,
        "se": se,
        "ci95_low": mean - 1.96 * se,
        "ci95_high": mean + 1.96 * se,
    }
