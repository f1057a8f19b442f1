"""Transformer sequence encoder (SASRec / BERT4Rec style): pre-LayerNorm blocks, causal for
next-item training or bidirectional for masked-item training.

Interface shared by every encoder: token vectors (B, T, D) + real-token mask (B, T) in, hidden
states (B, T, D) out. Attention kernels (PyTorch SDPA or a plain reference) sit side by side.
CoRe (arXiv 2011.13633) relaxed blocks: low-rank feed-forward weights (`model.ffn_rank`) and
linear attention (`model.attention = "linear"`); `Block.relax` turns them into the full block.
BSARec (arXiv 2312.10325) blocks (`model.freq_alpha > 0`): a frequency filter beside the
attention, mixed with it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from guim.config import ModelConfig
from guim.models.dropout import Dropout


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


# ---- CoRe: linear attention and low-rank feed-forward weights -------------------------------


def linear_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, real: torch.Tensor, causal: bool
) -> torch.Tensor:
    """Kernel attention (Katharopoulos et al. 2020) with feature map phi(x) = elu(x) + 1:
    out_i = phi(q_i) . sum_j phi(k_j) v_j^T / phi(q_i) . sum_j phi(k_j), over real keys j (j <= i
    when causal, as prefix sums), so the cost grows linearly in T.

    q, k, v (B, H, T, Dh); real (B, T) bool -> (B, H, T, Dh). Padding queries give 0."""
    fq = F.elu(q) + 1  # (B, H, T, Dh)
    fk = (F.elu(k) + 1) * real[:, None, :, None]  # (B, H, T, Dh), padding keys drop out
    if causal:
        kv = torch.einsum("bhtd,bhte->bhtde", fk, v).cumsum(dim=2)  # (B, H, T, Dh, Dh)
        num = torch.einsum("bhtd,bhtde->bhte", fq, kv)  # (B, H, T, Dh)
        den = (fq * fk.cumsum(dim=2)).sum(-1)  # (B, H, T)
    else:
        kv = torch.einsum("bhtd,bhte->bhde", fk, v)  # (B, H, Dh, Dh)
        num = torch.einsum("bhtd,bhde->bhte", fq, kv)  # (B, H, T, Dh)
        den = (fq * fk.sum(dim=2, keepdim=True)).sum(-1)  # (B, H, T)
    return num / den.clamp_min(1e-6)[..., None]


def linear_attention_reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, real: torch.Tensor, causal: bool
) -> torch.Tensor:
    """The same kernel attention written as a (T, T) weight matrix (for tests and reading)."""
    t = q.shape[2]
    weights = (F.elu(q) + 1) @ (F.elu(k) + 1).transpose(-1, -2)  # (B, H, T, T)
    allowed = real[:, None, None, :].expand(-1, 1, t, -1)  # (B, 1, T, T)
    if causal:
        allowed = allowed & torch.ones(t, t, dtype=torch.bool, device=q.device).tril()
    weights = weights * allowed
    return (weights @ v) / weights.sum(-1, keepdim=True).clamp_min(1e-6)


def linear_attention_chunked(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    real: torch.Tensor,
    causal: bool,
    chunk: int = 64,
) -> torch.Tensor:
    """The same kernel attention, causal case computed `chunk` positions at a time: inside a
    chunk as a lower-triangular (c, c) weight matrix, across chunks through the running sums
    S = sum_j phi(k_j) v_j^T (B, H, Dh, Dh) and z = sum_j phi(k_j). The prefix-sum form keeps a
    (Dh, Dh) state per position, (B, H, T, Dh, Dh) in memory and traffic; this one keeps one
    per chunk, and for windows of up to `chunk` positions it is a single masked matmul pair.
    Non-causal: as `linear_attention` (one state per sequence)."""
    if not causal:
        return linear_attention(q, k, v, real, causal)
    fq = F.elu(q) + 1  # (B, H, T, Dh)
    fk = (F.elu(k) + 1) * real[:, None, :, None]  # padding keys drop out
    b, h, t, dh = fq.shape
    state = fq.new_zeros((b, h, dh, v.shape[-1]))  # sum of phi(k_j) v_j^T of earlier chunks
    ksum = fq.new_zeros((b, h, dh, 1))  # sum of phi(k_j) of earlier chunks
    nums, dens = [], []
    for start in range(0, t, chunk):
        qc, kc, vc = (z[:, :, start : start + chunk] for z in (fq, fk, v))
        w = (qc @ kc.transpose(-1, -2)).tril()  # (B, H, c, c): keys j <= i inside the chunk
        nums.append(w @ vc + qc @ state)
        dens.append(w.sum(-1, keepdim=True) + qc @ ksum)
        if start + chunk < t:
            state = state + kc.transpose(-1, -2) @ vc
            ksum = ksum + kc.sum(dim=2).unsqueeze(-1)
    num, den = torch.cat(nums, dim=2), torch.cat(dens, dim=2)
    return num / den.clamp_min(1e-6)


LINEAR_ATTENTION = {
    "chunked": linear_attention_chunked,
    "prefix": linear_attention,
    "reference": linear_attention_reference,
}


class LowRankLinear(nn.Module):
    """y = x U^T V^T + b: a (out, in) weight factorised as V (out, r) @ U (r, in)."""

    def __init__(self, d_in: int, d_out: int, rank: int) -> None:
        super().__init__()
        self.down = nn.Linear(d_in, rank, bias=False)  # U
        self.up = nn.Linear(rank, d_out)  # V and the bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))

    @torch.no_grad()
    def full(self) -> nn.Linear:
        """The nn.Linear computing the same map: W = V @ U, the same bias."""
        d_out, d_in = self.up.out_features, self.down.in_features
        layer = nn.Linear(d_in, d_out).to(self.up.weight.device)
        layer.weight.copy_(self.up.weight @ self.down.weight)
        layer.bias.copy_(self.up.bias)
        return layer


# ---- BSARec: a low-pass / high-pass filter over the window ----------------------------------


def low_pass_matrix(n: int, keep: int) -> torch.Tensor:
    """(n, n) matrix P with P @ x = the `keep` lowest real-DFT frequency bins of x (along its n
    positions) transformed back: rfft, zero the bins from `keep` on, irfft. A fixed linear map,
    so the filter is a matmul and one row of it gives one position's output."""
    spectrum = torch.fft.rfft(torch.eye(n, dtype=torch.float64), dim=0, norm="ortho")
    spectrum[keep:] = 0
    return torch.fft.irfft(spectrum, n=n, dim=0, norm="ortho").float()


