"""Optimisers and the learning-rate schedule."""

from __future__ import annotations

import math

import torch

from guim.config import Config


def make_optimizers(model: torch.nn.Module, cfg: Config) -> dict[str, torch.optim.Optimizer]:
    """AdamW over the trainable dense parameters; SparseAdam over sparse embeddings."""
    tr = cfg.train
    trainable = [p for p in model.parameters() if p.requires_grad]
    sparse_ids = {
        id(mod.weight)
        for mod in model.modules()
        if isinstance(mod, torch.nn.Embedding) and mod.sparse and mod.weight.requires_grad
    }
    dense = [p for p in trainable if id(p) not in sparse_ids]
    # fused: one kernel for all parameters instead of a dozen Python-side ops per tensor
    fused = all(p.device.type in ("cpu", "cuda") and p.dtype == torch.float32 for p in dense)
    opts: dict[str, torch.optim.Optimizer] = {
        "dense": torch.optim.AdamW(dense, lr=tr.lr, weight_decay=tr.weight_decay, fused=fused)
    }
    sparse = [p for p in trainable if id(p) in sparse_ids]
    if sparse:
        opts["sparse"] = torch.optim.SparseAdam(sparse, lr=tr.lr)
    return opts


def lr_scale(step: int, cfg: Config, total_steps: int) -> float:
    """Linear warm-up over warmup_steps, then constant or cosine decay to 0 at total_steps."""
    tr = cfg.train
    if tr.warmup_steps > 0 and step < tr.warmup_steps:
        return (step + 1) / tr.warmup_steps
    if tr.lr_schedule == "cosine":
        span = max(total_steps - tr.warmup_steps, 1)
        progress = min(max(step - tr.warmup_steps, 0) / span, 1.0)
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0
