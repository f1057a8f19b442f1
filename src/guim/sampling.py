"""Candidate sets for the sampled InfoNCE loss: shared negatives (uniform or popularity-
proportional) plus the batch's own targets, with each candidate's expected inclusion count for
the logQ correction. The cost of a step depends on the batch, never on the catalogue size.
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
    log_q: torch.Tensor | None  # (C,) log expected inclusion count, or None
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
        """Candidates for (P,) targets: unique(targets U negatives), each target's index in it,
        logQ = log(P * p_data(j) [in-batch] + M * q(j)) and the accidental-hit/in-batch mask."""
        cfg = self.cfg
        negatives = self.sample(cfg.n_negatives, generator)
        items, inverse = torch.unique(torch.cat([targets, negatives]), return_inverse=True)
        positive = inverse[: len(targets)]
        expected = cfg.n_negatives * self.q[items]
        allowed = None
        if cfg.in_batch:
            expected = expected + len(targets) * self.p_data[items]
        else:
            # only the sampled negatives and the row's own positive are candidates
            sampled = torch.zeros(len(items), dtype=torch.bool)
            sampled[inverse[len(targets) :]] = True
            allowed = sampled[None, :].expand(len(targets), -1).clone()
            allowed[torch.arange(len(targets)), positive] = True
        log_q = torch.log(expected.clamp_min(1e-12)) if cfg.logq else None
        return Candidates(items=items, positive=positive, log_q=log_q, allowed=allowed)
