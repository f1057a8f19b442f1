"""guim.models.dropout: PCG64-drawn CPU dropout masks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from guim.models.dropout import Dropout, pcg64_mask


def test_mask_values_share_and_scale():
    torch.manual_seed(0)
    mask = pcg64_mask(torch.Size((400, 500)), 0.3, torch.float32)
    values = torch.unique(mask)
    assert torch.equal(values, torch.tensor([0.0, 1.0 / 0.7]))
    # 200,000 Bernoulli(0.3) draws: the zero share is within 5 standard deviations of 0.3
    zero_share = float((mask == 0).float().mean())
    assert abs(zero_share - 0.3) < 5 * (0.3 * 0.7 / mask.numel()) ** 0.5


def test_masks_follow_torch_seed_and_differ_between_calls():
    shape = torch.Size((64, 32))
    torch.manual_seed(7)
    a, b = pcg64_mask(shape, 0.5, torch.float32), pcg64_mask(shape, 0.5, torch.float32)
    torch.manual_seed(7)
    a2 = pcg64_mask(shape, 0.5, torch.float32)
    assert torch.equal(a, a2)
    assert not torch.equal(a, b)


def test_forward_backward_and_modes():
    drop = Dropout(0.4)
    x = torch.randn(50, 20, requires_grad=True)
    torch.manual_seed(3)
    y = drop(x)
    torch.manual_seed(3)
    mask = pcg64_mask(x.shape, 0.4, x.dtype)
    torch.testing.assert_close(y, x * mask, rtol=0, atol=0)
    y.sum().backward()
    torch.testing.assert_close(x.grad, mask, rtol=0, atol=0)  # d(sum(x * m)) / dx = m
    drop.eval()
    assert drop(x) is x
    assert Dropout(0.0)(x) is x


def test_torch_masks_are_torch_dropout():
    x = torch.randn(30, 40)
    torch.manual_seed(11)
    ours = Dropout(0.25, masks="torch")(x)
    torch.manual_seed(11)
    assert torch.equal(ours, F.dropout(x, 0.25, training=True))


def test_low_precision_input_keeps_its_dtype():
    x = torch.randn(16, 8, dtype=torch.bfloat16)
    assert Dropout(0.5)(x).dtype == torch.bfloat16


@pytest.mark.parametrize("p", [-0.1, 1.0])
def test_rejects_bad_probability(p):
    with pytest.raises(ValueError, match="dropout probability"):
        Dropout(p)
