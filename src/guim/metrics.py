"""Exact full-ranking metrics: the rank of each target among all candidate items, then HR/NDCG/MRR.

Protocol (the S3-Rec / SASRec lineage, "full ranking"):
- the target is ranked against every item of the catalogue except padding (or, when
  `candidates` is given, every candidate item);
- with `seen` given (history masking, on by default in `guim.evaluate`), the items of a case's
  history are removed from the ranking, except the target itself, which is always ranked;
- tie rule (pessimistic): an item whose score equals the target's counts as ranked above it, so
  a model that scores everything equally gets the worst rank, never a lucky one;
- exactness: scores are computed in float32 in bulk; every item whose float32 score lies within
  the float32 rounding bound of the target's is re-scored in float64 together with the target,
  and ties there are equality within 1e-12 x max(1, |score|). The ranks are therefore those of
  float64 arithmetic, and two identical item vectors tie however a matrix product rounded;
- rank is 0-based; HR@K = [rank < K], NDCG@K = 1/log2(rank + 2) if rank < K else 0,
  MRR@K = 1/(rank + 1) if rank < K else 0, each averaged over cases.

Scores are computed in chunks of items (and batches of cases), so memory stays bounded for
catalogues of millions of items.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

TIE_RTOL = 1e-12  # float64 re-check
F32_EPS = float(np.finfo(np.float32).eps)


@dataclass(frozen=True)
class Scorer:
    """Score of an item for a user with K interest vectors: a reduction over the K dot products,
    "max" (the best interest) or "softmax" (dot products weighted by their softmax at
    `temperature`). With K = 1 both are the plain dot product."""

    mode: Literal["max", "softmax"] = "max"
    temperature: float = 1.0

    def reduce(self, per_interest: torch.Tensor, dim: int) -> torch.Tensor:
        if self.mode == "max":
            return per_interest.amax(dim=dim)
        weights = torch.softmax(per_interest / self.temperature, dim=dim)
        return (weights * per_interest).sum(dim=dim)

    def __call__(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """users (B, K, D) or (B, D), items (C, D) -> (B, C)."""
        if users.dim() == 2:
            return users @ items.T
        if users.shape[1] == 1:
            return users[:, 0] @ items.T
        return self.reduce(torch.einsum("bkd,cd->bkc", users, items), dim=1)

    def pairs(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """users (P, K, D) or (P, D), items (P, D) -> (P,) score of each user with its item."""
        if users.dim() == 2:
            users = users[:, None]
        return self.reduce((users * items[:, None, :]).sum(dim=-1), dim=1)


max_dot = Scorer("max")


def rank_targets(
    user_vecs: np.ndarray | torch.Tensor,
    item_vecs: np.ndarray | torch.Tensor,
    targets: np.ndarray,
    seen: tuple[np.ndarray, np.ndarray] | None = None,
    candidates: np.ndarray | None = None,
    scorer: Scorer = max_dot,
    batch_size: int = 1024,
    chunk_size: int = 32768,
    show_progress: bool = False,
) -> np.ndarray:
    """0-based rank of each case's target among the candidate items (pessimistic ties).

    Args:
        user_vecs: (N, K, D) or (N, D) user representations, one per case.
        item_vecs: (n_items + 1, D) item vectors indexed by item_idx; row 0 (padding) is never
            ranked.
        targets: (N,) item_idx of each case's target.
        seen: CSR (offsets (N+1,), item_idx) of items to mask out per case (the history); the
            target is never masked.
        candidates: (n_items + 1,) bool mask of rankable items; None = all but padding.
        scorer: how K interest vectors score an item (max or softmax-weighted dot products).

    Returns:
        (N,) int64 ranks.
    """
    users64 = _as_tensor(user_vecs).to(torch.float64)
    items64 = _as_tensor(item_vecs).to(torch.float64)
    users, items = users64.to(torch.float32), items64.to(torch.float32)
    targets = np.asarray(targets, dtype=np.int64)
    n_cases, n_rows = len(targets), items.shape[0]
    if users.shape[0] != n_cases:
        raise ValueError(f"{users.shape[0]} user vectors for {n_cases} targets")
    if n_cases and (targets.min() < 1 or targets.max() >= n_rows):
        raise ValueError("targets must be item indices in [1, n_items]")
    allowed = np.ones(n_rows, dtype=bool) if candidates is None else np.asarray(candidates, bool)
    allowed = allowed.copy()
    allowed[0] = False
    if n_cases and not allowed[targets].all():
        raise ValueError("every target must be a candidate item")
    allowed_t = torch.from_numpy(allowed)
    # |score| <= |u| |v|, and a float32 dot product of length D is off by at most D eps |u||v|
    max_item_norm = float(items64.norm(dim=-1).max()) if n_rows else 0.0
    user_norms = users64.norm(dim=-1)
    if user_norms.dim() == 2:
        user_norms = user_norms.amax(dim=1)
    dim = users.shape[-1]

    ranks = np.zeros(n_cases, dtype=np.int64)
    batches = range(0, n_cases, batch_size)
    if show_progress:
        from guim.progress import track

        batches = track(batches, "ranking", total=len(batches))  # type: ignore[assignment]
    for b0 in batches:
        b1 = min(b0 + batch_size, n_cases)
        u = users[b0:b1]
        t = torch.from_numpy(targets[b0:b1])
        target_scores = scorer.pairs(u, items[t])  # (B,)
        if torch.isnan(target_scores).any():
            raise ValueError("NaN score for a target item")
        band = (4.0 * dim * F32_EPS) * user_norms[b0:b1].float() * max_item_norm + 1e-30
        rows, cols = _seen_pairs(seen, b0, b1, targets) if seen is not None else (None, None)
        above = torch.zeros(b1 - b0, dtype=torch.int64)
        near_rows, near_cols = [], []
        for c0 in range(0, n_rows, chunk_size):
            c1 = min(c0 + chunk_size, n_rows)
            scores = scorer(u, items[c0:c1])  # (B, C)
            scores.masked_fill_(~allowed_t[c0:c1], float("-inf"))
            if rows is not None:
                sel = (cols >= c0) & (cols < c1)
                scores[rows[sel], cols[sel] - c0] = float("-inf")
            hi = scores > (target_scores + band)[:, None]
            lo = scores >= (target_scores - band)[:, None]
            above += torch.count_nonzero(hi, dim=1)
            r, c = torch.nonzero(lo ^ hi, as_tuple=True)  # hi implies lo
            near_rows.append(r)
            near_cols.append(c + c0)
        above += _recheck_near(
            users64[b0:b1], items64, t, torch.cat(near_rows), torch.cat(near_cols), scorer
        )
        ranks[b0:b1] = above.numpy()
    return ranks


def _as_tensor(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    return x if torch.is_tensor(x) else torch.from_numpy(np.asarray(x))


def _recheck_near(
    users: torch.Tensor,
    items: torch.Tensor,
    targets: torch.Tensor,
    rows: torch.Tensor,
    cols: torch.Tensor,
    scorer: Scorer,
) -> torch.Tensor:
    """Per case: how many items within float32 rounding of the target really score >= it,
    decided in float64 pair by pair (the target itself excluded)."""
    out = torch.zeros(users.shape[0], dtype=torch.int64)
    keep = cols != targets[rows]
    rows, cols = rows[keep], cols[keep]
    if len(rows) == 0:
        return out
    target64 = scorer.pairs(users, items[targets])  # (B,)
    near64 = scorer.pairs(users[rows], items[cols])  # (P,)
    t = target64[rows]
    ahead = near64 >= t - TIE_RTOL * t.abs().clamp_min(1.0)
    return out.index_add_(0, rows, ahead.long())


def _seen_pairs(
    seen: tuple[np.ndarray, np.ndarray], b0: int, b1: int, targets: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """(row within batch, item_idx) pairs to mask for cases b0..b1, excluding each target."""
    offsets, flat = seen
    start, end = offsets[b0], offsets[b1]
    lengths = np.diff(offsets[b0 : b1 + 1])
    rows = np.repeat(np.arange(b1 - b0), lengths)
    cols = np.asarray(flat[start:end], dtype=np.int64)
    keep = cols != targets[b0:b1][rows]
    return torch.from_numpy(rows[keep]), torch.from_numpy(cols[keep])


def metrics_from_ranks(ranks: np.ndarray, ks: Sequence[int] = (10, 20)) -> dict[str, float]:
    """HR@K, NDCG@K and MRR@K from 0-based ranks (see module docstring for definitions)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    out: dict[str, float] = {}
    if len(ranks) == 0:
        raise ValueError("no evaluation cases")
    for k in ks:
        hit = ranks < k
        out[f"HR@{k}"] = float(hit.mean())
        out[f"NDCG@{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0).mean())
        out[f"MRR@{k}"] = float(np.where(hit, 1.0 / (ranks + 1.0), 0.0).mean())
    return out
