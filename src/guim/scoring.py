"""The one scoring module: how K interest vectors score items, how a user's history enters the
ranking, and the chunked passes over the catalogue that evaluation (exact ranks), `recommend`
(top-k), the benchmark and serving all share.

History, two honest protocols and nothing in between:
- `mask_history=True` (the S3-Rec / FMLP-Rec / BSARec protocol, guim's default for the public
  benchmarks): every item the user has seen is removed from the ranking -- the target included
  when it repeats a history item, so a repeat target is a miss (rank `MISS`);
- `mask_history=False` (RecBole's protocol): nothing is removed; the right choice when a shop
  wants repeat consumption predicted.
Under `mask_history=False` a model may add a repeat-aware term: `seen_bonus` is added to the
score of every item of the case's history (one value per model, chosen on validation data;
positive or negative).

Scores are computed in float32 in item chunks of `chunk_size` for batches of `batch_size`
users, so memory stays bounded for catalogues of millions of items; `guim.metrics` documents
how ranks are made exact (float64 re-check of near-ties).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

TIE_RTOL = 1e-12  # float64 re-check
F32_EPS = float(np.finfo(np.float32).eps)
# rank of a target that cannot be ranked (masked as seen): a miss at every K
MISS = np.iinfo(np.int64).max

History = tuple[np.ndarray, np.ndarray]  # CSR: offsets (N + 1,), item_idx (E,)


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


def history_pairs(history: History, b0: int, b1: int) -> tuple[np.ndarray, np.ndarray]:
    """Unique (row within the batch, item_idx) pairs of the histories of cases b0..b1."""
    offsets, flat = history
    lengths = np.diff(offsets[b0 : b1 + 1])
    rows = np.repeat(np.arange(b1 - b0, dtype=np.int64), lengths)
    cols = np.asarray(flat[offsets[b0] : offsets[b1]], dtype=np.int64)
    if len(rows) == 0:
        return rows, cols
    width = int(cols.max()) + 1
    keys = np.unique(rows * width + cols)
    return keys // width, keys % width


def in_history(history: History, items: np.ndarray) -> np.ndarray:
    """(N,) bool: whether each case's `items[i]` occurs in its history (a repeat target)."""
    offsets, flat = history
    items = np.asarray(items, dtype=np.int64)
    rows = np.repeat(np.arange(len(items)), np.diff(offsets))
    hit = np.zeros(len(items), dtype=bool)
    hit[rows[np.asarray(flat, dtype=np.int64) == items[rows]]] = True
    return hit


def _allowed(n_rows: int, candidates: np.ndarray | None) -> np.ndarray:
    allowed = np.ones(n_rows, dtype=bool) if candidates is None else np.asarray(candidates, bool)
    allowed = allowed.copy()
    allowed[0] = False  # padding is never ranked
    return allowed


