"""A tiny synthetic shop, two trained runs (a good one and a barely trained one) and an export,
built once per test session in seconds."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="serving needs the serve extra: pip install 'guim[serve]'")
pytest.importorskip("faiss", reason="serving needs the serve extra: pip install 'guim[serve]'")

FAST = ["train.threads=1", "train.patience=100"]


@pytest.fixture(scope="session")
def shop_dataset(tmp_path_factory) -> Path:
    from guim.data.loaders.merrec import load_merrec
    from guim.data.prepare import PrepareConfig, prepare
    from guim.data.synthetic import SynthConfig, synth

    root = tmp_path_factory.mktemp("shop")
    config = dataclasses.replace(SynthConfig.tiny(3), n_users=240, shard_events=5000)
    shop = synth(root / "shop", config, show_progress=False)
    return prepare(
        load_merrec(shop), root / "ds", PrepareConfig(name="synthetic"), show_progress=False
    )


def _train(dataset: Path, out: Path, overrides: list[str]) -> Path:
    from guim.config import load_config
    from guim.train import train

    cfg = load_config("tiny", [*FAST, *overrides])
    return train(cfg, dataset, out, show_progress=False, evaluate_test=False)


@pytest.fixture(scope="session")
def good_run(shop_dataset, tmp_path_factory) -> Path:
    return _train(shop_dataset, tmp_path_factory.mktemp("runs") / "good", ["train.epochs=8"])


@pytest.fixture(scope="session")
def weak_run(shop_dataset, tmp_path_factory) -> Path:
    """One epoch at a tiny learning rate: close to its random initialisation."""
    out = tmp_path_factory.mktemp("runs") / "weak"
    return _train(shop_dataset, out, ["train.epochs=1", "train.lr=1e-6"])


@pytest.fixture(scope="session")
def export_dir(good_run, tmp_path_factory) -> Path:
    from guim.export import export

    return export(good_run, tmp_path_factory.mktemp("export") / "exp")
