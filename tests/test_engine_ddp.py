"""Distributed training (torch.distributed, gloo on the CPU, started by torchrun): 2 processes
with half the batch each train the same weights as 1 process with the whole batch, and a
2-process run killed with -9 resumes to the uninterrupted run's weights."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_train import s3rec_dataset

from guim.checkpoint import load_weights

pytestmark = pytest.mark.slow  # each test starts several Python processes with torch

SETTINGS = [
    "model.dim=16",
    "model.ffn_dim=24",
    "model.n_layers=1",
    "data.max_len=12",
    "train.batch_size=16",  # the batch of all processes together
    "train.threads=1",
    "model.dropout=0.0",  # each process draws its own dropout masks
    "model.attn_dropout=0.0",
    "train.patience=100",
]


def guim_train(dataset: Path, out: Path, nproc: int, epochs: int, *extra: str) -> list[str]:
    launcher = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}"]
    launcher += ["--standalone"]  # a free port of its own
    head = [*launcher, "-m", "guim"] if nproc > 1 else [sys.executable, "-m", "guim"]
    args = [*head, "train", "--dataset", str(dataset), "--out", str(out), "--preset", "none"]
    for text in [*SETTINGS, f"train.epochs={epochs}", *extra]:
        args += ["--set", text]
    return args


def run(args: list[str]) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("ddp")
    return s3rec_dataset(tmp, n_users=120, n_items=40, length=15).path


def test_two_processes_with_half_batches_equal_one_with_the_whole(data, tmp_path):
    run(guim_train(data, tmp_path / "one", 1, 2, "train.objective=masked"))
    # the --nproc shortcut (the resume test below calls torchrun itself)
    shown = run(
        [*guim_train(data, tmp_path / "two", 1, 2, "train.objective=masked"), "--nproc", "2"]
    )
    assert "2 processes" in " ".join(shown.split())
    a = load_weights(tmp_path / "one" / "model.safetensors")
    b = load_weights(tmp_path / "two" / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], atol=1e-5, rtol=1e-4, msg=name)
    log = (tmp_path / "two" / "train_log.jsonl").read_text().splitlines()
    assert len(log) == 2  # rank 0 alone logs


def test_two_process_run_resumes_after_kill(data, tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    run(guim_train(data, straight, 2, 4))
    proc = subprocess.Popen(
        guim_train(data, killed, 2, 4),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the launcher and both workers
    )
    latest = killed / "checkpoints" / "latest.json"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if latest.exists() and json.loads(latest.read_text())["epoch"] >= 1:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)  # kill -9 of every process of the run
    proc.wait()
    assert not (killed / "model.safetensors").exists()
    run([*guim_train(data, killed, 2, 4), "--resume"])
    a = load_weights(straight / "model.safetensors")
    b = load_weights(killed / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_sampled_loss_is_used_under_two_processes(data, tmp_path):
    # loss.kind=sampled under torch.distributed draws shared negatives too (it used to fall back
    # to the full softmax silently): over the positive and 3 negatives the first epoch's loss is
    # near log 4, over the whole catalogue of 40 items near log 40
    sampled = ["loss.kind=sampled", "loss.n_negatives=3", "loss.in_batch=false", "loss.logq=false"]
    losses = {}
    for name, extra in {"sampled": sampled, "full": []}.items():
        shown = run(guim_train(data, tmp_path / name, 2, 1, *extra))
        assert "2 processes" in " ".join(shown.split())
        log = (tmp_path / name / "train_log.jsonl").read_text().splitlines()
        losses[name] = json.loads(log[0])["loss"]
    assert losses["sampled"] < math.log(8) < math.log(20) < losses["full"], losses
