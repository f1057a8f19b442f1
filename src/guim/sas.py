"""SAS, the self-augmented objective (arXiv 2106.07176) for behaviour sequences: one encoder,
two heads on its output in one forward pass, masked-item prediction and replaced-item detection.

The replacements are the network's own: at every masked position the trainer samples an item
from the masked-item softmax (under no_grad, with a temperature; "no-hit" excludes the true
item) and stores it under that position's event (its index into the training sequences, i.e.
user row + position in the history; `Batch.event_index`). The NEXT epoch, every window showing
that event unmasked reads the stored item as its input there and the detection head must say
it was replaced. The first epoch of a SAS stage has no stored replacements (cold start): it
trains the masked-item head alone (detection labels would all be 0, so the term is off).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DetectionHead(nn.Module):
    """Replaced-item detection: one logit per position from the encoder's states."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, 1)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        """states (B, T, K, D) -> logits (B, T): was this position's input replaced?"""
        return self.proj(states.mean(dim=2)).squeeze(-1)


def apply_replacements(
    items: torch.Tensor,
    masked: torch.Tensor,
    event_index: torch.Tensor,
    previous: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The detection input of a masked-item batch and its labels.

    Args:
        items: (B, T) inputs (0 at padding and at masked positions).
        masked: (B, T) bool, the positions whose item is predicted.
        event_index: (B, T) each position's event (-1 = padding).
        previous: (n_events,) the replacements the previous epoch stored (0 = none), or None.
    Returns:
        (inputs (B, T), replaced (B, T) bool): the stored item at every real unmasked position
        that has one, and where the input now differs from the true item.
    """
    if previous is None:
        return items, torch.zeros_like(items, dtype=torch.bool)
    stored = previous.to(items.device)[event_index.clamp_min(0)]  # (B, T)
    use = (items > 0) & ~masked & (event_index >= 0) & (stored > 0)
    inputs = torch.where(use, stored, items)
    return inputs, inputs != items


@torch.no_grad()
def sample_replacements(
    scores: torch.Tensor,
    true_items: torch.Tensor,
    allowed: torch.Tensor,
    temperature: float,
    no_hit: bool,
    generator: torch.Generator,
    columns: torch.Tensor | None = None,
    log_q: torch.Tensor | None = None,
) -> torch.Tensor:
    """One item per masked position from softmax(scores / temperature) over allowed items.

    Args:
        scores: (P, C) the masked-item logits (already divided by the loss temperature); column
            c scores item c (0 = padding), or item `columns[c]` when given.
        true_items: (P,) the items the positions hide; with `no_hit` they are never drawn.
        allowed: (n_items + 1,) bool, the items that may be drawn (seen in training).
        columns: (C,) the item of each column when the scores cover a sampled candidate set
            (the sampled loss's shared negatives and in-batch targets) instead of the catalogue.
        log_q: (C,) the log expected inclusion count of each candidate: subtracted from the
            logits, so the draw approximates the catalogue softmax (self-normalised importance
            sampling, as the sampled loss's logQ correction).
    Returns: (P,) item indices (on the CPU, drawn with `generator`).
    """
    logits = scores.float() / temperature
    if log_q is not None:
        logits = logits - log_q.to(logits.device, logits.dtype)
    if columns is None:
        logits = logits.masked_fill(~allowed, float("-inf"))
        if no_hit:
            logits[torch.arange(len(logits)), true_items] = float("-inf")
    else:
        columns = columns.to(logits.device)
        logits = logits.masked_fill(~allowed.to(logits.device)[columns], float("-inf"))
        if no_hit:  # a candidate may be the row's own item (an in-batch target, a sample)
            hit = columns[None, :] == true_items.to(logits.device)[:, None]
            logits = logits.masked_fill(hit, float("-inf"))
    probs = torch.softmax(logits, dim=-1).cpu()
    probs = torch.nan_to_num(probs)  # a row with nothing allowed: all zero
    empty = probs.sum(-1) == 0
    probs[empty, 0] = 1.0  # draws column 0, returned as 0 = "no replacement"
    drawn = torch.multinomial(probs, 1, generator=generator).squeeze(1)
    if columns is None:
        return drawn
    return columns.cpu()[drawn].masked_fill(empty, 0)


def detection_loss(
    logits: torch.Tensor, replaced: torch.Tensor, where: torch.Tensor
) -> torch.Tensor:
    """Mean binary cross-entropy of logits (B, T) against replaced (B, T) over `where` (B, T)."""
    return F.binary_cross_entropy_with_logits(logits[where], replaced[where].float())
