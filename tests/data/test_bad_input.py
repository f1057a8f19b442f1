"""Bad input: every case gives a DataError naming the file, the line (text) or row (Parquet) and
the column, and leaves no output directory behind (not even a temporary one)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from guim.data.loaders import load_raw
from guim.data.loaders.generic import load_events
from guim.data.loaders.grouplens import GENRES_100K, load_grouplens
from guim.data.loaders.recbole import load_recbole
from guim.data.prepare import prepare
from guim.data.schema import DataError

FORMATS = ("csv", "jsonl", "parquet")
HEADER = ["user_id", "item_id", "timestamp", "event"]


def _rows(n: int = 5) -> list[dict]:
    return [
        {"user_id": f"u{k % 2}", "item_id": str(10 + k), "timestamp": str(100 + k), "event": "view"}
        for k in range(n)
    ]


def _write(fmt: str, folder: Path, name: str, rows: list[dict], columns: list[str]) -> Path:
    """rows as CSV (line = index + 2), JSONL (line = index + 1) or Parquet (row = index + 1)."""
    if fmt == "csv":
        path = folder / f"{name}.csv"
        lines = [",".join(columns)]
        lines += [",".join("" if r.get(c) is None else str(r[c]) for c in columns) for r in rows]
        path.write_text("\n".join(lines) + "\n")
    elif fmt == "jsonl":
        path = folder / f"{name}.jsonl"
        path.write_text("".join(json.dumps({c: r.get(c) for c in columns}) + "\n" for r in rows))
    else:
        path = folder / f"{name}.parquet"
        schema = dict.fromkeys(columns, pl.String)
        pl.DataFrame([{c: r.get(c) for c in columns} for r in rows], schema=schema).write_parquet(
            path
        )
    return path


def _where(fmt: str, index: int) -> dict:
    """The expected line/row of data row `index` (0-based) in a file written by `_write`."""
    if fmt == "csv":
        return {"line": index + 2}
    if fmt == "jsonl":
        return {"line": index + 1}
    return {"row": index + 1}


def _fails(
    tmp_path: Path,
    load: Callable,
    file: Path,
    *,
    line: int | None = None,
    row: int | None = None,
    column: str | None = None,
    match: str = "",
) -> DataError:
    """Load and prepare into tmp_path/out; check the error and that nothing was written."""
    out = tmp_path / "out"
    with pytest.raises(DataError) as info:
        prepare(load(), out, show_progress=False)
    err = info.value
    text = str(err)
    assert err.file == str(file) and text.startswith(str(file)), text
    assert err.line == line, text
    assert err.row == row, text
    if line is not None:
        assert f", line {line}" in text
    if row is not None:
        assert f", row {row}" in text
    assert err.column == column, text
    if column is not None:
        assert f"column '{column}'" in text
    assert re.search(match, text), text
    assert not out.exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")]
    return err


# ---- bad values, in every format ------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_unparsable_timestamp(tmp_path, fmt):
    rows = _rows()
    rows[3]["timestamp"] = "yesterday"
    path = _write(fmt, tmp_path, "events", rows, HEADER)
    _fails(
        tmp_path,
        lambda: load_events(path),
        path,
        **_where(fmt, 3),
        column="timestamp",
        match="cannot parse timestamp 'yesterday'",
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_unknown_event_type(tmp_path, fmt):
    rows = _rows()
    rows[2]["event"] = "teleport"
    path = _write(fmt, tmp_path, "events", rows, HEADER)
    _fails(
        tmp_path,
        lambda: load_events(path),
        path,
        **_where(fmt, 2),
        column="event",
        match="unknown event type 'teleport'",
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_missing_value(tmp_path, fmt):
    rows = _rows()
    rows[1]["user_id"] = None
    path = _write(fmt, tmp_path, "events", rows, HEADER)
    _fails(
        tmp_path,
        lambda: load_events(path),
        path,
        **_where(fmt, 1),
        column="user_id",
        match="missing value",
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_unknown_item(tmp_path, fmt):
    rows = _rows()
    rows[4]["item_id"] = "99"
    path = _write(fmt, tmp_path, "events", rows, HEADER)
    items = _write(
        fmt, tmp_path, "items", [{"item_id": str(10 + k)} for k in range(5)], ["item_id"]
    )
    err = _fails(
        tmp_path,
        lambda: load_events(path, items=items),
        path,
        **_where(fmt, 4),
        column="item_id",
        match="item 99 is not in the item table",
    )
    assert str(items) in str(err)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("key", ["item_id", "user_id"])
def test_duplicate_id_in_side_table(tmp_path, fmt, key):
    path = _write(fmt, tmp_path, "events", _rows(), HEADER)
    ids = [str(10 + k) for k in range(5)] if key == "item_id" else ["u0", "u1", "u2"]
    ids.insert(2, ids[0])
    table = _write(fmt, tmp_path, "side", [{key: i, "x": "a"} for i in ids], [key, "x"])
    what = "items" if key == "item_id" else "users"
    _fails(
        tmp_path,
        lambda: load_events(path, **{what: table}),
        table,
        **_where(fmt, 2),
        column=key,
        match=f"duplicate {key[:4]} id",
    )


# ---- columns ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_missing_column(tmp_path, fmt):
    path = _write(fmt, tmp_path, "events", _rows(), ["user_id", "item_id", "event"])
    err = _fails(
        tmp_path,
        lambda: load_events(path),
        path,
        line=None if fmt == "parquet" else 1,
        column="timestamp",
        match="column 'timestamp' .*not found",
    )
    assert "The file has columns: user_id, item_id, event" in str(err)


@pytest.mark.parametrize("fmt", FORMATS)
def test_misnamed_column_suggests_closest(tmp_path, fmt):
    rows = [{**r, "timestmap": r["timestamp"]} for r in _rows()]
    path = _write(fmt, tmp_path, "events", rows, ["user_id", "item_id", "timestmap"])
    _fails(
        tmp_path,
        lambda: load_events(path),
        path,
        line=None if fmt == "parquet" else 1,
        column="timestamp",
        match="did you mean 'timestmap'",
    )


def test_mapped_column_not_found(tmp_path):
    rows = [
        {"userId": r["user_id"], "item_id": r["item_id"], "time": r["timestamp"]} for r in _rows()
    ]
    path = _write("csv", tmp_path, "events", rows, ["userId", "item_id", "time"])
    _fails(
        tmp_path,
        lambda: load_events(path, mapping={"user_id": "UserID", "timestamp": "time"}),
        path,
        line=1,
        column="UserID",
        match="column 'UserID' \\(mapped to 'user_id'\\) not found; did you mean 'userId'",
    )


def test_duplicate_header_column(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("user_id,item_id,timestamp,item_id\n1,2,3,4\n")
    _fails(
        tmp_path,
        lambda: load_events(path),
        path,
        line=1,
        column="item_id",
        match="duplicate column name",
    )


# ---- empty files -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "line", "match"),
    [
        ("e.csv", b"", None, "empty \\(0 bytes\\)"),
        ("e.csv", b"user_id,item_id,timestamp\n", None, "header but no data rows"),
        ("e.csv", b"user_id,item_id,timestamp\n\n\n", None, "header but no data rows"),
        ("e.tsv", b"\n", 1, "header\\) is empty"),
        ("e.jsonl", b"", None, "empty \\(0 bytes\\)"),
        ("e.jsonl", b"\n  \n", None, "only blank lines"),
    ],
)
def test_empty_text_file(tmp_path, name, content, line, match):
    path = tmp_path / name
    path.write_bytes(content)
    _fails(tmp_path, lambda: load_events(path), path, line=line, match=match)


def test_empty_parquet(tmp_path):
    path = tmp_path / "e.parquet"
    pl.DataFrame(schema=dict.fromkeys(HEADER, pl.String)).write_parquet(path)
    _fails(tmp_path, lambda: load_events(path), path, match="no events rows")
    zero = tmp_path / "zero.parquet"
    zero.write_bytes(b"")
    _fails(tmp_path, lambda: load_events(zero), zero, match="not a readable Parquet file")


def test_empty_side_table(tmp_path):
    path = _write("csv", tmp_path, "events", _rows(), HEADER)
    items = tmp_path / "items.csv"
    items.write_text("item_id,title\n")
    _fails(tmp_path, lambda: load_events(path, items=items), items, match="header but no data rows")


# ---- ragged rows ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "line", "column", "fields"),
    [
        ("1,2,3\n1,2,3,4\n", 3, "field 4", 4),  # one field too many
        ("1,2,3\n1,2,3\n1,2\n", 4, "timestamp", 2),  # one too few
        ("1,2,3\n\n1\n", 4, "item_id", 1),  # after a blank line (which is fine)
        ('1,2,"3\n4"\n1,2\n', 4, "timestamp", 2),  # after a record spanning two lines
    ],
)
def test_ragged_row_csv(tmp_path, body, line, column, fields):
    path = tmp_path / "events.csv"
    path.write_text("user_id,item_id,timestamp\n" + body)
    _fails(
        tmp_path,
        lambda: load_events(path),
        path,
        line=line,
        column=column,
        match=f"ragged row: {fields} fields, but the header has 3",
    )


def test_ragged_row_tsv_large(tmp_path):
    """The vectorised scan works in blocks; the bad line sits far from the start."""
    path = tmp_path / "events.tsv"
    lines = ["user_id\titem_id\ttimestamp"] + [f"{k % 7}\t{k % 11}\t{k}" for k in range(20_001)]
    lines[15_000] = "1\t2"
    path.write_text("\n".join(lines) + "\n")
    _fails(tmp_path, lambda: load_events(path), path, line=15_001, column="timestamp")


def test_ragged_row_side_table(tmp_path):
    path = _write("csv", tmp_path, "events", _rows(), HEADER)
    items = tmp_path / "items.csv"
    items.write_text('item_id,title,brand\n10,"a, b",x\n11,c\n')
    _fails(
        tmp_path,
        lambda: load_events(path, items=items),
        items,
        line=3,
        column="brand",
        match="ragged row",
    )


# ---- encodings and malformed text ------------------------------------------------------------------------


def test_non_utf8_csv(tmp_path):
    path = tmp_path / "events.csv"
    path.write_bytes(b"user_id,item_id,timestamp\n1,2,3\n1,caf\xe9,4\n")
    _fails(
        tmp_path,
        lambda: load_events(path),
        path,
        line=3,
        column="item_id",
        match="not valid UTF-8 \\(byte 0xe9\\)",
    )


def test_non_utf8_jsonl(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(
        b'{"user_id": 1, "item_id": 2, "timestamp": 3}\n\n'
        b'{"user_id": 1, "item_id": "caf\xe9", "timestamp": 3}\n'
    )
    _fails(tmp_path, lambda: load_events(path), path, line=3, column="item_id", match="UTF-8")


def test_non_utf8_side_table(tmp_path):
    path = _write("csv", tmp_path, "events", _rows(), HEADER)
    items = tmp_path / "items.csv"
    items.write_bytes(b"item_id,title\n10,ok\n11,Mis\xe9rables\n")
    _fails(
        tmp_path,
        lambda: load_events(path, items=items),
        items,
        line=3,
        column="title",
        match="UTF-8",
    )


def test_invalid_json_line(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"user_id": 1, "item_id": 2, "timestamp": 3}\n{"user_id": 1, "item_id": 2\n')
    _fails(tmp_path, lambda: load_events(path), path, line=2, match="invalid JSON")


def test_nested_json_value(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text(
        '{"user_id": 1, "item_id": 2, "timestamp": 3}\n{"user_id": [1, 2], "item_id": 2, "timestamp": 3}\n'
    )
    _fails(tmp_path, lambda: load_events(path), path, line=2, column="user_id", match="JSON list")


def test_stray_quote_in_unquoted_field(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text('user_id,item_id,timestamp,note\n1,2,3,ok\n1,3,4,5" screen\n1,4,5,ok\n')
    _fails(tmp_path, lambda: load_events(path), path, line=3, column="note", match="quote")


def test_not_a_parquet_file(tmp_path):
    path = tmp_path / "events.parquet"
    path.write_bytes(b"user_id,item_id,timestamp\n1,2,3\n")
    _fails(tmp_path, lambda: load_events(path), path, match="not a readable Parquet file")


def test_unsupported_extension(tmp_path):
    path = tmp_path / "events.xlsx"
    path.write_bytes(b"PK")
    _fails(tmp_path, lambda: load_events(path), path, match="unsupported file type '.xlsx'")


# ---- positions: blank lines, multi-line records, shards, milliseconds -------------------------------------


def test_line_after_blank_and_multiline_records(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text('user_id,item_id,timestamp,note\n1,2,3,"a\nb\nc"\n\n1,3,4,x\n1,4,,y\n')
    _fails(tmp_path, lambda: load_events(path), path, line=7, column="timestamp", match="missing")


def test_jsonl_line_after_blank_lines(tmp_path):
    path = tmp_path / "events.jsonl"
    good = '{"user_id": 1, "item_id": 2, "timestamp": 3}\n'
    path.write_text(good + "\n   \n" + good + '{"user_id": 1, "item_id": 2, "timestamp": "x"}\n')
    _fails(tmp_path, lambda: load_events(path), path, line=5, column="timestamp", match="x")


def test_parquet_shard_and_row(tmp_path):
    folder = tmp_path / "events"
    folder.mkdir()
    rows = _rows(7)
    rows[5]["timestamp"] = "soon"
    schema = dict.fromkeys(HEADER, pl.String)
    pl.DataFrame(rows[:4], schema=schema).write_parquet(folder / "a.parquet")
    pl.DataFrame(rows[4:], schema=schema).write_parquet(folder / "b.parquet")
    _fails(
        tmp_path,
        lambda: load_events(folder),
        folder / "b.parquet",
        row=2,
        column="timestamp",
        match="soon",
    )


def test_parquet_shard_missing_column(tmp_path):
    folder = tmp_path / "events"
    folder.mkdir()
    pl.DataFrame(_rows(3)).write_parquet(folder / "a.parquet")
    pl.DataFrame(_rows(3)).drop("timestamp").write_parquet(folder / "b.parquet")
    _fails(
        tmp_path,
        lambda: load_events(folder),
        folder / "b.parquet",
        column="timestamp",
        match="not found",
    )


def test_milliseconds_not_a_number(tmp_path):
    rows = _rows()
    rows[2]["timestamp"] = "2024-01-01"
    path = _write("csv", tmp_path, "events", rows, HEADER)
    _fails(
        tmp_path,
        lambda: load_events(path, time_unit="ms"),
        path,
        line=4,
        column="timestamp",
        match="number of ms",
    )


def test_bad_price_in_items(tmp_path):
    path = _write("csv", tmp_path, "events", _rows(), HEADER)
    items = tmp_path / "items.csv"
    items.write_text("item_id,price\n10,1.5\n11,cheap\n")
    _fails(
        tmp_path,
        lambda: load_events(path, items=items),
        items,
        line=3,
        column="price",
        match="cheap",
    )


def test_late_type_change_is_not_an_error(tmp_path):
    """Polars infers integer timestamps from the first rows; a float far below makes its typed
    read fail, and the loader must fall back, not hand the Polars error on."""
    path = tmp_path / "events.csv"
    lines = ["user_id,item_id,timestamp"] + [f"{k % 5},{k % 3},{k}" for k in range(10_010)]
    lines.append("1,2,20000.5")
    path.write_text("\n".join(lines) + "\n")
    out = prepare(load_events(path), tmp_path / "out", show_progress=False)
    assert pl.read_parquet(out / "events.parquet")["timestamp"].max() == 20_000


# ---- RecBole and GroupLens ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "column", "match"),
    [
        ("user_id:token\titem_id\ttimestamp:float", "item_id", "has no type"),
        ("user_id:token\titem_id:int\ttimestamp:float", "item_id", "unknown type 'int'"),
        ("user_id:token\tuser_id:token\ttimestamp:float", "user_id", "duplicate column"),
        ("user:token\titem_id:token\ttimestamp:float", "user_id", "did you mean 'user'"),
    ],
)
def test_recbole_header(tmp_path, header, column, match):
    path = tmp_path / "x.inter"
    path.write_text(header + "\n1\t2\t3\n")
    _fails(tmp_path, lambda: load_recbole(tmp_path), path, line=1, column=column, match=match)


def test_recbole_ragged_and_bad_float(tmp_path):
    path = tmp_path / "x.inter"
    path.write_text("user_id:token\titem_id:token\ttimestamp:float\n1\t2\t3\n1\t2\n")
    _fails(tmp_path, lambda: load_raw(path), path, line=3, column="timestamp", match="ragged")
    path.write_text("user_id:token\titem_id:token\ttimestamp:float\n1\t2\t3\n1\t2\tnoon\n")
    _fails(tmp_path, lambda: load_raw(path), path, line=3, column="timestamp", match="noon")


def test_recbole_duplicate_item(tmp_path):
    (tmp_path / "x.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n1\t2\t3\n")
    item = tmp_path / "x.item"
    item.write_text("item_id:token\tname:token\n2\ta\n3\tb\n2\tc\n")
    _fails(tmp_path, lambda: load_recbole(tmp_path), item, line=4, column="item_id")


def test_grouplens_ragged_and_bad_flag(tmp_path):
    data = tmp_path / "u.data"
    data.write_text("1\t2\t3\t881250949\n1\t2\t881250949\n")
    _fails(tmp_path, lambda: load_grouplens(tmp_path), data, line=2, column="timestamp")
    data.write_text("1\t2\t3\t881250949\n")
    item = tmp_path / "u.item"
    flags = ["0"] * len(GENRES_100K)
    flags[3] = "yes"
    item.write_text("2|Toy Story (1995)|01-Jan-1995||http://x|" + "|".join(flags) + "\n")
    _fails(
        tmp_path,
        lambda: load_grouplens(tmp_path),
        item,
        line=1,
        column="Animation (field 9)",
        match="genre flag must be 0 or 1, got 'yes'",
    )


def test_grouplens_1m_ragged(tmp_path):
    data = tmp_path / "ratings.dat"
    data.write_text("1::2::3::978300760\n1::2::3::978300760::9\n")
    _fails(tmp_path, lambda: load_raw(tmp_path), data, line=2, column="field 5", match="ragged")


def test_missing_path(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_raw(tmp_path / "nope.csv")
    assert not (tmp_path / "out").exists()
