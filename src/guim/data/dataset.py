"""A prepared dataset directory, read back: interaction sequences, evaluation cases, side tables.

Layout of a dataset directory (written by `guim prepare`, see `guim.data.prepare`):

    events.parquet      one row per interaction, sorted by (user_idx, timestamp, input order):
                        user_idx i32, item_idx i32, timestamp i64, event i8, session_idx i32,
                        split i8 (leave-one-out: 0 train, 1 valid, 2 test),
                        tsplit i8 (global temporal: 0 train, 1 valid, 2 test)
    items.parquet       item_idx i32 (1..n), item_id str, cold i8 (0 warm, 1 cold-valid,
                        2 cold-test), attr_idx list[i32], title str, price f64, raw attribute columns
    users.parquet       user_idx i32 (1..n), user_id str, raw attribute columns
    vocab/              items.parquet, users.parquet, attributes.parquet: raw id <-> index, 0 = padding
    stats.json          counts, split sizes, prepare settings, content hash
    truth/              optional ground truth (the synthetic shop's planted user interests)

Split schemes (`scheme`):
    loo       leave-one-out per user: last interaction = test, second-to-last = valid, rest = train
    temporal  global time cut-offs: train before t1, valid in [t1, t2), test from t2
    cold      loo training minus every interaction with a cold item; cases = a user's first
              interaction with a cold item, ranked among that split's cold items only
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl

from guim.errors import UserError
from guim.io import read_json

Scheme = Literal["loo", "temporal", "cold"]
Split = Literal["valid", "test"]
SCHEMES: tuple[str, ...] = ("loo", "temporal", "cold")
SPLIT_CODE = {"train": 0, "valid": 1, "test": 2}


@dataclass(frozen=True)
class Sequences:
    """Variable-length interaction sequences in CSR form; row r is items[offsets[r]:offsets[r+1]].

    Events within a row are in time order. `user_idx[r]` is the user the row belongs to.
    """

    offsets: np.ndarray  # (N+1,) int64
    item_idx: np.ndarray  # (E,) int32
    event: np.ndarray  # (E,) int8
    timestamp: np.ndarray  # (E,) int64
    user_idx: np.ndarray  # (N,) int32

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def items_of(self, row: int) -> np.ndarray:
        return self.item_idx[self.offsets[row] : self.offsets[row + 1]]

    def take(self, rows: np.ndarray | list[int]) -> Sequences:
        """The sub-collection of the given rows, in the given order."""
        rows = np.asarray(rows, dtype=np.int64)
        starts, ends = self.offsets[rows], self.offsets[rows + 1]
        lengths = ends - starts
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        flat = _ranges(starts, lengths)
        return Sequences(
            offsets=offsets,
            item_idx=self.item_idx[flat],
            event=self.event[flat],
            timestamp=self.timestamp[flat],
            user_idx=self.user_idx[rows],
        )

    def padded(self, max_len: int, trim: bool = False) -> dict[str, np.ndarray]:
        """The last `max_len` events of every row, left-padded with 0.

        Returns arrays of shape (N, W): item_idx (int64), event (int64), timestamp (int64), where
        W = max_len, or with `trim` the longest row's length (capped at max_len).
        """
        n = len(self)
        lengths = np.minimum(self.lengths, max_len)
        if trim:
            max_len = int(lengths.max()) if n else 0
        out = {
            "item_idx": np.zeros((n, max_len), dtype=np.int64),
            "event": np.zeros((n, max_len), dtype=np.int64),
            "timestamp": np.zeros((n, max_len), dtype=np.int64),
        }
        rows = np.repeat(np.arange(n), lengths)
        # positions in the flat arrays: the last `lengths[r]` events of row r
        src = _ranges(self.offsets[1:] - lengths, lengths)
        cols = (max_len - np.repeat(lengths, lengths)) + _ranges(
            np.zeros(n, dtype=np.int64), lengths
        )
        out["item_idx"][rows, cols] = self.item_idx[src]
        out["event"][rows, cols] = self.event[src]
        out["timestamp"][rows, cols] = self.timestamp[src]
        return out

    @staticmethod
    def from_lists(
        items: list[list[int]],
        events: list[list[int]] | None = None,
        timestamps: list[list[int]] | None = None,
        user_idx: list[int] | None = None,
    ) -> Sequences:
        """Build from Python lists (histories arriving from an API or a test)."""
        lengths = np.array([len(s) for s in items], dtype=np.int64)
        offsets = np.zeros(len(items) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        flat = np.array([i for s in items for i in s], dtype=np.int32)
        ev = (
            np.array([e for s in events for e in s], dtype=np.int8)
            if events is not None
            else np.ones(len(flat), dtype=np.int8)
        )
        ts = (
            np.array([t for s in timestamps for t in s], dtype=np.int64)
            if timestamps is not None
            else _ranges(np.zeros(len(items), dtype=np.int64), lengths)
        )
        users = (
            np.asarray(user_idx, dtype=np.int32)
            if user_idx is not None
            else np.zeros(len(items), dtype=np.int32)
        )
        return Sequences(offsets, flat, ev, ts, users)


@dataclass(frozen=True)
class EvalCases:
    """Evaluation cases: for each, a history (what the model may see) and one target item."""

    history: Sequences  # one row per case
    target: np.ndarray  # (N,) int32 item_idx
    target_event: np.ndarray  # (N,) int8
    candidates: np.ndarray | None  # (n_items + 1,) bool: items that may be ranked; None = all

    def __len__(self) -> int:
        return len(self.target)

    @property
    def user_idx(self) -> np.ndarray:
        return self.history.user_idx


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, s + l) for each (s, l), vectorised."""
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(lengths)
    rep_starts = np.repeat(np.asarray(starts, dtype=np.int64) - (ends - lengths), lengths)
    return rep_starts + np.arange(total, dtype=np.int64)


class Dataset:
    """Read access to a prepared dataset directory (see module docstring for the layout)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not (self.path / "stats.json").exists():
            raise FileNotFoundError(
                f"{self.path} is not a prepared dataset directory (no stats.json); "
                "run `guim prepare` first"
            )
        self.stats: dict = read_json(self.path / "stats.json")
        self.name: str = self.stats.get("name", self.path.name)
        self.n_users: int = int(self.stats["n_users"])
        self.n_items: int = int(self.stats["n_items"])
        self.n_attributes: int = int(self.stats["n_attributes"])
        self.hash: str = self.stats["hash"]

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, users={self.n_users}, items={self.n_items}, "
            f"interactions={self.stats['n_interactions']})"
        )

    # ---- side tables -----------------------------------------------------------------------
    @cached_property
    def events(self) -> pl.DataFrame:
        return pl.read_parquet(self.path / "events.parquet")

    @cached_property
    def items(self) -> pl.DataFrame:
        return pl.read_parquet(self.path / "items.parquet")

    @cached_property
    def users(self) -> pl.DataFrame:
        return pl.read_parquet(self.path / "users.parquet")

    @cached_property
    def attributes(self) -> pl.DataFrame:
        """attr_idx, field, value: the shared attribute-id vocabulary (0 = padding, not listed)."""
        return pl.read_parquet(self.path / "vocab" / "attributes.parquet")

    @cached_property
    def item_cold(self) -> np.ndarray:
        """(n_items + 1,) int8: 0 warm, 1 cold (valid), 2 cold (test); index 0 is padding."""
        out = np.zeros(self.n_items + 1, dtype=np.int8)
        out[self.items["item_idx"].to_numpy()] = self.items["cold"].to_numpy()
        return out

    @cached_property
    def item_attributes(self) -> tuple[np.ndarray, np.ndarray]:
        """CSR (offsets (n_items + 2,), attr_idx (A,)): attributes of item i are
        attr_idx[offsets[i]:offsets[i + 1]]; item 0 (padding) has none."""
        items = self.items.sort("item_idx")
        lengths = np.zeros(self.n_items + 1, dtype=np.int64)
        lengths[1:] = items["attr_idx"].list.len().fill_null(0).to_numpy()
        offsets = np.zeros(self.n_items + 2, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        flat = items["attr_idx"].explode().drop_nulls().to_numpy().astype(np.int64)
        return offsets, flat

    @cached_property
    def attribute_field(self) -> np.ndarray:
        """(n_attributes + 1,) object array: the field name of each attribute id."""
        out = np.empty(self.n_attributes + 1, dtype=object)
        out[0] = "<pad>"
        attrs = self.attributes
        out[attrs["attr_idx"].to_numpy()] = attrs["field"].to_numpy()
        return out

    @cached_property
    def _arrays(self) -> dict[str, np.ndarray]:
        ev = self.events
        return {
            "user_idx": ev["user_idx"].to_numpy(),
            "item_idx": ev["item_idx"].to_numpy(),
            "timestamp": ev["timestamp"].to_numpy(),
            "event": ev["event"].to_numpy(),
            "split": ev["split"].to_numpy(),
            "tsplit": ev["tsplit"].to_numpy(),
        }

    def repeat_share(self, scheme: Scheme = "loo", split: Split = "test") -> float:
        """Share of `split`'s targets under `scheme` that repeat an item of the user's history
        (recorded in stats.json by `guim prepare`; computed here for older datasets)."""
        recorded = self.stats.get("repeat_targets", {}).get(scheme, {}).get(split)
        if recorded is not None:
            return float(recorded)
        if scheme == "cold":
            return 0.0  # a user's first cold item of the split is never in a warm history
        from guim.evaluate import repeat_share

        return round(repeat_share(self.eval_cases(scheme, split)), 6)

    # ---- sequences and evaluation cases -----------------------------------------------------
    def _train_mask(self, scheme: Scheme) -> np.ndarray:
        a = self._arrays
        if scheme == "loo":
            return a["split"] == 0
        if scheme == "temporal":
            return a["tsplit"] == 0
        if scheme == "cold":
            return (a["split"] == 0) & (self.item_cold[a["item_idx"]] == 0)
        raise UserError(f"unknown split scheme {scheme!r}; expected one of {SCHEMES}")

    def train_sequences(self, scheme: Scheme = "loo") -> Sequences:
        """Training interactions of every user (users with none are left out), in time order."""
        return self._group(self._train_mask(scheme))

    def item_popularity(self, scheme: Scheme = "loo") -> np.ndarray:
        """(n_items + 1,) int64: number of training interactions per item."""
        items = self._arrays["item_idx"][self._train_mask(scheme)]
        return np.bincount(items, minlength=self.n_items + 1).astype(np.int64)

    def eval_cases(self, scheme: Scheme = "loo", split: Split = "test") -> EvalCases:
        """Evaluation cases of `split` ("valid" or "test") under `scheme`.

        One case per user at most; cases whose history would be empty are dropped.
        """
        if split not in ("valid", "test"):
            raise UserError(f"split must be 'valid' or 'test', not {split!r}")
        a = self._arrays
        n = len(a["item_idx"])
        code = SPLIT_CODE[split]
        candidates = None
        if scheme == "loo":
            is_target = a["split"] == code
            in_history = a["split"] < code
        elif scheme == "temporal":
            in_window = a["tsplit"] == code
            is_target = in_window & _first_per_user(a["user_idx"], in_window)
            in_history = np.ones(n, dtype=bool)
        elif scheme == "cold":
            cold = self.item_cold[a["item_idx"]]
            in_split = cold == code
            is_target = in_split & _first_per_user(a["user_idx"], in_split)
            in_history = cold == 0
            candidates = self.item_cold == code
        else:
            raise UserError(f"unknown split scheme {scheme!r}; expected one of {SCHEMES}")

        target_rows = np.flatnonzero(is_target)
        target_row_of_user = np.full(self.n_users + 1, -1, dtype=np.int64)
        target_row_of_user[a["user_idx"][target_rows]] = target_rows
        tr = target_row_of_user[a["user_idx"]]
        keep = in_history & (tr >= 0) & (np.arange(n) < tr)
        history = self._group(keep)
        # cases in user order; drop users whose history is empty
        users_with_history = history.user_idx
        rows = target_row_of_user[users_with_history]
        return EvalCases(
            history=history,
            target=a["item_idx"][rows],
            target_event=a["event"][rows],
            candidates=candidates,
        )

    def _group(self, mask: np.ndarray) -> Sequences:
        a = self._arrays
        users = a["user_idx"][mask]
        # events are sorted by user, so each user's rows are contiguous
        change = np.flatnonzero(np.diff(users)) + 1
        starts = np.concatenate([[0], change]) if len(users) else np.zeros(0, dtype=np.int64)
        offsets = np.append(starts, len(users)).astype(np.int64)
        return Sequences(
            offsets=offsets,
            item_idx=a["item_idx"][mask],
            event=a["event"][mask],
            timestamp=a["timestamp"][mask],
            user_idx=users[starts] if len(users) else np.zeros(0, dtype=np.int32),
        )


def repeats_earlier(user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
    """(E,) bool for events sorted by user and time: the user had this item at an earlier row."""
    n = len(item_idx)
    if n == 0:
        return np.zeros(0, dtype=bool)
    key = user_idx.astype(np.int64) * (int(item_idx.max()) + 1) + item_idx.astype(np.int64)
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    return first[inverse] < np.arange(n)


def _first_per_user(user_idx: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Boolean array: True at the first row (in order) of each user among rows where mask holds."""
    out = np.zeros(len(user_idx), dtype=bool)
    rows = np.flatnonzero(mask)
    if len(rows) == 0:
        return out
    users = user_idx[rows]
    first = np.ones(len(rows), dtype=bool)
    first[1:] = users[1:] != users[:-1]
    out[rows[first]] = True
    return out


def load_dataset(path: str | Path) -> Dataset:
    """Open a prepared dataset directory."""
    return Dataset(path)
