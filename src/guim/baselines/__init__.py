"""The baselines every model must beat, as `Embedder`s: random, popularity, item2vec(+attributes),
CML.

`build(name, dataset, scheme, **overrides)` fits one from the scheme's training sequences;
`save` / `load` keep a fitted baseline as `model.safetensors` (numpy arrays) + `config.json`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, NamedTuple

from safetensors.numpy import load_file, save_file

from guim.baselines import cml, item2vec, popularity
from guim.baselines import random as random_baseline
from guim.baselines.cml import CMLConfig, CMLEmbedder
from guim.baselines.item2vec import Item2VecConfig, Item2VecEmbedder
from guim.baselines.popularity import PopularityConfig, PopularityEmbedder
from guim.baselines.random import RandomConfig, RandomEmbedder
from guim.data.dataset import Dataset, Scheme
from guim.errors import UserError
from guim.io import read_json, write_json

__all__ = [
    "BASELINES",
    "CMLConfig",
    "CMLEmbedder",
    "Item2VecConfig",
    "Item2VecEmbedder",
    "PopularityConfig",
    "PopularityEmbedder",
    "RandomConfig",
    "RandomEmbedder",
    "build",
    "load",
    "save",
    "tuned",
]

Baseline = RandomEmbedder | PopularityEmbedder | Item2VecEmbedder | CMLEmbedder


class _Entry(NamedTuple):
    config: type
    embedder: type
    fit: Callable[..., Any]


BASELINES: dict[str, _Entry] = {
    "random": _Entry(RandomConfig, RandomEmbedder, random_baseline.fit),
    "popularity": _Entry(PopularityConfig, PopularityEmbedder, popularity.fit),
    "item2vec": _Entry(Item2VecConfig, Item2VecEmbedder, item2vec.fit),
    "cml": _Entry(CMLConfig, CMLEmbedder, cml.fit),
}


def make_config(name: str, **overrides: Any) -> Any:
    """The config of baseline `name` with `overrides` applied; unknown keys raise ValueError."""
    entry = _entry(name)
    known = {f.name for f in fields(entry.config)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise UserError(f"unknown {name} setting(s) {unknown}; known: {sorted(known)}")
    return entry.config(**overrides)


# Settings chosen on the VALIDATION split of each public dataset (the search is recorded in
# benchmarks/baselines.py for item2vec and in guim.baselines.cml for CML); `tuned` returns them
# for a dataset by name, and the benchmark runner applies them.
TUNED: dict[str, dict[str, dict[str, Any]]] = {
    "beauty": {"item2vec": {"dim": 32, "epochs": 20, "normalize_items": False}},
    "lastfm": {},
}


def tuned(name: str, dataset_name: str) -> dict[str, Any]:
    """Validation-tuned settings of baseline `name` for dataset `dataset_name` ({} if none)."""
    return dict(TUNED.get(dataset_name.lower(), {}).get(name, {}))


def build(name: str, dataset: Dataset, scheme: Scheme = "loo", **overrides: Any) -> Baseline:
    """Fit baseline `name` ("random", "popularity", "item2vec", "cml") on `scheme`'s training data."""
    return _entry(name).fit(dataset, scheme, make_config(name, **overrides))


def save(embedder: Baseline, path: str | Path, **meta: Any) -> Path:
    """Write a fitted baseline to directory `path`: model.safetensors + config.json.

    `meta` (JSON-serialisable: dataset hash, scheme, fit seconds...) is kept in config.json.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    kind = next(k for k, e in BASELINES.items() if isinstance(embedder, e.embedder))
    save_file(embedder.arrays(), str(path / "model.safetensors"))
    write_json(
        path / "config.json",
        {"baseline": kind, "name": embedder.name, "config": asdict(embedder.config), "meta": meta},
    )
    return path


def load(path: str | Path) -> Baseline:
    """Read a baseline written by `save`."""
    path = Path(path)
    doc = read_json(path / "config.json")
    entry = _entry(doc["baseline"])
    config = make_config(doc["baseline"], **doc["config"])
    return entry.embedder.from_arrays(config, load_file(str(path / "model.safetensors")))


def _entry(name: str) -> _Entry:
    if name not in BASELINES:
        raise UserError(f"unknown baseline {name!r}; expected one of {sorted(BASELINES)}")
    return BASELINES[name]
