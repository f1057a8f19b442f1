"""Trainer: overfitting, determinism, resume after kill -9, run directory round trip, config."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from guim.checkpoint import load_weights
from guim.config import Config, ConfigError, config_from_json, load_config, parse_override
from guim.data.batches import make_batches
from guim.data.dataset import Dataset
from guim.data.loaders.s3rec import load_s3rec
from guim.data.prepare import prepare
from guim.embed import load_run
from guim.evaluate import evaluate
from guim.train import build, step_loss, train
from guim.trainer.optim import lr_scale

TINY = [
    "model.dim=16",
    "model.n_heads=2",
    "model.ffn_dim=24",
    "model.n_layers=1",
    "data.max_len=12",
    "train.batch_size=16",
    "train.threads=1",
]


def s3rec_dataset(tmp: Path, n_users: int, n_items: int, length: int, seed: int = 0) -> Dataset:
    """Users walking a fixed item cycle (item i -> i + step) with per-user steps: learnable."""
    rng = np.random.default_rng(seed)
    lines, attrs = [], {}
    for u in range(1, n_users + 1):
        step = 1 + u % 3
        start = int(rng.integers(1, n_items + 1))
        seq = [(start + step * k - 1) % n_items + 1 for k in range(length)]
        lines.append(" ".join(map(str, [u, *seq])))
    for i in range(1, n_items + 1):
        attrs[str(i)] = [1 + i % 5, 6 + i % 3]
    (tmp / "Toy.txt").write_text("\n".join(lines) + "\n")
    (tmp / "Toy_item2attributes.json").write_text(json.dumps(attrs))
    return Dataset(prepare(load_s3rec(tmp / "Toy.txt"), tmp / "ds", show_progress=False))


def kill_and_resume(tmp_path, overrides: list[str], kill_after_epoch: int) -> list[float]:
    """kill -9 of a real `guim train` once the checkpoint of `kill_after_epoch` (0-based) is
    published; --resume must give the uninterrupted run's weights and losses bit for bit. Returns the loss log."""
    ds = s3rec_dataset(tmp_path, n_users=300, n_items=60, length=30)
    straight = train(load_config(None, overrides), ds.path, tmp_path / "straight",
                     show_progress=False, evaluate_test=False)  # fmt: skip
    killed = tmp_path / "killed"
    guim = [sys.executable, "-c", "from guim.cli import app; app()"]
    args = ["train", "--dataset", str(ds.path), "--out", str(killed), "--preset", "none"]
    for text in overrides:
        args += ["--set", text]
    proc = subprocess.Popen([*guim, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = killed / "checkpoints" / "latest.json"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if latest.exists() and json.loads(latest.read_text())["epoch"] >= kill_after_epoch:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "model.safetensors").exists()
    done = subprocess.run([*guim, *args, "--resume"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    wa = load_weights(straight / "model.safetensors")
    wb = load_weights(killed / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    log_a = [json.loads(x)["loss"] for x in (straight / "train_log.jsonl").read_text().splitlines()]
    log_b = [json.loads(x)["loss"] for x in (killed / "train_log.jsonl").read_text().splitlines()]
    assert log_a == log_b
    return log_a


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Dataset:
    return s3rec_dataset(tmp_path_factory.mktemp("toy"), n_users=50, n_items=30, length=9)


def test_overfits_50_users(tmp_path):
    """50 users with random sequences, each starting at its own item (so every prefix is
    unique): a model without dropout must memorise every next item."""
    rng = np.random.default_rng(0)
    lines = [
        " ".join(map(str, [u, u, *rng.integers(51, 91, size=8).tolist()])) for u in range(1, 51)
    ]
    (tmp_path / "Mem.txt").write_text("\n".join(lines) + "\n")
    toy = Dataset(prepare(load_s3rec(tmp_path / "Mem.txt"), tmp_path / "ds", show_progress=False))
    cfg = load_config(
        None,
        [
            *TINY,
            "model.dim=32",
            "model.dropout=0.0",
            "model.attn_dropout=0.0",
            "train.batch_size=50",
        ],
    )
    t = build(cfg, toy)
    model, seqs = t.model, t.seqs
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    gen = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    losses = []
    for _ in range(150):
        for batch in make_batches(seqs, cfg.data, cfg.train, rng):  # one batch of all 50 users
            opt.zero_grad()
            loss = step_loss(t, batch, gen, contrastive_weight=0.0)
            loss.backward()
            opt.step()
            losses.append(loss.item())
    assert losses[-1] < 0.1 < losses[0]
    # memorised: every training transition's next item is ranked first
    model.eval()
    batch = make_batches(seqs, cfg.data, cfg.train, rng)[0]
    with torch.no_grad():
        states = model.encode(batch.items, batch.events, batch.timestamps)[:, :, 0]
        pred = (states @ model.item_vectors().T).argmax(-1)
    sel = batch.targets > 0
    assert (pred[sel] == batch.targets[sel]).float().mean() > 0.95


def test_train_run_dir_and_load_run(toy, tmp_path):
    cfg = load_config(None, [*TINY, "train.epochs=2"])
    run = train(cfg, toy.path, tmp_path / "run", show_progress=False)
    for name in ("config.json", "model.safetensors", "metrics.json", "train_log.jsonl"):
        assert (run / name).exists()
    assert config_from_json(run / "config.json") == cfg
    loaded = load_run(run)
    metrics = json.loads((run / "metrics.json").read_text())
    again = evaluate(loaded, toy, "loo", "test", ks=(5, 10, 20))
    for k in ("HR@10", "NDCG@10"):
        assert again[k] == pytest.approx(metrics["test"][k], abs=1e-9)
    # raw ids at the edge
    idx = loaded.item_index(["3", "17"])
    assert loaded.item_ids(idx).tolist() == ["3", "17"]
    with pytest.raises(KeyError, match="unknown item id"):
        loaded.item_index(["nope"])
    recs, scores = loaded.recommend([[1, 2, 3]], k=5)
    assert recs.shape == (1, 5) and not set(recs[0]) & {1, 2, 3}
    assert (np.diff(scores[0]) <= 0).all()


def test_training_is_deterministic(toy, tmp_path):
    cfg = load_config(None, [*TINY, "train.epochs=2"])
    a = train(cfg, toy.path, tmp_path / "a", show_progress=False, evaluate_test=False)
    b = train(cfg, toy.path, tmp_path / "b", show_progress=False, evaluate_test=False)
    wa, wb = load_weights(a / "model.safetensors"), load_weights(b / "model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.slow  # starts and kills real training processes
@pytest.mark.parametrize(
    "extra",
    [
        ["loss.kind=full"],
        ["loss.kind=sampled"],
        ["loss.kind=full", "train.ema_decay=0.9"],
        ["loss.kind=sampled", "loss.hard_negatives=12", "loss.hard_refresh_steps=7"],
        ["loss.intent_weight=0.5", "loss.n_intents=8", "loss.contrastive_weight=0.1"],
    ],
    ids=["full", "sampled", "full-ema", "sampled-hard", "full-intents"],
)
def test_resume_after_kill_gives_the_same_weights(tmp_path, extra):
    ds = s3rec_dataset(tmp_path, n_users=400, n_items=60, length=30)
    overrides = [*TINY, "train.epochs=6", "train.patience=100", "loss.n_negatives=20", *extra]
    cfg = load_config(None, overrides)
    straight = train(cfg, ds.path, tmp_path / "straight", show_progress=False, evaluate_test=False)

    killed = tmp_path / "killed"
    code = (
        "import sys; from guim.config import load_config; from guim.train import train; "
        f"train(load_config(None, {overrides!r}), {str(ds.path)!r}, {str(killed)!r}, "
        "show_progress=False, evaluate_test=False)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": "0"})
    latest = killed / "checkpoints" / "latest.json"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if latest.exists() and json.loads(latest.read_text())["epoch"] >= 1:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)  # kill -9, possibly in the middle of a checkpoint
    proc.wait()
    assert not (killed / "model.safetensors").exists()
    train(cfg, ds.path, killed, resume=True, show_progress=False, evaluate_test=False)
    wa = load_weights(straight / "model.safetensors")
    wb = load_weights(killed / "model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    log_a = [json.loads(x) for x in (straight / "train_log.jsonl").read_text().splitlines()]
    log_b = [json.loads(x) for x in (killed / "train_log.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in log_a] == [r["loss"] for r in log_b]


def test_refuses_to_overwrite_a_run(toy, tmp_path):
    cfg = load_config(None, [*TINY, "train.epochs=1"])
    train(cfg, toy.path, tmp_path / "r", show_progress=False, evaluate_test=False)
    with pytest.raises(FileExistsError):
        train(cfg, toy.path, tmp_path / "r", show_progress=False)


# ---- configuration ------------------------------------------------------------------------


def test_presets_load_and_hold_differences_only():
    """Every key a preset sets differs from the default (a preset restating a default would
    hide which settings were chosen)."""
    import tomllib
    from importlib import resources

    defaults = Config().to_dict()
    presets = [
        f for f in (resources.files("guim") / "presets").iterdir() if f.name.endswith(".toml")
    ]
    assert presets
    for f in presets:
        cfg = load_config(f.name.removesuffix(".toml"))
        assert isinstance(cfg, Config) and cfg != Config()
        for section, values in tomllib.loads(f.read_text()).items():
            for key, value in values.items():
                assert value != defaults[section][key], f"{f.name}: {section}.{key} is the default"


def test_overrides_and_errors():
    cfg = load_config(None, ["train.lr=3e-4", "model.n_interests=4", "loss.kind=sampled"])
    assert cfg.train.lr == 3e-4 and cfg.model.n_interests == 4 and cfg.loss.kind == "sampled"
    assert parse_override("data.text_model=all-MiniLM-L6-v2") == {
        "data": {"text_model": "all-MiniLM-L6-v2"}
    }
    with pytest.raises(ConfigError, match=r"unknown key 'train\.learning_rate'"):
        load_config(None, ["train.learning_rate=1"])
    with pytest.raises(ConfigError, match="must be an integer"):
        load_config(None, ["model.dim=6.5"])
    with pytest.raises(ConfigError, match="must be one of"):
        load_config(None, ["loss.kind=softmaxx"])
    with pytest.raises(ConfigError, match="no preset"):
        load_config("does-not-exist")
    assert load_config(None, ["train.lr=1"]).train.lr == 1.0  # ints are fine for floats


def test_config_rejects_bad_heads():
    with pytest.raises(ConfigError, match="divisible"):
        load_config(None, ["model.dim=10", "model.n_heads=3"])


def test_learning_rate_schedules():
    const = load_config(None, ["train.warmup_steps=10"])
    assert lr_scale(0, const, 100) == pytest.approx(0.1)
    assert lr_scale(9, const, 100) == 1.0 and lr_scale(99, const, 100) == 1.0
    cos = load_config(None, ["train.warmup_steps=10", "train.lr_schedule=cosine"])
    assert lr_scale(10, cos, 110) == pytest.approx(1.0)
    assert lr_scale(60, cos, 110) == pytest.approx(0.5)
    assert lr_scale(110, cos, 110) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(
    ("objective", "stride", "recent"),
    [
        ("next", 0, 0),
        ("masked", 0, 0),
        ("next", 1, 0),
        ("next", 2, 0),
        ("next", 5, 0),
        ("next", 0, 7),
        ("next", 2, 7),
        ("next", 3, 1),
    ],
)
def test_all_windows_predict_every_interaction_once(objective, stride, recent):
    from guim.data.dataset import Sequences

    lengths = [2, 5, 6, 7, 11, 12, 13, 30, 1]
    seqs = Sequences.from_lists(
        [list(range(100 * (r + 1), 100 * (r + 1) + n)) for r, n in enumerate(lengths)]
    )
    cfg = load_config(
        None,
        [
            "data.max_len=5",
            "data.windows=all",
            f"train.objective={objective}",
            "train.batch_size=3",
            "train.mask_prob=1.0",
            "train.last_mask_prob=0.0",
            f"data.window_stride={stride}",
            f"data.recent_targets={recent}",
        ],
    )
    batches = make_batches(seqs, cfg.data, cfg.train, np.random.default_rng(0))
    targets = np.concatenate([b.targets[b.targets > 0].numpy() for b in batches])
    if objective == "next":
        # each target sees every earlier item of its row, or at least max_len - stride of them
        min_context = 5 - (stride or 5)
        for b in batches:
            for row_items, row_targets in zip(b.items.numpy(), b.targets.numpy(), strict=True):
                for pos in np.flatnonzero(row_targets):
                    seen = row_items[: pos + 1][row_items[: pos + 1] > 0]
                    target = row_targets[pos]
                    assert seen[-1] == target - 1  # items of a row are consecutive integers
                    assert len(seen) >= min(min_context, target % 100)
    expected = [
        i
        for r, n in enumerate(lengths)
        if n >= 2
        for i in range(100 * (r + 1) + (objective == "next"), 100 * (r + 1) + n)
        if not recent or i >= 100 * (r + 1) + n - recent  # the row's last `recent` items only
    ]
    assert sorted(targets.tolist()) == sorted(expected)
    assert all(b.items.shape[1] <= 5 for b in batches)


@pytest.mark.parametrize("recent", [0, 3])
def test_prefix_windows_are_one_example_per_target(recent):
    """windows = "prefix": each training interaction is the only target of its own window, at
    the window's last position, read after exactly the min(max_len, position) items before it."""
    from guim.data.dataset import Sequences

    lengths = [2, 5, 6, 9, 1]
    seqs = Sequences.from_lists(
        [list(range(100 * (r + 1), 100 * (r + 1) + n)) for r, n in enumerate(lengths)]
    )
    overrides = ["data.max_len=4", "data.windows=prefix", "train.batch_size=3"]
    cfg = load_config(None, [*overrides, f"data.recent_targets={recent}"])
    batches = make_batches(seqs, cfg.data, cfg.train, np.random.default_rng(0))
    seen_targets = []
    for b in batches:
        for items, targets in zip(b.items.numpy(), b.targets.numpy(), strict=True):
            assert np.flatnonzero(targets).tolist() == [len(targets) - 1]  # one, at the end
            target = int(targets[-1])
            context = items[items > 0]
            assert context.tolist() == list(range(target - min(4, target % 100), target))
            seen_targets.append(target)
    expected = [
        100 * (r + 1) + i
        for r, n in enumerate(lengths)
        for i in range(max(1, n - recent if recent else 1), n)
    ]
    assert sorted(seen_targets) == expected


def test_window_stride_is_checked_at_start_up():
    for overrides in (
        ["data.windows=all", "data.max_len=3", "data.window_stride=4"],
        ["data.windows=crop", "data.max_len=3", "data.window_stride=1"],
        ["data.windows=all", "data.window_stride=2", "train.objective=masked"],
        ["data.windows=crop", "data.recent_targets=5"],
        ["data.windows=all", "data.recent_targets=-1"],
        ["data.windows=prefix", "data.window_stride=2"],
        ["data.windows=prefix", "train.objective=masked"],
    ):
        with pytest.raises(ValueError, match=r"window_stride|recent_targets|prefix"):
            load_config(None, overrides)
    # the stride bound follows the final max_len, whatever the order of the overrides
    cfg = load_config(None, ["data.windows=all", "data.window_stride=8", "data.max_len=10"])
    assert cfg.data.window_stride == 8
