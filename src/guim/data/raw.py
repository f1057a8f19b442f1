"""What a loader hands to `prepare`: canonical event/item/user frames plus a way back to the source.

Every loader (generic CSV/Parquet/JSONL, S3-Rec, RecBole atomic, MerRec, the synthetic shop)
returns a `RawData`. Its frames use the canonical column names of `guim.data.schema`:

    events: user_id, item_id, timestamp [, event (str), session_id, price], __row (u64)
    items:  item_id [, title (str), price (f64), any categorical column (one attribute each),
            any list[str] column (a multi-valued attribute, e.g. tags/genres)], __row
    users:  user_id [, any attribute columns], __row

`timestamp` may be integer, float, datetime or string (ISO 8601 or integer text); `prepare`
normalises it and reports unparsable values. `__row` is the row's index in the source's own
numbering, which `Locator.locate` turns back into (file, line or row) for error messages.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from guim.data.schema import DataError

ROW = "__row"


@dataclass(frozen=True)
class Locator:
    """Maps a global row index over one or more concatenated files back to (file, position).

    files[i] holds global rows [row_starts[i], row_starts[i+1]). For text files the position is
    a line number: local row + `header_lines` + 1. For Parquet it is the 1-based row number.
    """

    files: tuple[str, ...]
    row_starts: tuple[int, ...] = (0,)
    header_lines: int = 1
    is_text: bool = True

    def locate(self, row: int) -> tuple[str, int]:
        i = bisect.bisect_right(self.row_starts, row) - 1
        local = row - self.row_starts[i]
        pos = local + self.header_lines + 1 if self.is_text else local + 1
        return self.files[i], pos

    def error(self, row: int, message: str, column: str | None = None) -> DataError:
        """A DataError pointing at global `row`."""
        file, pos = self.locate(row)
        if self.is_text:
            return DataError(file, message, line=pos, column=column)
        return DataError(file, message, row=pos, column=column)


@dataclass
class Table:
    """A side table (items or users) with where it came from."""

    frame: pl.DataFrame
    locator: Locator


@dataclass
class RawData:
    """Canonical frames from a loader, not yet validated or indexed."""

    events: pl.LazyFrame
    events_locator: Locator
    items: Table | None = None
    users: Table | None = None
    format: str = "generic"
    files: list[str] = field(default_factory=list)
    # True when the source has no time (S3-Rec): timestamp is the position in the user's sequence
    timestamps_are_positions: bool = False
    # extra files to copy into the dataset dir's truth/ folder (synthetic ground truth)
    truth_files: list[Path] = field(default_factory=list)


def harmonise_id_type(
    events: pl.DataFrame, side: pl.DataFrame | None, key: str
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """Give the events and a side table one type for the id column `key`: text on both sides
    when they differ, so that 7 and "007" stay different ids (an event on 7 is then reported as
    an unknown item, never silently matched to "007")."""
    if side is None or side.schema[key] == events.schema[key]:
        return events, side
    return (
        events.with_columns(pl.col(key).cast(pl.String)),
        side.with_columns(pl.col(key).cast(pl.String)),
    )
