"""The default recipe (`--preset auto`, guim.recipe): its rules follow the dataset's own
statistics, and `guim train --preset auto` trains with them end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from guim import recipe
from guim.config import Config, ConfigError, load_config
from guim.data.dataset import Dataset
from guim.data.loaders.s3rec import load_s3rec
from guim.data.prepare import prepare
from guim.recipe import (
    FREQ_ALPHA,
    PREFIX_TOKEN_LIMIT,
    WIDE_CATALOGUE,
    auto_preset,
    prefix_tokens,
)


def test_prefix_tokens_by_hand():
    # max_len 3 (windows of up to 4 items): a row of 6 has windows ending at items 2..6 of
    # 2, 3, 4, 4, 4 items = 17; a row of 2: one window of 2; a row of 1: none
    assert prefix_tokens(np.array([6, 2, 1]), max_len=3) == 17 + 2
    assert prefix_tokens(np.array([], dtype=np.int64), max_len=3) == 0
    rng = np.random.default_rng(0)
    lengths = rng.integers(0, 40, size=50)
    brute = sum(min(k, 11) for n in lengths for k in range(2, n + 1))
    assert prefix_tokens(lengths, max_len=10) == brute


def test_rules_follow_the_statistics():
    s3rec_like = {"has_event_types": False, "timestamps_are_positions": True, "n_items": 3000}
    shop = {"has_event_types": True, "timestamps_are_positions": False, "n_items": 3000}
    short = np.full(1000, 8)
    auto = auto_preset(s3rec_like, short)
    assert auto["data"] == {"use_events": False, "use_time": False, "windows": "prefix"}
    # prefix windows, read at their last item: ids from the end, and the frequency filter
    assert auto["model"] == {"positions": "from_end", "freq_alpha": FREQ_ALPHA}  # dim 64
    wide = auto_preset({**shop, "n_items": WIDE_CATALOGUE}, short)["model"]
    assert wide["dim"] == 128 and wide["ffn_dim"] == 512
    assert auto_preset(shop, short)["data"]["use_events"] is True
    assert auto_preset(shop, short)["data"]["use_time"] is True
    # the prefix-token rule is sized by the run's window length: 2,800 rows of 60 items hold
    # 4,995,200 prefix tokens at max_len 50 (rows of 1,784) and 5,121,200 at max_len 59
    mid = np.full(2800, 60)
    assert prefix_tokens(mid, 50) <= PREFIX_TOKEN_LIMIT < prefix_tokens(mid, 59)
    assert auto_preset(shop, mid)["data"]["windows"] == "prefix"  # the default max_len, 50
    assert auto_preset(shop, mid, max_len=50)["data"]["windows"] == "prefix"
    assert auto_preset(shop, mid, max_len=59)["data"]["windows"] == "all"
    # a large shop with long histories: prefix windows would not fit the budget
    long = np.full(PREFIX_TOKEN_LIMIT // 5000, 200)  # 8,924 tokens a row
    assert prefix_tokens(long, 50) > PREFIX_TOKEN_LIMIT
    big = auto_preset(shop, long)["data"]
    assert big["windows"] == "all" and big["window_stride"] == 10
    # windows trained at every position: ids from the start, no filter (it reads later items)
    assert auto_preset(shop, long)["model"] == {"positions": "from_start"}
    # the prefix rules together pass the config checks (the filter needs prefix windows)
    prefix_rules = ['data.windows="prefix"', 'model.positions="from_end"']
    load_config(None, [*prefix_rules, f"model.freq_alpha={FREQ_ALPHA}"])


def test_auto_needs_the_dataset_and_none_is_the_defaults():
    with pytest.raises(ConfigError, match="auto"):
        load_config("auto")
    assert load_config("none") == load_config(None) == Config()


def test_guim_train_preset_auto_end_to_end(tmp_path, monkeypatch):
    from guim.train import train

    rng = np.random.default_rng(0)
    lines = [" ".join(map(str, [u, *rng.integers(1, 40, size=12)])) for u in range(1, 61)]
    (tmp_path / "Toy.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "Toy_item2attributes.json").write_text(
        json.dumps({str(i): [i % 3] for i in range(1, 40)})
    )
    data = prepare(load_s3rec(tmp_path / "Toy.txt"), tmp_path / "ds", show_progress=False)
    cfg = load_config(
        "auto",
        ["train.epochs=2", "model.dim=16", "model.ffn_dim=16", "train.threads=1"],
        data,
    )
    assert cfg.data.windows == "prefix" and not cfg.data.use_time
    assert cfg.train.ema_decay == 0.995
    # a --set data.max_len sizes the prefix-token rule: with the limit at this dataset's prefix
    # tokens for max_len 3, max_len 3 keeps prefixes and max_len 4 falls back to strided windows
    limit = prefix_tokens(Dataset(data).train_sequences("loo").lengths, 3)
    monkeypatch.setattr(recipe, "PREFIX_TOKEN_LIMIT", limit)
    assert load_config("auto", ["data.max_len=3"], data).data.windows == "prefix"
    longer = load_config("auto", ["data.max_len=4"], data).data
    assert longer.windows == "all" and longer.window_stride == 1  # max_len / 5, at least 1
    run = train(cfg, data, tmp_path / "run", show_progress=False)
    saved = json.loads((run / "config.json").read_text())
    assert saved["data"]["windows"] == "prefix"
    assert json.loads((run / "metrics.json").read_text())["epochs_run"] == 2
