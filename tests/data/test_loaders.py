"""Loaders on tiny handwritten files (exact output through prepare + Dataset), format detection,
the RecBole round trip, and the real datasets' published counts."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from conftest import shared_dataset

from guim.data.dataset import Dataset
from guim.data.loaders import FORMATS, detect_format, load_raw
from guim.data.loaders.generic import load_events
from guim.data.loaders.grouplens import GENRES_100K, load_grouplens
from guim.data.loaders.recbole import load_recbole, read_atomic, write_recbole
from guim.data.prepare import PrepareConfig, prepare
from guim.data.schema import EVENT_CODE

NO_COLD = PrepareConfig(cold_fraction=0.0)
V, P, C = EVENT_CODE["view"], EVENT_CODE["purchase"], EVENT_CODE["add_to_cart"]


def _prepare(raw, out: Path, config: PrepareConfig = NO_COLD) -> Dataset:
    return Dataset(prepare(raw, out, config, show_progress=False))


# ---- one small shop, written in every generic format -------------------------------------------

# (user, item, timestamp, event, session); u2's two events on item 9 collapse into a purchase
EVENTS = [
    ("u2", 10, 100, "view", "s1"),
    ("u1", 3, 50, "view", "s2"),
    ("u1", 9, 60, "purchase", "s2"),
    ("u2", 3, 90, "click", "s1"),
    ("u1", 3, 70, "add_to_cart", None),
    ("u2", 9, 110, "view", "s3"),
    ("u2", 9, 120, "purchase", "s3"),
]
ITEMS = [
    (3, "Soap, lavender", 2.5, ["bath", "care"], "Acme Corp"),
    (9, "Shampoo", 4.0, ["care"], None),
    (10, "Towel\nXL", 7.25, ["bath"], "Acme Corp"),
    (11, "Brush", 1.0, [], "Brushy"),
]
USERS = [("u1", "24", "01040"), ("u2", "53", "94043")]


def _write_csv(tmp: Path) -> dict:
    """Events under other column names (mapped), a blank line; items with a quoted comma, a
    quoted newline and a "|"-separated list."""
    lines = ["uid,iid,ts,action,sess"]
    for u, i, t, e, s in EVENTS:
        lines.append(f"{u},{i},{t},{e},{s or ''}")
    lines.insert(3, "")
    (tmp / "events.csv").write_text("\n".join(lines) + "\n")
    items = ["item_id,title,price,genres,brand"]
    for i, title, price, genres, brand in ITEMS:
        items.append(f'{i},"{title}",{price:g},{"|".join(genres)},{brand or ""}')
    (tmp / "items.csv").write_text("\n".join(items) + "\n")
    users = ["user_id,age,zip"] + [",".join(u) for u in USERS]
    (tmp / "users.csv").write_text("\n".join(users) + "\n")
    return {
        "path": tmp / "events.csv",
        "mapping": {
            "user_id": "uid",
            "item_id": "iid",
            "timestamp": "ts",
            "event": "action",
            "session_id": "sess",
        },
        "items": tmp / "items.csv",
        "item_mapping": {"genres": "genres[|]"},
        "users": tmp / "users.csv",
    }


def _frames(ms: bool = False) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    scale = 1000 if ms else 1
    events = pl.DataFrame(
        [(u, i, t * scale + (999 if ms else 0), e, s) for u, i, t, e, s in EVENTS],
        schema=["user_id", "item_id", "timestamp", "event", "session_id"],
        orient="row",
    )
    items = pl.DataFrame(
        ITEMS,
        schema={
            "item_id": pl.Int64,
            "title": pl.String,
            "price": pl.Float64,
            "genres": pl.List(pl.String),
            "brand": pl.String,
        },
        orient="row",
    )
    users = pl.DataFrame(USERS, schema=["user_id", "age", "zip"], orient="row")
    return events, items, users


def _write_jsonl(tmp: Path, ms: bool = False) -> dict:
    events, items, users = _frames(ms)
    for name, frame in (("events", events), ("items", items), ("users", users)):
        rows = [json.dumps(r) for r in frame.to_dicts()]
        if name == "events":
            rows.insert(2, "   ")  # Polars skips blank lines; the line numbers must not shift
        (tmp / f"{name}.jsonl").write_text("\n".join(rows) + "\n")
    return {
        "path": tmp / "events.jsonl",
        "items": tmp / "items.jsonl",
        "users": tmp / "users.jsonl",
    }


def _write_parquet(tmp: Path, shards: int = 1) -> dict:
    events, items, users = _frames()
    folder = tmp / "events"
    folder.mkdir()
    cut = [0, 3, len(events)] if shards == 2 else [0, len(events)]
    for k in range(len(cut) - 1):
        events.slice(cut[k], cut[k + 1] - cut[k]).write_parquet(folder / f"part-{k}.parquet")
    items.write_parquet(tmp / "items.parquet")
    users.write_parquet(tmp / "users.parquet")
    path = folder if shards == 2 else folder / "part-0.parquet"
    return {"path": path, "items": tmp / "items.parquet", "users": tmp / "users.parquet"}


def _check_shop(ds: Dataset) -> None:
    ev = ds.events
    assert ev["user_idx"].to_list() == [1, 1, 1, 2, 2, 2]
    # items 3, 9, 10 (and 11 from the table) sort numerically: 1, 2, 3, 4
    assert ev["item_idx"].to_list() == [1, 2, 1, 1, 3, 2]
    assert ev["timestamp"].to_list() == [50, 60, 70, 90, 100, 110]
    assert ev["event"].to_list() == [V, P, C, V, V, P]
    assert ev["split"].to_list() == [0, 1, 2, 0, 1, 2]
    sess = ev["session_idx"].to_list()
    assert sess[2] == 0 and sess[0] == sess[1] > 0 and sess[3] == sess[4] != sess[5] > 0
    items = ds.items.sort("item_idx")
    assert items["item_id"].to_list() == ["3", "9", "10", "11"]
    assert items["title"].to_list() == ["Soap, lavender", "Shampoo", "Towel\nXL", "Brush"]
    assert items["price"].to_list() == [2.5, 4.0, 7.25, 1.0]
    attrs = ds.attributes
    assert list(zip(attrs["field"], attrs["value"], strict=True)) == [
        ("brand", "Acme Corp"),
        ("brand", "Brushy"),
        ("genres", "bath"),
        ("genres", "care"),
    ]
    assert items["attr_idx"].to_list() == [[1, 3, 4], [4], [1, 3], [2]]
    users = ds.users.sort("user_idx")
    assert users["user_id"].to_list() == ["u1", "u2"]
    assert users["age"].cast(pl.String).to_list() == ["24", "53"]
    assert users["zip"].to_list() == ["01040", "94043"]  # leading zero kept
    assert ds.stats["n_raw_events"] == 7 and ds.stats["n_interactions"] == 6


def test_generic_csv_exact(tmp_path):
    raw = load_events(**_write_csv(tmp_path))
    assert raw.events_locator.header_lines == 1
    _check_shop(_prepare(raw, tmp_path / "out"))


def test_generic_jsonl_and_parquet_match_csv(tmp_path):
    datasets = []
    for name, write in (("csv", _write_csv), ("jsonl", _write_jsonl), ("pq", _write_parquet)):
        (tmp_path / name).mkdir()
        ds = _prepare(load_events(**write(tmp_path / name)), tmp_path / name / "out")
        _check_shop(ds)
        datasets.append(ds)
    assert len({ds.hash for ds in datasets}) == 1


def test_generic_parquet_directory_of_shards(tmp_path):
    raw = load_events(**_write_parquet(tmp_path, shards=2))
    assert [Path(f).name for f in raw.events_locator.files] == ["part-0.parquet", "part-1.parquet"]
    assert raw.events_locator.row_starts == (0, 3)
    assert not raw.events_locator.is_text
    _check_shop(_prepare(raw, tmp_path / "out"))


def test_generic_milliseconds(tmp_path):
    raw = load_events(**_write_jsonl(tmp_path, ms=True), time_unit="ms")
    _check_shop(_prepare(raw, tmp_path / "out"))  # 50_999 ms -> 50 s


def test_generic_string_ids_keep_leading_zeros(tmp_path):
    (tmp_path / "e.tsv").write_text("user_id\titem_id\ttimestamp\n1\t007\t1\n1\t7\t2\n2\t10\t3\n")
    ds = _prepare(load_events(tmp_path / "e.tsv"), tmp_path / "out")
    # "007" is not a canonical integer, so item ids stay text and sort as text
    assert ds.items.sort("item_idx")["item_id"].to_list() == ["007", "10", "7"]
    # user ids are canonical integers: numbers
    assert ds.users.sort("user_idx")["user_id"].to_list() == ["1", "2"]
    assert ds.events["item_idx"].to_list() == [1, 3, 2]


def test_generic_events_and_items_with_different_id_types(tmp_path):
    """Events hold canonical integers, the item table also "007": both are compared as text,
    so "7" and "007" stay two items (cast to numbers they would collide)."""
    (tmp_path / "e.csv").write_text("user_id,item_id,timestamp\n1,7,1\n1,8,2\n")
    (tmp_path / "i.csv").write_text("item_id,brand\n007,a\n7,b\n8,c\n")
    ds = _prepare(load_events(tmp_path / "e.csv", items=tmp_path / "i.csv"), tmp_path / "out")
    assert ds.items.sort("item_idx")["item_id"].to_list() == ["007", "7", "8"]
    assert ds.events["item_idx"].to_list() == [2, 3]
    assert ds.stats["n_interactions"] == 2


def test_generic_sniffed_separator_and_iso_dates(tmp_path):
    (tmp_path / "e.txt").write_text(
        "user_id;item_id;timestamp\n"
        "a;x;2024-01-01T00:00:10\n"
        "a;y;2024-01-01 00:00:05\n"
        "b;x;1704067200\n"
    )
    raw = load_raw(tmp_path / "e.txt")
    assert raw.format == "generic"
    ds = _prepare(raw, tmp_path / "out")
    assert ds.events["timestamp"].to_list() == [1704067205, 1704067210, 1704067200]
    assert ds.events["item_idx"].to_list() == [2, 1, 1]


def test_generic_blank_line_and_quoted_newline_keep_line_numbers(tmp_path):
    """After a blank line and a record spanning two lines, __row still maps to the physical
    line, so prepare's errors point at the right place."""
    (tmp_path / "e.csv").write_text(
        'user_id,item_id,timestamp,note\n1,2,3,"two\nlines"\n\n1,3,4,x\n1,4,oops,y\n'
    )
    raw = load_events(tmp_path / "e.csv")
    rows = raw.events.collect()["__row"].to_list()
    assert [raw.events_locator.locate(r)[1] for r in rows] == [2, 5, 6]


