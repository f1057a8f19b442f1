"""Generic event logs and side tables: CSV/TSV, Parquet (a file or a directory) and JSONL.

Reading goes through Polars lazy scans. Text files also get one vectorised byte scan (UTF-8,
field counts, blank lines); only when it or Polars finds something wrong does a slow pass with
the csv/json modules run, to name the exact line and column in a `DataError`.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from guim.data.raw import ROW, Locator, RawData, Table, harmonise_id_type
from guim.data.schema import (
    EVENT,
    EVENT_COLUMNS,
    ITEM_ID,
    PRICE,
    REQUIRED_EVENT_COLUMNS,
    SESSION_ID,
    TIMESTAMP,
    USER_ID,
    DataError,
)
from guim.errors import UserError

TEXT_SUFFIXES = {".csv": ",", ".tsv": "\t", ".txt": None}
PARQUET_SUFFIXES = (".parquet", ".pq")
JSONL_SUFFIXES = (".jsonl", ".ndjson")
TIME_UNITS = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
_SNIFF = (",", "\t", ";", "|")
_CANONICAL_INT = r"^-?(?:0|[1-9][0-9]{0,17})$"
_LIST_SPEC = re.compile(r"^(?P<column>.*)\[(?P<sep>[^\[\]]+)\]$")
_CHUNK = 1 << 23  # bytes per block of the vectorised text scan

# A column spec: (source column, list separator or None).
ColumnSpec = tuple[str, str | None]


@dataclass(frozen=True)
class Source:
    """One input: its kind, the files it spans (a Parquet directory has several) and, for text,
    the separator and quote character."""

    path: Path
    kind: str  # "csv" | "parquet" | "jsonl"
    files: tuple[Path, ...]
    separator: str | None = None
    quote: str | None = None


# ---- public entry points --------------------------------------------------------------------


def load_events(
    path: str | Path,
    mapping: Mapping[str, str] | None = None,
    items: str | Path | None = None,
    item_mapping: Mapping[str, str | tuple[str, str]] | None = None,
    users: str | Path | None = None,
    user_mapping: Mapping[str, str | tuple[str, str]] | None = None,
    separator: str | None = None,
    time_unit: str = "s",
) -> RawData:
    """Read an event log (+ optional item and user tables) in CSV/TSV, Parquet or JSONL.

    Args:
        mapping: canonical event column (user_id, item_id, timestamp, event, session_id, price)
            -> the file's column name; canonical names are used for anything not mapped.
        item_mapping, user_mapping: output column -> the file's column. Item columns item_id,
            title and price are special; every other column becomes an attribute (a list column
            a multi-valued one). A text column is split into a list by writing the separator in
            brackets, `{"genres": "genre_list[|]"}`, or as a tuple `("genre_list", "|")`.
        separator: field separator of text files; by default from the extension (.csv ",",
            .tsv tab) or sniffed from the header.
        time_unit: unit of numeric timestamps ("s", "ms", "us", "ns"); converted to seconds.
    """
    if time_unit not in TIME_UNITS:
        raise UserError(
            f"--time-unit must be one of {', '.join(TIME_UNITS)} (the unit of numeric "
            f"timestamps), got {time_unit!r}"
        )
    for key in mapping or {}:
        if key not in EVENT_COLUMNS:
            raise UserError(
                f"--map {key}=...: unknown event column {key!r}; expected one of "
                f"{', '.join(EVENT_COLUMNS)}"
            )
    separator = check_separator(separator)
    source = open_source(path, separator)
    if separator is not None:
        kinds = [source.kind] + [_kind(p) for p in (items, users) if p is not None]
        if "csv" not in kinds:
            raise UserError(
                f"--separator applies to CSV/TSV/TXT files; {path} is {source.kind} "
                "(and so are the side tables, if any)"
            )
    columns = source_columns(source)
    specs = resolve_columns(
        source,
        columns,
        dict(mapping or {}),
        wanted=EVENT_COLUMNS,
        required=REQUIRED_EVENT_COLUMNS,
        keep_others=False,
    )
    string_columns = [c for c in (USER_ID, ITEM_ID, SESSION_ID, EVENT) if c in specs]
    events, locator = read_source(source, specs, string_columns, what="events")
    events = normalise_ids(events, [USER_ID, ITEM_ID])
    events = convert_time_unit(events, time_unit, locator)
    files = [str(f) for f in source.files]
    item_table = user_table = None
    if items is not None:
        item_table = load_table(items, ITEM_ID, item_mapping, separator)
        files += item_table.locator.files
    if users is not None:
        user_table = load_table(users, USER_ID, user_mapping, separator)
        files += user_table.locator.files
    events, item_table, user_table = harmonise_ids(events, item_table, user_table)
    return RawData(
        events=events.lazy(),
        events_locator=locator,
        items=item_table,
        users=user_table,
        format="generic",
        files=files,
    )


def check_separator(separator: str | None) -> str | None:
    """A field separator as given on the command line ('tab' and '\\t' mean a tab), checked
    to be one single-byte character that is not a quote or a line break."""
    if separator is None:
        return None
    sep = {"tab": "\t", "\\t": "\t", "\\s": " ", "space": " "}.get(separator, separator)
    if len(sep) != 1 or len(sep.encode()) != 1 or sep in '\r\n"':
        raise UserError(
            f"--separator must be one ASCII character other than a quote or a line break "
            f"('tab' or '\\t' for a tab), got {separator!r}"
        )
    return sep


def _kind(path: str | Path) -> str:
    path = Path(path)
    if path.is_dir() or path.suffix.lower() in PARQUET_SUFFIXES:
        return "parquet"
    return "jsonl" if path.suffix.lower() in JSONL_SUFFIXES else "csv"


def load_table(
    path: str | Path,
    key: str,
    mapping: Mapping[str, str | tuple[str, str]] | None = None,
    separator: str | None = None,
) -> Table:
    """Read an item or user side table keyed by `key` (item_id or user_id)."""
    source = open_source(path, separator)
    columns = source_columns(source)
    raw_specs: dict[str, str | tuple[str, str]] = dict(mapping or {})
    specs = resolve_columns(
        source, columns, raw_specs, wanted=(key,), required=(key,), keep_others=True
    )
    text = [c for c, (_, sep) in specs.items() if c == key or sep is not None]
    # side tables are small: all text for CSV, so codes such as zip "01040" keep their zeros
    frame, locator = read_source(
        source, specs, text, what=f"{key.split('_')[0]} table", all_text=True
    )
    if frame.height == 0:
        raise DataError(source.path, f"the {key.split('_')[0]} table has no rows")
    frame = normalise_ids(frame, [key])
    for name, (_, sep) in specs.items():
        if sep is not None:
            frame = frame.with_columns(split_list(pl.col(name), sep))
    if key == ITEM_ID and PRICE in frame.columns:
        frame = to_float(frame, PRICE, locator)
    return Table(frame, locator)


def split_list(expr: pl.Expr, separator: str) -> pl.Expr:
    """A text column split on `separator` into a list of stripped, non-empty values."""
    return (
        expr.cast(pl.String)
        .str.split(separator)
        .list.eval(pl.element().str.strip_chars())
        .list.eval(pl.element().filter(pl.element().str.len_bytes() > 0))
    )


def normalise_ids(frame: pl.DataFrame, columns: Sequence[str]) -> pl.DataFrame:
    """Cast string id columns to Int64 when every value is a canonical integer ("12", not
    "012"), so ids sort numerically; any other string ids (leading zeros included) stay text."""
    for col in columns:
        if col not in frame.columns or frame.schema[col] != pl.String:
            continue
        values = frame[col]
        if values.null_count() < len(values) and values.str.contains(_CANONICAL_INT).all():
            frame = frame.with_columns(pl.col(col).cast(pl.Int64))
    return frame


def harmonise_ids(
    events: pl.DataFrame, items: Table | None, users: Table | None
) -> tuple[pl.DataFrame, Table | None, Table | None]:
    """`guim.data.raw.harmonise_id_type` for the item and the user table."""
    tables = {ITEM_ID: items, USER_ID: users}
    for key, table in tables.items():
        if table is not None:
            events, frame = harmonise_id_type(events, table.frame, key)
            assert frame is not None
            tables[key] = Table(frame, table.locator)
    return events, tables[ITEM_ID], tables[USER_ID]


# ---- sources and columns --------------------------------------------------------------------


def open_source(path: str | Path, separator: str | None = None) -> Source:
    """Identify the kind of input from its extension (a directory holds Parquet files)."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "file not found")
    if path.is_dir():
        files = tuple(sorted(p for p in path.rglob("*") if p.suffix.lower() in PARQUET_SUFFIXES))
        if not files:
            raise DataError(path, "the directory holds no Parquet files (*.parquet, *.pq)")
        return Source(path, "parquet", files)
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        return Source(path, "parquet", (path,))
    if suffix in JSONL_SUFFIXES:
        return Source(path, "jsonl", (path,))
    if suffix in TEXT_SUFFIXES:
        header = _first_line(path)
        sep = separator or _sniff(header, TEXT_SUFFIXES[suffix])
        quote = '"' if sep in (",", ";") else None
        return Source(path, "csv", (path,), sep, quote)
    known = ", ".join([*TEXT_SUFFIXES, *PARQUET_SUFFIXES, *JSONL_SUFFIXES])
    raise DataError(path, f"unsupported file type {suffix or '(none)'!r}; expected one of {known}")


