"""The served model: a trained run (for embedding histories through `guim.embed`), its item
vectors, a FAISS index over them, the popularity list and the users' histories as of the export.

A `ServedModel` is immutable once built except for cold items added at run time, which live in
a small exact side table replaced copy-on-write, so searches never take a lock. Swapping models
is one reference assignment (`guim.serve.app`); a request keeps the model it started with.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import torch

from guim.data.dataset import EvalCases, Sequences
from guim.data.schema import event_code
from guim.embed import GuimRun, load_run
from guim.evaluate import rank_cases
from guim.export import column_vectors, is_export, run_dataset, run_id
from guim.index import IndexConfig, build_index, index_kind, load_index, search, set_search_params
from guim.metrics import metrics_from_ranks

GATE_METRIC = "NDCG@10"
History = tuple[list[int], list[int], list[int]]  # item_idx, event codes, timestamps


@dataclass(frozen=True)
class Extras:
    """Items added at run time: raw ids and (M, D) vectors, searched exactly."""

    ids: tuple[str, ...] = ()
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))


@dataclass(frozen=True)
class Recommendation:
    item_ids: list[str]
    scores: list[float]


class ServedModel:
    """Everything one model needs to answer requests; built by `load_model`."""

    def __init__(
        self,
        run: GuimRun,
        source: Path,
        version: str,
        items: np.ndarray,
        index,
        item_ids: np.ndarray,
        popularity: np.ndarray,
        base: Sequences | None,
        base_users: dict[str, int],
        manifest: dict,
    ) -> None:
        self.run = run
        self.embedder = run  # what embeds histories: the run, or its ONNX Runtime encoder
        self.source = source
        self.version = version
        self.items = items  # (n_items + 1, D), row 0 padding
        self.index = index
        self.item_ids = item_ids  # (n_items + 1,) object, row 0 None
        self.item_idx = {str(i): r for r, i in enumerate(item_ids) if r > 0}
        self.popular = (
            np.argsort(-popularity[1:], kind="stable") + 1
        )  # item_idx, most popular first
        self.base = base
        self.base_users = base_users
        self.manifest = manifest
        self.extras = Extras(vectors=np.zeros((0, items.shape[1]), dtype=np.float32))
        self._extras_lock = threading.Lock()
        self.n_interests = run.cfg.model.n_interests
        self.max_len = run.cfg.data.max_len
        self.attr_idx = run.attribute_vocab()  # "field=value" -> attr_idx

    # -- histories ------------------------------------------------------------------------------
    def base_history(self, user_id: str) -> tuple[list[int], list[int], list[int]]:
        """(item_idx, event, timestamp) lists of the user's history as of the export."""
        row = self.base_users.get(user_id)
        if row is None or self.base is None:
            return [], [], []
        a, b = self.base.offsets[row], self.base.offsets[row + 1]
        return (
            self.base.item_idx[a:b].tolist(),
            self.base.event[a:b].tolist(),
            self.base.timestamp[a:b].tolist(),
        )

    def to_sequences(self, histories: list[tuple[list[int], list[int], list[int]]]) -> Sequences:
        """Histories of item_idx (only items the model knows) -> Sequences for `embed_users`."""
        return Sequences.from_lists(
            [h[0] for h in histories], [h[1] for h in histories], [h[2] for h in histories]
        )

    def user_vectors(self, histories: list[tuple[list[int], list[int], list[int]]]) -> np.ndarray:
        """(N, K, D) through the one inference path, keeping only the last max_len events."""
        cut = [
            (i[-self.max_len :], e[-self.max_len :], t[-self.max_len :]) for i, e, t in histories
        ]
        return self.embedder.embed_users(self.to_sequences(cut))

    # -- retrieval ------------------------------------------------------------------------------
    def retrieve(
        self, users: np.ndarray, k: int, exclude_idx: set[int], exclude_extra: set[str]
    ) -> Recommendation:
        """Top-k items for one user's (K, D) vectors: FAISS over the catalogue plus the exact
        side table of run-time items, candidates re-scored by the model's scorer (ties towards
        the lower item_idx, run-time items last)."""
        extras = self.extras
        depth = k + len(exclude_idx)
        labels, _ = search(self.index, users, depth)  # (K, depth)
        cand = np.unique(labels[labels >= 0]) + 1  # item_idx, ascending
        if exclude_idx:
            cand = cand[~np.isin(cand, np.fromiter(exclude_idx, np.int64, len(exclude_idx)))]
        scores = self._score(users, self.items[cand])  # (C,)
        keep: list[int] = []
        if len(extras.ids):
            keep = [j for j, i in enumerate(extras.ids) if i not in exclude_extra]
            scores = np.concatenate([scores, self._score(users, extras.vectors[keep])])
        order = np.argsort(-scores, kind="stable")[:k]
        n = len(cand)
        ids = [str(self.item_ids[cand[j]]) if j < n else extras.ids[keep[j - n]] for j in order]
        return Recommendation(ids, np.nan_to_num(scores[order]).tolist())

    def _score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """(K, D) x (C, D) -> (C,) float64 by the model's scorer (max / softmax over the K
        interests; one interest, or "max", is a plain numpy product, no torch call)."""
        if len(items) == 0:
            return np.zeros(0)
        scorer = self.run.scorer
        if users.shape[0] == 1 or scorer.mode == "max":
            return (items @ users.T).max(axis=1).astype(np.float64)  # (C, K) -> (C,)
        with torch.inference_mode():
            return (
                scorer(torch.from_numpy(users[None]), torch.from_numpy(items))[0]
                .numpy()
                .astype(np.float64)
            )

    def item_vector(self, item_id: str) -> np.ndarray | None:
        row = self.item_idx.get(item_id)
        if row is not None:
            return self.items[row]
        extras = self.extras
        if item_id in extras.ids:
            return extras.vectors[extras.ids.index(item_id)]
        return None

    def popular_items(self, k: int, exclude_idx: set[int]) -> Recommendation:
        out = [i for i in self.popular[: k + len(exclude_idx)].tolist() if i not in exclude_idx]
        return Recommendation([str(self.item_ids[i]) for i in out[:k]], [0.0] * len(out[:k]))

    # -- run-time cold items --------------------------------------------------------------------
    def embed_cold_item(
        self, attributes: list[str], title: str | None
    ) -> tuple[np.ndarray, list[str]]:
        """A new item's (D,) vector from its attributes ("field=value") and title through
        `GuimRun.embed_new_items` (the export's path too), and the attributes it did not know."""
        vectors, unknown = self.run.embed_new_items([attributes], [title])
        return vectors[0], unknown[0]

    def add_items(self, ids: list[str], vectors: np.ndarray) -> None:
        """Make run-time items searchable at once (copy-on-write of the side table)."""
        with self._extras_lock:
            old = self.extras
            new_ids = [i for i in ids if i not in self.item_idx and i not in old.ids]
            keep = [j for j, i in enumerate(ids) if i in new_ids]
            self.extras = Extras(
                ids=old.ids + tuple(new_ids),
                vectors=np.concatenate(
                    [old.vectors, vectors[keep].reshape(-1, old.vectors.shape[1])]
                ),
            )

    def knows(self, item_id: str) -> bool:
        return item_id in self.item_idx or item_id in self.extras.ids

    # -- evaluation on update -------------------------------------------------------------------
    def gate_metric(self, cases: list[tuple[tuple[list[int], list[int], list[int]], int]]) -> float:
        """NDCG@10 (history masked, exact full ranking through `guim.evaluate.rank_cases`) on
        gate cases ((item_idx, event, timestamp) history, target item_idx)."""
        hist = self.to_sequences([h for h, _ in cases])
        ranks = rank_cases(
            self.embedder,
            EvalCases(
                history=hist,
                target=np.array([t for _, t in cases], dtype=np.int32),
                target_event=np.ones(len(cases), dtype=np.int8),
                candidates=None,
            ),
        )
        return metrics_from_ranks(ranks, (10,))[GATE_METRIC]

    def describe(self) -> dict:
        return {
            "version": self.version,
            "source": str(self.source),
            "n_items": int(self.items.shape[0] - 1),
            "n_runtime_items": len(self.extras.ids),
            "index": index_kind(self.index),
            "backend": "onnx" if self.embedder is not self.run else "torch",
            "index_recall@10": self.manifest.get("index", {}).get("recall@10"),
        }


