"""Sequence encoders behind one interface, chosen by the `model.encoder` config string."""

from __future__ import annotations

from torch import nn

from guim.config import ModelConfig
from guim.models.sru import SRUEncoder
from guim.models.transformer import TransformerEncoder

ENCODERS: dict[str, type[nn.Module]] = {"transformer": TransformerEncoder, "sru": SRUEncoder}


def build_encoder(cfg: ModelConfig) -> nn.Module:
    """The encoder named by cfg.encoder: (x (B, T, D), real (B, T), causal) -> (B, T, D)."""
    try:
        return ENCODERS[cfg.encoder](cfg)
    except KeyError:
        raise ValueError(f"unknown encoder {cfg.encoder!r}; known: {sorted(ENCODERS)}") from None