def source_columns(source: Source) -> list[str]:
    """Column names of a source: the CSV header, the Parquet schema, the first JSONL record."""
    if source.kind == "csv":
        return csv_header(source.path, source.separator or ",", source.quote)
    if source.kind == "parquet":
        schemas = [_parquet_schema(f) for f in source.files]
        return list(schemas[0])
    return _jsonl_columns(source.path)


def resolve_columns(
    source: Source,
    columns: list[str],
    mapping: Mapping[str, str | tuple[str, str]],
    wanted: Sequence[str],
    required: Sequence[str],
    keep_others: bool,
) -> dict[str, ColumnSpec]:
    """Output column -> (source column, list separator): mapped columns, then canonical ones
    present in the file, then (for side tables) every other column under its own name."""
    specs: dict[str, ColumnSpec] = {}
    for out, spec in mapping.items():
        # "genres[|]" means "split genres on |" in side tables, unless a column is named so
        col, sep = (spec, None) if spec in columns or not keep_others else _parse_spec(spec)
        if col not in columns:
            raise _missing_column(source, columns, col, f" (mapped to {out!r})")
        specs[out] = (col, sep)
    for name in wanted:
        if name not in specs and name in columns:
            specs[name] = (name, None)
    for name in required:
        if name not in specs:
            raise _missing_column(source, columns, name, " (a required column)")
    if keep_others:
        used = {col for col, _ in specs.values()}
        for col in columns:
            if col in used:
                continue
            if col in specs:
                raise DataError(
                    source.path,
                    f"column {col!r} is in the file and also mapped from {specs[col][0]!r}",
                    column=col,
                )
            specs[col] = (col, None)
    return specs