# ---- S3-Rec --------------------------------------------------------------------------------------


def test_s3rec_through_load_raw(tmp_path):
    (tmp_path / "Toy.txt").write_text("1 3 5 7\n2 5 3\n")
    (tmp_path / "Toy_item2attributes.json").write_text('{"3": [1, 2], "5": [2], "7": []}')
    assert detect_format(tmp_path / "Toy.txt") == "s3rec"
    ds = _prepare(load_raw(tmp_path / "Toy.txt"), tmp_path / "out")
    assert ds.events["item_idx"].to_list() == [1, 2, 3, 2, 1]
    assert ds.events["timestamp"].to_list() == [0, 1, 2, 0, 1]
    assert ds.stats["timestamps_are_positions"]
    assert ds.items.sort("item_idx")["attr_idx"].to_list() == [[1, 2], [2], []]


# ---- RecBole ---------------------------------------------------------------------------------------


def _write_recbole_files(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "toy.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "1\t10\t4\t300\n2\t10\t3\t100\n1\t20\t5\t200\n2\t30\t1\t150.7\n1\t30\t2\t400\n"
    )
    (folder / "toy.item").write_text(
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\tavg:float\n"
        "10\tToy Story\t1995\tAnimation Comedy\t3.5\n"
        "20\tHeat\t1995\tAction\t2\n"
        "30\tUp\t\tAnimation\t1\n"
    )
    (folder / "toy.user").write_text("user_id:token\tage:token\tgender:token\n1\t24\tM\n2\t53\tF\n")


