"""Exact full-ranking metrics: the rank of each target among all candidate items, then HR/NDCG/MRR.

Protocol (the S3-Rec / SASRec lineage, "full ranking"):
- the target is ranked against every item of the catalogue except padding (or, when
  `candidates` is given, every candidate item);
- with `seen` given (history masking, on by default in `guim.evaluate`), the items of a case's
  history are removed from the ranking, except the target itself, which is always ranked;
- tie rule (pessimistic): an item whose score equals the target's counts as ranked above it, so
  a model that scores everything equally gets the worst rank, never a lucky one. Scores are
  compared in float64 and treated as equal within 1e-9 x max(1, |score|), so that two identical
  item vectors tie however the matrix product happened to round;
- rank is 0-based; HR@K = [rank < K], NDCG@K = 1/log2(rank + 2) if rank < K else 0,
  MRR@K = 1/(rank + 1) if rank < K else 0, each averaged over cases.

Scores are computed in chunks of items (and batches of cases), so memory stays bounded for
catalogues of millions of items.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

TIE_RTOL = 1e-9

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def max_dot(users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """Score of every (user, item) pair: max over the user's K vectors of the dot product.

    users: (B, K, D) or (B, D); items: (C, D) -> (B, C). With K = 1 this is the plain dot product.
    """
    if users.dim() == 2:
        return users @ items.T
    return torch.einsum("bkd,cd->bkc", users, items).amax(dim=1)


def rank_targets(
    user_vecs: np.ndarray | torch.Tensor,
    item_vecs: np.ndarray | torch.Tensor,
    targets: np.ndarray,
    seen: tuple[np.ndarray, np.ndarray] | None = None,
    candidates: np.ndarray | None = None,
    score_fn: ScoreFn = max_dot,
    batch_size: int = 1024,
    chunk_size: int = 32768,
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
        score_fn: maps (B, K, D) users and (C, D) items to (B, C) scores.

    Returns:
        (N,) int64 ranks.
    """
    users = torch.as_tensor(np.asarray(user_vecs) if not torch.is_tensor(user_vecs) else user_vecs)
    items = torch.as_tensor(np.asarray(item_vecs) if not torch.is_tensor(item_vecs) else item_vecs)
    users, items = users.to(torch.float64), items.to(torch.float64)
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

    ranks = np.zeros(n_cases, dtype=np.int64)
    for b0 in range(0, n_cases, batch_size):
        b1 = min(b0 + batch_size, n_cases)
        u = users[b0:b1]
        t = torch.from_numpy(targets[b0:b1])
        target_scores = score_fn(u, items[t]).diagonal()  # (B,)
        if torch.isnan(target_scores).any():
            raise ValueError("NaN score for a target item")
        tol = TIE_RTOL * target_scores.abs().clamp_min(1.0)
        rows, cols = _seen_pairs(seen, b0, b1, targets) if seen is not None else (None, None)
        above = torch.zeros(b1 - b0, dtype=torch.int64)
        for c0 in range(0, n_rows, chunk_size):
            c1 = min(c0 + chunk_size, n_rows)
            scores = score_fn(u, items[c0:c1])  # (B, C)
            scores = scores.masked_fill(~allowed_t[c0:c1], float("-inf"))
            if rows is not None:
                sel = (cols >= c0) & (cols < c1)
                scores[rows[sel], cols[sel] - c0] = float("-inf")
            ahead = scores >= (target_scores - tol)[:, None]
            above += ahead.sum(dim=1)
        ranks[b0:b1] = (above - 1).numpy()  # the target ties with itself
    return ranks


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
