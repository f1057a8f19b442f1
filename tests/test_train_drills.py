"""Fault drills for `guim train`: kill -9 in every phase of an epoch -- mid-epoch, during
validation, between the log record and the checkpoint, in the middle of a checkpoint write,
and after it -- then `--resume`: the final weights and the loss log equal an uninterrupted
run's, bit for bit.

The kill is placed exactly by running the trainer in a subprocess whose phase function is
wrapped to SIGKILL its own process at epoch 2 (counting from 0)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_train import TINY, s3rec_dataset

from guim.checkpoint import load_weights
from guim.config import load_config
from guim.train import train

OVERRIDES = [*TINY, "train.epochs=4", "train.patience=100", "train.ema_decay=0.9"]
KILL_EPOCH = 2

# phase -> code that wraps one function of the trainer so that it kills the process
WRAPS = {
    # in the middle of the epoch: at the 3rd training step
    "mid-epoch": """
import guim.train as T
real = T.step_loss
calls = {"n": 0}
def step_loss(t, batch, *a, **k):
    if T_epoch["e"] == KILL_EPOCH:
        calls["n"] += 1
        if calls["n"] == 3:
            os.kill(os.getpid(), signal.SIGKILL)
    return real(t, batch, *a, **k)
T.step_loss = step_loss
""",
    # inside validation, after the ranking
    "validation": """
import guim.train as T
real = T.validate
def validate(t, epoch):
    out = real(t, epoch)
    if epoch == KILL_EPOCH:
        os.kill(os.getpid(), signal.SIGKILL)
    return out
T.validate = validate
""",
    # after the epoch's log record, before its checkpoint
    "after-log": """
import guim.train as T
real = T.append_log
def append_log(out_dir, record):
    real(out_dir, record)
    if record["epoch"] == KILL_EPOCH:
        os.kill(os.getpid(), signal.SIGKILL)
T.append_log = append_log
""",
    # in the middle of writing the checkpoint: after its model weights, before the rest
    "checkpoint-write": """
import guim.checkpoint as C
real = C.save_weights
def save_weights(path, tensors):
    real(path, tensors)
    if f"epoch-{KILL_EPOCH:04d}" in str(path) and str(path).endswith("model.safetensors"):
        os.kill(os.getpid(), signal.SIGKILL)
C.save_weights = save_weights
""",
    # right after the checkpoint was published
    "after-checkpoint": """
import guim.train as T
real = T.save_checkpoint
def save_checkpoint(run_dir, epoch, *a, **k):
    out = real(run_dir, epoch, *a, **k)
    if epoch == KILL_EPOCH:
        os.kill(os.getpid(), signal.SIGKILL)
    return out
T.save_checkpoint = save_checkpoint
""",
}

# the current epoch, for the mid-epoch wrap (train_epoch is called with it)
EPOCH_TRACKER = """
import guim.train as T
T_epoch = {"e": -1}
real_epoch = T.train_epoch
def train_epoch(t, epoch, *a, **k):
    T_epoch["e"] = epoch
    return real_epoch(t, epoch, *a, **k)
T.train_epoch = train_epoch
"""


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("drills")
    ds = s3rec_dataset(tmp, n_users=200, n_items=40, length=20)
    cfg = load_config(None, OVERRIDES)
    run = train(cfg, ds.path, tmp / "straight", show_progress=False, evaluate_test=False)
    return ds.path, run


@pytest.mark.slow  # starts and kills real training processes
@pytest.mark.parametrize("phase", list(WRAPS))
def test_kill_in_every_phase_then_resume_gives_the_uninterrupted_run(straight, tmp_path, phase):
    data, reference = straight
    killed = tmp_path / "killed"
    code = "\n".join(
        [
            "import os, signal",
            f"KILL_EPOCH = {KILL_EPOCH}",
            EPOCH_TRACKER,
            WRAPS[phase],
            "from guim.config import load_config",
            "from guim.train import train",
            f"train(load_config(None, {OVERRIDES!r}), {str(data)!r}, {str(killed)!r}, "
            "show_progress=False, evaluate_test=False)",
        ]
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONHASHSEED": "0"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -9, f"the run was not killed in phase {phase}: {proc.stderr}"
    assert not (killed / "model.safetensors").exists()
    train(load_config(None, OVERRIDES), data, killed, resume=True, show_progress=False)
    wa = load_weights(reference / "model.safetensors")
    wb = load_weights(killed / "model.safetensors")
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa), phase
    log_a = [json.loads(x) for x in (reference / "train_log.jsonl").read_text().splitlines()]
    log_b = [json.loads(x) for x in (killed / "train_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log_b] == [r["epoch"] for r in log_a]
    assert [r["loss"] for r in log_a] == [r["loss"] for r in log_b]
    # nothing half-written is left beside the published checkpoint
    leftovers = [p for p in killed.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []
