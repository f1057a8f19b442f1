"""RecBole atomic files (Zhao et al., CIKM 2021): `<name>.inter` (+ `.item`, `.user`), read and written.

Tab-separated text whose header declares `name:type` (token, token_seq, float, float_seq).
`write_recbole` turns a prepared dataset back into atomic files, so RecBole can run as a peer on
exactly the interactions guim trains on; `load_recbole` reads them back to the same dataset.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import polars as pl

from guim.data.dataset import Dataset
from guim.data.loaders.generic import (
    convert_time_unit,
    csv_header,
    harmonise_ids,
    missing_column,
    normalise_ids,
    scan_text,
    split_list,
    to_float,
)
from guim.data.raw import ROW, Locator, RawData, Table
from guim.data.schema import (
    EVENT,
    EVENT_TYPES,
    ITEM_ID,
    ITEM_TEXT,
    PRICE,
    SESSION_ID,
    TIMESTAMP,
    USER_ID,
    DataError,
)
from guim.errors import UserError
from guim.io import atomic_file

TYPES = ("token", "token_seq", "float", "float_seq")
SEQ_SEPARATOR = " "  # RecBole's default `seq_separator`
_TITLE = re.compile(r"(^|_)title$", re.IGNORECASE)


def find_atomic_files(path: str | Path) -> tuple[Path, Path | None, Path | None]:
    """(`<name>.inter`, `<name>.item` or None, `<name>.user` or None) from a directory or an
    .inter path."""
    path = Path(path)
    if path.is_dir():
        inters = sorted(path.glob("*.inter"))
        if len(inters) != 1:
            found = ", ".join(p.name for p in inters) or "none"
            raise DataError(
                path, f"expected exactly one .inter file in the directory, found {found}"
            )
        path = inters[0]
    if not path.exists():
        raise DataError(path, "file not found")
    if path.suffix != ".inter":
        raise DataError(path, "expected a RecBole .inter file (or a directory holding one)")
    item, user = path.with_suffix(".item"), path.with_suffix(".user")
    return path, item if item.exists() else None, user if user.exists() else None


def read_atomic(path: Path) -> tuple[pl.DataFrame, dict[str, str], Locator]:
    """One atomic file: columns under their bare names (floats as Float64, token_seq as
    lists of tokens, tokens as text), the declared types, and a locator."""
    header = csv_header(path, "\t", None, check_duplicates=False)
    types: dict[str, str] = {}
    for field in header:
        name, colon, kind = field.rpartition(":")
        if not colon or not name:
            raise DataError(
                path,
                f"header field {field!r} has no type; RecBole headers are name:type "
                f"with a type in {', '.join(TYPES)}",
                line=1,
                column=field,
            )
        if kind not in TYPES:
            raise DataError(
                path,
                f"unknown type {kind!r}; expected one of {', '.join(TYPES)}",
                line=1,
                column=name,
            )
        if name in types:
            raise DataError(path, f"duplicate column {name!r} in the header", line=1, column=name)
        types[name] = kind
    scan = scan_text(path, list(types), "\t", None)
    if scan.n_records == len(scan.blank):
        raise DataError(path, "the file has a header but no data rows")
    try:
        frame = pl.scan_csv(
            path,
            separator="\t",
            quote_char=None,
            infer_schema=False,
            new_columns=list(types),
            row_index_name=ROW,
            glob=False,
        ).collect(engine="streaming")
    except pl.exceptions.PolarsError as e:  # the byte scan passed; this should not happen
        raise DataError(path, f"cannot read the file ({str(e).splitlines()[0]})") from None
    frame = scan.apply_rows(frame.with_columns(pl.col(ROW).cast(pl.UInt64)), False)
    locator = Locator(files=(str(path),), header_lines=1)
    for name, kind in types.items():
        if kind == "float":
            frame = to_float(frame, name, locator)
        elif kind == "token_seq":
            frame = frame.with_columns(split_list(pl.col(name), SEQ_SEPARATOR))
        elif kind == "float_seq":
            frame = frame.with_columns(
                split_list(pl.col(name), SEQ_SEPARATOR).cast(pl.List(pl.Float64), strict=False)
            )
    return frame, types, locator


def load_recbole(path: str | Path, time_unit: str = "s") -> RawData:
    """Read `<name>.inter` and, when present beside it, `<name>.item` and `<name>.user`.

    Items: a `title` (or `*_title`) column becomes the title text, `price` the price, other
    token columns categorical attributes, token_seq columns multi-valued attributes (e.g.
    ml-100k's `class` genres); other float columns are left out. User columns are kept as
    user attributes. Without a timestamp column, the line order is the time;
    `time_unit` ("s", "ms", "us", "ns") is the unit of the timestamp column.
    """
    inter, item, user = find_atomic_files(path)
    frame, types, locator = read_atomic(inter)
    for col in (USER_ID, ITEM_ID):
        if col not in types:
            raise missing_column(inter, list(types), col, " (a required column)")
    has_time = TIMESTAMP in types
    if has_time and types[TIMESTAMP] not in ("float", "token"):
        raise DataError(inter, "timestamp must be a float column", line=1, column=TIMESTAMP)
    keep = [ROW, USER_ID, ITEM_ID] + [c for c in (TIMESTAMP, EVENT, SESSION_ID) if c in types]
    events = frame.select(keep)
    if not has_time:
        if time_unit != "s":
            raise DataError(
                inter, f"--time-unit {time_unit} given, but the file has no timestamp column"
            )
        events = events.with_columns(pl.col(ROW).cast(pl.Int64).alias(TIMESTAMP))
    elif time_unit != "s":
        events = convert_time_unit(events, time_unit, locator)
    events = normalise_ids(events, [USER_ID, ITEM_ID, SESSION_ID])
    files = [str(inter)]
    items = users = None
    if item is not None:
        items = _item_table(item)
        files.append(str(item))
    if user is not None:
        users = _user_table(user)
        files.append(str(user))
    events, items, users = harmonise_ids(events, items, users)
    return RawData(
        events=events.lazy(),
        events_locator=locator,
        items=items,
        users=users,
        format="recbole",
        files=files,
        timestamps_are_positions=not has_time,
    )


def _item_table(path: Path) -> Table:
    frame, types, locator = read_atomic(path)
    if ITEM_ID not in types:
        raise missing_column(path, list(types), ITEM_ID, " (a required column)")
    title = _title_column(types)
    columns: list[pl.Expr] = [pl.col(ROW), pl.col(ITEM_ID)]
    for name, kind in types.items():
        if name == ITEM_ID:
            continue
        if name == title:
            text = pl.col(name).list.join(SEQ_SEPARATOR) if kind == "token_seq" else pl.col(name)
            columns.append(text.alias(ITEM_TEXT))
        elif (name == PRICE and kind == "float") or (
            kind in ("token", "token_seq") and name not in (ITEM_TEXT, PRICE)
        ):
            columns.append(pl.col(name))
    frame = normalise_ids(frame.select(columns), [ITEM_ID])
    return Table(frame, locator)


def _title_column(types: dict[str, str]) -> str | None:
    if ITEM_TEXT in types:
        return ITEM_TEXT
    for name, kind in types.items():
        if kind in ("token", "token_seq") and _TITLE.search(name):
            return name
    return None


def _user_table(path: Path) -> Table:
    frame, types, locator = read_atomic(path)
    if USER_ID not in types:
        raise missing_column(path, list(types), USER_ID, " (a required column)")
    return Table(normalise_ids(frame, [USER_ID]), locator)


# ---- writing -----------------------------------------------------------------------------------


def write_recbole(dataset_dir: str | Path, out_dir: str | Path, name: str) -> Path:
    """Write a prepared dataset as RecBole atomic files `out_dir/<name>.{inter,item[,user]}`.

    `.inter` holds every interaction in the dataset's order (by user, then time), so RecBole's
    stable time ordering reproduces guim's leave-one-out split; event and session columns are
    added when the dataset has them. Item attributes go to `.item`,
    one column per field: `token` when every item has at most one value (exact, spaces kept),
    `token_seq` otherwise (whitespace inside a value becomes "_", since RecBole splits on spaces).
    Returns `out_dir`.
    """
    ds = Dataset(dataset_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ids = {
        "user": ds.users.select("user_idx", USER_ID),
        "item": ds.items.select("item_idx", ITEM_ID),
    }
    for what, frame in ids.items():
        _check_tokens(frame[f"{what}_id"], f"{what} id")
    events = ds.events.select("user_idx", "item_idx", TIMESTAMP, EVENT, "session_idx")
    inter = events.join(ids["user"], on="user_idx", how="left", maintain_order="left").join(
        ids["item"], on="item_idx", how="left", maintain_order="left"
    )
    header = [f"{USER_ID}:token", f"{ITEM_ID}:token", f"{TIMESTAMP}:float"]
    columns = [pl.col(USER_ID), pl.col(ITEM_ID), pl.col(TIMESTAMP)]
    if ds.stats.get("has_event_types"):
        header.append(f"{EVENT}:token")
        names = dict(enumerate(EVENT_TYPES))
        columns.append(pl.col(EVENT).cast(pl.Int64).replace_strict(names, return_dtype=pl.String))
    if ds.stats.get("has_sessions"):
        header.append(f"{SESSION_ID}:token")
        columns.append(pl.when(pl.col("session_idx") > 0).then(pl.col("session_idx")))
    _write(out_dir / f"{name}.inter", header, inter.select(columns))
    item_header, item_frame = _item_columns(ds)
    _write(out_dir / f"{name}.item", item_header, item_frame)
    user_header, user_frame = _user_columns(ds)
    if len(user_header) > 1:
        _write(out_dir / f"{name}.user", user_header, user_frame)
    return out_dir


def _item_columns(ds: Dataset) -> tuple[list[str], pl.DataFrame]:
    items = ds.items.sort("item_idx")
    header, columns = [f"{ITEM_ID}:token"], [items[ITEM_ID]]
    if items[ITEM_TEXT].null_count() < items.height:
        header.append(f"{ITEM_TEXT}:token_seq")
        columns.append(items[ITEM_TEXT].str.replace_all(r"\s+", " ").str.strip_chars())
    if items[PRICE].null_count() < items.height:
        header.append(f"{PRICE}:float")
        columns.append(items[PRICE])
    # long form (item_idx, field, value), then one column per field in field order
    long = (
        items.select("item_idx", "attr_idx")
        .explode("attr_idx")
        .drop_nulls()
        .join(ds.attributes, on="attr_idx")
        .sort("item_idx", "attr_idx")
    )
    base = items.select("item_idx")
    for field in sorted(set(long["field"].to_list())):
        _check_field(field)
        values = long.filter(pl.col("field") == field)
        multi = values.group_by("item_idx").len()["len"].max() > 1
        if multi:
            values = values.with_columns(pl.col("value").str.replace_all(r"\s+", "_"))
        _check_tokens(values["value"], f"value of attribute {field!r}")
        per_item = values.group_by("item_idx", maintain_order=True).agg(
            pl.col("value").str.join(SEQ_SEPARATOR)
        )
        col = base.join(per_item, on="item_idx", how="left", maintain_order="left")["value"]
        header.append(f"{field}:{'token_seq' if multi else 'token'}")
        columns.append(col.alias(field))
    return header, pl.DataFrame([c.alias(f"c{i}") for i, c in enumerate(columns)])


def _user_columns(ds: Dataset) -> tuple[list[str], pl.DataFrame]:
    users = ds.users.sort("user_idx")
    header, columns = [f"{USER_ID}:token"], [users[USER_ID]]
    for col in users.columns:
        if col in ("user_idx", USER_ID):
            continue
        _check_field(col)
        values = users[col]
        if values.dtype.is_numeric():
            header.append(f"{col}:float")
        elif isinstance(values.dtype, pl.List):
            header.append(f"{col}:token_seq")
            values = values.cast(pl.List(pl.String)).list.eval(
                pl.element().str.replace_all(r"\s+", "_")
            )
            values = values.list.join(SEQ_SEPARATOR)
        else:
            header.append(f"{col}:token")
            values = values.cast(pl.String)
            _check_tokens(values, f"user attribute {col!r}")
        columns.append(values)
    return header, pl.DataFrame([c.alias(f"c{i}") for i, c in enumerate(columns)])


def _check_tokens(values: pl.Series, what: str) -> None:
    bad = values.cast(pl.String).str.contains(r"[\t\n\r]").fill_null(False).to_numpy()
    if np.any(bad):
        value = values[int(np.flatnonzero(bad)[0])]
        raise UserError(f"{what} {value!r} contains a tab or newline; RecBole cannot store it")


def _check_field(name: str) -> None:
    if re.search(r"[\s:]", name):
        raise UserError(f"column name {name!r} contains ':' or whitespace; RecBole cannot store it")


def _write(path: Path, header: list[str], frame: pl.DataFrame) -> None:
    with atomic_file(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write("\t".join(header) + "\n")
        with open(tmp, "a", encoding="utf-8", newline="\n") as f:
            frame.write_csv(f, separator="\t", include_header=False, quote_style="never")
