"""The GUIM teacher: multi-modal item tokens -> sequence encoder -> K interest vectors per user.

Reads top to bottom: build the item tokens and position features, encode a left-padded batch of
histories, read the user vectors at the last position (inference) or at the target positions
(`forward`, training). Items are scored by the same item tokens that feed the encoder (tied
input/output embeddings), so a cold item is scored from its attributes and text alone.

The model sees only its own config section (`ModelConfig`), the input features it reads
(`DataConfig`: max_len, attributes, text, events, time), the catalogue's tables (`ItemTables`),
and whether it is causal, which the trainer derives from the objective.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch
from torch import nn

from guim.config import DataConfig, ModelConfig
from guim.models import build_encoder
from guim.models.dropout import Dropout
from guim.models.mor import InterestHead, interest_scores
from guim.models.tokens import ItemTables, ItemTokens, PositionFeatures
from guim.models.transformer import LowRankLinear

if TYPE_CHECKING:
    from guim.data.batches import Batch, View


@dataclass
class ModelOutput:
    """What the losses need from one training batch."""

    states: torch.Tensor  # (B, T, K, D) interest vectors at every position
    users: torch.Tensor  # (P, K, D) scored user vectors at the P target positions
    items: torch.Tensor  # (C, D) scored vectors of the candidates (C = n_items + 1 when all)
    view_states: torch.Tensor | None = None  # (B, T, K, D) states of the second view


class GUIM(nn.Module):
    def __init__(
        self,
        model: ModelConfig,
        data: DataConfig,
        tables: ItemTables,
        causal: bool,
        sparse: bool = False,
    ) -> None:
        """`sparse`: sparse gradients for the id embedding (the sampled loss's SparseAdam)."""
        super().__init__()
        self.model_cfg = model
        self.max_len = data.max_len
        self.causal = causal
        self.tokens = ItemTokens(model, data, tables, sparse)
        self.positions = PositionFeatures(model, data)
        self.mask_token = nn.Parameter(torch.zeros(model.dim))
        nn.init.normal_(self.mask_token, std=0.02)
        self.norm = nn.LayerNorm(model.dim)
        self.drop = Dropout(model.dropout, model.dropout_masks)
        self.encoder = build_encoder(model, data.max_len)
        self.interests = InterestHead(model)
        # prefix windows: compute the top block at the target position only (same values; off
        # only to measure what it saves, benchmarks/prefix_step.py)
        self.top_at_targets = True
        self.apply(_init_weights)

    def forward(
        self, batch: Batch, candidates: torch.Tensor | None = None, view: View | None = None
    ) -> ModelOutput:
        """A training batch -> states, user vectors at its targets (batch.targets > 0) and the
        vectors of `candidates` (C,) item indices (None: every item); `view` adds the states of
        a second view of the inputs."""
        # prefix windows (every target at the last position of its row, next-item objective):
        # the top block computes that position alone, and states are (B, 1, K, D)
        targets, t = batch.targets, batch.targets.shape[1]
        last = (
            self.top_at_targets and self.causal and batch.masked is None and t > 1
        ) and not bool(targets[:, :-1].any())
        states = self.encode(batch.items, batch.events, batch.timestamps, batch.masked, last)
        users = self.output(states[targets[:, -1:] > 0 if last else targets > 0])  # (P, K, D)
        # (N + 1, D) every item, or (C, D) the candidates
        items = self.item_vectors() if candidates is None else self.output(self.tokens(candidates))
        view_states = None
        if view is not None:  # the contrastive loss reads the views' last positions only
            view_states = self.encode(view.items, view.events, batch.timestamps, view.masked, last)
        return ModelOutput(states, users, items, view_states)

    def encode(
        self,
        item_idx: torch.Tensor,
        event: torch.Tensor,
        timestamp: torch.Tensor,
        masked: torch.Tensor | None = None,
        last_only: bool = False,
    ) -> torch.Tensor:
        """Left-padded histories (B, T) -> interest vectors at every position (B, T, K, D).

        `masked` (B, T) bool replaces those positions' item tokens by the [MASK] vector
        (masked-item objective); they still count as real positions. `last_only`: only the last
        position's vectors (B, 1, K, D), the same values at less cost (with one interest the
        encoder's top block computes that position alone).
        """
        real = item_idx > 0  # (B, T)
        x = self.tokens(item_idx)  # (B, T, D)
        if masked is not None:
            x = torch.where(masked[..., None], self.mask_token.expand_as(x), x)
            real = real | masked
        x = x + self.positions(real, event, timestamp)
        x = self.drop(self.norm(x)) * real[..., None]
        if last_only and self.interests.k == 1:
            h = self.encoder(x, real, causal=self.causal, last_only=True)  # (B, 1, D)
            return self.interests(h, real[:, -1:], self.causal)
        h = self.encoder(x, real, causal=self.causal)  # (B, T, D)
        states = self.interests(h, real, self.causal)  # MoR pools over every position
        return states[:, -1:] if last_only else states

    def user_vectors(
        self, item_idx: torch.Tensor, event: torch.Tensor, timestamp: torch.Tensor
    ) -> torch.Tensor:
        """Left-padded histories (B, T) -> user vectors (B, K, D) read at the last position.

        Under the masked-item objective a [MASK] is appended (the oldest event is dropped when
        the window would exceed max_len) and its state predicts the next item.
        """
        if self.causal:
            return self.output(self.encode(item_idx, event, timestamp, last_only=True)[:, -1])
        b, width = item_idx.shape[0], min(item_idx.shape[1] + 1, self.max_len)
        pad = torch.zeros(b, 1, dtype=item_idx.dtype, device=item_idx.device)
        # append the [MASK] slot, keep the last `width` columns
        item_idx = torch.cat([item_idx, pad], dim=1)[:, -width:]
        event = torch.cat([event, pad], dim=1)[:, -width:]
        timestamp = torch.cat([timestamp, timestamp[:, -1:]], dim=1)[:, -width:]
        masked = torch.zeros_like(item_idx, dtype=torch.bool)
        masked[:, -1] = True
        return self.output(self.encode(item_idx, event, timestamp, masked, last_only=True)[:, -1])

    def item_vectors(self) -> torch.Tensor:
        """(n_items + 1, D) output vectors of every item (row 0 zero)."""
        return self.output(self.tokens.all_items())

    def output(self, vectors: torch.Tensor) -> torch.Tensor:
        """User or item vectors as scored: L2-normalised when model.normalize (cosine)."""
        if self.model_cfg.normalize:
            return torch.nn.functional.normalize(vectors, dim=-1)
        return vectors

    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """users (B, K, D), items (C, D) -> (B, C) by the configured interest scoring."""
        m = self.model_cfg
        return interest_scores(users, items, m.interest_score, m.interest_temperature)

    # -- stages: growing the encoder and choosing what trains -----------------------------------
    def layers(self) -> nn.ModuleList:
        """The encoder's layers, bottom to top."""
        return self.encoder.blocks if hasattr(self.encoder, "blocks") else self.encoder.layers

    def grow(self, n_layers: int, init: str = "copy") -> None:
        """Add layers on top of the encoder up to `n_layers`. "copy" (MSLT): new layer i is a
        copy of the current top layers, in order (growing L -> L + k copies layers L - k ..
        L - 1, cycling when k > L); "random": fresh layers initialised like the model's.
        model_cfg.n_layers follows."""
        layers = self.layers()
        old = len(layers)
        if n_layers < old:
            raise ValueError(f"cannot shrink the encoder from {old} to {n_layers} layers")
        if n_layers > old and not hasattr(self.encoder, "blocks"):
            raise ValueError(f"model.encoder {self.model_cfg.encoder!r} cannot grow by stages")
        k = n_layers - old
        first = max(old - k, 0)
        for i in range(k):
            if init == "copy":
                layers.append(copy.deepcopy(layers[first + i % (old - first)]))
            else:
                fresh = type(layers[0])(self.model_cfg, layers[0].seq_len)
                fresh.apply(_init_weights)
                layers.append(fresh.to(self.mask_token.device))
        self.model_cfg = replace(self.model_cfg, n_layers=n_layers)

    def relax(self, ffn_rank: int, attention: str) -> None:
        """CoRe: set every encoder layer's FFN rank (0 multiplies the low-rank factors out into
        full weights, exactly) and attention kind (projections carried over); model_cfg
        follows."""
        if ffn_rank == self.model_cfg.ffn_rank and attention == self.model_cfg.attention:
            return
        if not hasattr(self.encoder, "blocks"):
            raise ValueError(f"model.encoder {self.model_cfg.encoder!r} has no CoRe relaxation")
        for block in self.encoder.blocks:
            block.relax(ffn_rank, attention)
        self.model_cfg = replace(self.model_cfg, ffn_rank=ffn_rank, attention=attention)

    def set_trainable(self, spec: str) -> None:
        """ "all": every parameter trains; "top:N": only the top N encoder layers, the encoder's
        final norm and the interest head (everything below runs without gradients)."""
        if spec == "all":
            self.requires_grad_(True)
            return
        n = int(spec.removeprefix("top:"))
        self.requires_grad_(False)
        for layer in list(self.layers())[-n:]:
            layer.requires_grad_(True)
        self.encoder.norm.requires_grad_(True)
        self.interests.requires_grad_(True)


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
    elif isinstance(module, LowRankLinear):
        # factors of std s with s * s * sqrt(rank) = 0.02: the product has the full weights' scale
        std = (0.02 / module.down.out_features**0.5) ** 0.5
        nn.init.normal_(module.down.weight, std=std)
        nn.init.normal_(module.up.weight, std=std)
