"""The original GroupLens MovieLens files (Harper & Konstan, 2015): ml-100k and ml-1m.

ml-100k: `u.data` (tab: user item rating timestamp), `u.item` (|, latin-1: id, title with the
year, dates, URL, 19 genre flags), `u.user` (|: id age gender occupation zip). ml-1m:
`ratings.dat`, `movies.dat` (latin-1), `users.dat`, "::"-separated. Ratings are kept as
interactions; the year moves from the title into `release_year`, the genres into `genres`.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import polars as pl

from guim.data.loaders.generic import harmonise_ids, normalise_ids, scan_text, split_list
from guim.data.raw import ROW, Locator, RawData, Table
from guim.data.schema import ITEM_ID, ITEM_TEXT, TIMESTAMP, USER_ID, DataError

GENRES_100K = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
VARIANTS = {"ml-100k": "u.data", "ml-1m": "ratings.dat"}
_YEAR = re.compile(r"^(?P<title>.*?)\s*\((?P<year>\d{4})\)\s*$")
_FIELD = "\x1f"  # stands in for "::", which Polars cannot split on


def detect_variant(path: str | Path) -> str:
    """ "ml-100k" or "ml-1m", from the ratings file present in the directory."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    for variant, ratings in VARIANTS.items():
        if (folder / ratings).exists():
            return variant
    raise DataError(folder, "no GroupLens ratings file (u.data or ratings.dat) found")


def load_grouplens(path: str | Path) -> RawData:
    """Read an ml-100k or ml-1m directory (or its ratings file)."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    variant = detect_variant(folder)
    if variant == "ml-100k":
        names = {"ratings": "u.data", "items": "u.item", "users": "u.user"}
        sep, encoding = "\t", "utf-8"
    else:
        names = {"ratings": "ratings.dat", "items": "movies.dat", "users": "users.dat"}
        sep, encoding = "::", "latin-1"
    ratings = folder / names["ratings"]
    events = _read(ratings, [USER_ID, ITEM_ID, "rating", TIMESTAMP], sep, encoding)
    events = normalise_ids(events.select(ROW, USER_ID, ITEM_ID, TIMESTAMP), [USER_ID, ITEM_ID])
    files = [str(ratings)]
    items = users = None
    item_file, user_file = folder / names["items"], folder / names["users"]
    if item_file.exists():
        items = _items_100k(item_file) if variant == "ml-100k" else _items_1m(item_file)
        files.append(str(item_file))
    if user_file.exists():
        columns = (
            [USER_ID, "age", "gender", "occupation", "zip_code"]
            if variant == "ml-100k"
            else [USER_ID, "gender", "age", "occupation", "zip_code"]
        )
        frame = _read(user_file, columns, "|" if variant == "ml-100k" else "::", "latin-1")
        users = Table(normalise_ids(frame, [USER_ID]), _locator(user_file))
        files.append(str(user_file))
    events, items, users = harmonise_ids(events, items, users)
    return RawData(
        events=events.lazy(),
        events_locator=_locator(ratings),
        items=items,
        users=users,
        format="grouplens",
        files=files,
    )


def _locator(path: Path) -> Locator:
    return Locator(files=(str(path),), header_lines=0)


def _read(path: Path, columns: list[str], sep: str, encoding: str) -> pl.DataFrame:
    """A headerless delimited file as text columns plus `__row`, checked line by line."""
    data = path.read_bytes()
    if not data.strip():
        raise DataError(path, "the file is empty")
    if encoding != "utf-8":
        data = data.decode(encoding).encode("utf-8")
    if len(sep) > 1:
        data = data.replace(sep.encode(), _FIELD.encode())
        sep = _FIELD
    scan = scan_text(data, columns, sep, None, name=path, has_header=False)
    frame = pl.read_csv(
        io.BytesIO(data),
        has_header=False,
        new_columns=columns,
        separator=sep,
        quote_char=None,
        infer_schema=False,
        row_index_name=ROW,
    ).with_columns(pl.col(ROW).cast(pl.UInt64))
    return scan.apply_rows(frame, polars_skips_blank=False)


def _split_title(frame: pl.DataFrame, dates: pl.Expr | None = None) -> pl.DataFrame:
    """Move a trailing "(1995)" from the title into release_year (else the release date's year)."""
    parts = pl.col(ITEM_TEXT).str.strip_chars().str.extract_groups(_YEAR.pattern)
    year = parts.struct.field("year")
    if dates is not None:
        year = year.fill_null(dates.str.extract(r"(\d{4})\s*$"))
    return frame.with_columns(
        parts.struct.field("title").fill_null(pl.col(ITEM_TEXT).str.strip_chars()).alias(ITEM_TEXT),
        year.alias("release_year"),
    )


def _items_100k(path: Path) -> Table:
    genre_file = path.with_name("u.genre")
    genres = GENRES_100K
    if genre_file.exists():
        lines = genre_file.read_text(encoding="latin-1").splitlines()
        genres = tuple(line.split("|")[0] for line in lines if line.strip())
    flags = [f"g{i}" for i in range(len(genres))]
    columns = [ITEM_ID, ITEM_TEXT, "release_date", "video_release_date", "url", *flags]
    frame = _read(path, columns, "|", "latin-1")
    is_flag = pl.all_horizontal(pl.col(flags).fill_null("0").is_in(["0", "1"]))
    bad = frame[ROW].filter(~frame.select(is_flag).to_series())
    if len(bad):
        row = frame.filter(pl.col(ROW) == bad[0]).row(0, named=True)
        col = next(f for f in flags if row[f] not in ("0", "1", None))
        raise _locator(path).error(
            int(bad[0]),
            f"genre flag must be 0 or 1, got {row[col]!r}",
            column=f"{genres[flags.index(col)]} (field {len(columns) - len(flags) + flags.index(col) + 1})",
        )
    genre_list = pl.concat_list(
        [pl.when(pl.col(f) == "1").then(pl.lit(g)) for f, g in zip(flags, genres, strict=True)]
    ).list.drop_nulls()
    frame = frame.with_columns(genre_list.alias("genres"))
    frame = _split_title(frame, pl.col("release_date"))
    frame = frame.select(ROW, ITEM_ID, ITEM_TEXT, "release_year", "genres")
    return Table(normalise_ids(frame, [ITEM_ID]), _locator(path))


def _items_1m(path: Path) -> Table:
    frame = _read(path, [ITEM_ID, ITEM_TEXT, "genres"], "::", "latin-1")
    frame = _split_title(frame).with_columns(split_list(pl.col("genres"), "|"))
    frame = frame.select(ROW, ITEM_ID, ITEM_TEXT, "release_year", "genres")
    return Table(normalise_ids(frame, [ITEM_ID]), _locator(path))
