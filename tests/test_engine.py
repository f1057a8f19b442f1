"""Training engine: the restructured trainer gives the old trainer's weights bit for bit; stages
(growth, what trains, resume across a stage boundary after kill -9, load_run of a grown run);
start-up validation that writes nothing; --resume on another dataset refused; devices."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_train import TINY, s3rec_dataset

from guim.checkpoint import load_weights
from guim.config import load_config
from guim.data.dataset import Dataset
from guim.train import train

# sha256 (16 hex) of model.safetensors and test NDCG@10 of 2-epoch runs of the trainer before
# the engine restructuring (commit d89542c, guim/train.py's single loop), fp32, one thread
OLD_TRAINER = {
    "full": ([], "3aa355944313fe28", 0.2921457191239112),
    "sampled": (
        ["loss.kind=sampled", "loss.n_negatives=20"],
        "829452c1bf835eac",
        0.29237012787633193,
    ),
    "masked-ema": (
        ["train.objective=masked", "train.ema_decay=0.9"],
        "380c5afdc7212f9d",
        0.28757960763812734,
    ),
    "mor-contrastive": (
        [
            "model.n_interests=2",
            "model.interest_score=softmax",
            "loss.contrastive_weight=0.1",
            "loss.contrastive_view=mask",
            "train.warmup_steps=3",
            "train.lr_schedule=cosine",
        ],
        "51757a2cd81a36ca",
        0.3443677817140137,
    ),
    "all-windows": (
        ["data.windows=all", "data.window_stride=4", "model.n_interests=2"],
        "d47dee45b171716b",
        0.3362427173221782,
    ),
}


def weights_hash(path: Path) -> str:
    weights = load_weights(path)
    h = hashlib.sha256()
    for name in sorted(weights):
        h.update(name.encode())
        h.update(weights[name].contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Dataset:
    return s3rec_dataset(tmp_path_factory.mktemp("small"), n_users=40, n_items=25, length=11)


@pytest.mark.parametrize("case", list(OLD_TRAINER))
def test_weights_are_bit_identical_to_the_old_trainer(small, tmp_path, case):
    overrides, expected_hash, expected_ndcg = OLD_TRAINER[case]
    cfg = load_config(None, [*TINY, "train.epochs=2", *overrides])
    run = train(cfg, small.path, tmp_path / case, show_progress=False)
    assert weights_hash(run / "model.safetensors") == expected_hash
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["NDCG@10"] == expected_ndcg


def test_forward_returns_what_the_losses_need(small):
    from guim.data.batches import make_batches
    from guim.train import build

    cfg = load_config(None, [*TINY, "model.n_interests=3"])
    t = build(cfg, small)
    batch = make_batches(t.seqs, cfg.data, cfg.train, np.random.default_rng(0))[0]
    out = t.model(batch)
    n_targets = int((batch.targets > 0).sum())
    assert out.users.shape == (n_targets, 3, 16)
    assert out.items.shape == (small.n_items + 1, 16)
    assert out.states.shape == (*batch.items.shape, 3, 16)
    cand = torch.tensor([0, 3, 7])
    assert torch.equal(t.model(batch, cand).items, out.items[cand])
