"""Transformer sequence encoder (SASRec / BERT4Rec style): pre-LayerNorm blocks, causal for
next-item training or bidirectional for masked-item training.

Interface shared by every encoder: token vectors (B, T, D) + real-token mask (B, T) in, hidden
states (B, T, D) out. Attention kernels (PyTorch SDPA or a plain reference) sit side by side.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from guim.config import ModelConfig


def attention_sdpa(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor, dropout: float
) -> torch.Tensor:
    """q, k, v (B, H, T, Dh); allowed (B, 1, T, T) bool -> (B, H, T, Dh)."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=dropout)


def attention_reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor, dropout: float
) -> torch.Tensor:
    """The same computation written out (for tests and for reading)."""
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])  # (B, H, T, T)
    scores = scores.masked_fill(~allowed, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    if dropout > 0:
        weights = F.dropout(weights, dropout)
    return weights @ v


ATTENTION = {"sdpa": attention_sdpa, "reference": attention_reference}


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.dim % cfg.n_heads:
            raise ValueError(f"model.dim {cfg.dim} is not divisible by model.n_heads {cfg.n_heads}")
        self.n_heads = cfg.n_heads
        self.attn_dropout = cfg.attn_dropout
        self.norm1 = nn.LayerNorm(cfg.dim)
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim)
        self.out = nn.Linear(cfg.dim, cfg.dim)
        self.norm2 = nn.LayerNorm(cfg.dim)
        self.ffn = nn.Sequential(
            nn.Linear(cfg.dim, cfg.ffn_dim),
            nn.GELU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.ffn_dim, cfg.dim),
        )
        self.drop = nn.Dropout(cfg.dropout)
        self.kernel = "sdpa"

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)  # 3 x (B, T, D)
        q, k, v = (z.view(b, t, self.n_heads, d // self.n_heads).transpose(1, 2) for z in (q, k, v))
        dropout = self.attn_dropout if self.training else 0.0
        a = ATTENTION[self.kernel](q, k, v, allowed, dropout)  # (B, H, T, Dh)
        x = x + self.drop(self.out(a.transpose(1, 2).reshape(b, t, d)))
        return x + self.drop(self.ffn(self.norm2(x)))


class TransformerEncoder(nn.Module):
    """Stack of pre-LN blocks with a final LayerNorm."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(cfg.dim)

    def forward(self, x: torch.Tensor, real: torch.Tensor, causal: bool) -> torch.Tensor:
        """x (B, T, D), real (B, T) bool -> hidden states (B, T, D)."""
        allowed = attention_mask(real, causal)
        for block in self.blocks:
            x = block(x, allowed)
        return self.norm(x)


def attention_mask(real: torch.Tensor, causal: bool) -> torch.Tensor:
    """(B, 1, T, T) bool: query i may attend key j. Keys must be real (and j <= i when causal);
    every position may attend itself, so padding rows never see an empty softmax."""
    t = real.shape[1]
    allowed = real[:, None, None, :]  # (B, 1, 1, T)
    if causal:
        tri = torch.ones(t, t, dtype=torch.bool, device=real.device).tril()
        allowed = allowed & tri
    eye = torch.eye(t, dtype=torch.bool, device=real.device)
    return allowed | eye
