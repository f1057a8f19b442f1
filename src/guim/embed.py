"""The one inference path: every model and baseline is an `Embedder`; evaluation, the benchmark,
export and serving all score users against items through the functions here.

An embedder maps histories to user vectors (N, K, D) -- K interest vectors per user, K = 1 for
single-vector models -- and gives one vector per item (n_items + 1, D), row 0 being padding.
The score of an item for a user is `embedder.scorer(users, items)` (a `guim.scoring.Scorer`): the
max over K of dot products unless the embedder says otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

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
    """A trained model as an Embedder: `embed_users`, `embed_items`, `recommend`.

    Built by `guim.load_run(run_dir)` (or around an in-memory model during training), it is the
    path that evaluation, the benchmark, export and serving all use. The model runs on the
    device its weights are on; vectors come back as numpy arrays.

    Histories carry event types and timestamps (`Sequences`, as served histories do). A bare
    list of item ids gets the run's recorded defaults (`history_defaults`, from dataset.json):
    every event of the type most common in the training data, one median training gap apart.
    Models trained without data.use_events / data.use_time ignore those inputs.
    """

    def __init__(
        self,
        model,
        cfg,
        run_dir: str | Path | None = None,
        batch_size: int = 512,
        history_defaults: dict[str, int] | None = None,
    ):
        self.model = model
        self.cfg = cfg
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.name = "guim"
        self.batch_size = batch_size
        self.history_defaults = history_defaults or {"event": 1, "gap_seconds": 1}

    # -- Embedder protocol --------------------------------------------------------------------
    def embed_users(
        self,
        histories: Sequences | list[list[int]],
        events: list[list[int]] | None = None,
        timestamps: list[list[int]] | None = None,
    ) -> np.ndarray:
        """(N, K, D) float32 user vectors; histories as Sequences (with their event types and
        timestamps) or lists of item_idx, with `events` (codes of guim.data.schema.EVENT_TYPES)
        and `timestamps` (seconds) lists of the same shape, or the run's defaults without."""
        histories = self.as_sequences(histories, events, timestamps)
        # batches of similar length, each padded only to its longest history
        order = np.argsort(histories.lengths, kind="stable")
        # a loaded run is in eval mode from `load_run` on, so serving pays no per-call walk over
        # the modules; a model handed over mid-training (validation) is switched and restored
        was_training = self.model.training
        if was_training:
            self.model.eval()
        device = next(self.model.parameters()).device
        k, d = self.cfg.model.n_interests, self.cfg.model.dim
        out = np.zeros((len(histories), k, d), dtype=np.float32)
        with torch.inference_mode():
            for b0 in range(0, len(histories), self.batch_size):
                rows = order[b0 : b0 + self.batch_size]
                p = histories.take(rows).padded(self.cfg.data.max_len, trim=True)
                out[rows] = (
                    self.model.user_vectors(
                        torch.from_numpy(p["item_idx"]).to(device),
                        torch.from_numpy(p["event"]).to(device),
                        torch.from_numpy(p["timestamp"]).to(device),
                    )
                    .cpu()
                    .numpy()
                )
        if was_training:
            self.model.train()
        return out

    def as_sequences(
        self,
        histories: Sequences | list[list[int]],
        events: list[list[int]] | None = None,
        timestamps: list[list[int]] | None = None,
    ) -> Sequences:
        """Histories as Sequences; lists of item_idx get `events` / `timestamps` or the run's
        defaults (see the class docstring)."""
        if isinstance(histories, Sequences):
            return histories
        if events is None:
            events = [[self.history_defaults["event"]] * len(h) for h in histories]
        if timestamps is None:
            gap = self.history_defaults["gap_seconds"]
            timestamps = [[gap * j for j in range(len(h))] for h in histories]
        return Sequences.from_lists(histories, events, timestamps)

    def embed_items(self) -> np.ndarray:
        """(n_items + 1, D) float32 item vectors; unseen items come from attributes/text."""
        was_training = self.model.training
        self.model.eval()
        with torch.inference_mode():
            out = self.model.item_vectors().cpu().numpy()
        self.model.train(was_training)
        return out

    def embed_new_items(
        self, attributes: list[list[str]], titles: list[str | None] | None = None
    ) -> tuple[np.ndarray, list[list[str]]]:
        """Vectors of items the run never saw, from their attributes ("field=value", as in the
        run's vocab/attributes.parquet) and titles: the item tokens of `embed_items` with the id
        embedding off, exactly as it embeds a catalogue item unseen in training.

        Returns (M, D) float32 vectors and, per item, the attributes the run does not know
        (left out of its vector)."""
        from guim.models.tokens import ItemTokens

        tokens = getattr(self.model, "tokens", None)
        if not isinstance(tokens, ItemTokens):
            raise ValueError(f"{type(self.model).__name__} has no item tokens to embed items with")
        titles = titles if titles is not None else [None] * len(attributes)
        if len(titles) != len(attributes):
            raise ValueError(f"{len(attributes)} attribute lists but {len(titles)} titles")
        vocab = self.attribute_vocab()
        known = [[vocab[a] for a in attrs if a in vocab] for attrs in attributes]
        unknown = [[a for a in attrs if a not in vocab] for attrs in attributes]
        device = tokens.known.device
        with torch.inference_mode():
            vec = torch.zeros(len(attributes), tokens.dim, device=device)  # (M, D)
            if tokens.use_attributes:
                flat = torch.tensor([a for ids in known for a in ids], dtype=torch.int64)
                offsets = torch.tensor(np.cumsum([0, *map(len, known[:-1])]), dtype=torch.int64)
                vec = vec + tokens.attr_emb(flat.to(device), offsets.to(device))  # empty bag: 0
            with_title = [j for j, t in enumerate(titles) if t and t.strip()]
            if tokens.use_text and with_title:
                from guim.text import encode_texts

                text = encode_texts([titles[j] for j in with_title], self.cfg.data.text_model)
                rows = torch.tensor(with_title, dtype=torch.int64, device=device)
                vec[rows] = vec[rows] + tokens.text_proj(torch.from_numpy(text).to(device))
            out = self.model.output(vec).cpu().numpy().astype(np.float32)
        return out, unknown

    def attribute_vocab(self) -> dict[str, int]:
        """Attribute strings ("field=value") -> attr_idx, from vocab/attributes.parquet."""
        if not hasattr(self, "_attr_vocab_cache"):
            import polars as pl

            path = None if self.run_dir is None else self.run_dir / "vocab" / "attributes.parquet"
            v = {}
            if path is not None and path.exists():
                t = pl.read_parquet(path)
                v = {
                    f"{f}={val}": int(i)
                    for f, val, i in zip(t["field"], t["value"], t["attr_idx"], strict=True)
                }
            self._attr_vocab_cache = v
        return self._attr_vocab_cache

    @property
    def scorer(self) -> Scorer:
        m = self.cfg.model
        return Scorer(m.interest_score, m.interest_temperature)

    def recommend(
        self,
        histories: Sequences | list[list[int]],
        k: int = 10,
        mask_history: bool = True,
        events: list[list[int]] | None = None,
        timestamps: list[list[int]] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k item_idx and scores for each history (see `guim.embed.recommend`)."""
        histories = self.as_sequences(histories, events, timestamps)
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
    def write_dataset_info(run_dir: Path, dataset, tables=None, scheme: str = "loo") -> None:
        """Record which dataset a run was trained on, the sizes its model is built with
        (`tables`: guim.models.tokens.ItemTables) and the defaults of bare histories, and copy
        the dataset's vocabularies."""
        import shutil

        from guim.io import write_json

        info = {
            "path": str(Path(dataset.path).resolve()),
            "name": dataset.name,
            "hash": dataset.hash,
            "n_items": dataset.n_items,
            "n_users": dataset.n_users,
            "n_attributes": dataset.n_attributes,
        }
        if tables is not None:
            info["model_sizes"] = tables.sizes()
            info["history_defaults"] = history_defaults(dataset.train_sequences(scheme))
        write_json(Path(run_dir) / "dataset.json", info)
        vocab = Path(run_dir) / "vocab"
        if not vocab.exists():
            shutil.copytree(Path(dataset.path) / "vocab", vocab)


def history_defaults(seqs: Sequences) -> dict[str, int]:
    """Event type and time gap for histories given as bare item ids: the training data's most
    common event type and its median gap between a user's consecutive events (seconds)."""
    codes = np.bincount(np.asarray(seqs.event, dtype=np.int64), minlength=2)
    codes[0] = 0  # padding
    ts = np.asarray(seqs.timestamp, dtype=np.int64)
    same_user = np.ones(len(ts), dtype=bool)
    same_user[np.asarray(seqs.offsets[:-1], dtype=np.int64)] = False  # first event of a user
    gaps = np.diff(ts, prepend=0)[same_user]
    gap = int(np.median(gaps)) if len(gaps) else 0
    return {"event": int(codes.argmax()) if codes.any() else 1, "gap_seconds": max(gap, 0)}


def load_run(
    run_dir: str | Path,
    device: str | torch.device = "cpu",
    backend: Literal["torch", "onnx"] = "torch",
    threads: int = 0,
) -> GuimRun:
    """Rebuild a trained model of any kind from its run directory alone: config.json (the
    architecture), dataset.json (the sizes) and model.safetensors (the weights).

    `backend="onnx"` embeds users with ONNX Runtime (`guim.onnx.OnnxRun`: the user encoder is
    exported to run_dir/user_encoder.onnx when missing or stale; `threads` for its sessions);
    items, scoring and raw ids stay the run's."""
    from guim.checkpoint import load_weights
    from guim.config import config_from_json
    from guim.io import read_json
    from guim.models import build_model
    from guim.models.tokens import ItemTables

    run_dir = Path(run_dir)
    for name in ("config.json", "model.safetensors"):
        if not (run_dir / name).exists():
            raise FileNotFoundError(f"{run_dir} is not a finished run: {name} is missing")
    cfg = config_from_json(run_dir / "config.json")
    info = {}
    if (run_dir / "dataset.json").exists():
        from guim.errors import CheckpointError

        try:
            info = read_json(run_dir / "dataset.json")
        except ValueError as e:
            raise CheckpointError(f"{run_dir / 'dataset.json'} is not valid JSON: {e}") from None
        if not isinstance(info, dict):
            raise CheckpointError(f"{run_dir / 'dataset.json'} is not a JSON object")
    weights = load_weights(run_dir / "model.safetensors")
    sizes = info.get("model_sizes") or _legacy_sizes(weights)
    causal = cfg.train.objective == "next"
    if cfg.train.stages:  # the objective of the last stage
        causal = (cfg.train.stages[-1].objective or cfg.train.objective) == "next"
    model = build_model(cfg.model, cfg.data, ItemTables.placeholder(sizes), causal)
    model.load_state_dict(weights)
    model.to(device).eval()
    run = GuimRun(model, cfg, run_dir, history_defaults=info.get("history_defaults"))
    if backend == "onnx":
        from guim.onnx import OnnxRun

        return OnnxRun(run, threads=threads)  # type: ignore[return-value]
    if backend != "torch":
        from guim.errors import UserError

        raise UserError(f"backend must be 'torch' or 'onnx', not {backend!r}")
    return run


def _legacy_sizes(weights: dict[str, torch.Tensor]) -> dict[str, int]:
    """Sizes of a run written before dataset.json recorded them (guim <= the engine issue):
    read from the saved tables (buffers), not from parameter shapes."""
    known = weights["tokens.known"]
    return {
        "n_items": len(known) - 1,
        "n_attributes": (
            weights["tokens.attr_emb.weight"].shape[0] - 1
            if "tokens.attr_emb.weight" in weights
            else 0
        ),
        "n_attribute_links": len(weights.get("tokens.attr_flat", torch.zeros(0))),
        "text_dim": weights["tokens.text"].shape[1] if "tokens.text" in weights else 0,
    }
