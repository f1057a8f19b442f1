"""Distillation losses against hand-written references on tiny cases (B = 2, H = 2, T = 3; odd
head widths), zero at student = teacher, and teacher stacking averaging probabilities."""

from __future__ import annotations

import math

import pytest
import torch

from guim.distill import (
    attention_kl,
    binary_distill_loss,
    distribution_kl,
    minilm_loss,
    relation_heads_kl,
    rescale_probability,
    score_kl,
    soften,
    stack_teachers,
    value_relation_kl,
)

B, T = 2, 3
REAL = torch.tensor([[False, True, True], [True, True, True]])  # row 0 left-padded


def qkv(width: int, seed: int) -> torch.Tensor:
    """(B, T, 3 * width) random concatenated [Q | K | V]."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, 3 * width, generator=g, dtype=torch.float64)


def reference_relation_kl(
    teacher: torch.Tensor,
    student: torch.Tensor,
    pair: str,
    n_heads_t: int,
    n_heads_s: int,
    causal: bool,
) -> float:
    """Loops over histories, heads and positions: KL(softmax(x_i·y_j/√d) over allowed j)."""
    parts_t = dict(zip("qkv", teacher.chunk(3, -1), strict=True))
    parts_s = dict(zip("qkv", student.chunk(3, -1), strict=True))
    d_t, d_s = parts_t["q"].shape[-1] // n_heads_t, parts_s["q"].shape[-1] // n_heads_s
    x, y = pair

    def dist(parts, b, h, d, i, keys):
        xi = parts[x][b, i, h * d : (h + 1) * d].tolist()
        logits = [
            sum(
                a * c for a, c in zip(xi, parts[y][b, j, h * d : (h + 1) * d].tolist(), strict=True)
            )
            / math.sqrt(d)
            for j in keys
        ]
        m = max(logits)
        z = sum(math.exp(v - m) for v in logits)
        return [math.exp(v - m) / z for v in logits]

    rows = []
    for b in range(B):
        for i in range(T):
            if not REAL[b, i]:
                continue
            keys = [j for j in range(T) if (REAL[b, j] and (not causal or j <= i)) or j == i]
            per_head = []
            for h in range(n_heads_t):
                p = dist(parts_t, b, h, d_t, i, keys)
                q = dist(parts_s, b, h, d_s, i, keys)
                per_head.append(sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True)))
            rows.append(sum(per_head) / n_heads_t)
    return sum(rows) / len(rows)


@pytest.mark.parametrize("causal", [False, True])
def test_attention_and_value_relation_kl_match_the_reference(causal: bool):
    teacher, student = qkv(10, 0), qkv(6, 1)  # 2 heads of width 5 (teacher), 3 (student)
    got = attention_kl(teacher, student, REAL, n_heads=2, causal=causal, student_heads=2)
    want = reference_relation_kl(teacher, student, "qk", 2, 2, causal)
    assert got.item() == pytest.approx(want, rel=1e-9)
    got = value_relation_kl(teacher, student, REAL, n_heads=2, causal=causal)
    want_v = reference_relation_kl(teacher, student, "vv", 2, 2, causal)
    assert got.item() == pytest.approx(want_v, rel=1e-9)
    total = minilm_loss(teacher, student, REAL, 2, causal)
    assert total.item() == pytest.approx(want + want_v, rel=1e-9)


def test_relation_heads_let_students_of_another_width_and_head_count_match():
    """MiniLM v2: the teacher's Q/K/V (width 10) and the student's (width 6) are each split
    into R = 2 relation heads (widths 5 and 3): the same as per-head terms over those splits."""
    teacher, student = qkv(10, 2), qkv(6, 3)
    got = relation_heads_kl(teacher, student, REAL, n_relation_heads=2, causal=True)
    want = sum(reference_relation_kl(teacher, student, p, 2, 2, True) for p in ("qq", "kk", "vv"))
    assert got.item() == pytest.approx(want / 3, rel=1e-9)
    # R = 1 with the attention-like relation: one relation head over the whole width
    got = relation_heads_kl(teacher, student, REAL, 1, causal=False, relations=("qk",))
    assert got.item() == pytest.approx(
        reference_relation_kl(teacher, student, "qk", 1, 1, False), rel=1e-9
    )
    with pytest.raises(ValueError, match="divisible"):
        relation_heads_kl(teacher, student, REAL, n_relation_heads=4, causal=True)
    with pytest.raises(ValueError, match="equal head counts"):
        attention_kl(teacher, student, REAL, n_heads=2, causal=True, student_heads=1)


def test_zero_when_the_student_is_the_teacher_and_gradients_reach_only_the_student():
    teacher = qkv(10, 4)
    for loss in (
        minilm_loss(teacher, teacher.clone(), REAL, 2, causal=True),
        relation_heads_kl(teacher, teacher.clone(), REAL, 5, causal=False),
        score_kl(teacher[..., 0], teacher[..., 0].clone(), temperature=3.0),
    ):
        assert abs(loss.item()) < 1e-12
    teacher = teacher.requires_grad_()
    student = qkv(6, 5).requires_grad_()
    (
        relation_heads_kl(teacher, student, REAL, 2, True)
        + minilm_loss(teacher, student, REAL, 2, True)
    ).backward()
    assert teacher.grad is None
    assert student.grad is not None and student.grad.abs().sum() > 0


def test_padding_positions_and_masked_keys_change_nothing():
    """Values at padded positions (row 0, position 0) never enter a loss."""
    teacher, student = qkv(10, 6), qkv(6, 7)
    before = minilm_loss(teacher, student, REAL, 2, causal=False)
    teacher[0, 0], student[0, 0] = 100.0, -50.0
    after = minilm_loss(teacher, student, REAL, 2, causal=False)
    assert after.item() == pytest.approx(before.item(), rel=1e-12)


def test_score_kl_by_hand():
    """Two candidates and one history: teacher (0, ln 3) -> p = (1/4, 3/4) at T = 1; student
    (0, 0) -> q = (1/2, 1/2); KL = 1/4 ln(1/2) + 3/4 ln(3/2). At T = 2 the teacher is
    (0, ln 3 / 2) -> p = (1/(1+√3), √3/(1+√3)), and the KL is multiplied by T² = 4."""
    teacher = torch.tensor([[0.0, math.log(3.0)]], dtype=torch.float64)
    student = torch.zeros(1, 2, dtype=torch.float64)
    kl1 = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    assert score_kl(teacher, student, 1.0).item() == pytest.approx(kl1, rel=1e-12)
    p = [1 / (1 + math.sqrt(3)), math.sqrt(3) / (1 + math.sqrt(3))]
    kl2 = sum(pi * math.log(pi / 0.5) for pi in p)
    assert score_kl(teacher, student, 2.0).item() == pytest.approx(4 * kl2, rel=1e-12)
    # a masked candidate (the padding item) takes no probability on either side
    teacher3 = torch.tensor([[9.0, 0.0, math.log(3.0)]], dtype=torch.float64)
    student3 = torch.tensor([[-4.0, 0.0, 0.0]], dtype=torch.float64)
    mask = torch.tensor([False, True, True])
    assert score_kl(teacher3, student3, 1.0, mask).item() == pytest.approx(kl1, rel=1e-12)
    assert soften(teacher3, 1.0, mask)[0, 0].item() == 0.0


def test_stacking_averages_the_teachers_probabilities_not_their_logits():
    a = torch.tensor([[4.0, 0.0, 0.0]], dtype=torch.float64)
    b = torch.tensor([[0.0, 4.0, -4.0]], dtype=torch.float64)
    stacked = stack_teachers([a, b], temperature=2.0)
    mean_probs = (torch.softmax(a / 2, -1) + torch.softmax(b / 2, -1)) / 2
    torch.testing.assert_close(stacked, mean_probs, rtol=1e-12, atol=0)
    assert not torch.allclose(stacked, torch.softmax((a + b) / 2 / 2, -1), atol=1e-3)
    assert stacked.sum().item() == pytest.approx(1.0)
    weighted = stack_teachers([a, b], temperature=2.0, weights=[3.0, 1.0])
    torch.testing.assert_close(
        weighted, 0.75 * torch.softmax(a / 2, -1) + 0.25 * torch.softmax(b / 2, -1)
    )
    # the student that reproduces the stacked distribution has zero loss
    assert distribution_kl(
        stacked, torch.log(stacked) * 2.0, temperature=2.0
    ).item() == pytest.approx(0.0, abs=1e-12)


def test_temperature_rescaling_of_binary_probabilities():
    p = torch.tensor([0.01, 0.5, 0.9], dtype=torch.float64)
    torch.testing.assert_close(rescale_probability(p, 1.0), p)
    # logit(0.9) = ln 9; at T = 2 -> sigmoid(ln 3) = 3/4; 0.01 -> 1 / (1 + √99)
    want = torch.tensor([1 / (1 + math.sqrt(99)), 0.5, 0.75], dtype=torch.float64)
    torch.testing.assert_close(rescale_probability(p, 2.0), want)
    logits = torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
    target = want
    by_hand = -(
        target * torch.log(torch.sigmoid(logits))
        + (1 - target) * torch.log(1 - torch.sigmoid(logits))
    ).mean()
    assert binary_distill_loss(p, logits, 2.0).item() == pytest.approx(by_hand.item(), rel=1e-9)


def test_recorded_qkv_gives_exactly_the_attention_the_model_computes():
    """The hook's [Q | K | V] rebuilds the top layer's attention output with the reference
    kernel's weights: the distributions the MiniLM terms compare are the model's own."""
    from guim.config import DataConfig, ModelConfig
    from guim.distill import last_layer_qkv, relation_log_probs, relation_mask, split_heads
    from guim.models import build_model
    from guim.models.tokens import ItemTables

    torch.manual_seed(0)
    sizes = {"n_items": 9, "n_attributes": 0, "n_attribute_links": 0, "text_dim": 0}
    model_cfg = ModelConfig(dim=12, n_heads=2, ffn_dim=20, n_layers=2, dropout=0.0)
    model = build_model(model_cfg, DataConfig(max_len=5), ItemTables.placeholder(sizes), True)
    model.eval()
    items = torch.tensor([[0, 0, 3, 4, 5], [1, 2, 3, 4, 9], [0, 0, 0, 0, 7]])
    events = (items > 0).long()
    times = torch.arange(5).expand(3, 5) * 60
    block = model.layers()[-1]
    outputs = []
    hook = block.out.register_forward_hook(lambda _m, inp, _o: outputs.append(inp[0]))
    with last_layer_qkv(model) as seen, torch.no_grad():
        model.encode(items, events, times)
    hook.remove()
    assert len(seen) == 1 and seen[0].shape == (3, 5, 36)
    real = items > 0
    q, k, v = (split_heads(x, 2) for x in seen[0].chunk(3, dim=-1))  # (B, H, T, 6)
    weights = relation_log_probs(q, k, relation_mask(real, causal=True)).exp()
    rebuilt = (weights @ v).transpose(1, 2).reshape(3, 5, 12)  # what `out` receives
    torch.testing.assert_close(rebuilt, outputs[0], rtol=1e-5, atol=1e-6)
    assert minilm_loss(seen[0], seen[0], real, 2, causal=True).item() == pytest.approx(
        0.0, abs=1e-7
    )
