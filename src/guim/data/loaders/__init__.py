"""Loaders: each turns one input format into a `RawData` of canonical frames for `prepare`.

`load_raw(path)` detects the format from the files (see `detect_format`) and dispatches.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import polars as pl

from guim.data.raw import RawData
from guim.data.schema import DataError
from guim.errors import UserError

FORMATS = ("generic", "s3rec", "recbole", "grouplens", "merrec")
GENERIC_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".pq", ".jsonl", ".ndjson")
GROUPLENS_RATINGS = ("u.data", "ratings.dat")
MERREC_MARKERS = ("user_id", "item_id", "stime", "event_id")
_S3REC_LINE = re.compile(rb"^\s*\d+(\s+\d+)+\s*$")


def detect_format(path: str | Path) -> str:
    """The input format of a file or directory, one of FORMATS.

    s3rec: a .txt with `<name>_item2attributes.json` beside it, or whose lines are integers;
    recbole: an .inter file or a directory holding one; grouplens: u.data / ratings.dat (or a
    directory holding one); merrec: Parquet (a file or a directory) with MerRec's user_id,
    item_id, stime and event_id columns; generic: any other CSV/TSV/Parquet/JSONL.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(path, "file or directory not found")
    if path.is_dir():
        return _detect_dir(path)
    name, suffix = path.name, path.suffix.lower()
    if suffix == ".inter":
        return "recbole"
    if name in GROUPLENS_RATINGS:
        return "grouplens"
    if suffix == ".txt" and _looks_s3rec(path):
        return "s3rec"
    if suffix in (".parquet", ".pq") and _is_merrec(path):
        return "merrec"
    if suffix in GENERIC_SUFFIXES:
        return "generic"
    raise DataError(
        path,
        f"cannot tell the format of {name!r}; expected one of {', '.join(GENERIC_SUFFIXES)}, "
        "an S3-Rec .txt, a RecBole .inter, or a GroupLens/MerRec directory",
    )


def _detect_dir(path: Path) -> str:
    if any(path.glob("*.inter")):
        return "recbole"
    if any((path / f).exists() for f in GROUPLENS_RATINGS):
        return "grouplens"
    base = path / "events" if (path / "events").is_dir() else path
    shards = sorted(
        f for f in base.rglob("*") if f.suffix.lower() in (".parquet", ".pq") and f.is_file()
    )
    if shards:
        return "merrec" if _is_merrec(shards[0]) else "generic"
    raise DataError(
        path,
        "cannot tell the format of this directory: it holds no .inter, u.data, ratings.dat "
        "or Parquet files",
    )


def _looks_s3rec(path: Path) -> bool:
    if path.with_name(f"{path.stem}_item2attributes.json").exists():
        return True
    with open(path, "rb") as f:
        lines = [line for line in (f.readline() for _ in range(5)) if line.strip()]
    return bool(lines) and all(_S3REC_LINE.match(line) for line in lines)


def _is_merrec(path: Path) -> bool:
    try:
        names = pl.read_parquet_schema(path)
    except Exception:  # not readable: let the generic loader report it
        return False
    return all(c in names for c in MERREC_MARKERS)


# The options a loader takes, with the CLI flag that sets each one; a default value (None, or
# "s" for time_unit) means "not given".
OPTION_FLAGS = {
    "mapping": "--map",
    "items": "--items",
    "item_mapping": "--item-map",
    "users": "--users",
    "user_mapping": "--user-map",
    "separator": "--separator",
    "time_unit": "--time-unit",
}
LOADER_OPTIONS = {
    "generic": set(OPTION_FLAGS),
    "s3rec": {"attributes"},
    "recbole": {"time_unit"},
    "grouplens": set(),
    "merrec": {"time_unit"},
}
# why an option means nothing for a format, for the refusal
_NOT_APPLICABLE = {
    "s3rec": "S3-Rec files are whitespace-separated user sequences without times",
    "recbole": "RecBole atomic files are tab-separated with typed headers",
    "grouplens": "GroupLens files have a fixed layout, with times in seconds",
    "merrec": "MerRec data is Parquet with fixed column names",
}
TIME_UNITS = ("s", "ms", "us", "ns")


def load_raw(path: str | Path, format: str = "auto", **options: Any) -> RawData:
    """Read `path` with the loader of `format` ("auto" detects it); `options` go to the loader
    (for generic: mapping, items, users, separator, time_unit, ...).

    An option a format has no use for is refused (UserError naming its flag) unless it has its
    default value; time_unit must be one of TIME_UNITS."""
    if format != "auto" and format not in FORMATS:
        raise UserError(f"unknown format {format!r}; expected 'auto' or one of {FORMATS}")
    time_unit = options.get("time_unit")
    if time_unit is not None and time_unit not in TIME_UNITS:
        raise UserError(
            f"--time-unit must be one of {', '.join(TIME_UNITS)} (the unit of numeric "
            f"timestamps), got {time_unit!r}"
        )
    if format == "auto":
        format = detect_format(path)
    given = {k: v for k, v in options.items() if not _is_default(k, v)}
    for key in given:
        if key not in LOADER_OPTIONS[format]:
            flag = OPTION_FLAGS.get(key, key)
            raise UserError(
                f"{flag} does not apply to {path} (read as {format}: "
                f"{_NOT_APPLICABLE.get(format, 'the option is not used')})"
            )
    if format == "generic":
        from guim.data.loaders.generic import load_events

        return load_events(path, **options)
    if format == "s3rec":
        from guim.data.loaders.s3rec import load_s3rec

        return load_s3rec(path, **given)
    if format == "recbole":
        from guim.data.loaders.recbole import load_recbole

        return load_recbole(path, **given)
    if format == "grouplens":
        from guim.data.loaders.grouplens import load_grouplens

        return load_grouplens(path, **given)
    from guim.data.loaders.merrec import load_merrec

    return load_merrec(path, **given)


def _is_default(key: str, value: Any) -> bool:
    return value is None or (key == "time_unit" and value == "s") or value == {}
