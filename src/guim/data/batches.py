"""Training batches: windows over the training sequences, grouped by length and collated into
left-padded tensors (`Batch`), for the next-item (causal) or masked-item (Cloze) objective (SAS
trains on masked-item batches)."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from guim.config import Config, DataConfig, TrainConfig
from guim.data.dataset import Sequences


@dataclass
class Batch:
    items: torch.Tensor  # (B, T) input item indices, left-padded
    events: torch.Tensor  # (B, T)
    timestamps: torch.Tensor  # (B, T)
    targets: torch.Tensor  # (B, T) item to predict at each position, 0 = none
    masked: torch.Tensor | None  # (B, T) bool, masked-item objective only
    # (B, T) each position's event: its index into the training sequences' arrays (the user's
    # row offset + the position in the history; -1 = padding). The SAS buffer's key.
    event_index: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> Batch:
        """The same batch on `device` (no copy when it is already there)."""
        moved = {
            f.name: None if (v := getattr(self, f.name)) is None else v.to(device)
            for f in fields(self)
        }
        return Batch(**moved)


@dataclass
class View:
    """A second view of a batch's inputs (contrastive term): items, events, [MASK] positions."""

    items: torch.Tensor  # (B, T)
    events: torch.Tensor  # (B, T)
    masked: torch.Tensor | None  # (B, T) bool

    def to(self, device: torch.device | str) -> View:
        masked = None if self.masked is None else self.masked.to(device)
        return View(self.items.to(device), self.events.to(device), masked)


def contrastive_view(batch: Batch, cfg: Config, generator: torch.Generator) -> View:
    """The second view of a batch for the contrastive term: the same inputs ("dropout": only
    the dropout differs), or a share `loss.contrastive_rate` of the items masked, cropped or
    reordered."""
    lc = cfg.loss
    items, masked = batch.items, batch.masked
    real = items > 0
    if lc.contrastive_view == "mask":
        drop = (torch.rand(items.shape, generator=generator) < lc.contrastive_rate) & real
        drop[:, -1] = False  # keep the latest item
        masked = drop if masked is None else masked | drop
        items = items.masked_fill(drop, 0)
    elif lc.contrastive_view == "crop":
        n = real.sum(dim=1, keepdim=True)
        cut = (n.float() * lc.contrastive_rate * torch.rand(n.shape, generator=generator)).long()
        rank = real.long().cumsum(dim=1)  # 1-based rank among real tokens
        items = items.masked_fill(rank <= cut, 0)
    elif lc.contrastive_view == "reorder":
        order = _reorder(items, lc.contrastive_rate, generator)
        masked = None if masked is None else masked.gather(1, order)
        return View(items.gather(1, order), batch.events.gather(1, order), masked)
    return View(items, batch.events * (items > 0), masked)


def _reorder(items: torch.Tensor, rate: float, generator: torch.Generator) -> torch.Tensor:
    """CL4SRec's reorder: the (B, T) gather order that shuffles, in each row, a random contiguous
    span of max(1, rate x n) of its n real items (padding and the rest stay in place)."""
    b, t = items.shape
    real = items > 0
    n = real.sum(dim=1)  # left-padded: the real items are the last n positions
    length = (n.float() * rate).long().clamp(min=1)
    length = torch.minimum(length, n)
    first = t - n + (torch.rand(b, generator=generator) * (n - length + 1).float()).long()
    pos = torch.arange(t).expand(b, t)
    inside = (pos >= first[:, None]) & (pos < (first + length)[:, None])
    # sort keys: a position outside the span keeps its own; one inside gets a random key within
    # [first, first + length), so the span is shuffled in place and nothing crosses its ends
    noise = torch.rand((b, t), generator=generator, dtype=torch.float64)
    key = torch.where(inside, first[:, None] + noise * length[:, None], pos.double())
    return torch.argsort(key, dim=1, stable=True)