def _parse_spec(spec: str | tuple[str, str]) -> ColumnSpec:
    if isinstance(spec, tuple):
        return spec[0], spec[1]
    m = _LIST_SPEC.match(spec)
    return (m["column"], m["sep"]) if m else (spec, None)


def _missing_column(source: Source, columns: list[str], name: str, why: str) -> DataError:
    line = 1 if source.kind != "parquet" else None
    return missing_column(source.path, columns, name, why, line)


def missing_column(
    file: str | Path, columns: Sequence[str], name: str, why: str = "", line: int | None = 1
) -> DataError:
    """A DataError for a column that is not there, with the closest existing name."""
    lower = {c.lower(): c for c in columns}
    close = difflib.get_close_matches(name.lower(), list(lower), n=1, cutoff=0.6)
    hint = f"; did you mean {lower[close[0]]!r}?" if close else "."
    return DataError(
        file,
        f"column {name!r}{why} not found{hint} The file has columns: {', '.join(columns)}",
        line=line,
        column=name,
    )


# ---- reading ---------------------------------------------------------------------------------


def read_source(
    source: Source,
    specs: dict[str, ColumnSpec],
    string_columns: Sequence[str],
    what: str,
    all_text: bool = False,
) -> tuple[pl.DataFrame, Locator]:
    """Collect the columns of `specs` (renamed to their output names) plus `__row`.

    `string_columns` are read as text whatever their content looks like (ids keep leading
    zeros); with `all_text`, every column of a CSV file is.
    """
    if source.kind == "csv":
        return _read_csv(source, specs, string_columns, what, all_text)
    if source.kind == "jsonl":
        return _read_jsonl(source, specs, string_columns, what)
    return _read_parquet(source, specs, what)


