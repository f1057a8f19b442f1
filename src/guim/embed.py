"""The one inference path: every model and baseline is an `Embedder`; evaluation, the benchmark,
export and serving all score users against items through the functions here.

An embedder maps histories to user vectors (N, K, D) -- K interest vectors per user, K = 1 for
single-vector models -- and gives one vector per item (n_items + 1, D), row 0 being padding.
The score of an item for a user is `embedder.scorer(users, items)` (a `guim.scoring.Scorer`): the
max over K of dot products unless the embedder says otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from guim.data.dataset import Sequences
from guim.scoring import Scorer, max_dot, top_k


@runtime_checkable
class Embedder(Protocol):
    """Anything that embeds users from their histories and items from the catalogue."""

    name: str

    def embed_users(self, histories: Sequences) -> np.ndarray:
        """(N, K, D) float32 user vectors for N histories."""
        ...

    def embed_items(self) -> np.ndarray:
        """(n_items + 1, D) float32 item vectors indexed by item_idx; row 0 is padding."""
        ...


def scorer_of(embedder: Embedder) -> Scorer:
    """How the embedder's K user vectors score an item (max of dot products by default)."""
    return getattr(embedder, "scorer", max_dot)


def repeat_bonus_of(embedder: Embedder) -> float:
    """The embedder's repeat-aware score term under `mask_history=False` (0 = none): added to
    the score of every item of the user's own history."""
    return float(getattr(embedder, "repeat_bonus", 0.0))