def test_recbole_exact(tmp_path):
    _write_recbole_files(tmp_path / "toy")
    assert detect_format(tmp_path / "toy") == "recbole"
    assert detect_format(tmp_path / "toy" / "toy.inter") == "recbole"
    raw = load_raw(tmp_path / "toy")
    assert raw.format == "recbole" and len(raw.files) == 3
    ds = _prepare(raw, tmp_path / "out")
    assert ds.events["user_idx"].to_list() == [1, 1, 1, 2, 2]
    assert ds.events["item_idx"].to_list() == [2, 1, 3, 1, 3]
    assert ds.events["timestamp"].to_list() == [200, 300, 400, 100, 150]
    items = ds.items.sort("item_idx")
    assert items["title"].to_list() == ["Toy Story", "Heat", "Up"]
    attrs = ds.attributes
    assert list(zip(attrs["field"], attrs["value"], strict=True)) == [
        ("class", "Action"),
        ("class", "Animation"),
        ("class", "Comedy"),
        ("release_year", "1995"),
    ]  # the float column avg is not an attribute
    assert items["attr_idx"].to_list() == [[2, 3, 4], [1, 4], [2]]
    users = ds.users.sort("user_idx")
    assert users.select("age", "gender").rows() == [("24", "M"), ("53", "F")]