def _read_csv(
    source: Source,
    specs: dict[str, ColumnSpec],
    string_columns: Sequence[str],
    what: str,
    all_text: bool,
) -> tuple[pl.DataFrame, Locator]:
    path, sep, quote = source.path, source.separator or ",", source.quote
    header = csv_header(path, sep, quote)
    scan = scan_text(path, header, sep, quote)
    if scan.n_records == len(scan.blank):
        raise DataError(path, f"the file has a header but no data rows ({what})")
    sources = [col for col, _ in specs.values()]

    def scan_lazy(text: bool) -> pl.LazyFrame:
        overrides = {specs[c][0]: pl.String for c in string_columns if c in specs}
        return pl.scan_csv(
            path,
            separator=sep,
            quote_char=quote,
            glob=False,
            infer_schema=not text,
            infer_schema_length=10_000,
            schema_overrides=None if text else overrides,
            row_index_name=ROW,
        ).select(ROW, *sources)

    def failure(e: Exception) -> DataError:
        # the byte scan passed, so Polars disagrees with the csv module: most often over a
        # quote inside an unquoted field, which the csv module takes literally
        _slow_scan(path, header, sep, quote, path, 1, stray_quotes=True)
        return DataError(path, f"cannot read the CSV file ({_first(e)})")

    frame = _collect_with_fallback(scan_lazy, failure, start_as_text=all_text)
    frame = _rename(frame, specs)
    frame = scan.apply_rows(frame, polars_skips_blank=False)
    return frame, Locator(files=(str(path),), header_lines=1)


def _read_jsonl(
    source: Source, specs: dict[str, ColumnSpec], string_columns: Sequence[str], what: str
) -> tuple[pl.DataFrame, Locator]:
    path = source.path
    scan = scan_text(path, None, None, None)
    if scan.n_records == len(scan.blank):
        raise DataError(path, f"no {what} records (the file has only blank lines)")
    sources = [col for col, _ in specs.values()]

    def scan_lazy(all_text: bool) -> pl.LazyFrame:
        overrides = {specs[c][0]: pl.String for c in string_columns if c in specs}
        if all_text:
            return pl.scan_ndjson(
                path, schema={c: pl.String for c in sources}, row_index_name=ROW
            ).select(ROW, *sources)
        return pl.scan_ndjson(
            path, schema_overrides=overrides, infer_schema_length=10_000, row_index_name=ROW
        ).select(ROW, *sources)

    frame = _collect_with_fallback(scan_lazy, lambda e: _jsonl_failure(path, sources, e))
    frame = _rename(frame, specs)
    frame = scan.apply_rows(frame, polars_skips_blank=True)
    text_columns = [c for c in specs if frame.schema[c] == pl.String]
    ids = [c for c in text_columns if c in _ID_COLUMNS] if what == "events" else []
    _check_nested(path, frame, specs, text_columns, ids)
    return frame, Locator(files=(str(path),), header_lines=0)


_ID_COLUMNS = (USER_ID, ITEM_ID, SESSION_ID, EVENT)


def _check_nested(
    path: Path,
    frame: pl.DataFrame,
    specs: dict[str, ColumnSpec],
    columns: list[str],
    ids: list[str],
) -> None:
    """Polars turns a JSON array or object into its text in a string column, and true/false
    into "true"/"false": find such a value (a candidate starts with "[" or "{", or, in an id
    column, reads true or false) and confirm it on its line."""
    for col in columns:
        text = frame[col].str.strip_chars_start()
        suspect = text.str.slice(0, 1).is_in(["[", "{"])
        if col in ids:
            suspect |= text.is_in(["true", "false"])
        for r in frame[ROW].filter(suspect.fill_null(False)).head(10).to_list():
            lineno = int(r) + 1
            with open(path, "rb") as f:
                raw = next(line for i, line in enumerate(f, start=1) if i == lineno)
            value = _parse_json_line(path, lineno, raw).get(specs[col][0])
            if isinstance(value, dict | list) or (col in ids and isinstance(value, bool)):
                kind = "boolean" if isinstance(value, bool) else type(value).__name__
                raise DataError(
                    path,
                    f"expected a single value (a string or a number), got a JSON {kind}",
                    line=lineno,
                    column=col,
                )


def _read_parquet(
    source: Source, specs: dict[str, ColumnSpec], what: str
) -> tuple[pl.DataFrame, Locator]:
    sources = [col for col, _ in specs.values()]
    starts, total = [], 0
    for f in source.files:
        starts.append(total)
        total += _parquet_rows(f)
        names = _parquet_schema(f)
        for col in sources:
            if col not in names:
                raise _missing_column(Source(f, "parquet", (f,)), list(names), col, "")
    if total == 0:
        raise DataError(source.path, f"no {what} rows (the Parquet data is empty)")
    files = [str(f) for f in source.files]

    def scan_lazy(_: bool) -> pl.LazyFrame:
        return pl.scan_parquet(
            files,
            glob=False,
            hive_partitioning=False,
            extra_columns="ignore",
            row_index_name=ROW,
        ).select(ROW, *sources)

    def failure(e: Exception) -> DataError:
        return DataError(source.path, f"cannot read the Parquet data ({_first(e)})")

    frame = _collect_with_fallback(scan_lazy, failure, start_as_text=True)
    frame = _rename(frame, specs).with_columns(pl.col(ROW).cast(pl.UInt64))
    locator = Locator(files=tuple(files), row_starts=tuple(starts), is_text=False)
    return frame, locator


