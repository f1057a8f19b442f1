"""Losses as pure tensor functions: InfoNCE over a candidate set (full softmax is the special
case where the candidates are the whole catalogue), with logQ correction and masking; the
multi-interest next-item loss, the two-view contrastive loss and the intent contrastive loss
built on it.

L = -log( exp(s+/tau - logQ+) / sum_j exp(s_j/tau - logQ_j) ), over allowed candidates j.

The softmax over the candidates is the training step's largest cost (a (P, C) score matrix for
P targets and C items: the whole catalogue, or a sampled set with in-batch negatives, where C
is about P). `full_softmax_nce` computes it fused and in row chunks: each chunk's scores, logQ
correction, masks, softmax and gradients are made while the chunk is in cache, so the (P, C)
matrix is never written to memory whole and the backward pass is two stored tensors. Same loss
and gradients as `info_nce` (tested), different float summation order.
"""

from __future__ import annotations

from typing import Any

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


class _FusedSoftmaxNCE(torch.autograd.Function):
    """Mean -log softmax(users @ items.T / tau - logQ)[positive] over the allowed candidates;
    gradients made in the forward pass. Computed in fp32 also under bf16 autocast: the
    catalogue softmax is where precision matters most."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        users: torch.Tensor,
        items: torch.Tensor,
        positive: torch.Tensor,
        blocked: torch.Tensor | None,
        row_blocked: torch.Tensor | None,
        log_q: torch.Tensor | None,
        temperature: float,
        chunk: int,
    ) -> torch.Tensor:
        ctx.dtypes = users.dtype, items.dtype
        dtype = torch.promote_types(torch.promote_types(users.dtype, items.dtype), torch.float32)
        users, items = users.to(dtype), items.to(dtype)
        if log_q is not None:
            log_q = log_q.to(dtype)
        p = users.shape[0]
        # only the gradients asked for: frozen item vectors (MSLT's top-only stages) skip the
        # (C, P) x (P, D) product
        want_users, want_items = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        scaled = users / temperature  # (P, D): scores / tau without a (P, C) division
        grad_users = torch.empty_like(users) if want_users else users.new_zeros(())
        grad_items = torch.zeros_like(items) if want_items else items.new_zeros(())
        total = users.new_zeros((), dtype=torch.float64)
        with torch.autocast(users.device.type, enabled=False):
            for start in range(0, p, chunk):
                u = scaled[start : start + chunk]  # (c, D)
                pos = positive[start : start + chunk]
                rows = torch.arange(len(pos), device=users.device)
                logits = u @ items.T  # (c, C)
                if log_q is not None:  # logQ correction of sampled candidates
                    logits.sub_(log_q)
                if blocked is not None:  # a few columns: cheaper than gathering the others
                    logits.index_fill_(1, blocked, float("-inf"))
                if row_blocked is not None:  # per-row masks (P, C)
                    logits.masked_fill_(row_blocked[start : start + chunk], float("-inf"))
                log_probs = torch.log_softmax(logits, dim=1, out=logits)  # in place, row by row
                total -= log_probs[rows, pos].sum(dtype=torch.float64)
                probs = log_probs.exp_()  # softmax, in place
                probs[rows, pos] -= 1.0  # d loss / d logits = softmax - onehot
                if want_users:
                    grad_users[start : start + chunk] = probs @ items
                if want_items:  # (out=, not addmm_: counted by torch.utils.flop_counter)
                    torch.addmm(grad_items, probs.T, u, out=grad_items)
        scale = 1.0 / (p * temperature)  # the mean over P; logits = users @ items.T / tau
        ctx.save_for_backward(grad_users.mul_(scale), grad_items.mul_(1.0 / p))
        return (total / p).to(dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        grad_users, grad_items = ctx.saved_tensors
        users_dtype, items_dtype = ctx.dtypes
        want_users, want_items = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        return (
            (grad_users * grad).to(users_dtype) if want_users else None,
            (grad_items * grad).to(items_dtype) if want_items else None,
            None,
            None,
            None,
            None,
            None,
            None,
        )


def full_softmax_nce(
    users: torch.Tensor,
    items: torch.Tensor,
    positive: torch.Tensor,
    temperature: float = 1.0,
    allowed: torch.Tensor | None = None,
    chunk: int = 128,
    log_q: torch.Tensor | None = None,
) -> torch.Tensor:
    """`info_nce(users @ items.T, positive, log_q, temperature, allowed)` for users (P, D) and
    candidate items (C, D) (the whole catalogue, or a sampled set with its logQ (C,)),
    `allowed` (C,) or (P, C) bool or None, fused and computed `chunk` rows at a time (see the
    module docstring). A blocked candidate gets no score and no gradient."""
    if not users.requires_grad and not items.requires_grad:  # no gradients wanted
        return info_nce(users @ items.T, positive, log_q, temperature, allowed)
    blocked = row_blocked = None
    if allowed is not None and allowed.dim() == 2:
        row_blocked = ~allowed
    elif allowed is not None and not bool(allowed.all()):
        blocked = (~allowed).nonzero().squeeze(1)
    return _FusedSoftmaxNCE.apply(
        users, items, positive, blocked, row_blocked, log_q, temperature, chunk
    )


def interest_info_nce(
    users: torch.Tensor,
    items: torch.Tensor,
    positive: torch.Tensor,
    log_q: torch.Tensor | None = None,
    temperature: float = 1.0,
    allowed: torch.Tensor | None = None,
    interest_score: str = "max",
    interest_temperature: float = 1.0,
    readout: str = "nearest",
) -> torch.Tensor:
    """InfoNCE of K-interest users against candidate items.

    Args:
        users: (P, K, D) user vectors at the predicted positions.
        items: (C, D) candidate vectors; positive, log_q, allowed as in `info_nce`.
        interest_score: "softmax" scores by the softmax-weighted K dot products (K > 1).
        readout: for "max" scoring, "nearest" reads out each row's interest nearest to its
            positive and scores every candidate by it alone (hard, as ComiRec / MIND; for K = 1
            the only interest); "scored" gives each candidate its max-over-K score, as
            evaluation ranks.
    """
    if users.shape[1] > 1 and (interest_score == "softmax" or readout == "scored"):
        scores = interest_scores(users, items, interest_score, interest_temperature)  # (P, C)
        return info_nce(scores, positive, log_q, temperature, allowed)
    user = nearest_interest(users, items[positive])  # (P, D)
    # fused and chunked, over the whole catalogue or a sampled candidate set alike
    return full_softmax_nce(user, items, positive, temperature, allowed, log_q=log_q)


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


def intent_info_nce(
    states: torch.Tensor,
    intents: torch.Tensor,
    temperature: float,
    view_states: torch.Tensor | None = None,
) -> torch.Tensor:
    """Intent contrastive loss (ICLRec; PCL's ProtoNCE): each sequence's last-position user
    vector (mean of its K interests, L2-normalised) against every intent centroid, its own
    intent -- the centroid nearest to it, chosen without gradient (the E-step) -- the positive.
    With `view_states` (a second view of the same windows) both views are pulled to the
    intent of the first and the two losses averaged.

    Args:
        states: (B, T, K, D) encoder states; view_states likewise.
        intents: (I, D) unit-norm intent centroids (`guim.trainer.intents.fit_intents`).
    """
    z = F.normalize(states[:, -1].mean(dim=1), dim=-1)  # (B, D)
    centroids = intents.to(z.dtype)
    scores = z @ centroids.T  # (B, I)
    own = scores.detach().argmax(dim=1)  # (B,) the nearest intent of each window
    loss = info_nce(scores, own, temperature=temperature)
    if view_states is None:
        return loss
    zv = F.normalize(view_states[:, -1].mean(dim=1), dim=-1)
    return 0.5 * (loss + info_nce(zv @ centroids.T, own, temperature=temperature))
