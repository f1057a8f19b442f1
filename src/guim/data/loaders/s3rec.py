"""The S3-Rec text format (Zhou et al., CIKM 2020): `<name>.txt` + `<name>_item2attributes.json`.

`<name>.txt` holds one user per line, `user_id item_1 item_2 ...`, items in time order, no
timestamps (the position in the sequence becomes the timestamp). The JSON maps each item id to
its attribute ids (brand and categories for Amazon, tags for LastFM), one shared id space.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from guim.data.raw import ROW, Locator, RawData, Table
from guim.data.schema import ITEM_ID, TIMESTAMP, USER_ID, DataError

ATTRIBUTE_FIELD = "attr"


def find_files(path: str | Path) -> tuple[Path, Path | None]:
    """(`<name>.txt`, `<name>_item2attributes.json` or None) from a .txt path."""
    path = Path(path)
    if path.is_dir():
        raise DataError(path, "expected the S3-Rec <name>.txt file, got a directory")
    attrs = path.with_name(f"{path.stem}_item2attributes.json")
    return path, attrs if attrs.exists() else None


def load_s3rec(path: str | Path, attributes: str | Path | None = None) -> RawData:
    """Read an S3-Rec `<name>.txt` (and its item2attributes JSON, found beside it by default)."""
    txt, found = find_files(path)
    attributes = Path(attributes) if attributes is not None else found
    users: list[int] = []
    items: list[int] = []
    positions: list[int] = []
    rows: list[int] = []
    data = _read_bytes(txt)
    for lineno, raw_line in enumerate(data.split(b"\n")):
        try:
            line = raw_line.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(txt, f"not valid UTF-8 ({e.reason})", line=lineno + 1) from None
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 2:
            raise DataError(txt, "a user with no items", line=lineno + 1, column=ITEM_ID)
        for pos, token in enumerate(fields):
            if not token.isdigit():
                column = USER_ID if pos == 0 else f"{ITEM_ID} (item {pos})"
                raise DataError(
                    txt, f"expected an integer id, got {token!r}", line=lineno + 1, column=column
                )
        user = int(fields[0])
        for pos, token in enumerate(fields[1:]):
            users.append(user)
            items.append(int(token))
            positions.append(pos)
            rows.append(lineno)
    if not users:
        raise DataError(txt, "no events (the file is empty)")
    events = pl.DataFrame(
        {
            USER_ID: pl.Series(users, dtype=pl.Int64),
            ITEM_ID: pl.Series(items, dtype=pl.Int64),
            TIMESTAMP: pl.Series(positions, dtype=pl.Int64),
            ROW: pl.Series(rows, dtype=pl.UInt64),
        }
    )
    locator = Locator(files=(str(txt),), header_lines=0)
    files = [str(txt)]
    items_table = None
    if attributes is not None:
        items_table = _read_attributes(Path(attributes))
        files.append(str(attributes))
    return RawData(
        events=events.lazy(),
        events_locator=locator,
        items=items_table,
        format="s3rec",
        files=files,
        timestamps_are_positions=True,
    )


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise DataError(path, "file not found")
    data = path.read_bytes()
    if not data.strip():
        raise DataError(path, "the file is empty")
    return data


def _read_attributes(path: Path) -> Table:
    data = _read_bytes(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError(path, f"not valid UTF-8 ({e.reason})", line=line) from None
    try:
        mapping = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(path, f"invalid JSON: {e.msg}", line=e.lineno) from None
    if not isinstance(mapping, dict):
        raise DataError(path, "expected a JSON object {item_id: [attribute ids]}")
    ids, attrs = [], []
    for key, values in mapping.items():
        if not str(key).isdigit():
            raise DataError(path, f"item id {key!r} is not an integer", column=ITEM_ID)
        if not isinstance(values, list) or not all(isinstance(v, int) for v in values):
            raise DataError(
                path, f"item {key}: expected a list of integer attribute ids", column=key
            )
        ids.append(int(key))
        # LastFM lists a tag once per user who applied it; keep each attribute once
        attrs.append([str(v) for v in dict.fromkeys(values)])
    frame = pl.DataFrame(
        {
            ITEM_ID: pl.Series(ids, dtype=pl.Int64),
            ATTRIBUTE_FIELD: pl.Series(attrs, dtype=pl.List(pl.String)),
            ROW: pl.Series(range(len(ids)), dtype=pl.UInt64),
        }
    )
    # JSON object keys cannot repeat meaningfully; rows are reported by entry number
    return Table(frame, Locator(files=(str(path),), header_lines=0, is_text=False))