def test_recbole_without_timestamp_uses_line_order(tmp_path):
    (tmp_path / "x.inter").write_text("user_id:token\titem_id:token\n1\tb\n1\ta\n2\ta\n")
    raw = load_recbole(tmp_path / "x.inter")
    assert raw.timestamps_are_positions
    ds = _prepare(raw, tmp_path / "out")
    assert ds.events["item_idx"].to_list() == [2, 1, 1]


def test_recbole_round_trip_exact(tmp_path):
    """prepare -> write_recbole -> load_recbole -> prepare is the same dataset (same hash)."""
    a = _prepare(load_events(**_write_csv(tmp_path)), tmp_path / "a", PrepareConfig())
    write_recbole(a.path, tmp_path / "rb", "shop")
    inter = (tmp_path / "rb" / "shop.inter").read_text().splitlines()
    assert inter[0] == (
        "user_id:token\titem_id:token\ttimestamp:float\tevent:token\tsession_id:token"
    )
    assert inter[1:4] == [
        "u1\t3\t50\tview\t2",
        "u1\t9\t60\tpurchase\t2",
        "u1\t3\t70\tadd_to_cart\t",
    ]
    item = (tmp_path / "rb" / "shop.item").read_text().splitlines()
    assert item[0] == ("item_id:token\ttitle:token_seq\tprice:float\tbrand:token\tgenres:token_seq")
    assert item[1] == "3\tSoap, lavender\t2.5\tAcme Corp\tbath care"
    assert item[3] == "10\tTowel XL\t7.25\tAcme Corp\tbath"  # newline in the title: a space
    b = _prepare(load_recbole(tmp_path / "rb"), tmp_path / "b", PrepareConfig())
    assert b.hash == a.hash
    assert b.events.equals(a.events)
    assert b.items.select("item_id", "attr_idx", "price").equals(
        a.items.select("item_id", "attr_idx", "price")
    )
    assert b.users.select("user_id", "zip").equals(a.users.select("user_id", "zip"))


def test_recbole_multi_valued_values_with_spaces(tmp_path):
    (tmp_path / "e.csv").write_text("user_id,item_id,timestamp\n1,1,1\n1,2,2\n")
    (tmp_path / "i.csv").write_text("item_id,tags\n1,hip hop|rock\n2,rock\n")
    a = _prepare(
        load_events(tmp_path / "e.csv", items=tmp_path / "i.csv", item_mapping={"tags": "tags[|]"}),
        tmp_path / "a",
    )
    write_recbole(a.path, tmp_path / "rb", "t")
    assert (tmp_path / "rb" / "t.item").read_text().splitlines()[1] == "1\thip_hop rock"
    b = _prepare(load_recbole(tmp_path / "rb"), tmp_path / "b")
    assert b.attributes["value"].to_list() == ["hip_hop", "rock"]


# ---- GroupLens -------------------------------------------------------------------------------------


def _flags(*names: str) -> str:
    return "|".join("1" if g in names else "0" for g in GENRES_100K)


