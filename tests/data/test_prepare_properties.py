"""Property-based tests of the loaders and `prepare` (issue 11), with hypothesis.

1. Random valid logs (CSV, JSONL, Parquet) round-trip: every row becomes one interaction, each
   user's items come out in time order (ties in file order), raw ids map back exactly.
2. Random corruptions of a valid text file (a dropped field, a byte that is not UTF-8, a
   truncated line or file, a value of the wrong type) are either rejected with a one-line
   DataError naming the file and the line, or read exactly as a strict reference reader (the
   csv / json modules) reads the corrupted file: never a traceback, never a silently different
   reading, never a directory (or a temporary one) left behind.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import tempfile
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guim.data.loaders import load_raw
from guim.data.prepare import PrepareConfig, prepare
from guim.data.schema import DataError

# GUIM_FUZZ_EXAMPLES=500 hunts with fresh random examples; by default the same modest set runs
FUZZ_EXAMPLES = int(os.environ.get("GUIM_FUZZ_EXAMPLES", "0"))
SETTINGS = settings(
    max_examples=FUZZ_EXAMPLES or 30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=not FUZZ_EXAMPLES,
    database=None,
)
NO_COLLAPSE = PrepareConfig(collapse_repeats=False)
_INT = re.compile(r"-?\d+")

Row = tuple[str, str, int]  # (user_id, item_id, timestamp)


@st.composite
def logs(draw) -> list[Row]:
    """A valid log: 1-40 rows, a few users and items (text or integer ids), integer times."""
    numeric_users = draw(st.booleans())
    n_users = draw(st.integers(1, 6))
    n_items = draw(st.integers(1, 9))
    users = [str(k * 13 + 1) if numeric_users else f"user-{k}" for k in range(n_users)]
    items = [f"sku{k}" for k in range(n_items)]
    rows = draw(
        st.lists(
            st.tuples(
                st.sampled_from(users), st.sampled_from(items), st.integers(0, 2_000_000_000)
            ),
            min_size=1,
            max_size=40,
        )
    )
    return rows


def _write(rows: list[Row], folder: Path, fmt: str) -> Path:
    if fmt == "csv":
        path = folder / "log.csv"
        path.write_text(
            "user_id,item_id,timestamp\n" + "".join(f"{u},{i},{t}\n" for u, i, t in rows)
        )
    elif fmt == "jsonl":
        path = folder / "log.jsonl"
        path.write_text(
            "".join(
                json.dumps({"user_id": u, "item_id": i, "timestamp": t}) + "\n" for u, i, t in rows
            )
        )
    else:
        path = folder / "log.parquet"
        pl.DataFrame(
            rows,
            schema={"user_id": pl.String, "item_id": pl.String, "timestamp": pl.Int64},
            orient="row",
        ).write_parquet(path)
    return path


def _expected(rows: list[Row]) -> dict[str, list[tuple[str, int]]]:
    """Each user's (item, time) in time order, ties kept in file order."""
    out: dict[str, list[tuple[str, int]]] = {}
    for u, i, t in sorted(rows, key=lambda r: r[2]):  # sorted() is stable
        out.setdefault(str(u), []).append((str(i), t))
    return out


def _read_dataset(out: Path) -> dict[str, list[tuple[str, int]]]:
    events = pl.read_parquet(out / "events.parquet")
    users = pl.read_parquet(out / "vocab" / "users.parquet")
    items = pl.read_parquet(out / "vocab" / "items.parquet")
    user_of = dict(zip(users["user_idx"], users["user_id"].cast(pl.String), strict=True))
    item_of = dict(zip(items["item_idx"], items["item_id"].cast(pl.String), strict=True))
    got: dict[str, list[tuple[str, int]]] = {}
    for u, i, t in events.select("user_idx", "item_idx", "timestamp").iter_rows():
        got.setdefault(user_of[u], []).append((item_of[i], t))
    return got


def _no_output(folder: Path, out: Path) -> None:
    assert not out.exists()
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]


@SETTINGS
@given(rows=logs(), fmt=st.sampled_from(["csv", "jsonl", "parquet"]))
def test_valid_logs_round_trip(rows, fmt):
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        path = _write(rows, folder, fmt)
        out = folder / "out"
        prepare(load_raw(path), out, NO_COLLAPSE, show_progress=False)
        stats = json.loads((out / "stats.json").read_text())
        expected = _expected(rows)
        assert _read_dataset(out) == expected
        assert stats["n_interactions"] == stats["n_raw_events"] == len(rows)
        assert stats["n_users"] == len(expected)
        assert stats["n_items"] == len({i for _, i, _ in rows})
        long_enough = sum(len(seq) >= 3 for seq in expected.values())
        assert stats["splits"]["loo"]["test"] == stats["splits"]["loo"]["valid"] == long_enough