class FrequencyFilter(nn.Module):
    """BSARec's inductive bias: x -> low(x) + beta^2 * (x - low(x)), where low keeps the lowest
    frequencies of the window, computed over a fixed `seq_len` positions (left-padded with zeros,
    padding tokens zeroed), so a history gets the same output whatever the batch's padding."""

    def __init__(self, dim: int, seq_len: int, keep: int) -> None:
        super().__init__()
        if seq_len < 1:
            raise ValueError("the frequency filter needs the window length (data.max_len)")
        self.seq_len, self.keep = seq_len, keep
        self.sqrt_beta = nn.Parameter(torch.randn(dim))  # BSARec's initialisation
        # a fixed function of (seq_len, keep): rebuilt, never saved
        self.register_buffer("low_pass", low_pass_matrix(seq_len, keep), persistent=False)

    def forward(self, h: torch.Tensor, real: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """h (B, T, D), real (B, T) bool -> (B, T, D), or (B, 1, D) at the last position only."""
        t = h.shape[1]
        p = self.low_pass if t <= self.seq_len else low_pass_matrix(t, self.keep).to(h.device)
        p = p[-t:, -t:]  # the zero left padding up to seq_len contributes nothing
        h = h * real[..., None]
        if last_only:
            p, h_out = p[-1:], h[:, -1:]
        else:
            h_out = h
        low = torch.einsum("st,btd->bsd", p, h)
        return low + self.sqrt_beta**2 * (h_out - low)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, seq_len: int = 0) -> None:
        """`seq_len`: the window length the frequency filter runs over (model.freq_alpha > 0)."""
        super().__init__()
        if cfg.dim % cfg.n_heads:
            raise ValueError(f"model.dim {cfg.dim} is not divisible by model.n_heads {cfg.n_heads}")
        self.n_heads = cfg.n_heads
        self.attn_dropout = cfg.attn_dropout
        self.norm1 = nn.LayerNorm(cfg.dim)
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim)
        self.out = nn.Linear(cfg.dim, cfg.dim)
        self.norm2 = nn.LayerNorm(cfg.dim)
        r = cfg.ffn_rank
        self.ffn = nn.Sequential(
            LowRankLinear(cfg.dim, cfg.ffn_dim, r) if r else nn.Linear(cfg.dim, cfg.ffn_dim),
            nn.GELU(),
            Dropout(cfg.dropout, cfg.dropout_masks),
            LowRankLinear(cfg.ffn_dim, cfg.dim, r) if r else nn.Linear(cfg.ffn_dim, cfg.dim),
        )
        self.drop = Dropout(cfg.dropout, cfg.dropout_masks)
        self.kernel = "sdpa"
        self.attention = cfg.attention  # "softmax" or "linear" (CoRe's relaxed attention)
        self.linear_kernel = "chunked"
        self.seq_len = seq_len
        self.freq_alpha = cfg.freq_alpha
        self.filter = FrequencyFilter(cfg.dim, seq_len, cfg.freq_low) if cfg.freq_alpha else None

    def forward(
        self,
        x: torch.Tensor,
        allowed: torch.Tensor,
        real: torch.Tensor | None = None,
        causal: bool = False,
        last_only: bool = False,
    ) -> torch.Tensor:
        """x (B, T, D), allowed (B, 1, T, T); linear attention reads real (B, T) and causal.

        `last_only`: compute only the last position's output (B, 1, D) -- its query, attention
        output and feed-forward; keys and values still come from every position. The same
        function at that position, at a fraction of the cost when nothing else is read (the
        top block under prefix windows, or when reading user vectors)."""
        b, t, d = x.shape
        h = self.norm1(x)
        if last_only and self.attention == "softmax":
            w, bias = self.qkv.weight, self.qkv.bias
            q = F.linear(h[:, -1:], w[:d], bias[:d])  # (B, 1, D)
            k, v = F.linear(h, w[d:], bias[d:]).chunk(2, dim=-1)  # 2 x (B, T, D)
            x, allowed, tq = x[:, -1:], allowed[:, :, -1:], 1
        else:
            q, k, v = self.qkv(h).chunk(3, dim=-1)  # 3 x (B, T, D)
            tq = t
        heads, dh = self.n_heads, d // self.n_heads
        q = q.view(b, tq, heads, dh).transpose(1, 2)  # (B, H, Tq, Dh)
        k, v = (z.view(b, t, heads, dh).transpose(1, 2) for z in (k, v))  # (B, H, T, Dh)
        if self.attention == "linear":
            assert real is not None
            a = LINEAR_ATTENTION[self.linear_kernel](q, k, v, real, causal)  # (B, H, T, Dh)
        else:
            dropout = self.attn_dropout if self.training else 0.0
            a = ATTENTION[self.kernel](q, k, v, allowed, dropout)  # (B, H, Tq, Dh)
        mixed = self.out(a.transpose(1, 2).reshape(b, tq, d))
        if self.filter is not None:  # BSARec: alpha x filter + (1 - alpha) x attention
            assert real is not None
            freq = self.filter(h, real, last_only=last_only and self.attention == "softmax")
            mixed = self.freq_alpha * freq + (1 - self.freq_alpha) * mixed
        x = x + self.drop(mixed)
        x = x + self.drop(self.ffn(self.norm2(x)))
        return x[:, -1:] if last_only else x

    def relax(self, ffn_rank: int, attention: str) -> None:
        """CoRe phase change: `ffn_rank` 0 multiplies low-rank FFN factors out into full weights
        (the block computes the same function); `attention` switches the attention kind, the
        q/k/v and output projections carried over unchanged (the function changes)."""
        for i in (0, 3):
            layer = self.ffn[i]
            if isinstance(layer, LowRankLinear) and ffn_rank == 0:
                self.ffn[i] = layer.full()
            elif ffn_rank and not isinstance(layer, LowRankLinear):
                raise ValueError("cannot factorise full FFN weights into a low-rank product")
        self.attention = attention


class TransformerEncoder(nn.Module):
    """Stack of pre-LN blocks with a final LayerNorm."""

    def __init__(self, cfg: ModelConfig, seq_len: int = 0) -> None:
        """`seq_len`: the window length (data.max_len), read by BSARec's frequency filter."""
        super().__init__()
        self.blocks = nn.ModuleList(Block(cfg, seq_len) for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(cfg.dim)

    def forward(
        self, x: torch.Tensor, real: torch.Tensor, causal: bool, last_only: bool = False
    ) -> torch.Tensor:
        """x (B, T, D), real (B, T) bool -> hidden states (B, T, D), or (B, 1, D) at the last
        position only when `last_only` (the top block then computes that position alone)."""
        allowed = attention_mask(real, causal)
        top = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            x = block(x, allowed, real, causal, last_only=last_only and i == top)
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
