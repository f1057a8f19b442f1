"""Losses as pure tensor functions: InfoNCE over a candidate set (full softmax is the special
case where the candidates are the whole catalogue), with logQ correction and masking; the
multi-interest next-item loss and the two-view contrastive loss built on it.

L = -log( exp(s+/tau - logQ+) / sum_j exp(s_j/tau - logQ_j) ), over allowed candidates j.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from guim.models.mor import interest_scores, nearest_interest


def info_nce(
    scores: torch.Tensor,
    positive: torch.Tensor,
    log_q: torch.Tensor | None = None,
    temperature: float = 1.0,
    allowed: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean InfoNCE loss.

    Args:
        scores: (P, C) similarity of each query to each candidate.
        positive: (P,) index of each query's positive among the C candidates.
        log_q: (C,) log of each candidate's expected inclusion count under the sampler
            (logQ correction); None for the full softmax.
        allowed: (C,) or (P, C) bool; False candidates are left out of the denominator
            (accidental hits, items unknown at training time). The positive must be allowed.
    """
    logits = scores / temperature
    if log_q is not None:
        logits = logits - log_q
    if allowed is not None:
        logits = logits.masked_fill(~allowed, float("-inf"))
    return F.cross_entropy(logits, positive)


def interest_info_nce(
    users: torch.Tensor,
    items: torch.Tensor,
    positive: torch.Tensor,
    log_q: torch.Tensor | None = None,
    temperature: float = 1.0,
    allowed: torch.Tensor | None = None,
    interest_score: str = "max",
    interest_temperature: float = 1.0,
) -> torch.Tensor:
    """InfoNCE of K-interest users against candidate items.

    Args:
        users: (P, K, D) user vectors at the predicted positions.
        items: (C, D) candidate vectors; positive, log_q, allowed as in `info_nce`.
        interest_score: "softmax" scores by the softmax-weighted K dot products (K > 1);
            otherwise each row reads out its interest nearest to its positive (hard, as
            ComiRec / MIND), which for K = 1 is the only one.
    """
    if users.shape[1] > 1 and interest_score == "softmax":
        scores = interest_scores(users, items, "softmax", interest_temperature)  # (P, C)
    else:
        user = nearest_interest(users, items[positive])  # (P, D)
        scores = user @ items.T  # (P, C)
    return info_nce(scores, positive, log_q, temperature, allowed)


def view_info_nce(
    states: torch.Tensor, view_states: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Symmetric InfoNCE between two views of each sequence's last-position user vector (mean
    of its K interests, L2-normalised): states, view_states (B, T, K, D) -> scalar."""
    z1 = F.normalize(states[:, -1].mean(dim=1), dim=-1)  # (B, D)
    z2 = F.normalize(view_states[:, -1].mean(dim=1), dim=-1)  # (B, D)
    sim = z1 @ z2.T  # (B, B)
    labels = torch.arange(len(sim), device=sim.device)
    return 0.5 * (
        info_nce(sim, labels, temperature=temperature)
        + info_nce(sim.T, labels, temperature=temperature)
    )
