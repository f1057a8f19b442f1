"""Distillation losses: pure functions of tensors (teacher tensors are targets, computed before).

MiniLM (arXiv 2002.10957): KL between the teacher's and the student's last-layer self-attention
distributions softmax(QKᵀ/√d_head) and value relations softmax(VVᵀ/√d_head), per head; MiniLM v2
(arXiv 2012.15828) relation heads for students of another width or head count. BERT2DNN
(arXiv 2010.10442): temperature-softened teacher scores, temperature rescaling of probabilities,
and teacher stacking (the average of the teachers' softened distributions).

Shapes: B histories, T positions, H heads, D width (q, k and v each), R relation heads, C
candidate items. `qkv` is a layer's concatenated projection [Q | K | V] (B, T, 3D), the output of
the attention block's `qkv` linear layer before the split into heads.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

RELATIONS = ("qq", "kk", "vv")  # MiniLM v2's self-relations


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(B, T, D) -> (B, n_heads, T, D / n_heads)."""
    b, t, d = x.shape
    if d % n_heads:
        raise ValueError(f"width {d} is not divisible by {n_heads} heads")
    return x.view(b, t, n_heads, d // n_heads).transpose(1, 2)


def relation_mask(real: torch.Tensor, causal: bool) -> torch.Tensor:
    """(B, 1, T, T) bool: query i relates to key j when j is a real position (and j <= i when
    causal), and always to itself -- the mask the encoder's attention uses."""
    t = real.shape[1]
    allowed = real[:, None, None, :]  # (B, 1, 1, T)
    if causal:
        allowed = allowed & torch.ones(t, t, dtype=torch.bool, device=real.device).tril()
    return allowed | torch.eye(t, dtype=torch.bool, device=real.device)


def relation_log_probs(x: torch.Tensor, y: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """log softmax_j(x_i · y_j / √d) over the allowed keys j: x, y (B, H, T, d), allowed
    (B, 1 | H, T, T) bool -> (B, H, T, T), -inf where not allowed."""
    scores = (x @ y.transpose(-1, -2)) / math.sqrt(x.shape[-1])  # (B, H, T, T)
    return torch.log_softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)


def relation_kl(
    teacher_log_probs: torch.Tensor,
    student_log_probs: torch.Tensor,
    allowed: torch.Tensor,
    real: torch.Tensor,
) -> torch.Tensor:
    """KL(teacher ‖ student) of row distributions (B, H, T, T), summed over the allowed keys,
    averaged over heads and the real query positions (real (B, T) bool) -> scalar."""
    teacher_log_probs = teacher_log_probs.detach()
    diff = teacher_log_probs - student_log_probs
    terms = torch.where(allowed, teacher_log_probs.exp() * diff, torch.zeros_like(diff))
    per_row = terms.sum(dim=-1).mean(dim=1)  # (B, T): summed over keys, averaged over heads
    return per_row[real].mean()


def attention_kl(
    teacher_qkv: torch.Tensor,
    student_qkv: torch.Tensor,
    real: torch.Tensor,
    n_heads: int,
    causal: bool,
    student_heads: int | None = None,
) -> torch.Tensor:
    """MiniLM's attention-transfer term: KL between the teacher's and the student's attention
    distributions softmax(QKᵀ/√d_head), per head (equal head counts; the head widths may
    differ), masked as the encoder masks them. qkv (B, T, 3D_t) / (B, T, 3D_s) -> scalar."""
    return _head_relation_kl(teacher_qkv, student_qkv, real, n_heads, causal, student_heads, "qk")


def value_relation_kl(
    teacher_qkv: torch.Tensor,
    student_qkv: torch.Tensor,
    real: torch.Tensor,
    n_heads: int,
    causal: bool,
    student_heads: int | None = None,
) -> torch.Tensor:
    """MiniLM's value-relation term: KL between softmax(VVᵀ/√d_head) of teacher and student,
    per head (equal head counts), under the same mask as the attention. -> scalar."""
    return _head_relation_kl(teacher_qkv, student_qkv, real, n_heads, causal, student_heads, "vv")


def minilm_loss(
    teacher_qkv: torch.Tensor,
    student_qkv: torch.Tensor,
    real: torch.Tensor,
    n_heads: int,
    causal: bool,
    student_heads: int | None = None,
) -> torch.Tensor:
    """MiniLM (v1): attention KL + value-relation KL of the last layers. -> scalar."""
    args = (teacher_qkv, student_qkv, real, n_heads, causal, student_heads)
    return attention_kl(*args) + value_relation_kl(*args)


def relation_heads_kl(
    teacher_qkv: torch.Tensor,
    student_qkv: torch.Tensor,
    real: torch.Tensor,
    n_relation_heads: int,
    causal: bool,
    relations: tuple[str, ...] = RELATIONS,
) -> torch.Tensor:
    """MiniLM v2's multi-head self-relation transfer, for a student of any width and head count.

    The concatenated Q (and K, V) of all attention heads, (B, T, D_t) in the teacher and
    (B, T, D_s) in the student, are each split afresh into `n_relation_heads` relation heads of
    width D_t / R and D_s / R (R must divide both widths), so both sides give (B, R, T, T)
    relations softmax(x_r y_rᵀ/√(D/R)) whatever their own head counts. `relations` picks the
    pairs: "qq", "kk", "vv" (v2's default) and "qk" (attention-like). Mean of the KLs -> scalar.
    """
    allowed = relation_mask(real, causal)
    teacher = dict(zip("qkv", teacher_qkv.chunk(3, dim=-1), strict=True))  # 3 x (B, T, D_t)
    student = dict(zip("qkv", student_qkv.chunk(3, dim=-1), strict=True))  # 3 x (B, T, D_s)
    losses = []
    for pair in relations:
        x, y = pair
        t = relation_log_probs(
            split_heads(teacher[x], n_relation_heads),
            split_heads(teacher[y], n_relation_heads),
            allowed,
        )
        s = relation_log_probs(
            split_heads(student[x], n_relation_heads),
            split_heads(student[y], n_relation_heads),
            allowed,
        )
        losses.append(relation_kl(t, s, allowed, real))
    return torch.stack(losses).mean()


def _head_relation_kl(
    teacher_qkv: torch.Tensor,
    student_qkv: torch.Tensor,
    real: torch.Tensor,
    n_heads: int,
    causal: bool,
    student_heads: int | None,
    pair: str,
) -> torch.Tensor:
    if student_heads is not None and student_heads != n_heads:
        raise ValueError(
            f"per-head MiniLM terms need equal head counts (teacher {n_heads}, student "
            f"{student_heads}); use relation_heads_kl for students of another shape"
        )
    allowed = relation_mask(real, causal)
    teacher = dict(zip("qkv", teacher_qkv.chunk(3, dim=-1), strict=True))
    student = dict(zip("qkv", student_qkv.chunk(3, dim=-1), strict=True))
    x, y = pair
    t = relation_log_probs(
        split_heads(teacher[x], n_heads), split_heads(teacher[y], n_heads), allowed
    )
    s = relation_log_probs(
        split_heads(student[x], n_heads), split_heads(student[y], n_heads), allowed
    )
    return relation_kl(t, s, allowed, real)


# -- scores over items (BERT2DNN, and MiniLM's optional score term) ------------------------------
def soften(
    scores: torch.Tensor, temperature: float = 1.0, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Temperature-softened distribution softmax(scores / T) over the candidates: scores (B, C),
    mask (B, C) or (C,) bool of candidates that count (e.g. no padding item) -> (B, C), 0 off
    the mask. T > 1 flattens the teacher's near-one-hot distributions."""
    logits = scores / temperature
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf"))
    return torch.softmax(logits, dim=-1)


def stack_teachers(
    teacher_scores: list[torch.Tensor],
    temperature: float = 1.0,
    mask: torch.Tensor | None = None,
    weights: list[float] | None = None,
) -> torch.Tensor:
    """Teacher stacking: the (weighted) average of the teachers' softened distributions --
    probabilities, not logits. teacher_scores: list of (B, C) -> (B, C) rows summing to 1."""
    if not teacher_scores:
        raise ValueError("stack_teachers needs at least one teacher")
    w = torch.tensor(weights if weights is not None else [1.0] * len(teacher_scores))
    w = (w / w.sum()).to(teacher_scores[0])
    probs = torch.stack([soften(s.detach(), temperature, mask) for s in teacher_scores])
    return torch.einsum("n,nbc->bc", w, probs)


def distribution_kl(
    target_probs: torch.Tensor,
    student_scores: torch.Tensor,
    temperature: float = 1.0,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """KL(target ‖ softmax(student / T)) per row, averaged, times T² (Hinton et al., so the
    gradient scale does not shrink as T grows). target (B, C) probabilities (zero off the
    mask), student_scores (B, C) -> scalar."""
    target_probs = target_probs.detach()
    logits = student_scores / temperature
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf"))
    student_log_probs = torch.log_softmax(logits, dim=-1)
    if mask is not None:  # off the mask the target is 0 and the student's log-probability -inf
        student_log_probs = student_log_probs.masked_fill(~mask, 0.0)
    with torch.no_grad():  # the target's own entropy term: a constant for the student
        neg_entropy = torch.xlogy(target_probs, target_probs).sum(dim=-1)  # (B,)
    cross = (target_probs * student_log_probs).sum(dim=-1)  # (B,)
    return (neg_entropy - cross).mean() * temperature**2


def score_kl(
    teacher_scores: torch.Tensor,
    student_scores: torch.Tensor,
    temperature: float = 1.0,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """KL between the teacher's and the student's temperature-softened item-score
    distributions (B, C) -> scalar (times T²)."""
    return distribution_kl(
        soften(teacher_scores, temperature, mask), student_scores, temperature, mask
    )


def rescale_probability(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """BERT2DNN's temperature rescaling of a teacher's binary probability:
    sigmoid(logit(p) / T); T = 1 leaves p, T > 1 pulls near-0/1 outputs towards 1/2."""
    p = probs.clamp(1e-7, 1 - 1e-7)
    return torch.sigmoid(torch.logit(p) / temperature)


def binary_distill_loss(
    teacher_probs: torch.Tensor, student_logits: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """BERT2DNN's loss: sigmoid cross-entropy of the student's logits against the teacher's
    probabilities rescaled at temperature T (any shape) -> scalar mean."""
    target = rescale_probability(teacher_probs.detach(), temperature)
    return F.binary_cross_entropy_with_logits(student_logits, target)


# -- where the MiniLM terms' inputs come from ----------------------------------------------------
@contextmanager
def last_layer_qkv(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Record the concatenated [Q | K | V] (B, T, 3D) that the model's top Transformer layer
    computes (a forward hook on its `qkv` projection: inference runs unchanged), one tensor per
    forward call made inside the block:

        with last_layer_qkv(teacher) as seen, torch.no_grad():
            teacher.encode(items, events, timestamps)
        teacher_qkv = seen[-1]
    """
    layer = model.layers()[-1]  # type: ignore[operator]
    seen: list[torch.Tensor] = []
    handle = layer.qkv.register_forward_hook(lambda _m, _i, out: seen.append(out))
    try:
        yield seen
    finally:
        handle.remove()