def test_grouplens_100k_exact(tmp_path):
    (tmp_path / "u.data").write_text("2\t1\t3\t881250949\n1\t2\t5\t881250950\n1\t1\t4\t881250940\n")
    (tmp_path / "u.item").write_bytes(
        (
            f"1|Toy Story (1995)|01-Jan-1995||http://x|{_flags('Animation', 'Comedy')}\n"
            f"2|Misérables, Les (1995)|01-Jan-1995||http://y|{_flags('Drama', 'Musical')}\n"
            f"3|unknown||||{_flags('unknown')}\n"
        ).encode("latin-1")
    )
    (tmp_path / "u.user").write_text("1|24|M|technician|85711\n2|53|F|other|01040\n")
    assert detect_format(tmp_path) == detect_format(tmp_path / "u.data") == "grouplens"
    ds = _prepare(load_raw(tmp_path), tmp_path / "out")
    assert ds.events["user_idx"].to_list() == [1, 1, 2]
    assert ds.events["item_idx"].to_list() == [1, 2, 1]
    assert ds.events["timestamp"].to_list() == [881250940, 881250950, 881250949]
    items = ds.items.sort("item_idx")
    assert items["title"].to_list() == ["Toy Story", "Misérables, Les", "unknown"]
    assert items["release_year"].to_list() == ["1995", "1995", None]
    assert items["genres"].to_list() == [["Animation", "Comedy"], ["Drama", "Musical"], ["unknown"]]
    users = ds.users.sort("user_idx")
    assert users.select("age", "gender", "occupation", "zip_code").rows() == [
        ("24", "M", "technician", "85711"),
        ("53", "F", "other", "01040"),
    ]


