"""SRU++ sequence encoder (Lei 2021, "When Attention Meets Fast Recurrence", arXiv 2102.12459):
an element-wise gated recurrence whose input projection U is a small one-head attention sub-layer
in the layers of `model.attention_layers` (width `model.attention_dim`, 0 = dim // 2) and a plain
linear map elsewhere. DEVIATION from the paper: no peephole terms v ⊙ c_{t-1} in the gates, so
f_t = σ(U_f + b_f), r_t = σ(U_r + b_r) and c_t = f_t ⊙ c_{t-1} + (1 - f_t) ⊙ U_x is a LINEAR
recurrence, trained with a vectorised scan (SCANS; no Python loop over time steps).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from guim.config import ModelConfig
from guim.models.dropout import Dropout
from guim.models.transformer import ATTENTION, attention_mask

# Scans of the linear recurrence c_t = exp(log_f_t) * c_{t-1} + b_t, c_{-1} = 0.
# Every kernel takes log_f, b (B, T, D) and returns c (B, T, D).


def scan_loop(log_f: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Step-by-step reference (for tests and for reading)."""
    f = log_f.exp()
    c = torch.zeros_like(b[:, 0])  # (B, D)
    out = []
    for t in range(b.shape[1]):
        c = f[:, t] * c + b[:, t]
        out.append(c)
    return torch.stack(out, dim=1)


def scan_chunked(log_f: torch.Tensor, b: torch.Tensor, chunk: int = 4) -> torch.Tensor:
    """Chunked log-space scan: exact within chunks of `chunk` steps, recursive across them.

    Within a chunk, c_t = Σ_{s≤t} exp(Σ_{s<k≤t} log_f_k) b_s: the decay exponents are segment
    sums of log f (never differences of two long cumulative sums), so they are ≤ 0 and exp never
    overflows nor loses precision however long the sequence or small the gates. The state
    entering each chunk is the same recurrence one level up (decay = the chunk's summed log f,
    input = the chunk's last local state), solved by a recursive call: log_chunk(T) levels.
    """
    bsz, t, d = b.shape
    n = math.ceil(t / chunk)
    pad = n * chunk - t
    if pad:  # identity steps in front (log f = 0, b = 0) leave the state at 0
        log_f = F.pad(log_f, (0, 0, pad, 0))
        b = F.pad(b, (0, 0, pad, 0))
    log_f = log_f.view(bsz, n, chunk, d)  # (B, n, L, D)
    b = b.view(bsz, n, chunk, d)  # (B, n, L, D)
    # segment sums S[t, s] = Σ_{s<k≤t} log_f_k for s ≤ t, -inf above the diagonal
    strict = torch.ones(chunk, chunk, dtype=torch.bool, device=b.device).tril(-1)[..., None]
    seg = log_f[:, :, :, None].expand(bsz, n, chunk, chunk, d).masked_fill(~strict, 0.0)
    seg = seg.cumsum(dim=2)  # (B, n, L, L, D)
    lower = torch.ones(chunk, chunk, dtype=torch.bool, device=b.device).tril()[..., None]
    weights = seg.masked_fill(~lower, float("-inf")).exp()  # (B, n, L, L, D)
    local = (weights * b[:, :, None]).sum(dim=3)  # (B, n, L, D): states from a zero start
    if n > 1:
        decay = log_f.cumsum(dim=2)  # (B, n, L, D): log decay since the chunk's start
        # the state at the end of each chunk, shifted by one: the state entering each chunk
        ends = scan_chunked(decay[:, :, -1], local[:, :, -1], chunk)  # (B, n, D)
        entering = F.pad(ends[:, :-1], (0, 0, 1, 0))  # (B, n, D)
        local = local + decay.exp() * entering[:, :, None]
    return local.reshape(bsz, n * chunk, d)[:, pad:]  # (B, T, D)


