"""Losses as pure tensor functions: InfoNCE over a candidate set (full softmax is the special
case where the candidates are the whole catalogue), with logQ correction and masking.

L = -log( exp(s+/tau - logQ+) / sum_j exp(s_j/tau - logQ_j) ), over allowed candidates j.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


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
