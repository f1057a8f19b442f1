"""Multi-modal item tokens (ID-embedding paper + GUIM): item vector = id embedding + mean of its
attribute-id embeddings (all attribute types in one space) + a projected title vector.

An item never seen in training has its id embedding switched off by the `known` mask, so it is
embedded from its attributes and text alone, through the same code path as every other item.
Position inputs add event-type and time-gap embeddings (`PositionFeatures`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from guim.config import DataConfig, ModelConfig
from guim.data.schema import EVENT_TYPES


@dataclass(frozen=True)
class ItemTables:
    """What a model needs to know about the catalogue: its size and the per-item side tables."""

    n_items: int
    n_attributes: int
    attr_offsets: torch.Tensor  # (n_items + 2,) int64 CSR offsets into attr_flat
    attr_flat: torch.Tensor  # (A,) int64 attribute ids
    known: torch.Tensor  # (n_items + 1,) bool: item seen in training
    text: torch.Tensor | None = None  # (n_items + 1, E) frozen sentence vectors

    def sizes(self) -> dict[str, int]:
        """The sizes a run records in dataset.json so `load_run` can rebuild the model."""
        return {
            "n_items": self.n_items,
            "n_attributes": self.n_attributes,
            "n_attribute_links": len(self.attr_flat),
            "text_dim": 0 if self.text is None else int(self.text.shape[1]),
        }

    @staticmethod
    def placeholder(sizes: dict[str, Any]) -> ItemTables:
        """Zero tables of the recorded sizes (the real ones are buffers in the saved weights)."""
        n, text_dim = int(sizes["n_items"]), int(sizes["text_dim"])
        return ItemTables(
            n_items=n,
            n_attributes=int(sizes["n_attributes"]),
            attr_offsets=torch.zeros(n + 2, dtype=torch.int64),
            attr_flat=torch.zeros(int(sizes["n_attribute_links"]), dtype=torch.int64),
            known=torch.ones(n + 1, dtype=torch.bool),
            text=torch.zeros(n + 1, text_dim) if text_dim else None,
        )


class ItemTokens(nn.Module):
    """Item vectors for any item indices; row 0 (padding) is the zero vector."""

    def __init__(
        self,
        model: ModelConfig,
        data: DataConfig,
        tables: ItemTables,
        sparse: bool = False,
    ) -> None:
        super().__init__()
        n_items, n_attributes, attr_flat, text = (
            tables.n_items,
            tables.n_attributes,
            tables.attr_flat,
            tables.text,
        )
        attr_offsets, known = tables.attr_offsets, tables.known
        self.dim = model.dim
        self.n_items = n_items
        self.id_emb = nn.Embedding(n_items + 1, model.dim, padding_idx=0, sparse=sparse)
        nn.init.normal_(self.id_emb.weight, std=1.0 / math.sqrt(model.dim))
        with torch.no_grad():
            self.id_emb.weight[0].zero_()
        self.register_buffer("known", known.to(torch.float32), persistent=True)
        self.use_attributes = data.use_attributes and n_attributes > 0 and len(attr_flat) > 0
        if self.use_attributes:
            self.attr_emb = nn.EmbeddingBag(n_attributes + 1, model.dim, mode="mean")
            nn.init.normal_(self.attr_emb.weight, std=1.0 / math.sqrt(model.dim))
            self.register_buffer("attr_offsets", attr_offsets.to(torch.int64), persistent=True)
            self.register_buffer("attr_flat", attr_flat.to(torch.int64), persistent=True)
        self.use_text = data.use_text and text is not None
        if self.use_text:
            assert text is not None
            self.register_buffer("text", text.to(torch.float32), persistent=True)
            self.text_proj = nn.Linear(text.shape[1], model.dim, bias=False)
            nn.init.normal_(self.text_proj.weight, std=1.0 / math.sqrt(text.shape[1]))

    def forward(self, item_idx: torch.Tensor) -> torch.Tensor:
        """(...) item indices -> (..., D) item vectors."""
        flat = item_idx.reshape(-1)
        vec = self.id_emb(flat) * self.known[flat, None]  # (N, D)
        if self.use_attributes:
            vec = vec + self._attributes(flat)
        if self.use_text:
            vec = vec + self.text_proj(self.text[flat])
        return vec.view(*item_idx.shape, self.dim)

    def _attributes(self, flat: torch.Tensor) -> torch.Tensor:
        starts = self.attr_offsets[flat]  # (N,)
        lengths = self.attr_offsets[flat + 1] - starts  # (N,)
        bag_offsets = torch.zeros_like(lengths)
        bag_offsets[1:] = torch.cumsum(lengths, 0)[:-1]
        # flat positions of every attribute of every item, in item order
        within = torch.arange(int(lengths.sum()), device=flat.device) - torch.repeat_interleave(
            bag_offsets, lengths
        )
        attrs = self.attr_flat[torch.repeat_interleave(starts, lengths) + within]
        return self.attr_emb(attrs, bag_offsets)  # empty bags give zero vectors

    def all_items(self) -> torch.Tensor:
        """(n_items + 1, D) vectors of every item; row 0 is zero."""
        out = self(torch.arange(self.n_items + 1, device=self.known.device))
        return torch.cat([torch.zeros_like(out[:1]), out[1:]])


class PositionFeatures(nn.Module):
    """Per-position additions to an item token: position, event type and time-gap embeddings."""

    def __init__(self, model: ModelConfig, data: DataConfig) -> None:
        super().__init__()
        self.max_len = data.max_len
        self.from_end = model.positions == "from_end"
        self.n_time_buckets = model.n_time_buckets
        self.position = nn.Embedding(data.max_len + 1, model.dim)
        self.event = nn.Embedding(len(EVENT_TYPES), model.dim) if data.use_events else None
        self.time = nn.Embedding(model.n_time_buckets, model.dim) if data.use_time else None

    def forward(
        self, real: torch.Tensor, event: torch.Tensor, timestamp: torch.Tensor
    ) -> torch.Tensor:
        """real (B, T) bool, event (B, T) int, timestamp (B, T) int -> (B, T, D).

        Position ids depend only on a token's place among the real tokens (counted from the end
        or from the start of the history), never on the amount of left padding.
        """
        count = real.long().cumsum(dim=1)  # (B, T) 1-based index among real tokens
        # from the end, the last real token gets 1
        pos = count[:, -1:] - count + 1 if self.from_end else count
        pos = (pos * real).clamp(max=self.max_len)  # padding -> 0
        out = self.position(pos)
        if self.event is not None:
            out = out + self.event(event * real)
        if self.time is not None:
            gap = torch.zeros_like(timestamp)
            gap[:, 1:] = (timestamp[:, 1:] - timestamp[:, :-1]).clamp(min=0)
            gap = gap * real
            gap[:, 1:] = gap[:, 1:] * real[:, :-1]  # no gap across the padding boundary
            bucket = torch.log2(gap.to(torch.float32) + 1.0).floor().long()
            out = out + self.time(bucket.clamp(0, self.n_time_buckets - 1))
        return out