def event_or_default(name: str | None) -> int:
    code = event_code(name) if name else None
    return code if code is not None else 1


def load_model(
    source: str | Path, index: IndexConfig | None = None, backend: str = "torch"
) -> ServedModel:
    """A ServedModel from an export directory (vectors and index read back) or a run directory
    (vectors embedded and an index built in memory). `backend="onnx"` embeds histories with the
    ONNX Runtime user encoder (`guim.onnx`; exported into the model directory when missing)."""
    model = _load_model(Path(source), index)
    if backend == "onnx":
        from guim.onnx import OnnxRun

        model.embedder = OnnxRun(model.run, threads=1)
    elif backend != "torch":
        raise ValueError(f"unknown backend {backend!r}; expected torch or onnx")
    return model


def _load_model(source: Path, index: IndexConfig | None) -> ServedModel:
    if is_export(source):
        import json

        manifest = json.loads((source / "manifest.json").read_text())
        run = load_run(source / "model")
        table = pq.read_table(source / "items.parquet")
        dim = int(manifest["dim"])
        vectors = column_vectors(table["vector"], (dim,))
        items = np.concatenate([np.zeros((1, dim), dtype=np.float32), vectors])
        ids = np.empty(len(vectors) + 1, dtype=object)
        ids[1:] = table["item_id"].to_pylist()
        popularity = np.concatenate([[0], table["popularity"].to_numpy()])
        faiss_index = load_index(source / "items.faiss")
        if index is not None:
            set_search_params(faiss_index, index)
        base, base_users = _base_histories(source / "users.parquet")
        return ServedModel(
            run,
            source,
            manifest["run_id"],
            items,
            faiss_index,
            ids,
            popularity,
            base,
            base_users,
            manifest,
        )
    run = load_run(source)
    items = run.embed_items()
    ids = np.empty(items.shape[0], dtype=object)
    ids[1:] = [str(x) for x in run.item_ids(np.arange(1, items.shape[0]))]
    dataset = run_dataset(run)
    popularity = np.zeros(items.shape[0], dtype=np.int64)
    base, base_users = None, {}
    if dataset is not None:
        from guim.export import all_histories

        popularity = np.bincount(dataset.events["item_idx"].to_numpy(), minlength=len(ids))
        base = all_histories(dataset)
        user_ids = dataset.users.sort("user_idx")["user_id"].cast(pl.String).to_list()
        base_users = {u: r for r, u in enumerate(user_ids)}
    faiss_index = build_index(items[1:], index)
    manifest = {
        "run_id": run_id(source),
        "dataset_hash": dataset.hash if dataset is not None else None,
        "index": {"kind": index_kind(faiss_index)},
    }
    return ServedModel(
        run,
        source,
        manifest["run_id"],
        items,
        faiss_index,
        ids,
        popularity,
        base,
        base_users,
        manifest,
    )


def _base_histories(path: Path) -> tuple[Sequences | None, dict[str, int]]:
    if not path.exists():
        return None, {}
    t = pq.read_table(
        path, columns=["user_id", "history_item_idx", "history_event", "history_timestamp"]
    )
    col = t["history_item_idx"].combine_chunks()
    offsets = col.offsets.to_numpy().astype(np.int64)
    seq = Sequences(
        offsets=offsets - offsets[0],
        item_idx=col.flatten().to_numpy().astype(np.int32),
        event=t["history_event"].combine_chunks().flatten().to_numpy().astype(np.int8),
        timestamp=t["history_timestamp"].combine_chunks().flatten().to_numpy().astype(np.int64),
        user_idx=np.arange(1, t.num_rows + 1, dtype=np.int32),
    )
    users = {u: r for r, u in enumerate(t["user_id"].to_pylist())}
    return seq, users