def recommend(
    embedder: Embedder,
    histories: Sequences,
    k: int = 10,
    mask_history: bool = True,
    candidates: np.ndarray | None = None,
    batch_size: int = 1024,
    chunk_size: int = 65536,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k items for each history: (item_idx (N, k) int64, scores (N, k) float32).

    `mask_history=True` excludes every item of the history (the S3-Rec protocol; serving's
    `exclude_seen`); `False` ranks them like any other item (plus the embedder's repeat-aware
    term, if it has one). `candidates` (n_items + 1,) bool restricts the ranking. Ties are
    broken towards the lower item index.
    """
    users = embedder.embed_users(histories)
    items = embedder.embed_items()
    seen = (histories.offsets, histories.item_idx)
    bonus = float("-inf") if mask_history else repeat_bonus_of(embedder)
    return top_k(
        users,
        items,
        k,
        seen=seen if bonus != 0.0 else None,
        candidates=candidates,
        scorer=scorer_of(embedder),
        seen_bonus=bonus,
        batch_size=batch_size,
        chunk_size=chunk_size,
    )


class GuimRun:
    """A trained GUIM model as an Embedder: `embed_users`, `embed_items`, `recommend`.

    Built by `guim.load_run(run_dir)` (or around an in-memory model during training), it is the
    path that evaluation, the benchmark, export and serving all use.
    """

    def __init__(self, model, cfg, run_dir: str | Path | None = None, batch_size: int = 512):
        self.model = model
        self.cfg = cfg
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.name = "guim"
        self.batch_size = batch_size

    # -- Embedder protocol --------------------------------------------------------------------
    def embed_users(self, histories: Sequences | list[list[int]]) -> np.ndarray:
        """(N, K, D) float32 user vectors; histories as Sequences or lists of item_idx."""
        if not isinstance(histories, Sequences):
            histories = Sequences.from_lists(histories)
        # batches of similar length, each padded only to its longest history
        order = np.argsort(histories.lengths, kind="stable")
        was_training = self.model.training
        self.model.eval()
        k, d = self.cfg.model.n_interests, self.cfg.model.dim
        out = np.zeros((len(histories), k, d), dtype=np.float32)
        with torch.inference_mode():
            for b0 in range(0, len(histories), self.batch_size):
                rows = order[b0 : b0 + self.batch_size]
                p = histories.take(rows).padded(self.cfg.data.max_len, trim=True)
                out[rows] = self.model.user_vectors(
                    torch.from_numpy(p["item_idx"]),
                    torch.from_numpy(p["event"]),
                    torch.from_numpy(p["timestamp"]),
                ).numpy()
        self.model.train(was_training)
        return out

    def embed_items(self) -> np.ndarray:
        """(n_items + 1, D) float32 item vectors; unseen items come from attributes/text."""
        was_training = self.model.training
        self.model.eval()
        with torch.inference_mode():
            out = self.model.item_vectors().numpy()
        self.model.train(was_training)
        return out

    @property
    def scorer(self) -> Scorer:
        m = self.cfg.model
        return Scorer(m.interest_score, m.interest_temperature)

    def recommend(
        self, histories: Sequences | list[list[int]], k: int = 10, mask_history: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k item_idx and scores for each history (see `guim.embed.recommend`)."""
        if not isinstance(histories, Sequences):
            histories = Sequences.from_lists(histories)
        return recommend(self, histories, k, mask_history=mask_history)

    # -- raw ids at the edge --------------------------------------------------------------------
    def item_index(self, item_ids: list[str]) -> np.ndarray:
        """Raw item ids -> item_idx (KeyError naming the first unknown id)."""
        vocab = self._vocab()
        try:
            return np.array([vocab[str(i)] for i in item_ids], dtype=np.int64)
        except KeyError as e:
            raise KeyError(f"unknown item id {e.args[0]!r}") from None

    def item_ids(self, item_idx: np.ndarray) -> np.ndarray:
        """item_idx -> raw item ids (same shape)."""
        ids = self._ids()
        return ids[np.asarray(item_idx)]

    def _vocab(self) -> dict[str, int]:
        if not hasattr(self, "_vocab_cache"):
            import polars as pl

            if self.run_dir is None:
                raise ValueError("raw ids need a run directory (use guim.load_run)")
            v = pl.read_parquet(self.run_dir / "vocab" / "items.parquet")
            self._vocab_cache = dict(
                zip(v["item_id"].cast(str).to_list(), v["item_idx"].to_list(), strict=True)
            )
        return self._vocab_cache

    def _ids(self) -> np.ndarray:
        vocab = self._vocab()
        out = np.empty(max(vocab.values()) + 1, dtype=object)
        for k, v in vocab.items():
            out[v] = k
        return out

    @staticmethod
    def write_dataset_info(run_dir: Path, dataset) -> None:
        """Record which dataset a run was trained on and copy its vocabularies."""
        import shutil

        from guim.io import write_json

        write_json(
            Path(run_dir) / "dataset.json",
            {
                "path": str(Path(dataset.path).resolve()),
                "name": dataset.name,
                "hash": dataset.hash,
                "n_items": dataset.n_items,
                "n_users": dataset.n_users,
                "n_attributes": dataset.n_attributes,
            },
        )
        vocab = Path(run_dir) / "vocab"
        if not vocab.exists():
            shutil.copytree(Path(dataset.path) / "vocab", vocab)


def load_run(run_dir: str | Path) -> GuimRun:
    """Rebuild a trained GUIM from its run directory alone (config.json + model.safetensors)."""
    from guim.checkpoint import load_weights
    from guim.config import config_from_json
    from guim.models.guim import GUIM

    run_dir = Path(run_dir)
    for name in ("config.json", "model.safetensors"):
        if not (run_dir / name).exists():
            raise FileNotFoundError(f"{run_dir} is not a finished run: {name} is missing")
    cfg = config_from_json(run_dir / "config.json")
    weights = load_weights(run_dir / "model.safetensors")
    n_items = weights["tokens.id_emb.weight"].shape[0] - 1
    n_attributes = (
        weights["tokens.attr_emb.weight"].shape[0] - 1 if "tokens.attr_emb.weight" in weights else 0
    )
    empty = torch.zeros(0, dtype=torch.int64)
    model = GUIM(
        cfg,
        n_items=n_items,
        n_attributes=n_attributes,
        attr_offsets=weights.get(
            "tokens.attr_offsets", torch.zeros(n_items + 2, dtype=torch.int64)
        ),
        attr_flat=weights.get("tokens.attr_flat", empty),
        known=weights["tokens.known"].bool(),
        text=weights.get("tokens.text"),
    )
    model.load_state_dict(weights)
    model.eval()
    return GuimRun(model, cfg, run_dir)
