"""BERT2DNN-style feed-forward student (arXiv 2010.10442): no attention, no recurrence.

The last N item tokens of a history (the student's own id + attribute tokens, or the teacher's
table, frozen) plus event-type embeddings are pooled with learned per-position weights and sqrt-n
normalisation ("weighted") or concatenated ("concat"), then an MLP maps them to K user vectors,
added to the pooled vector (a residual, so an untrained student starts from a bag of items).
Same interface as `guim.models.guim.GUIM`: user_vectors, item_vectors, score, forward(batch).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import torch
from torch import nn

from guim.config import DataConfig, MLPConfig, ModelConfig
from guim.data.schema import EVENT_TYPES
from guim.models.dropout import Dropout
from guim.models.guim import ModelOutput
from guim.models.tokens import ItemTables, ItemTokens
from guim.scoring import Scorer

if TYPE_CHECKING:
    from guim.data.batches import Batch, View


class FrozenTokens(nn.Module):
    """A fixed (n_items + 1, D) item-token table (saved with the weights): gathers only."""

    def __init__(self, n_items: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("table", torch.zeros(n_items + 1, dim))
        self.n_items = n_items

    def forward(self, item_idx: torch.Tensor) -> torch.Tensor:
        """(...) item indices -> (..., D)."""
        return self.table[item_idx]

    def all_items(self) -> torch.Tensor:
        """(n_items + 1, D); row 0 zero."""
        return torch.cat([torch.zeros_like(self.table[:1]), self.table[1:]])


class MLPStudent(nn.Module):
    def __init__(
        self,
        model: ModelConfig,
        data: DataConfig,
        tables: ItemTables,
        causal: bool = True,
        sparse: bool = False,
        mlp: MLPConfig | None = None,
    ) -> None:
        """`mlp` defaults to the config's own section, `model.mlp` (model.kind = "mlp").
        Next-item (causal) only: the student has no [MASK] slot."""
        super().__init__()
        if not causal:
            raise ValueError("the mlp student reads histories left to right (objective 'next')")
        mlp = mlp or model.mlp
        if mlp.n_recent < 1:
            raise ValueError(f"mlp.n_recent must be >= 1, got {mlp.n_recent}")
        self.model_cfg, self.mlp_cfg = replace(model, kind="mlp", mlp=mlp), mlp
        self.causal = True
        self.n_recent, self.k, self.dim = mlp.n_recent, model.n_interests, model.dim
        if mlp.tokens == "teacher":
            self.tokens: nn.Module = FrozenTokens(tables.n_items, model.dim)
        else:
            self.tokens = ItemTokens(model, data, tables, sparse)
        self.event = nn.Embedding(len(EVENT_TYPES), model.dim) if data.use_events else None
        self.position_weight = nn.Parameter(torch.ones(mlp.n_recent))  # oldest .. most recent
        width = model.dim if mlp.pooling == "weighted" else mlp.n_recent * model.dim
        self.norm = nn.LayerNorm(width)
        layers: list[nn.Module] = []
        for h in mlp.hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), Dropout(model.dropout, model.dropout_masks)]
            width = h
        self.mlp = nn.Sequential(*layers)
        self.head = nn.Linear(width, self.k * model.dim)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        if self.event is not None:
            nn.init.normal_(self.event.weight, std=0.02)

    @classmethod
    def from_teacher(
        cls, teacher: nn.Module, data: DataConfig, mlp: MLPConfig, model: ModelConfig
    ) -> MLPStudent:
        """A student reading the teacher's item tokens, frozen (mlp.tokens = "teacher"): the
        table is the teacher's `tokens` of every item, so the student's items score as the
        teacher's do and only the user side is learned. `model.dim` must be the teacher's."""
        with torch.no_grad():
            table = teacher.tokens(torch.arange(teacher.tokens.n_items + 1))  # (N + 1, D)
        n_items, dim = table.shape[0] - 1, table.shape[1]
        if model.dim != dim:
            raise ValueError(f"the teacher's table has width {dim}, the student's dim {model.dim}")
        sizes = {"n_items": n_items, "n_attributes": 0, "n_attribute_links": 0, "text_dim": 0}
        tables = ItemTables.placeholder(sizes)
        mlp = replace(mlp, tokens="teacher")
        student = cls(replace(model, kind="mlp", mlp=mlp), data, tables, mlp=mlp)
        student.tokens.table.copy_(table.detach().cpu())
        return student

    # -- users ----------------------------------------------------------------------------------
    def users_from_window(self, item_idx: torch.Tensor, event: torch.Tensor) -> torch.Tensor:
        """The last N events (B, N), left-padded -> user vectors (B, K, D)."""
        real = (item_idx > 0)[..., None].to(torch.float32)  # (B, N, 1)
        x = self.tokens(item_idx)  # (B, N, D)
        if self.event is not None:
            x = x + self.event(event * (item_idx > 0))
        x = x * real
        count = real.sum(dim=1).clamp(min=1.0)  # (B, 1)
        pooled = (self.position_weight[None, :, None] * x).sum(dim=1) / count.sqrt()  # (B, D)
        # (B, D) weighted, or (B, N * D) concatenated
        inputs = pooled if self.mlp_cfg.pooling == "weighted" else x.flatten(1)
        h = self.mlp(self.norm(inputs))  # (B, H)
        users = self.head(h).view(-1, self.k, self.dim) + pooled[:, None, :]  # (B, K, D)
        return self.output(users)

    def user_vectors(
        self, item_idx: torch.Tensor, event: torch.Tensor, timestamp: torch.Tensor
    ) -> torch.Tensor:
        """Left-padded histories (B, T) -> user vectors (B, K, D) from the last N events.
        `timestamp` is accepted for the common interface and not used."""
        item_idx, event = self._last(item_idx), self._last(event)  # (B, N)
        return self.users_from_window(item_idx, event)

    def encode(
        self,
        item_idx: torch.Tensor,
        event: torch.Tensor,
        timestamp: torch.Tensor,
        masked: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Left-padded histories (B, T) -> user vectors after every prefix (B, T, K, D): the
        state at t reads events t - N + 1 .. t (every prefix of a history is an example)."""
        if masked is not None and bool(masked.any()):
            raise ValueError("the mlp student has no [MASK] input")
        b, t = item_idx.shape
        n = self.n_recent
        windows, events = self.windows(item_idx, event)  # (B, T, N) each
        users = self.users_from_window(windows.reshape(b * t, n), events.reshape(b * t, n))
        return users.view(b, t, self.k, self.dim) * (item_idx > 0)[..., None, None]

    def windows(
        self, item_idx: torch.Tensor, event: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded histories (B, T) -> the last N items and events at every position
        (B, T, N) each (views of the padded input: no copy)."""
        pad = item_idx.new_zeros(item_idx.shape[0], self.n_recent - 1)
        windows = torch.cat([pad, item_idx], dim=1).unfold(1, self.n_recent, 1)  # (B, T, N)
        events = torch.cat([pad, event], dim=1).unfold(1, self.n_recent, 1)  # (B, T, N)
        return windows, events

    def _last(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T) -> its last N columns (B, N), left-padded with 0 when T < N."""
        if x.shape[1] >= self.n_recent:
            return x[:, -self.n_recent :]
        return torch.cat([x.new_zeros(x.shape[0], self.n_recent - x.shape[1]), x], dim=1)

    # -- items and scores -----------------------------------------------------------------------
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
        return Scorer(m.interest_score, m.interest_temperature)(users, items)

    # -- the trainer's interface (guim.models.MODELS) -------------------------------------------
    def forward(
        self, batch: Batch, candidates: torch.Tensor | None = None, view: View | None = None
    ) -> ModelOutput:
        """A training batch -> ModelOutput: user vectors at the targets (P, K, D), candidate (or
        all) item vectors; states (B, T, K, D) after every prefix only with a `view` (which
        adds its states): without one, only the P predicted prefixes are computed."""
        hit = batch.targets > 0  # (B, T)
        if view is None and (batch.masked is None or not bool(batch.masked.any())):
            windows, events = self.windows(batch.items, batch.events)  # (B, T, N)
            users = self.users_from_window(windows[hit], events[hit])  # (P, K, D)
            states = users.new_zeros(0)  # not computed: nothing reads them without a view
        else:
            states = self.encode(batch.items, batch.events, batch.timestamps, batch.masked)
            users = states[hit]  # (P, K, D)
        items = self.item_vectors() if candidates is None else self.output(self.tokens(candidates))
        view_states = None
        if view is not None:
            view_states = self.encode(view.items, view.events, batch.timestamps, view.masked)
        return ModelOutput(states, users, items, view_states)

    def grow(self, n_layers: int, init: str = "copy") -> None:
        raise ValueError("model.kind 'mlp' has no layers to grow by stages")

    def set_trainable(self, spec: str) -> None:
        if spec != "all":
            raise ValueError(f"model.kind 'mlp' trains all of itself, not {spec!r}")
        self.requires_grad_(True)
        if isinstance(self.tokens, FrozenTokens):
            self.tokens.requires_grad_(False)