def _parquet_schema(path: Path) -> pl.Schema:
    try:
        return pl.read_parquet_schema(path)
    except Exception as e:  # Polars raises several types for a corrupt file
        raise DataError(path, f"not a readable Parquet file ({_first(e)})") from None


def _parquet_rows(path: Path) -> int:
    try:
        return int(pl.scan_parquet(path, glob=False).select(pl.len()).collect().item())
    except Exception as e:  # corrupt, truncated or not Parquet at all
        raise DataError(path, f"not a readable Parquet file ({_first(e)})") from None


def _collect_with_fallback(
    scan_lazy: Callable[[bool], pl.LazyFrame],
    failure: Callable[[Exception], DataError],
    start_as_text: bool = False,
) -> pl.DataFrame:
    """The fast typed read; on a Polars error, a read with every column as text (type inference
    can fail on a late odd value); if that fails too, the slow diagnosis names the problem."""
    if not start_as_text:
        try:
            return scan_lazy(False).collect(engine="streaming")
        except (pl.exceptions.PolarsError, OSError):
            pass
    try:
        return scan_lazy(True).collect(engine="streaming")
    except (pl.exceptions.PolarsError, OSError) as e:
        raise failure(e) from None


def _rename(frame: pl.DataFrame, specs: dict[str, ColumnSpec]) -> pl.DataFrame:
    # one source column may feed two outputs (rare); select builds them side by side
    return frame.select(
        pl.col(ROW).cast(pl.UInt64), *[pl.col(col).alias(out) for out, (col, _) in specs.items()]
    )


def convert_time_unit(events: pl.DataFrame, unit: str, loc: Locator) -> pl.DataFrame:
    """The timestamp column of numbers in `unit` as whole seconds; a DataError for text that is
    not a number or a datetime column (the unit means nothing there)."""
    div = TIME_UNITS[unit]
    if div == 1:
        return events
    ts = events[TIMESTAMP]
    if ts.dtype.is_temporal():
        raise DataError(
            loc.files[0],
            f"--time-unit {unit} applies to numeric timestamps; this column holds {ts.dtype} "
            "values (leave --time-unit out)",
            column=TIMESTAMP,
        )
    if ts.dtype == pl.String:
        num = ts.str.strip_chars().cast(pl.Float64, strict=False)
        bad = (num.is_null() & ts.is_not_null()).arg_true()
        if len(bad):
            r = int(bad[0])
            raise loc.error(
                int(events[ROW][r]),
                f"cannot parse timestamp {ts[r]!r} as a number of {unit} (--time-unit {unit})",
                column=TIMESTAMP,
            )
        ts = num
    if ts.dtype.is_integer():
        ts = ts // div
    elif ts.dtype.is_float():
        ts = (ts / div).floor().cast(pl.Int64)
    return events.with_columns(ts.alias(TIMESTAMP))


def to_float(frame: pl.DataFrame, col: str, loc: Locator) -> pl.DataFrame:
    """`col` as Float64; a DataError at the first value that is not a number."""
    values = frame[col]
    if values.dtype.is_numeric():
        return frame.with_columns(values.cast(pl.Float64))
    num = values.cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False)
    bad = (num.is_null() & values.is_not_null()).arg_true()
    if len(bad):
        r = int(bad[0])
        raise loc.error(int(frame[ROW][r]), f"not a number: {values[r]!r}", column=col)
    return frame.with_columns(num.alias(col))


# ---- text files: header, byte scan, slow diagnosis ---------------------------------------------


def _first_line(path: Path) -> bytes:
    with open(path, "rb") as f:
        head = f.read(1 << 16)
        while b"\n" not in head:
            more = f.read(1 << 16)
            if not more:
                break
            head += more
    if not head:
        raise DataError(path, "the file is empty (0 bytes)")
    return head.split(b"\n", 1)[0].rstrip(b"\r")


