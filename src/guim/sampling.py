"""Candidate sets for the sampled InfoNCE loss: shared negatives (uniform or popularity-
proportional) plus the batch's own targets, deduplicated, with each candidate's probability of
being in the set for the logQ correction (as TensorFlow's samplers with unique=True). The cost
of a step depends on the batch, never on the catalogue size.

Retrieved hard negatives (CARDS, `loss.hard_negatives`): `refresh` indexes the current item
vectors in FAISS (guim.index: exact for small catalogues, HNSW above) and keeps every item's
nearest items; a batch then adds, for randomly chosen targets, their neighbours ranked
`hard_skip + 1 ...` (the nearest are skipped: near-duplicates of the target are likely false
negatives). A hard negative is in the set because of the batch, not by chance, so its logQ is 0
(probability 1), and a row whose own window holds it does not count it as a negative.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from guim.config import LossConfig


@dataclass(frozen=True)
class Candidates:
    items: torch.Tensor  # (C,) unique item indices
    positive: torch.Tensor  # (P,) index of each target in `items`
    log_q: torch.Tensor | None  # (C,) log probability of inclusion in the set, or None
    allowed: torch.Tensor | None  # (P, C) bool, or None when every candidate is allowed
    hard: torch.Tensor | None = None  # (C,) bool: the retrieved hard negatives among `items`


class NegativeSampler:
    """Draws shared negatives among the items known at training time."""

    def __init__(self, cfg: LossConfig, popularity: np.ndarray, known: np.ndarray) -> None:
        """popularity (n_items + 1,) training counts; known (n_items + 1,) bool."""
        self.cfg = cfg
        known = known.copy()
        known[0] = False
        self.known_items = torch.from_numpy(np.flatnonzero(known)).long()
        pop = popularity.astype(np.float64) * known
        self.p_data = torch.from_numpy(pop / pop.sum()).float()  # (n_items + 1,)
        # popularity-proportional draws = items of uniformly drawn training interactions: O(1)
        self.interactions = torch.from_numpy(np.repeat(np.arange(len(pop)), pop.astype(np.int64)))
        self.neighbours: torch.Tensor | None = None  # (n_items + 1, skip + neighbours), -1 = none
        n_known = len(self.known_items)
        if cfg.sampler == "uniform":
            self.q = torch.where(torch.from_numpy(known), 1.0 / n_known, 0.0).float()
        else:
            self.q = self.p_data

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        if self.cfg.sampler == "uniform":
            pick = torch.randint(len(self.known_items), (n,), generator=generator)
            return self.known_items[pick]
        pick = torch.randint(len(self.interactions), (n,), generator=generator)
        return self.interactions[pick]

    def refresh(self, item_vectors: np.ndarray) -> None:
        """Index the current item vectors (n_items + 1, D; row 0 padding) and keep each known
        item's `hard_skip + hard_neighbours` nearest known items by inner product (itself
        excluded); called by the trainer at the start of every epoch and every
        `loss.hard_refresh_steps` steps."""
        from guim.index import IndexConfig, build_index, search

        cfg = self.cfg
        known = self.known_items.numpy()
        vectors = np.ascontiguousarray(item_vectors[known], dtype=np.float32)
        k = min(cfg.hard_skip + cfg.hard_neighbours + 1, len(known))
        labels, _ = search(build_index(vectors, IndexConfig()), vectors, k)
        found = np.where(labels >= 0, known[np.maximum(labels, 0)], -1)  # item rows, -1 = none
        found[found == known[:, None]] = -1  # an item is not its own negative
        # keep the first skip + neighbours others in rank order (self and misses pushed last)
        order = np.argsort(found < 0, axis=1, kind="stable")
        width = cfg.hard_skip + cfg.hard_neighbours
        found = np.take_along_axis(found, order, axis=1)[:, :width]
        table = np.full((len(item_vectors), width), -1, dtype=np.int64)
        table[known, : found.shape[1]] = found
        self.neighbours = torch.from_numpy(table)

    def hard(self, targets: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Up to `hard_negatives` retrieved negatives for the batch: the neighbours ranked after
        the skipped ones of randomly chosen targets (empty before the first `refresh`)."""
        cfg = self.cfg
        if self.neighbours is None or not cfg.hard_negatives or not len(targets):
            return targets.new_zeros(0)
        n_rows = max(1, -(-cfg.hard_negatives // cfg.hard_neighbours))  # ceil
        rows = targets[torch.randint(len(targets), (n_rows,), generator=generator)]
        picked = self.neighbours[rows, cfg.hard_skip :].reshape(-1)
        return picked[picked > 0][: cfg.hard_negatives]

    def candidates(
        self,
        targets: torch.Tensor,
        generator: torch.Generator,
        windows: torch.Tensor | None = None,
        target_rows: torch.Tensor | None = None,
    ) -> Candidates:
        """Candidates for (P,) targets: unique(targets U M negatives U H hard negatives), each
        target's index in it, logQ_j = log P(j in set) = log(1 - (1 - q_j)^M (1 - p_j)^P) with p
        the data distribution of targets (in-batch) and q the sampler's (0 for a hard negative),
        and the in-batch mask when in_batch is off. With hard negatives, `windows` (B, T) the
        batch's item ids and `target_rows` (P,) each target's window: a hard negative that is
        in the target's window (other than the target itself) is masked for that row."""
        cfg = self.cfg
        negatives = self.sample(cfg.n_negatives, generator)
        hard = self.hard(targets, generator)
        pool = torch.cat([targets, negatives, hard])
        items, inverse = torch.unique(pool, return_inverse=True)
        positive = inverse[: len(targets)]
        # log P(j not drawn) by the sampler, and by the batch's targets when they are negatives
        log_absent = cfg.n_negatives * torch.log1p(-self.q[items].clamp(max=1 - 1e-7))
        allowed = None
        if cfg.in_batch:
            p = self.p_data[items].clamp(max=1 - 1e-7)
            log_absent = log_absent + len(targets) * torch.log1p(-p)
        else:
            # only the sampled negatives and the row's own positive are candidates
            sampled = torch.zeros(len(items), dtype=torch.bool)
            sampled[inverse[len(targets) :]] = True
            allowed = sampled[None, :].expand(len(targets), -1).clone()
            allowed[torch.arange(len(targets)), positive] = True
        is_hard = None
        if len(hard):
            is_hard = torch.zeros(len(items), dtype=torch.bool)
            is_hard[inverse[len(targets) + len(negatives) :]] = True
            log_absent = log_absent.masked_fill(is_hard, float("-inf"))  # in the set for sure
            if windows is not None and target_rows is not None:
                allowed = _mask_false_negatives(
                    items, positive, is_hard, windows, target_rows, allowed
                )
        log_q = torch.log(-torch.expm1(log_absent)).clamp_min(-30.0) if cfg.logq else None
        return Candidates(
            items=items, positive=positive, log_q=log_q, allowed=allowed, hard=is_hard
        )


def _mask_false_negatives(
    items: torch.Tensor,
    positive: torch.Tensor,
    is_hard: torch.Tensor,
    windows: torch.Tensor,
    target_rows: torch.Tensor,
    allowed: torch.Tensor | None,
) -> torch.Tensor | None:
    """`allowed` (P, C) with every hard candidate that the target's own window holds masked
    out of that target's row (its positive stays allowed); None when nothing is masked."""
    flat = windows.reshape(-1)
    where = torch.searchsorted(items, flat).clamp(max=len(items) - 1)  # items is sorted
    present = (items[where] == flat) & (flat > 0)
    in_window = torch.zeros((windows.shape[0], len(items)), dtype=torch.bool)
    rows = torch.arange(windows.shape[0]).repeat_interleave(windows.shape[1])
    in_window[rows[present], where[present]] = True
    blocked = (in_window & is_hard)[target_rows]  # (P, C)
    blocked[torch.arange(len(positive)), positive] = False
    if not bool(blocked.any()):
        return allowed
    return ~blocked if allowed is None else allowed & ~blocked
