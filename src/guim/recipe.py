"""The default recipe: `guim train --preset auto` derives a run's settings from the prepared
dataset itself, by the rules below, instead of a per-dataset table of hand-picked values.

Every rule reads only what `guim prepare` recorded (stats.json) and the lengths of the training
sequences, so a shop's own log gets the same treatment as the datasets it was chosen on (chosen on
the VALIDATION splits of Beauty and LastFM; benchmarks/results/quality.json, README "The default recipe"):

1. One training example per prefix (`data.windows = "prefix"`): every training interaction is
   the target of its own window, read after the up to max_len items before it, as the best
   published models on the S3-Rec files train (ICSRec, BSARec). The representation is trained
   exactly where it is used (at the last position of a history), and an epoch takes many more,
   smaller steps. Position ids count back from the window's last item (`model.positions =
   "from_end"`): every prefix window is read at its last item, as a served history is, so the
   most recent item always carries the same position id (validation NDCG@10 against ids
   counted from the start, seed 0: Beauty 0.0742 -> 0.0759, LastFM 0.0681 -> 0.0697).
   Exception: when the prefix windows would hold more than `PREFIX_TOKEN_LIMIT` tokens in an epoch
   (long histories on a large shop; an epoch would no longer fit the budget a few times over),
   consecutive windows with overlapping context (`windows = "all"`, stride max_len / 5, i.e. 10)
   cover every target once an epoch at a tenth of the cost. The token count is taken at the
   run's own max_len (a `--set data.max_len=N` counts). Those windows are trained at every
   position, so their position ids count from the start (`"from_start"`): a position's id must
   not depend on the items after it.
2. Event-type and time-gap inputs only where the data has them: a log without event types
   (every event a "view") or whose timestamps are only positions (the S3-Rec files) would feed a
   constant or a copy of the position, so those inputs are off.
3. Width from the catalogue: dim 128 (feed-forward 512) for catalogues of at least
   `WIDE_CATALOGUE` items, the default dim 64 (feed-forward 256) below. On Beauty (12,101 items)
   dim 128 reached a higher validation NDCG@10 than dim 64 within the budget; on LastFM (3,646
   items) dim 128 costs 2.5x an epoch and did not.
4. A weight EMA (0.995) is validated and kept: it smooths the epoch-to-epoch noise of the
   best-epoch choice (LastFM validation 0.0634 -> 0.0681).
5. A 25-minute training budget (`train.max_minutes`), patience 10 epochs, up to 200 epochs.
6. Under prefix windows, BSARec's frequency filter beside self-attention in every block
   (`model.freq_alpha = 0.7`, the `model.freq_low = 3` lowest frequency bins: BSARec's Beauty
   setting, c = 5): validation NDCG@10 0.0759 -> 0.0772 on Beauty, 0.0697 -> 0.0745 on LastFM
   (seed 0). The filter reads every position of a window, so the strided windows of rule 1 go
   without it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

# rule 1: above this many tokens per epoch, prefix windows give way to strided windows
PREFIX_TOKEN_LIMIT = 5_000_000
STRIDE_SHARE = 5  # stride = max_len / 5: 10 at the default max_len of 50
# rule 3: catalogues of at least this many items get dim 128
WIDE_CATALOGUE = 10_000
# rule 6: the weight of BSARec's frequency filter beside attention (prefix windows only)
FREQ_ALPHA = 0.7


def prefix_tokens(lengths: np.ndarray, max_len: int) -> int:
    """Tokens per epoch of prefix windows over training sequences of these lengths: a row of n
    items has windows ending at items 2..n, each of up to max_len + 1 items."""
    n = np.asarray(lengths, dtype=np.int64)
    n = n[n >= 2]
    span = max_len + 1
    # sum over k = 2..n of min(k, span), in closed form per row
    short = np.minimum(n, span)
    total = short * (short + 1) // 2 - 1 + (n - short) * span
    return int(total.sum())


def auto_preset(
    stats: Mapping[str, Any], lengths: np.ndarray, max_len: int | None = None
) -> dict[str, dict[str, Any]]:
    """The config differences (preset form) for a dataset with these stats.json contents and
    training-sequence lengths, for windows of `max_len` items (None: the default)."""
    from guim.config import DataConfig

    max_len = DataConfig().max_len if max_len is None else max_len
    data: dict[str, Any] = {
        "use_events": bool(stats.get("has_event_types", True)),
        "use_time": not stats.get("timestamps_are_positions", False),
    }
    model: dict[str, Any]
    if prefix_tokens(lengths, max_len) <= PREFIX_TOKEN_LIMIT:
        data["windows"] = "prefix"
        model = {"positions": "from_end", "freq_alpha": FREQ_ALPHA}
    else:
        data.update(windows="all", window_stride=max(1, max_len // STRIDE_SHARE))
        model = {"positions": "from_start"}
    if stats.get("n_items", 0) >= WIDE_CATALOGUE:
        model.update(dim=128, ffn_dim=512)
    return {
        "data": data,
        "model": model,
        "train": {"ema_decay": 0.995, "epochs": 200, "patience": 10, "max_minutes": 25.0},
    }


def auto_preset_for(dataset: str | Path, max_len: int | None = None) -> dict[str, dict[str, Any]]:
    """`auto_preset` of a prepared dataset directory (its leave-one-out training sequences)."""
    from guim.data.dataset import Dataset

    ds = Dataset(dataset)
    return auto_preset(ds.stats, ds.train_sequences("loo").lengths, max_len)