def score_chunks(
    users: torch.Tensor,
    items: torch.Tensor,
    allowed: torch.Tensor,
    pairs: tuple[np.ndarray, np.ndarray] | None,
    seen_bonus: float,
    scorer: Scorer,
    chunk_size: int,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Scores of a batch of users against the catalogue, one item chunk at a time:
    (c0, scores (B, c1 - c0)) with padding and non-candidates at -inf and the history pairs
    (row, item_idx) shifted by `seen_bonus` (-inf: masked)."""
    n_rows = items.shape[0]
    for c0 in range(0, n_rows, chunk_size):
        c1 = min(c0 + chunk_size, n_rows)
        scores = scorer(users, items[c0:c1])  # (B, C)
        scores.masked_fill_(~allowed[c0:c1], float("-inf"))
        if pairs is not None and seen_bonus != 0.0:
            rows, cols = pairs
            sel = (cols >= c0) & (cols < c1)
            r, c = torch.from_numpy(rows[sel]), torch.from_numpy(cols[sel] - c0)
            if seen_bonus == float("-inf"):
                scores[r, c] = float("-inf")
            else:
                scores[r, c] += seen_bonus
        yield c0, scores


def rank_targets(
    user_vecs: np.ndarray | torch.Tensor,
    item_vecs: np.ndarray | torch.Tensor,
    targets: np.ndarray,
    seen: History | None = None,
    candidates: np.ndarray | None = None,
    scorer: Scorer = max_dot,
    seen_bonus: float = float("-inf"),
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
        seen: CSR (offsets (N+1,), item_idx) of each case's history. With the default
            `seen_bonus` (-inf) every one of these items is removed from the ranking, the
            target included: a target that repeats a history item gets rank `MISS`. A finite
            `seen_bonus` is added to their scores instead (a repeat-aware score term).
        candidates: (n_items + 1,) bool mask of rankable items; None = all but padding.
        scorer: how K interest vectors score an item (max or softmax-weighted dot products).

    Returns:
        (N,) int64 ranks (`MISS` for masked targets).
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
    allowed = _allowed(n_rows, candidates)
    if n_cases and not allowed[targets].all():
        raise ValueError("every target must be a candidate item")
    allowed_t = torch.from_numpy(allowed)
    masking = seen is not None and seen_bonus == float("-inf")
    repeats = in_history(seen, targets) if seen is not None else np.zeros(n_cases, dtype=bool)
    # |score| <= |u| |v|, and a float32 dot product of length D is off by at most D eps |u||v|
    max_item_norm = float(items64.norm(dim=-1).max()) if n_rows else 0.0
    user_norms = users64.norm(dim=-1)
    if user_norms.dim() == 2:
        user_norms = user_norms.amax(dim=1)
    dim = users.shape[-1]
    bonus = 0.0 if seen is None or masking else seen_bonus

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
        target_scores = target_scores + bonus * torch.from_numpy(repeats[b0:b1])
        band = (4.0 * dim * F32_EPS) * user_norms[b0:b1].float() * max_item_norm + 1e-30
        band = band + 4.0 * F32_EPS * abs(bonus)
        pairs = history_pairs(seen, b0, b1) if seen is not None else None
        above = torch.zeros(b1 - b0, dtype=torch.int64)
        near_rows, near_cols = [], []
        for c0, scores in score_chunks(u, items, allowed_t, pairs, seen_bonus, scorer, chunk_size):
            hi = scores > (target_scores + band)[:, None]
            lo = scores >= (target_scores - band)[:, None]
            above += torch.count_nonzero(hi, dim=1)
            r, c = torch.nonzero(lo ^ hi, as_tuple=True)  # hi implies lo
            near_rows.append(r)
            near_cols.append(c + c0)
        above += _recheck_near(
            users64[b0:b1],
            items64,
            t,
            torch.cat(near_rows),
            torch.cat(near_cols),
            scorer,
            bonus,
            pairs,
            repeats[b0:b1],
        )
        ranks[b0:b1] = above.numpy()
    if masking:
        ranks[repeats] = MISS
    return ranks


def top_k(
    user_vecs: np.ndarray | torch.Tensor,
    item_vecs: np.ndarray | torch.Tensor,
    k: int,
    seen: History | None = None,
    candidates: np.ndarray | None = None,
    scorer: Scorer = max_dot,
    seen_bonus: float = float("-inf"),
    batch_size: int = 1024,
    chunk_size: int = 65536,
) -> tuple[np.ndarray, np.ndarray]:
    """The k best candidate items of each user: (item_idx (N, k) int64, scores (N, k) float32).

    `seen` and `seen_bonus` work as in `rank_targets` (by default the history is masked). Ties
    are broken towards the lower item index. Rows have fewer than k real entries when fewer
    items remain; those slots hold item 0 with score -inf.
    """
    users = _as_tensor(user_vecs).to(torch.float32)
    items = _as_tensor(item_vecs).to(torch.float32)
    n, n_rows = users.shape[0], items.shape[0]
    allowed = _allowed(n_rows, candidates)
    k = min(k, int(allowed.sum()))
    allowed_t = torch.from_numpy(allowed)
    out_idx = np.zeros((n, k), dtype=np.int64)
    out_score = np.zeros((n, k), dtype=np.float32)
    for b0 in range(0, n, batch_size):
        b1 = min(b0 + batch_size, n)
        best_s = torch.full((b1 - b0, 0), float("-inf"))
        best_i = torch.zeros((b1 - b0, 0), dtype=torch.int64)
        pairs = history_pairs(seen, b0, b1) if seen is not None else None
        for c0, s in score_chunks(
            users[b0:b1], items, allowed_t, pairs, seen_bonus, scorer, chunk_size
        ):
            cand_s = torch.cat([best_s, s], dim=1)
            ids = torch.arange(c0, c0 + s.shape[1]).expand(b1 - b0, -1)
            cand_i = torch.cat([best_i, ids], dim=1)
            # stable sort so equal scores keep the lower item index first
            order = torch.sort(cand_s, dim=1, descending=True, stable=True).indices[:, :k]
            best_s, best_i = cand_s.gather(1, order), cand_i.gather(1, order)
        best_i = best_i.masked_fill(best_s == float("-inf"), 0)
        out_idx[b0:b1], out_score[b0:b1] = best_i.numpy(), best_s.numpy()
    return out_idx, out_score


def _as_tensor(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    return x if torch.is_tensor(x) else torch.from_numpy(np.asarray(x))


def _recheck_near(
    users: torch.Tensor,
    items: torch.Tensor,
    targets: torch.Tensor,
    rows: torch.Tensor,
    cols: torch.Tensor,
    scorer: Scorer,
    bonus: float,
    pairs: tuple[np.ndarray, np.ndarray] | None,
    repeats: np.ndarray,
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
    if bonus != 0.0 and pairs is not None:
        target64 = target64 + bonus * torch.from_numpy(repeats)
        width = int(max(items.shape[0], 1))
        keys = np.sort(pairs[0] * width + pairs[1])
        near_keys = rows.numpy().astype(np.int64) * width + cols.numpy()
        pos = np.minimum(np.searchsorted(keys, near_keys), max(len(keys) - 1, 0))
        seen = (keys[pos] == near_keys) if len(keys) else np.zeros(len(near_keys), dtype=bool)
        near64 = near64 + bonus * torch.from_numpy(seen)
    t = target64[rows]
    ahead = near64 >= t - TIE_RTOL * t.abs().clamp_min(1.0)
    return out.index_add_(0, rows, ahead.long())