def scan_doubling(log_f: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hillis-Steele prefix scan (the default): ceil(log2 T) doubling steps, each combining every
    position with the one `shift` steps back, (f, c) <- (f f', c + f c'). Only products of
    factors in [0, 1] and sums, so it is stable for any length and any gate values."""
    f, c = log_f.exp(), b  # (B, T, D) each
    shift = 1
    while shift < b.shape[1]:
        c = c + f * F.pad(c[:, :-shift], (0, 0, shift, 0))
        if 2 * shift < b.shape[1]:  # the last step needs no decay any more
            f = f * F.pad(f[:, :-shift], (0, 0, shift, 0), value=1.0)
        shift *= 2
    return c


SCANS = {"doubling": scan_doubling, "chunked": scan_chunked, "loop": scan_loop}


class AttentionProjection(nn.Module):
    """SRU++ input projection: Q = W_q x (width d'), K = W_k Q, V = W_v Q, one head,
    U = W_o(LayerNorm(Q + α·A)) with α learned from 0, so training starts from the plain SRU."""

    def __init__(self, cfg: ModelConfig, width: int) -> None:
        super().__init__()
        self.q = nn.Linear(cfg.dim, width, bias=False)
        self.k = nn.Linear(width, width, bias=False)
        self.v = nn.Linear(width, width, bias=False)
        self.alpha = nn.Parameter(torch.zeros(1))
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, 3 * cfg.dim, bias=False)
        self.attn_dropout = cfg.attn_dropout

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """x (B, T, D), allowed (B, 1, T, T) -> U (B, T, 3D)."""
        q = self.q(x)  # (B, T, d')
        k, v = self.k(q), self.v(q)  # (B, T, d')
        dropout = self.attn_dropout if self.training else 0.0
        a = ATTENTION["sdpa"](q[:, None], k[:, None], v[:, None], allowed, dropout)[:, 0]
        return self.out(self.norm(q + self.alpha * a))  # (B, T, 3D)


class SRULayer(nn.Module):
    """Pre-LN SRU++ layer on the residual stream x (B, T, D):
    U = proj(LayerNorm(x)) split into U_x, U_f, U_r (B, T, D) each;
    f = σ(U_f + b_f), r = σ(U_r + b_r), c_t = f_t c_{t-1} + (1 - f_t) U_x,
    h = r ⊙ dropout(c) + (1 - r) ⊙ x (highway; b_r starts at -2, so h ≈ x at first).

    Padding positions are identity steps (f = 1, no input), so left padding leaves the state at 0
    and outputs at real positions do not depend on how much padding precedes them. Bidirectional
    layers run the first half of the channels left to right and the second half right to left:
    same parameters and cost as the causal layer."""

    def __init__(self, cfg: ModelConfig, attention_width: int | None) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(cfg.dim)
        if attention_width:
            self.proj: nn.Module = AttentionProjection(cfg, attention_width)
        else:
            self.proj = nn.Linear(cfg.dim, 3 * cfg.dim, bias=False)
        self.has_attention = bool(attention_width)
        self.bias_f = nn.Parameter(torch.zeros(cfg.dim))
        self.bias_r = nn.Parameter(torch.full((cfg.dim,), -2.0))
        self.drop = Dropout(cfg.dropout, cfg.dropout_masks)
        self.kernel = "doubling"

    def forward(
        self, x: torch.Tensor, real: torch.Tensor, causal: bool, allowed: torch.Tensor
    ) -> torch.Tensor:
        """x (B, T, D), real (B, T) bool, allowed (B, 1, T, T) bool -> (B, T, D)."""
        z = self.norm(x)
        u = self.proj(z, allowed) if self.has_attention else self.proj(z)  # (B, T, 3D)
        u_x, u_f, u_r = u.chunk(3, dim=-1)  # 3 x (B, T, D)
        pad = ~real[..., None]  # (B, T, 1)
        log_f = F.logsigmoid(u_f + self.bias_f).masked_fill(pad, 0.0)  # (B, T, D)
        inp = -torch.expm1(log_f) * u_x  # (B, T, D): (1 - f) U_x, precise for f near 1; 0 at pads
        c = self.scan(log_f, inp, causal)  # (B, T, D)
        r = torch.sigmoid(u_r + self.bias_r)
        return r * self.drop(c) + (1 - r) * x

    def scan(self, log_f: torch.Tensor, inp: torch.Tensor, causal: bool) -> torch.Tensor:
        """The recurrence over time; bidirectional: the second half of the channels reversed."""
        kernel = SCANS[self.kernel]
        if causal:
            return kernel(log_f, inp)
        half = log_f.shape[-1] // 2

        def flip_back_half(z: torch.Tensor) -> torch.Tensor:
            return torch.cat([z[..., :half], z[..., half:].flip(1)], dim=-1)

        return flip_back_half(kernel(flip_back_half(log_f), flip_back_half(inp)))


class SRUEncoder(nn.Module):
    """Stack of SRU++ layers with a final LayerNorm; attention in `cfg.attention_layers`."""

    def __init__(self, cfg: ModelConfig, seq_len: int = 0) -> None:
        """`seq_len` (the window length) is part of the encoder interface; a recurrence needs
        none."""
        super().__init__()
        n = cfg.n_layers
        bad = [i for i in cfg.attention_layers if not -n <= i < n]
        if bad:
            raise ValueError(f"model.attention_layers {bad} out of range for {n} layers")
        with_attention = {i % n for i in cfg.attention_layers}
        width = cfg.attention_dim or max(cfg.dim // 2, 1)
        self.layers = nn.ModuleList(
            SRULayer(cfg, width if i in with_attention else None) for i in range(n)
        )
        self.norm = nn.LayerNorm(cfg.dim)

    def forward(
        self, x: torch.Tensor, real: torch.Tensor, causal: bool, last_only: bool = False
    ) -> torch.Tensor:
        """x (B, T, D), real (B, T) bool -> hidden states (B, T, D); (B, 1, D) at the last
        position when `last_only` (the recurrence runs over every position either way)."""
        allowed = attention_mask(real, causal)  # (B, 1, T, T)
        for layer in self.layers:
            x = layer(x, real, causal, allowed)
        return self.norm(x[:, -1:] if last_only else x)
