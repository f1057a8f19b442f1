"""The one inference path: every model and baseline is an `Embedder`; evaluation, the benchmark,
export and serving all score users against items through the functions here.

An embedder maps histories to user vectors (N, K, D) -- K interest vectors per user, K = 1 for
single-vector models -- and gives one vector per item (n_items + 1, D), row 0 being padding.
The score of an item for a user is `score_fn(users, items)`, max over K of dot products unless
the embedder says otherwise.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import torch

from guim.data.dataset import Sequences
from guim.metrics import ScoreFn, max_dot


@runtime_checkable
class Embedder(Protocol):
    """Anything that embeds users from their histories and items from the catalogue."""

    name: str

    def embed_users(self, histories: Sequences) -> np.ndarray:
        """(N, K, D) float32 user vectors for N histories."""
        ...

    def embed_items(self) -> np.ndarray:
        """(n_items + 1, D) float32 item vectors indexed by item_idx; row 0 is padding."""
        ...


def score_fn_of(embedder: Embedder) -> ScoreFn:
    return getattr(embedder, "score_fn", max_dot)


def recommend(
    embedder: Embedder,
    histories: Sequences,
    k: int = 10,
    mask_history: bool = True,
    candidates: np.ndarray | None = None,
    batch_size: int = 1024,
    chunk_size: int = 65536,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k items for each history: (item_idx (N, k) int64, scores (N, k) float32).

    Items of the history are excluded when `mask_history`; `candidates` (n_items + 1,) bool
    restricts the ranking. Ties are broken towards the lower item index.
    """
    users = torch.from_numpy(np.asarray(embedder.embed_users(histories), dtype=np.float32))
    items = torch.from_numpy(np.asarray(embedder.embed_items(), dtype=np.float32))
    score = score_fn_of(embedder)
    n, n_rows = users.shape[0], items.shape[0]
    allowed = np.ones(n_rows, dtype=bool) if candidates is None else np.asarray(candidates).copy()
    allowed[0] = False
    k = min(k, int(allowed.sum()))
    allowed_t = torch.from_numpy(allowed)
    out_idx = np.zeros((n, k), dtype=np.int64)
    out_score = np.zeros((n, k), dtype=np.float32)
    for b0 in range(0, n, batch_size):
        b1 = min(b0 + batch_size, n)
        best_s = torch.full((b1 - b0, 0), float("-inf"))
        best_i = torch.zeros((b1 - b0, 0), dtype=torch.int64)
        sub = histories.take(np.arange(b0, b1)) if mask_history else None
        for c0 in range(0, n_rows, chunk_size):
            c1 = min(c0 + chunk_size, n_rows)
            s = score(users[b0:b1], items[c0:c1]).masked_fill(~allowed_t[c0:c1], float("-inf"))
            if sub is not None:
                rows = np.repeat(np.arange(b1 - b0), sub.lengths)
                cols = sub.item_idx.astype(np.int64)
                sel = (cols >= c0) & (cols < c1)
                s[torch.from_numpy(rows[sel]), torch.from_numpy(cols[sel] - c0)] = float("-inf")
            cand_s = torch.cat([best_s, s], dim=1)
            cand_i = torch.cat([best_i, torch.arange(c0, c1).expand(b1 - b0, -1)], dim=1)
            # stable sort so equal scores keep the lower item index first
            order = torch.sort(cand_s, dim=1, descending=True, stable=True).indices[:, :k]
            best_s, best_i = cand_s.gather(1, order), cand_i.gather(1, order)
        out_idx[b0:b1], out_score[b0:b1] = best_i.numpy(), best_s.numpy()
    return out_idx, out_score