def make_batches(
    seqs: Sequences, data: DataConfig, train: TrainConfig, rng: np.random.Generator
) -> list[Batch]:
    """One epoch of batches of windows over the training sequences, grouped by length to limit
    padding, batches in random order (all randomness from `rng`).

    data.windows = "crop": one window per user, a random crop when the sequence is longer than
    the model's window. "all": every sequence is cut, from its end, into windows ending
    `data.window_stride` items apart (default: max_len, i.e. consecutive windows whose targets do
    not overlap); a window is trained on its last `window_stride` targets only (the first window
    of a sequence on all of its own), so each interaction is predicted once per epoch however long
    the history, and with a smaller stride every target sees more context. "prefix": one window
    per training target, ending at it and trained on it alone (the last max_len items before it
    as input), i.e. one example per prefix as ICSRec / BSARec train.
    """
    max_len, next_item = data.max_len, train.objective == "next"
    span = max_len + 1 if next_item else max_len
    step = span - 1 if next_item else span  # next-item windows share one (input-only) item
    # window_stride / recent_targets are checked with the config (guim.config.check)
    stride, recent = data.window_stride or step, data.recent_targets
    lengths = seqs.lengths
    rows = np.flatnonzero(lengths >= 2)
    n = lengths[rows]
    n_targets = None  # "all": targets trained per window, its last ones (crop: all of them)
    if data.windows == "crop":
        start_in_row = (rng.random(len(rows)) * np.maximum(n - span + 1, 1)).astype(np.int64)
        take = np.minimum(n, span)
        starts = seqs.offsets[rows] + start_in_row
    else:
        prefix = data.windows == "prefix"
        # "all": window j of a row ends at n - j * stride, until one starts at the row's first
        # item; "prefix": one window per target, window j ends at item j + 1 (its only target)
        n_windows = n - 1 if prefix else 1 + (np.maximum(n - span, 0) + stride - 1) // stride
        row_of = np.repeat(np.arange(len(rows)), n_windows)
        j = np.arange(len(row_of)) - np.repeat(np.cumsum(n_windows) - n_windows, n_windows)
        end = j + 2 if prefix else n[row_of] - j * stride
        start = np.maximum(end - span, 0)
        take = end - start
        starts = seqs.offsets[rows][row_of] + start
        # targets of window j: its last n_targets positions, i.e. items [end - n_targets, end)
        n_targets = np.ones_like(take) if prefix else np.where(start > 0, stride, take - 1)
        if recent:
            # only targets among the row's last `recent` items: [n - recent, n)
            first = np.maximum(n[row_of] - recent, 1)
            n_targets = np.minimum(n_targets, end - first)
            keep = n_targets > 0
            n_targets, take, starts = n_targets[keep], take[keep], starts[keep]
    order = np.lexsort((rng.random(len(take)), take))  # by length, random among equals
    bs = train.batch_size
    chunks = [order[i : i + bs] for i in range(0, len(order), bs)]
    rng.shuffle(chunks)
    batches = []
    for chunk in chunks:
        t = int(take[chunk].max())
        b = len(chunk)
        items = np.zeros((b, t), dtype=np.int64)
        events = np.zeros((b, t), dtype=np.int64)
        times = np.zeros((b, t), dtype=np.int64)
        index = np.full((b, t), -1, dtype=np.int64)
        for r, c in enumerate(chunk):
            s, k = starts[c], take[c]
            items[r, t - k :] = seqs.item_idx[s : s + k]
            events[r, t - k :] = seqs.event[s : s + k]
            times[r, t - k :] = seqs.timestamp[s : s + k]
            index[r, t - k :] = np.arange(s, s + k)
        if next_item:
            targets = np.zeros_like(items[:, 1:])
            targets[:] = items[:, 1:]
            targets[items[:, :-1] == 0] = 0
            if n_targets is not None:  # "all" windows: only their last n_targets count
                keep = np.arange(t - 1)[None, :] >= (t - 1) - n_targets[chunk][:, None]
                targets[~keep] = 0
            batches.append(
                Batch(
                    torch.from_numpy(items[:, :-1]),
                    torch.from_numpy(events[:, :-1]),
                    torch.from_numpy(times[:, :-1]),
                    torch.from_numpy(targets),
                    None,
                    torch.from_numpy(index[:, :-1]),
                )
            )
        else:
            batch = mask_batch(items, events, times, train, rng)
            batch.event_index = torch.from_numpy(index)
            batches.append(batch)
    return batches


def mask_batch(
    items: np.ndarray,
    events: np.ndarray,
    times: np.ndarray,
    train: TrainConfig,
    rng: np.random.Generator,
) -> Batch:
    """Masked-item batch of (B, T) windows: a random `train.mask_prob` share of the real
    positions (or, for a `last_mask_prob` share of windows, only the last one) become targets."""
    real = items > 0
    masked = (rng.random(items.shape) < train.mask_prob) & real
    last_only = rng.random(len(items)) < train.last_mask_prob
    masked[last_only] = False
    masked[last_only, -1] = True
    # every window predicts at least one item
    none = ~masked.any(axis=1)
    masked[none, -1] = True
    targets = np.where(masked, items, 0)
    inputs = np.where(masked, 0, items)
    return Batch(
        torch.from_numpy(inputs),
        torch.from_numpy(events),
        torch.from_numpy(times),
        torch.from_numpy(targets),
        torch.from_numpy(masked),
    )