def _sniff(header: bytes, default: str | None) -> str:
    text = header.decode("utf-8", errors="replace")
    if default is not None and default in text:
        return default
    counts = {sep: text.count(sep) for sep in _SNIFF}
    best = max(counts, key=counts.__getitem__)
    return best if counts[best] else (default or ",")


def csv_header(
    path: Path, separator: str, quote: str | None, check_duplicates: bool = True
) -> list[str]:
    """The header row's column names; DataError for an empty file or a bad/duplicate header."""
    raw = _first_line(path)
    try:
        text = raw.decode("utf-8").lstrip("\ufeff")
    except UnicodeDecodeError as e:
        raise DataError(path, f"the header is not valid UTF-8 ({e.reason})", line=1) from None
    if not text.strip():
        raise DataError(path, "the first line (the header) is empty", line=1)
    row = next(csv.reader([text], delimiter=separator, **_quoting(quote)))
    seen: set[str] = set()
    for name in row:
        if name in seen and check_duplicates:
            raise DataError(
                path, f"duplicate column name {name!r} in the header", line=1, column=name
            )
        seen.add(name)
    return row


def _quoting(quote: str | None) -> dict:
    if quote is None:
        return {"quoting": csv.QUOTE_NONE}
    return {"quotechar": quote}


@dataclass(frozen=True)
class TextScan:
    """The record structure of a text file after its header: how many records (blank lines
    included), which are blank, and each record's first physical line (0-based, after the
    header) when that is not simply its record number (quoted newlines)."""

    n_records: int
    blank: np.ndarray
    record_lines: np.ndarray | None

    def apply_rows(self, frame: pl.DataFrame, polars_skips_blank: bool) -> pl.DataFrame:
        """Drop blank-line rows and turn `__row` into the physical line offset."""
        lines = self.record_lines
        if lines is None:
            lines = np.arange(self.n_records, dtype=np.int64)
        if polars_skips_blank:
            if not len(self.blank) and self.record_lines is None:
                return frame
            keep = np.setdiff1d(np.arange(self.n_records), self.blank)
            return frame.with_columns(pl.Series(ROW, lines[keep], dtype=pl.UInt64))
        if len(self.blank):
            frame = frame.filter(
                ~pl.col(ROW).is_in(pl.Series(self.blank, dtype=pl.UInt64).implode())
            )
        if self.record_lines is not None:
            rows = frame[ROW].to_numpy()
            frame = frame.with_columns(pl.Series(ROW, lines[rows], dtype=pl.UInt64))
        return frame


def scan_text(
    path: Path | bytes,
    header: list[str] | None,
    separator: str | None,
    quote: str | None,
    name: str | Path | None = None,
    has_header: bool = True,
) -> TextScan:
    """Vectorised pass over a text file's bytes (or `path` given as bytes, reported as `name`):
    UTF-8, blank lines and, with column names (`header`), the number of fields of every record.
    The first line is skipped when `header` is given and `has_header`. Anything suspicious goes
    to the exact slow pass, which raises the DataError."""
    file = name or path
    skip = 1 if header is not None and has_header else 0
    sep = ord(separator) if separator and len(separator) == 1 else None
    q = ord(quote) if quote else None
    n_fields = len(header) if header is not None else None
    blanks: list[np.ndarray] = []
    line_parts: list[np.ndarray | tuple[int, int]] = []
    n_records = n_lines = 0
    multiline = False
    quote_bytes = quote.encode() if quote else None
    for block, final in _blocks(path, skip, quote):
        if block is None or not _is_utf8(block):
            return _slow_scan(path, header, separator, quote, file, skip)
        arr = np.frombuffer(block, dtype=np.uint8)
        newline = arr == 10
        outside = None
        if quote_bytes is not None and block.find(quote_bytes) >= 0:
            outside = (np.cumsum(arr == q, dtype=np.uint8) & 1) == 0
            if not outside[-1]:  # a quote left open at the end of the file
                return _slow_scan(path, header, separator, quote, file, skip)
            record_nl = np.flatnonzero(newline & outside)
        else:
            record_nl = np.flatnonzero(newline)
        ends = record_nl
        if final and len(arr) and (not len(ends) or ends[-1] != len(arr) - 1):
            ends = np.append(ends, len(arr))
        if not len(ends):
            continue
        starts = np.empty(len(ends), dtype=np.int64)
        starts[0] = 0
        starts[1:] = record_nl[: len(ends) - 1] + 1
        lengths = ends - starts
        is_blank = (lengths == 0) | ((lengths == 1) & (arr[np.minimum(starts, len(arr) - 1)] == 13))
        if header is None:  # JSONL: Polars skips whitespace-only lines too
            is_blank |= _whitespace_only(arr, starts, ends)
        if n_fields is not None and sep is not None:
            seps = arr == sep
            if outside is not None:
                seps &= outside
            # each segment [start_i, start_i+1) is one record and its newline: never empty
            fields = np.add.reduceat(seps, starts, dtype=np.int32) + 1
            if ((fields != n_fields) & ~is_blank).any():
                return _slow_scan(path, header, separator, quote, file, skip)
        if is_blank.any():
            blanks.append(np.flatnonzero(is_blank) + n_records)
        if outside is not None and int(newline.sum()) != len(record_nl):
            multiline = True
            line_parts.append(np.searchsorted(np.flatnonzero(newline), starts) + n_lines)
            n_lines += int(newline.sum())
        else:
            line_parts.append((n_lines, len(ends)))  # one line per record
            n_lines += len(record_nl)
        n_records += len(ends)
    blank = np.concatenate(blanks).astype(np.int64) if blanks else np.zeros(0, dtype=np.int64)
    lines = None
    if multiline:
        lines = np.concatenate(
            [p if isinstance(p, np.ndarray) else np.arange(p[0], p[0] + p[1]) for p in line_parts]
        ).astype(np.int64)
    return TextScan(n_records, blank, lines)


