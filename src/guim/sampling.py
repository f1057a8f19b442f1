"""Candidate sets for the sampled InfoNCE loss: shared negatives (uniform or popularity-
proportional) plus the batch's own targets, deduplicated, with each candidate's probability of
being in the set for the logQ correction (as TensorFlow's samplers with unique=True). The cost
of a step depends on the batch, never on the catalogue size.
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

    def candidates(self, targets: torch.Tensor, generator: torch.Generator) -> Candidates:
        """Candidates for (P,) targets: unique(targets U M negatives), each target's index in it,
        logQ_j = log P(j in set) = log(1 - (1 - q_j)^M (1 - p_j)^P) with p the data distribution
        of targets (in-batch) and q the sampler's, and the in-batch mask when in_batch is off."""
        cfg = self.cfg
        negatives = self.sample(cfg.n_negatives, generator)
        items, inverse = torch.unique(torch.cat([targets, negatives]), return_inverse=True)
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
        log_q = torch.log(-torch.expm1(log_absent)).clamp_min(-30.0) if cfg.logq else None
        return Candidates(items=items, positive=positive, log_q=log_q, allowed=allowed)