# ---- corruptions -----------------------------------------------------------------------------


def _reference(data: bytes, fmt: str) -> list[Row] | None:
    """What a strict reader finds in `data`: the rows ([] for none), or None when a record is
    invalid (not UTF-8, a ragged row, an empty or missing value, a time that is not an integer)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    rows: list[Row] = []
    if fmt == "csv":
        records = list(csv.reader(io.StringIO(text, newline="")))
        if not records or records[0] != ["user_id", "item_id", "timestamp"]:
            return None
        for rec in records[1:]:
            if not rec:
                continue  # a blank line
            if (
                len(rec) != 3
                or not all(v.strip() for v in rec[:2])
                or not _INT.fullmatch(rec[2].strip())
            ):
                return None
            rows.append((rec[0], rec[1], int(rec[2])))
    else:
        for line in text.split("\n"):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                return None
            if not isinstance(rec, dict):
                return None
            u, i, t = (rec.get(k) for k in ("user_id", "item_id", "timestamp"))
            if not all(_is_id(v) for v in (u, i)) or type(t) is not int:
                return None
            rows.append((str(u), str(i), t))
    return rows


def _is_id(value: object) -> bool:
    """An id in JSON: a non-empty string or a number (read as its text), not a boolean."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int | float) or (isinstance(value, str) and bool(value.strip()))


def _lines(data: bytes) -> list[int]:
    """Byte offset of the start of each line."""
    return [0] + [k + 1 for k, b in enumerate(data) if b == 10 and k + 1 < len(data)]


@st.composite
def corruptions(draw, data: bytes, fmt: str) -> tuple[str, bytes]:
    kind = draw(
        st.sampled_from(["drop_field", "bad_byte", "truncate_line", "truncate_file", "wrong_type"])
    )
    starts = _lines(data)
    first = 1 if fmt == "csv" else 0  # leave the CSV header alone (it is a different check)
    k = draw(st.integers(first, len(starts) - 1))
    start = starts[k]
    end = data.index(b"\n", start)
    line = data[start:end]
    if kind == "bad_byte":
        at = draw(st.integers(0, len(data)))
        byte = draw(st.sampled_from([b"\xff", b"\xfe", b"\xc3", b"\x80"]))
        return kind, data[:at] + byte + data[at:]
    if kind == "truncate_file":
        return kind, data[: draw(st.integers(starts[first], len(data) - 1))]
    if kind == "truncate_line":
        cut = draw(st.integers(0, len(line) - 1))
        return kind, data[: start + cut] + data[end:]
    if fmt == "csv":
        fields = line.split(b",")
        col = draw(st.integers(0, 2))
        if kind == "drop_field":
            del fields[col]
        else:
            fields[col] = draw(
                st.sampled_from([b"", b" ", b"abc", b"1.5e", b"[1, 2]", b"2020-13-45x"])
            )
        new = b",".join(fields)
    else:
        rec = json.loads(line)
        key = draw(st.sampled_from(["user_id", "item_id", "timestamp"]))
        if kind == "drop_field":
            del rec[key]
        else:
            rec[key] = draw(st.sampled_from([None, "", " ", [1, 2], {"a": 1}, "abc", True, 1.5, 7]))
        new = json.dumps(rec).encode()
    return kind, data[:start] + new + data[end:]


@SETTINGS
@given(data=st.data(), rows=logs(), fmt=st.sampled_from(["csv", "jsonl"]))
def test_corrupted_files_are_rejected_or_read_exactly(data, rows, fmt):
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        path = _write(rows, folder, fmt)
        kind, bad = data.draw(corruptions(path.read_bytes(), fmt), label="corruption")
        path.write_bytes(bad)
        reference = _reference(bad, fmt)
        out = folder / "out"
        try:
            prepare(load_raw(path), out, NO_COLLAPSE, show_progress=False)
        except DataError as e:
            text = str(e)
            assert "\n" not in text, text
            assert e.file == str(path) and text.startswith(str(path)), text
            if reference is None:  # an invalid record, not an empty file: say where
                assert e.line is not None, (kind, text)
            _no_output(folder, out)
            return
        assert reference, (kind, bad)  # neither invalid nor empty
        assert _read_dataset(out) == _expected(reference), kind


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_clean_file_is_read_as_the_reference_reads_it(tmp_path, fmt):
    rows = [("a", "x", 3), ("b", "y", 1), ("a", "y", 1), ("a", "z", 3)]
    path = _write(rows, tmp_path, fmt)
    assert _reference(path.read_bytes(), fmt) == rows
    prepare(load_raw(path), tmp_path / "out", NO_COLLAPSE, show_progress=False)
    assert _read_dataset(tmp_path / "out") == _expected(rows)
