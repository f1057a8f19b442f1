"""`guim export`: what a shop deploys from a run -- item and user vectors as Parquet (raw ids,
Arrow fixed-size-list vectors), a FAISS index of the items with its measured recall@10 and query
latency, the model files the server embeds new histories with, and manifest.json.

Layout of an export directory:

    manifest.json   run id, config hash, dataset hash, guim version, dims, index kind, params,
                    recall@10 against exact search, query latency
    items.parquet   item_id str, item_idx i32, vector fixed_size_list<f32>[D], cold i8,
                    attributes list<str> ("field=value"), title str, popularity i64
    users.parquet   user_id str, user_idx i32, vectors fixed_size_list<fixed_size_list<f32>[D]>[K],
                    history_item_idx list<i32>, history_event list<i8>, history_timestamp list<i64>
    items.faiss     the index; label j is item row j + 1 of items.parquet's vectors
    model/          config.json, model.safetensors, vocab/ (a run directory `load_run` reads),
                    user_encoder.onnx with --onnx (the user encoder for ONNX Runtime, `guim.onnx`)

All vectors come from `guim.embed` (`embed_items`, `embed_users`): the one inference path.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from guim.data.dataset import Dataset, Sequences
from guim.embed import GuimRun, load_run
from guim.index import IndexConfig, build_index, index_kind, measure, save_index
from guim.io import atomic_dir, read_json, write_json

MODEL_FILES = ("config.json", "model.safetensors", "dataset.json", "metrics.json")


def guim_version() -> str:
    try:
        return version("guim")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def run_id(run_dir: str | Path) -> str:
    """The run directory's name plus a short hash of its weights: names one trained model."""
    run_dir = Path(run_dir)
    h = hashlib.blake2b(digest_size=6)
    with open(run_dir / "model.safetensors", "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return f"{run_dir.resolve().name}-{h.hexdigest()}"


def all_histories(dataset: Dataset) -> Sequences:
    """Every interaction of every user, in time order (the history 'as of the export'); one
    row per user_idx 1..n_users (a user without events gets an empty row)."""
    ev = dataset.events  # sorted by (user_idx, timestamp)
    users = ev["user_idx"].to_numpy().astype(np.int64)
    counts = np.bincount(users, minlength=dataset.n_users + 1)[1:]
    offsets = np.zeros(dataset.n_users + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return Sequences(
        offsets=offsets,
        item_idx=ev["item_idx"].to_numpy().astype(np.int32),
        event=ev["event"].to_numpy().astype(np.int8),
        timestamp=ev["timestamp"].to_numpy().astype(np.int64),
        user_idx=np.arange(1, dataset.n_users + 1, dtype=np.int32),
    )


def run_dataset(run: GuimRun, dataset_dir: str | Path | None = None) -> Dataset | None:
    """The dataset a run was trained on (from its dataset.json), or None when it is gone."""
    if dataset_dir is not None:
        return Dataset(dataset_dir)
    info_path = run.run_dir / "dataset.json" if run.run_dir else None
    if info_path is None or not info_path.exists():
        return None
    path = Path(read_json(info_path)["path"])
    return Dataset(path) if (path / "stats.json").exists() else None


def vectors_column(vectors: np.ndarray) -> pa.Array:
    """(N, D) or (N, K, D) float32 -> Arrow fixed-size list (of fixed-size lists)."""
    arr = np.ascontiguousarray(vectors, dtype=np.float32)
    out: pa.Array = pa.array(arr.reshape(-1), type=pa.float32())
    for size in reversed(arr.shape[1:]):
        out = pa.FixedSizeListArray.from_arrays(out, size)
    return out


def column_vectors(column: pa.ChunkedArray | pa.Array, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of `vectors_column`: an Arrow fixed-size-list column -> float32 (N, *shape)."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    for _ in shape:
        arr = arr.flatten()
    return arr.to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, *shape)


def _item_table(run: GuimRun, items: np.ndarray, dataset: Dataset | None) -> pa.Table:
    vocab = pl.read_parquet(run.run_dir / "vocab" / "items.parquet").sort("item_idx")
    n = items.shape[0] - 1
    idx = np.arange(1, n + 1, dtype=np.int32)
    ids = np.empty(n + 1, dtype=object)
    ids[vocab["item_idx"].to_numpy()] = vocab["item_id"].cast(pl.String).to_numpy()
    cold = np.zeros(n + 1, dtype=np.int8)
    popularity = np.zeros(n + 1, dtype=np.int64)
    titles: list[str | None] = [None] * (n + 1)
    attributes: list[list[str]] = [[] for _ in range(n + 1)]
    if dataset is not None:
        cold = dataset.item_cold
        popularity = np.bincount(dataset.events["item_idx"].to_numpy(), minlength=n + 1)
        table = dataset.items.sort("item_idx")
        if "title" in table.columns:
            for i, t in zip(table["item_idx"].to_list(), table["title"].to_list(), strict=True):
                titles[i] = t
        names = dataset.attributes.sort("attr_idx")
        label = np.empty(dataset.n_attributes + 1, dtype=object)
        label[names["attr_idx"].to_numpy()] = [
            f"{f}={v}" for f, v in zip(names["field"], names["value"], strict=True)
        ]
        offsets, flat = dataset.item_attributes
        for i in range(1, n + 1):
            attributes[i] = label[flat[offsets[i] : offsets[i + 1]]].tolist()
    return pa.table(
        {
            "item_id": pa.array(ids[1:].tolist(), pa.string()),
            "item_idx": pa.array(idx),
            "vector": vectors_column(items[1:]),
            "cold": pa.array(cold[1:]),
            "attributes": pa.array(attributes[1:], pa.list_(pa.string())),
            "title": pa.array(titles[1:], pa.string()),
            "popularity": pa.array(popularity[1:].astype(np.int64)),
        }
    )


def _user_table(run: GuimRun, dataset: Dataset) -> tuple[pa.Table, np.ndarray]:
    hist = all_histories(dataset)
    users = run.embed_users(hist)  # (N, K, D)
    vocab = dataset.users.sort("user_idx")
    list_of = lambda values, typ: pa.ListArray.from_arrays(  # noqa: E731
        pa.array(hist.offsets.astype(np.int32)), pa.array(values, typ)
    )
    table = pa.table(
        {
            "user_id": pa.array(vocab["user_id"].cast(pl.String).to_list(), pa.string()),
            "user_idx": pa.array(vocab["user_idx"].to_numpy().astype(np.int32)),
            "vectors": vectors_column(users),
            "history_item_idx": list_of(hist.item_idx, pa.int32()),
            "history_event": list_of(hist.event, pa.int8()),
            "history_timestamp": list_of(hist.timestamp, pa.int64()),
        }
    )
    return table, users


@dataclass(frozen=True)
class ExportResult:
    path: Path
    manifest: dict


def export(
    run_dir: str | Path,
    out_dir: str | Path,
    index: IndexConfig | None = None,
    dataset_dir: str | Path | None = None,
    n_queries: int = 1000,
    overwrite: bool = False,
    onnx: bool = False,
) -> Path:
    """Write an export directory (see module docstring) for a trained run; returns its path.
    With `onnx`, the user encoder is exported too (model/user_encoder.onnx, `guim.onnx`)."""
    run_dir = Path(run_dir)
    index = index or IndexConfig()
    run = load_run(run_dir)
    dataset = run_dataset(run, dataset_dir)
    items = run.embed_items()  # (n_items + 1, D)
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        model_dir = tmp / "model"
        model_dir.mkdir()
        for name in MODEL_FILES:
            if (run_dir / name).exists():
                shutil.copy2(run_dir / name, model_dir / name)
        shutil.copytree(run_dir / "vocab", model_dir / "vocab")
        pq.write_table(_item_table(run, items, dataset), tmp / "items.parquet")
        queries = items[1 : 1 + n_queries]
        n_users = 0
        if dataset is not None:
            table, users = _user_table(run, dataset)
            pq.write_table(table, tmp / "users.parquet")
            n_users = len(users)
            rng = np.random.default_rng(0)
            flat = users.reshape(-1, users.shape[-1])
            queries = flat[rng.choice(len(flat), size=min(n_queries, len(flat)), replace=False)]
        faiss_index = build_index(items[1:], index)
        save_index(faiss_index, tmp / "items.faiss")
        quality = measure(faiss_index, items[1:], queries, k=10)
        onnx_file = None
        if onnx:
            from guim.onnx import ONNX_FILE, export_run

            export_run(run, model_dir / ONNX_FILE)
            onnx_file = f"model/{ONNX_FILE}"
        cfg = run.cfg
        manifest = {
            "format": "guim-export/1",
            "run_id": run_id(run_dir),
            "run_dir": str(run_dir.resolve()),
            "config_hash": cfg.hash(),
            "dataset_hash": dataset.hash if dataset is not None else None,
            "dataset": dataset.name if dataset is not None else None,
            "guim_version": guim_version(),
            "n_items": int(items.shape[0] - 1),
            "n_users": n_users,
            "dim": int(items.shape[1]),
            "n_interests": int(cfg.model.n_interests),
            "scorer": {
                "mode": cfg.model.interest_score,
                "temperature": cfg.model.interest_temperature,
            },
            "index": {
                "kind": index_kind(faiss_index),
                "params": index.to_dict(),
                **quality,
                "queries": "user vectors" if dataset is not None else "item vectors",
            },
            "onnx_user_encoder": onnx_file,
        }
        write_json(tmp / "manifest.json", manifest)
    return Path(out_dir)


def is_export(path: str | Path) -> bool:
    return (Path(path) / "manifest.json").exists()
