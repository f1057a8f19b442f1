"""MerRec (Mercari C2C, arXiv 2402.14230): Parquet shards of denormalised events, read lazily.

Events become user_id, item_id, timestamp (from stime), event (from event_id), session_id, price;
the item columns repeated on every event become an item table (one row per item_id, its first
event). The synthetic shop (`guim.data.synthetic`) writes this layout plus a `truth/` folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from guim.data.loaders.generic import TIME_UNITS
from guim.data.raw import ROW, Locator, RawData, Table
from guim.data.schema import (
    EVENT,
    ITEM_ID,
    ITEM_TEXT,
    PRICE,
    SESSION_ID,
    TIMESTAMP,
    USER_ID,
    DataError,
)

# MerRec's columns, in MerRec's order.
MERREC_COLUMNS = (
    "user_id",
    "sequence_id",
    "session_id",
    "sequence_length",
    "stime",
    "event_id",
    "item_id",
    "product_id",
    "name",
    "price",
    "c0_id",
    "c1_id",
    "c2_id",
    "c0_name",
    "c1_name",
    "c2_name",
    "brand_id",
    "brand_name",
    "item_condition_id",
    "size_id",
    "shipper_id",
    "color",
)
# MerRec event_id values in funnel order (guim.data.schema maps them onto canonical events).
MERREC_EVENTS = (
    "item_view",
    "item_like",
    "item_add_to_cart_tap",
    "offer_make",
    "buy_start",
    "buy_comp",
)
# Columns without which a file is not a MerRec event log.
REQUIRED_COLUMNS = ("user_id", "item_id", "stime", "event_id")

# Item attribute field <- MerRec columns, first non-null wins (names before ids). MerRec has no
# seller column; `shipper_id` (who pays shipping in MerRec, the seller in the synthetic shop) is
# the one seller-side attribute, so it becomes `shop`. `product_id` is left out: in MerRec it
# nearly identifies the listing, so as an attribute it would double the id vocabulary.
ITEM_FIELDS: dict[str, tuple[str, ...]] = {
    "c0": ("c0_name", "c0_id"),
    "c1": ("c1_name", "c1_id"),
    "c2": ("c2_name", "c2_id"),
    "brand": ("brand_name", "brand_id"),
    "shop": ("shipper_id",),
    "condition": ("item_condition_id",),
    "color": ("color",),
    "size": ("size_id",),
}


def find_files(path: str | Path | Sequence[str | Path]) -> tuple[list[Path], list[Path]]:
    """(event shards, truth files) from a directory, a file or a list of files.

    A directory is searched recursively (MerRec's monthly folders); a directory holding `events/`
    (the synthetic shop) reads that. Truth files come from a `truth/` folder beside `events/`.
    """
    if isinstance(path, str | Path):
        root = Path(path)
        if not root.exists():
            raise DataError(root, "file or directory not found")
        if root.is_dir():
            base = root / "events" if (root / "events").is_dir() else root
            files = sorted(
                f
                for f in base.rglob("*")
                if f.suffix.lower() in (".parquet", ".pq")
                and f.is_file()
                and not any(p.startswith(".") or p == "truth" for p in f.relative_to(base).parts)
            )
            if not files:
                raise DataError(root, "no .parquet files found in this directory")
            events_dir = base
        else:
            files, events_dir = [root], root.parent
    else:
        files = [Path(f) for f in path]
        if not files:
            raise DataError(None, "no MerRec files given")
        for f in files:
            if not f.is_file():
                raise DataError(f, "file not found")
        events_dir = files[0].parent
    truth_dir = events_dir.parent / "truth"
    is_shop = events_dir.name == "events" and truth_dir.is_dir()
    return files, sorted(truth_dir.glob("*.parquet")) if is_shop else []


def _check_schemas(files: list[Path]) -> tuple[dict[str, pl.DataType], list[int]]:
    """The first file's MerRec columns and types, after checking that every file has the required
    columns and those of the first; also each file's row count (from the Parquet footers)."""
    counts, first_names = [], None
    for f in files:
        try:
            meta = pq.read_metadata(f)
        except (OSError, pa.ArrowException) as e:
            raise DataError(f, f"cannot read as Parquet ({e})") from None
        names = set(meta.schema.names)
        missing = [c for c in (first_names or REQUIRED_COLUMNS) if c not in names]
        if missing:
            what = "MerRec column" if first_names is None else "column present in the first file"
            raise DataError(f, f"missing {what} '{missing[0]}'", column=missing[0])
        first_names = first_names or [c for c in MERREC_COLUMNS if c in names]
        counts.append(meta.num_rows)
    schema = pl.read_parquet_schema(files[0])
    return {c: schema[c] for c in first_names or ()}, counts


def load_merrec(path: str | Path | Sequence[str | Path], time_unit: str = "s") -> RawData:
    """Read MerRec Parquet shards (a directory, possibly nested, a file, or a list of files);
    `time_unit` ("s", "ms", "us", "ns") is the unit of a numeric `stime`."""
    files, truth = find_files(path)
    schema, counts = _check_schemas(files)
    starts = [0]
    for n in counts[:-1]:
        starts.append(starts[-1] + n)
    locator = Locator(
        files=tuple(str(f) for f in files), row_starts=tuple(starts), header_lines=0, is_text=False
    )
    scan = pl.scan_parquet(files, row_index_name=ROW, extra_columns="ignore").with_columns(
        pl.col(ROW).cast(pl.UInt64)
    )

    stime = pl.col("stime")
    if schema["stime"] == pl.Datetime or schema["stime"] == pl.Date:
        stime = stime.cast(pl.Datetime("us")) if schema["stime"] == pl.Date else stime
        stime = stime.dt.epoch("s")
    if time_unit != "s":
        dtype = schema["stime"]
        if not dtype.is_numeric():
            raise DataError(
                files[0],
                f"--time-unit {time_unit} applies to numeric timestamps; stime holds {dtype} "
                "values (leave --time-unit out)",
                column="stime",
            )
        div = TIME_UNITS[time_unit]
        stime = stime // div if dtype.is_integer() else (stime / div).floor().cast(pl.Int64)
    event_cols = [
        pl.col(USER_ID),
        pl.col(ITEM_ID),
        stime.alias(TIMESTAMP),
        pl.col("event_id").alias(EVENT),
        *([pl.col(SESSION_ID)] if SESSION_ID in schema else []),
        *([pl.col(PRICE)] if PRICE in schema else []),
        pl.col(ROW),
    ]
    events = scan.select(event_cols)

    # first event of each item: its row from the ids alone (arg_unique: first index of each
    # value, in order), then only those rows are kept from the item columns
    ids = scan.select(ITEM_ID).collect(engine="streaming")[ITEM_ID]
    first_rows = ids.arg_unique()
    first_rows = first_rows.filter(ids.gather(first_rows).is_not_null())
    del ids
    sources = [c for c in ("name", PRICE, *sum(ITEM_FIELDS.values(), ())) if c in schema]
    first = (
        scan.filter(pl.col(ROW).is_in(first_rows.implode()))
        .select(ITEM_ID, ROW, *sources)
        .collect(engine="streaming")
        .sort(ROW)
    )
    item_cols = [pl.col(ITEM_ID), pl.col(ROW)]
    if "name" in schema:
        item_cols.append(pl.col("name").cast(pl.String).alias(ITEM_TEXT))
    if PRICE in schema:
        item_cols.append(pl.col(PRICE).cast(pl.Float64))
    for field, columns in ITEM_FIELDS.items():
        present = [pl.col(c).cast(pl.String) for c in columns if c in schema]
        if present:
            item_cols.append(pl.coalesce(present).alias(field))
    items = first.select(item_cols).rechunk()  # one chunk: later joins on it are 4x faster
    return RawData(
        events=events,
        events_locator=locator,
        items=Table(items, locator),
        format="merrec",
        files=[str(f) for f in files],
        truth_files=truth,
    )