def _is_utf8(block: bytes) -> bool:
    if block.isascii():
        return True
    try:
        block.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _whitespace_only(arr: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    space = (arr == 32) | (arr == 9) | (arr == 13)
    pos = np.flatnonzero(~space)
    return (np.searchsorted(pos, ends) - np.searchsorted(pos, starts)) == 0


def _blocks(
    path: Path | bytes, skip_lines: int, quote: str | None
) -> Iterator[tuple[bytes | None, bool]]:
    """(block, is_final) pairs of whole records after `skip_lines` lines; a None block means a
    quoted field ran on for too long to be sane (the slow pass takes over)."""
    if isinstance(path, bytes):
        data = path.split(b"\n", 1)[1] if skip_lines and b"\n" in path else path
        yield (b"" if skip_lines and b"\n" not in path else data), True
        return
    q = quote.encode() if quote else None
    with open(path, "rb") as f:
        carry = b""
        if skip_lines:
            while b"\n" not in carry:
                chunk = f.read(1 << 16)
                if not chunk:
                    break
                carry += chunk
            carry = carry.split(b"\n", 1)[1] if b"\n" in carry else b""
        while True:
            chunk = f.read(_CHUNK)
            buf = carry + chunk
            if not chunk:
                yield buf, True
                return
            cut = buf.rfind(b"\n") + 1
            block, carry = buf[:cut], buf[cut:]
            # the quote-parity trick needs whole records: with an odd number of quotes the
            # block ends inside a quoted field, so it carries on into the next read
            if cut == 0 or (q is not None and block.count(q) % 2):
                carry = buf
                if len(carry) > 8 * _CHUNK:
                    yield None, False
                    return
                continue
            yield block, False


def _slow_scan(
    path: Path | bytes,
    header: list[str] | None,
    separator: str | None,
    quote: str | None,
    file: str | Path,
    skip: int,
    stray_quotes: bool = False,
) -> TextScan:
    """Exact streaming pass with the csv module (line by line for JSONL); raises the first
    problem (non-UTF-8 text, a ragged row, malformed quoting) with its line and column. With
    `stray_quotes`, a quote character inside an unquoted field is a problem too (the csv
    module takes it literally, Polars does not)."""
    raw = io.BytesIO(path) if isinstance(path, bytes) else open(path, "rb")  # noqa: SIM115
    newline = "" if header is not None else "\n"
    with io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape", newline=newline) as f:
        if header is None or separator is None:
            return _slow_scan_lines(f, skip, file)
        consumed: list[str] = []  # the physical lines of the record being parsed

        def feed():
            for line in f:
                consumed.append(line)
                yield line

        reader = csv.reader(feed(), delimiter=separator, **_quoting(quote))
        blank: list[int] = []
        record_lines: list[int] = []
        try:
            if skip:
                next(reader, None)
            header_lines = prev = reader.line_num
            for rec, row in enumerate(reader):
                start, prev = prev, reader.line_num
                text = "".join(consumed)
                consumed.clear()
                record_lines.append(start - header_lines)
                lineno = start + 1
                if not row:
                    blank.append(rec)
                    continue
                _check_utf8(file, lineno, separator.join(row), row, header)
                if len(row) != len(header):
                    col = header[len(row)] if len(row) < len(header) else f"field {len(header) + 1}"
                    raise DataError(
                        file,
                        f"ragged row: {len(row)} fields, but the header has {len(header)} "
                        f"({', '.join(header)})",
                        line=lineno,
                        column=col,
                    )
                if stray_quotes and quote:
                    _check_stray_quote(file, lineno, text, row, header, quote)
        except csv.Error as e:
            raise DataError(file, f"malformed CSV ({e})", line=prev + 1) from None
    lines = np.asarray(record_lines, dtype=np.int64)
    identity = np.array_equal(lines, np.arange(len(lines)))
    return TextScan(len(lines), np.asarray(blank, dtype=np.int64), None if identity else lines)


def _check_stray_quote(
    file: str | Path, lineno: int, text: str, row: list[str], header: list[str], quote: str
) -> None:
    # a quoted field shows its quotes doubled in the raw text, so a value holding a single
    # quote that appears verbatim in the raw text was not quoted
    for name, value in zip(header, row, strict=True):
        if quote in value and value in text and quote * 2 not in value:
            raise DataError(
                file,
                f"a quote character ({quote}) inside an unquoted field: {value!r}; quote the "
                f"whole field and double the quote ({quote}{value.replace(quote, quote * 2)}{quote})",
                line=lineno,
                column=name,
            )


def _slow_scan_lines(f: io.TextIOWrapper, skip: int, file: str | Path) -> TextScan:
    blank: list[int] = []
    n = 0
    for lineno, line in enumerate(f, start=1):
        if lineno <= skip:
            continue
        if not line.strip():
            blank.append(n)
        else:
            _check_utf8(file, lineno, line, None, None)
        n += 1
    return TextScan(n, np.asarray(blank, dtype=np.int64), None)


def _check_utf8(
    file: str | Path, lineno: int, line: str, row: list[str] | None, header: list[str] | None
) -> None:
    if line.isascii():
        return
    try:
        line.encode("utf-8")
        return
    except UnicodeEncodeError:
        pass
    column = None
    if row is not None and header is not None:
        for name, value in zip(header, row, strict=False):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                column = name
                break
    else:
        column = _json_bad_key(line)
    bad = next(c for c in line if "\udc80" <= c <= "\udcff")
    byte = ord(bad) - 0xDC00
    raise DataError(
        file,
        f"not valid UTF-8 (byte 0x{byte:02x}); re-encode the file as UTF-8",
        line=lineno,
        column=column,
    )


def _json_bad_key(line: str) -> str | None:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    if isinstance(record, dict):
        for key, value in record.items():
            try:
                f"{key}{value}".encode()
            except UnicodeEncodeError:
                return key
    return None


def _jsonl_columns(path: Path) -> list[str]:
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            record = _parse_json_line(path, lineno, raw)
            names = list(record)
            try:
                inferred = pl.scan_ndjson(path, infer_schema_length=100).collect_schema().names()
            except pl.exceptions.PolarsError:
                inferred = []
            return names + [c for c in inferred if c not in names]
    if path.stat().st_size == 0:
        raise DataError(path, "the file is empty (0 bytes)")
    raise DataError(path, "the file is empty (only blank lines)")


def _parse_json_line(path: Path, lineno: int, raw: bytes) -> dict:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        _check_utf8(path, lineno, raw.decode("utf-8", "surrogateescape"), None, None)
        raise
    try:
        record = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(
            path, f"invalid JSON ({e.msg} at character {e.pos + 1})", line=lineno
        ) from None
    if not isinstance(record, dict):
        raise DataError(path, f"expected a JSON object, got {type(record).__name__}", line=lineno)
    return record


def _jsonl_failure(path: Path, columns: list[str], e: Exception) -> DataError:
    """Find the line Polars choked on: invalid JSON, a non-object, or a nested value where a
    scalar column is expected."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            record = _parse_json_line(path, lineno, raw)
            for col in columns:
                value = record.get(col)
                if isinstance(value, dict | list):
                    return DataError(
                        path,
                        f"expected a single value, got a JSON {type(value).__name__}",
                        line=lineno,
                        column=col,
                    )
    return DataError(path, f"cannot read the JSONL file ({_first(e)})")


def _first(e: Exception) -> str:
    return str(e).strip().split("\n", 1)[0]
