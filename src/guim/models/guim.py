"""The GUIM teacher: multi-modal item tokens -> sequence encoder -> K interest vectors per user.

Reads top to bottom: build the item tokens and position features, encode a left-padded batch of
histories, and read the user vectors at the last position. Items are scored by the same item
tokens that feed the encoder (tied input/output embeddings), so a cold item is scored from its
attributes and text alone.
"""

from __future__ import annotations

import torch
from torch import nn

from guim.config import Config
from guim.models import build_encoder
from guim.models.mor import InterestHead, interest_scores
from guim.models.tokens import ItemTokens, PositionFeatures


class GUIM(nn.Module):
    def __init__(
        self,
        cfg: Config,
        n_items: int,
        n_attributes: int,
        attr_offsets: torch.Tensor,
        attr_flat: torch.Tensor,
        known: torch.Tensor,
        text: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.causal = cfg.train.objective == "next"
        sparse = cfg.loss.kind == "sampled"
        self.tokens = ItemTokens(
            cfg.model, cfg.data, n_items, n_attributes, attr_offsets, attr_flat, known, text, sparse
        )
        self.positions = PositionFeatures(cfg.model, cfg.data)
        self.mask_token = nn.Parameter(torch.zeros(cfg.model.dim))
        nn.init.normal_(self.mask_token, std=0.02)
        self.norm = nn.LayerNorm(cfg.model.dim)
        self.drop = nn.Dropout(cfg.model.dropout)
        self.encoder = build_encoder(cfg.model)
        self.interests = InterestHead(cfg.model)
        self.apply(_init_weights)

    def encode(
        self,
        item_idx: torch.Tensor,
        event: torch.Tensor,
        timestamp: torch.Tensor,
        masked: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Left-padded histories (B, T) -> interest vectors at every position (B, T, K, D).

        `masked` (B, T) bool replaces those positions' item tokens by the [MASK] vector
        (masked-item objective); they still count as real positions.
        """
        real = item_idx > 0  # (B, T)
        x = self.tokens(item_idx)  # (B, T, D)
        if masked is not None:
            x = torch.where(masked[..., None], self.mask_token.expand_as(x), x)
            real = real | masked
        x = x + self.positions(real, event, timestamp)
        x = self.drop(self.norm(x)) * real[..., None]
        h = self.encoder(x, real, causal=self.causal)  # (B, T, D)
        return self.interests(h, real, self.causal)

    def user_vectors(
        self, item_idx: torch.Tensor, event: torch.Tensor, timestamp: torch.Tensor
    ) -> torch.Tensor:
        """Left-padded histories (B, T) -> user vectors (B, K, D) read at the last position.

        Under the masked-item objective a [MASK] is appended (the oldest event is dropped when
        the window would exceed max_len) and its state predicts the next item.
        """
        if self.causal:
            return self.output(self.encode(item_idx, event, timestamp)[:, -1])
        b, width = item_idx.shape[0], min(item_idx.shape[1] + 1, self.cfg.data.max_len)
        pad = torch.zeros(b, 1, dtype=item_idx.dtype, device=item_idx.device)
        # append the [MASK] slot, keep the last `width` columns
        item_idx = torch.cat([item_idx, pad], dim=1)[:, -width:]
        event = torch.cat([event, pad], dim=1)[:, -width:]
        timestamp = torch.cat([timestamp, timestamp[:, -1:]], dim=1)[:, -width:]
        masked = torch.zeros_like(item_idx, dtype=torch.bool)
        masked[:, -1] = True
        return self.output(self.encode(item_idx, event, timestamp, masked)[:, -1])

    def item_vectors(self) -> torch.Tensor:
        """(n_items + 1, D) output vectors of every item (row 0 zero)."""
        return self.output(self.tokens.all_items())

    def output(self, vectors: torch.Tensor) -> torch.Tensor:
        """User or item vectors as scored: L2-normalised when model.normalize (cosine)."""
        if self.cfg.model.normalize:
            return torch.nn.functional.normalize(vectors, dim=-1)
        return vectors

    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """users (B, K, D), items (C, D) -> (B, C) by the configured interest scoring."""
        m = self.cfg.model
        return interest_scores(users, items, m.interest_score, m.interest_temperature)


def _init_weights(module: nn.Module) -> None:
    """One scale for every embedding and projection (BERT / SASRec practice, std 0.02), so no
    input feature (position, event, time gap) drowns the item signal at the start."""
    if isinstance(module, nn.Linear | nn.Embedding | nn.EmbeddingBag):
        nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
