"""Shared fixtures. Tests that need ../shared/datasets skip when it is absent (a user's fresh
clone) but fail on CI (CI=true), where it must be present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GUIM_DATA_DIR", REPO.parent / "shared" / "datasets"))


def shared_dataset(*parts: str) -> Path:
    """Path under the shared datasets directory; skip (or fail on CI) when it is missing."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        msg = f"{path} not found: real datasets live in ../shared/datasets (or $GUIM_DATA_DIR)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{msg}; CI must have them")
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def beauty_txt() -> Path:
    return shared_dataset("s3rec", "Beauty.txt")


@pytest.fixture(scope="session")
def lastfm_txt() -> Path:
    return shared_dataset("s3rec", "LastFM.txt")


@pytest.fixture(scope="session")
def ml100k_dir() -> Path:
    return shared_dataset("ml-100k")


@pytest.fixture(scope="session")
def beauty_dataset(tmp_path_factory, beauty_txt):
    """Beauty prepared once per test session."""
    from guim.data.dataset import Dataset
    from guim.data.loaders.s3rec import load_s3rec
    from guim.data.prepare import PrepareConfig, prepare

    out = tmp_path_factory.mktemp("beauty") / "beauty"
    prepare(load_s3rec(beauty_txt), out, PrepareConfig(name="beauty"), show_progress=False)
    return Dataset(out)
