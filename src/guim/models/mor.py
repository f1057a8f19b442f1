"""Mixture of Representations (GUIM): K interest vectors per user and the scores they give.

Interest k at position t is the encoder state h_t plus an interest-specific residual: K learnable
queries attend over the history h_{<=t} (ComiRec-SA style attentive pooling), and the residuals
are centred across the K interests, so the mean of the K vectors is h_t. With K = 1 the residual
is exactly zero and the model is exactly the single-vector model.

Scores: "max" takes the best of the K dot products (training reads out the interest nearest to
the target, as ComiRec and MIND do); "softmax" weights the K dot products by their softmax.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from guim.config import ModelConfig
from guim.metrics import Scorer


class InterestHead(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.k = cfg.n_interests
        if self.k < 1:
            raise ValueError(f"model.n_interests must be >= 1, got {self.k}")
        if self.k > 1:
            self.queries = nn.Parameter(torch.randn(self.k, cfg.dim) / math.sqrt(cfg.dim))
            self.key = nn.Linear(cfg.dim, cfg.dim, bias=False)
            self.value = nn.Linear(cfg.dim, cfg.dim, bias=False)

    def forward(self, h: torch.Tensor, real: torch.Tensor, causal: bool) -> torch.Tensor:
        """h (B, T, D), real (B, T) bool -> interests (B, T, K, D)."""
        if self.k == 1:
            return h[:, :, None, :]  # the centred residual of a single interest is zero
        b, t, d = h.shape
        scores = torch.einsum("kd,btd->bkt", self.queries, self.key(h)) / math.sqrt(d)  # (B,K,T)
        allowed = real[:, None, None, :].expand(b, 1, t, t)  # (B, 1, T_out, T_in)
        if causal:
            allowed = allowed & torch.ones(t, t, dtype=torch.bool, device=h.device).tril()
        # every output position may read its own state, so no softmax row is empty
        allowed = allowed | torch.eye(t, dtype=torch.bool, device=h.device)
        logits = scores[:, :, None, :].masked_fill(~allowed, float("-inf"))  # (B, K, T, T)
        weights = torch.softmax(logits, dim=-1)
        pooled = torch.einsum("bkst,btd->bskd", weights, self.value(h))  # (B, T, K, D)
        residual = pooled - pooled.mean(dim=2, keepdim=True)
        return h[:, :, None, :] + residual


def interest_scores(
    users: torch.Tensor, items: torch.Tensor, mode: str = "max", temperature: float = 1.0
) -> torch.Tensor:
    """users (B, K, D), items (C, D) -> (B, C): max over K, or softmax-weighted over K."""
    return Scorer(mode, temperature)(users, items)  # type: ignore[arg-type]


def nearest_interest(users: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """users (P, K, D), target vectors (P, D) -> (P, D): the interest scoring the target highest.

    The choice is not differentiated (hard read-out); gradients flow into the chosen vector.
    """
    with torch.no_grad():
        best = torch.einsum("pkd,pd->pk", users, targets).argmax(dim=1)  # (P,)
    return users[torch.arange(users.shape[0], device=users.device), best]