def test_grouplens_1m_exact(tmp_path):
    (tmp_path / "ratings.dat").write_text(
        "1::20::5::978300760\n1::10::3::978302109\n2::20::4::978301968\n"
    )
    (tmp_path / "movies.dat").write_bytes(
        "10::GoldenEye (1995)::Action|Adventure|Thriller\n20::Café au lait (1993)::Comedy\n".encode(
            "latin-1"
        )
    )
    (tmp_path / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n")
    raw = load_grouplens(tmp_path / "ratings.dat")
    assert raw.format == "grouplens"
    ds = _prepare(raw, tmp_path / "out")
    assert ds.events["item_idx"].to_list() == [2, 1, 2]
    assert ds.events["timestamp"].to_list() == [978300760, 978302109, 978301968]
    items = ds.items.sort("item_idx")
    assert items["title"].to_list() == ["GoldenEye", "Café au lait"]
    assert items["release_year"].to_list() == ["1995", "1993"]
    assert items["genres"].to_list() == [["Action", "Adventure", "Thriller"], ["Comedy"]]
    assert ds.users.sort("user_idx").select("gender", "age", "occupation").rows() == [
        ("F", "1", "10"),
        ("M", "56", "16"),
    ]


def _grouplens_from_recbole(src: Path, out: Path) -> None:
    """u.data / u.item / u.user rebuilt from RecBole's ml-100k files, as GroupLens ships them."""
    out.mkdir()
    inter, _, _ = read_atomic(src / "ml-100k.inter")
    inter.select(
        "user_id", "item_id", pl.col("rating").cast(pl.Int64), pl.col("timestamp").cast(pl.Int64)
    ).write_csv(out / "u.data", separator="\t", include_header=False)
    items, _, _ = read_atomic(src / "ml-100k.item")
    lines = []
    for r in items.iter_rows(named=True):
        title, year = " ".join(r["movie_title"]), r["release_year"]
        date = f"01-Jan-{year}" if year and year.isdigit() else ""
        title = f"{title} ({year})" if date else title
        lines.append(f"{r['item_id']}|{title}|{date}||http://x|{_flags(*(r['class'] or []))}")
    (out / "u.item").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    users, _, _ = read_atomic(src / "ml-100k.user")
    users.drop("__row").write_csv(out / "u.user", separator="|", include_header=False)


def test_grouplens_and_recbole_ml100k_agree(tmp_path):
    src = shared_dataset("ml-100k")
    _grouplens_from_recbole(src, tmp_path / "gl")
    a = _prepare(load_grouplens(tmp_path / "gl"), tmp_path / "a", PrepareConfig())
    b = _prepare(load_recbole(src), tmp_path / "b", PrepareConfig())
    assert (a.n_users, a.n_items, a.stats["n_interactions"]) == (943, 1682, 100_000)
    assert a.events.equals(b.events)
    assert a.items["item_id"].equals(b.items["item_id"])
    assert a.users.select("user_id", "age", "occupation").equals(
        b.users.select("user_id", "age", "occupation")
    )
    genres_a = a.items.sort("item_idx")["genres"].list.sort().to_list()
    genres_b = b.items.sort("item_idx")["class"].list.sort().to_list()
    assert genres_a == genres_b


# ---- format detection -------------------------------------------------------------------------------


def test_detect_format(tmp_path):
    (tmp_path / "a.csv").write_text("user_id,item_id,timestamp\n1,2,3\n")
    (tmp_path / "nums.txt").write_text("1 2 3\n2 3 4 5\n")
    (tmp_path / "words.txt").write_text("user_id\titem_id\ttimestamp\n1\t2\t3\n")
    (tmp_path / "a.jsonl").write_text('{"user_id": 1}\n')
    pl.DataFrame({"user_id": [1], "item_id": [2], "timestamp": [3]}).write_parquet(
        tmp_path / "g.parquet"
    )
    merrec = tmp_path / "merrec"
    merrec.mkdir()
    pl.DataFrame(
        {"user_id": [1], "stime": [3], "event_id": ["item_view"], "item_id": [2]}
    ).write_parquet(merrec / "000.parquet")
    generic_dir = tmp_path / "gdir"
    generic_dir.mkdir()
    pl.DataFrame({"user_id": [1], "item_id": [2], "timestamp": [3]}).write_parquet(
        generic_dir / "p.parquet"
    )
    expected = {
        "a.csv": "generic",
        "nums.txt": "s3rec",
        "words.txt": "generic",
        "a.jsonl": "generic",
        "g.parquet": "generic",
        "merrec": "merrec",
        "merrec/000.parquet": "merrec",
        "gdir": "generic",
    }
    assert {name: detect_format(tmp_path / name) for name in expected} == expected
    assert set(expected.values()) <= set(FORMATS)


def test_load_raw_unknown_format(tmp_path):
    (tmp_path / "a.csv").write_text("user_id,item_id,timestamp\n1,2,3\n")
    with pytest.raises(ValueError, match="unknown format 'xml'"):
        load_raw(tmp_path / "a.csv", format="xml")


def test_load_raw_passes_options(tmp_path):
    (tmp_path / "a.csv").write_text("u,i,t\n1,2,3000\n")
    raw = load_raw(
        tmp_path / "a.csv",
        mapping={"user_id": "u", "item_id": "i", "timestamp": "t"},
        time_unit="ms",
    )
    assert raw.events.collect()["timestamp"].to_list() == [3]


# ---- the real datasets ------------------------------------------------------------------------------


def test_ml100k_recbole_counts(tmp_path):
    raw = load_raw(shared_dataset("ml-100k"))
    ds = _prepare(raw, tmp_path / "ml", PrepareConfig())
    assert (ds.n_users, ds.n_items, ds.stats["n_interactions"]) == (943, 1682, 100_000)
    assert ds.stats["attribute_fields"] == ["class", "release_year"]
    assert ds.stats["user_fields"] == ["age", "gender", "occupation", "zip_code"]
    assert ds.stats["has_titles"]
    toy = ds.items.filter(pl.col("item_id") == "1").row(0, named=True)
    assert toy["title"] == "Toy Story" and toy["release_year"] == "1995"


def test_ml100k_recbole_round_trip(tmp_path):
    a = _prepare(load_raw(shared_dataset("ml-100k")), tmp_path / "a", PrepareConfig())
    write_recbole(a.path, tmp_path / "rb", "ml-100k")
    b = _prepare(load_recbole(tmp_path / "rb"), tmp_path / "b", PrepareConfig())
    assert b.hash == a.hash
    assert b.users.equals(a.users)


def test_beauty_counts(beauty_dataset):
    ds = beauty_dataset
    assert (ds.n_users, ds.n_items, ds.stats["n_interactions"]) == (22_363, 12_101, 198_502)


def test_lastfm_counts_and_recbole_round_trip(tmp_path):
    a = _prepare(load_raw(shared_dataset("s3rec", "LastFM.txt")), tmp_path / "a", PrepareConfig())
    assert (a.n_users, a.n_items, a.stats["n_interactions"]) == (1_090, 3_646, 52_551)
    write_recbole(a.path, tmp_path / "rb", "lastfm")
    b = _prepare(load_recbole(tmp_path / "rb"), tmp_path / "b", PrepareConfig())
    assert b.hash == a.hash
