"""The MerRec loader: shards (flat, nested, listed), the item table, truth files, bad input; and a
tiny synthetic shop through load_merrec -> prepare -> Dataset."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from guim.data.dataset import Dataset
from guim.data.loaders.merrec import MERREC_COLUMNS, load_merrec
from guim.data.prepare import prepare
from guim.data.raw import ROW
from guim.data.schema import EVENT_CODE, DataError
from guim.data.synthetic import SynthConfig, synth


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Path:
    return synth(
        tmp_path_factory.mktemp("merrec") / "shop", SynthConfig.tiny(), show_progress=False
    )


@pytest.fixture(scope="module")
def shards(shop) -> list[Path]:
    files = sorted((shop / "events").glob("*.parquet"))
    assert len(files) >= 3
    return files


@pytest.fixture(scope="module")
def all_rows(shards) -> pl.DataFrame:
    return pl.concat([pl.read_parquet(f) for f in shards])


def test_events_and_locator(shop, shards, all_rows):
    raw = load_merrec(shop)
    events = raw.events.collect()
    assert events.columns == [
        "user_id",
        "item_id",
        "timestamp",
        "event",
        "session_id",
        "price",
        ROW,
    ]
    assert events.height == all_rows.height
    assert events[ROW].to_list() == list(range(all_rows.height))
    expected_ts = all_rows["stime"].dt.epoch("s")
    assert (events["timestamp"] == expected_ts).all()
    assert events["event"].to_list() == all_rows["event_id"].to_list()
    assert raw.format == "merrec" and raw.files == [str(f) for f in shards]
    loc = raw.events_locator
    assert not loc.is_text
    sizes = [pl.read_parquet(f).height for f in shards]
    assert list(loc.row_starts) == list(np.cumsum([0, *sizes[:-1]]))
    # the last row of the second shard is reported as that file's last 1-based row
    assert loc.locate(sum(sizes[:2]) - 1) == (str(shards[1]), sizes[1])
    assert sorted(p.name for p in raw.truth_files) == [
        "categories.parquet",
        "items.parquet",
        "users.parquet",
    ]


def test_item_table_is_first_occurrence(shop, all_rows):
    items = load_merrec(shop / "events").items
    assert items is not None
    frame = items.frame
    assert frame["item_id"].is_unique().all()
    assert set(frame["item_id"]) == set(all_rows["item_id"])
    first = all_rows.with_row_index(ROW).unique("item_id", keep="first", maintain_order=True)
    joined = frame.join(first, on="item_id", suffix="_raw")
    assert (joined[ROW] == joined[f"{ROW}_raw"].cast(pl.UInt64)).all()
    assert (joined["title"] == joined["name"]).all()
    assert (joined["c2"] == joined["c2_name"]).all()
    assert (joined["shop"] == joined["shipper_id"].cast(pl.String)).all()
    # no brand name -> no brand (the id is null too), never the string "null"
    assert (
        joined.filter(pl.col("brand_name").is_null())["brand"].null_count()
        == joined["brand_name"].null_count()
    )
    assert {
        "c0",
        "c1",
        "c2",
        "brand",
        "shop",
        "condition",
        "color",
        "size",
        "title",
        "price",
    } <= set(frame.columns)


def test_nested_monthly_folders_and_file_lists(tmp_path, shards):
    for i, f in enumerate(shards):
        month = tmp_path / "merrec" / f"2023{5 + i // 2:02d}01"
        month.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, month / f"{i:03d}.parquet")
    nested = load_merrec(tmp_path / "merrec")
    listed = load_merrec(shards)
    flat = load_merrec(shards[0].parent)
    n = sum(pl.read_parquet(f).height for f in shards)
    for raw in (nested, listed, flat):
        assert raw.events.select(pl.len()).collect().item() == n
    assert len(nested.files) == len(shards)
    assert nested.truth_files == []  # no truth/ beside an events/ folder here
    assert listed.truth_files and flat.truth_files


def test_through_prepare_to_dataset(tmp_path, shop, all_rows):
    ds = Dataset(prepare(load_merrec(shop), tmp_path / "ds", show_progress=False))
    assert ds.n_users == all_rows["user_id"].n_unique()
    assert ds.n_items == all_rows["item_id"].n_unique()
    assert ds.stats["n_raw_events"] == all_rows.height
    # funnel events on the viewed item collapse into one interaction per visit
    assert ds.stats["n_interactions"] < all_rows.height
    assert ds.stats["has_event_types"] and ds.stats["has_sessions"] and ds.stats["has_titles"]
    assert set(ds.stats["attribute_fields"]) == {
        "brand",
        "c0",
        "c1",
        "c2",
        "color",
        "condition",
        "shop",
        "size",
    }
    n_purchases = all_rows.filter(pl.col("event_id") == "buy_comp").height
    assert 0 < int((ds.events["event"] == EVENT_CODE["purchase"]).sum()) <= n_purchases
    assert sorted(p.name for p in (ds.path / "truth").iterdir()) == [
        "categories.parquet",
        "items.parquet",
        "users.parquet",
    ]
    split = ds.stats["splits"]["loo"]
    per_user = ds.events.group_by("user_idx").len()["len"]
    assert split["test"] == split["valid"] == int((per_user >= 3).sum()) > 0
    # a raw item id round-trips through the vocabulary with its attributes
    item = ds.items.filter(pl.col("item_idx") == 1).row(0, named=True)
    raw_item = all_rows.filter(pl.col("item_id") == int(item["item_id"])).row(0, named=True)
    assert item["title"] == raw_item["name"] and item["c2"] == raw_item["c2_name"]


def test_integer_stime_is_accepted(tmp_path, shards):
    frame = pl.read_parquet(shards[0]).with_columns(pl.col("stime").dt.epoch("s"))
    frame.write_parquet(tmp_path / "part.parquet")
    events = load_merrec(tmp_path / "part.parquet").events.collect()
    assert events["timestamp"].dtype == pl.Int64
    assert (events["timestamp"] == frame["stime"]).all()


def test_missing_column_names_file_and_column(tmp_path, shards):
    pl.read_parquet(shards[0]).drop("stime").write_parquet(tmp_path / "bad.parquet")
    with pytest.raises(DataError) as err:
        load_merrec(tmp_path / "bad.parquet")
    assert err.value.file == str(tmp_path / "bad.parquet") and err.value.column == "stime"
    assert "missing MerRec column 'stime'" in str(err.value)


def test_later_shard_missing_a_column(tmp_path, shards):
    d = tmp_path / "events"
    d.mkdir()
    shutil.copy(shards[0], d / "a.parquet")
    pl.read_parquet(shards[1]).drop("brand_name").write_parquet(d / "b.parquet")
    with pytest.raises(DataError) as err:
        load_merrec(d)
    assert err.value.file == str(d / "b.parquet") and err.value.column == "brand_name"


def test_bad_value_is_reported_at_its_file_and_row(tmp_path, shards):
    d = tmp_path / "events"
    d.mkdir()
    shutil.copy(shards[0], d / "a.parquet")
    second = pl.read_parquet(shards[1])
    events = second["event_id"].to_list()
    events[4] = "teleport"
    second.with_columns(pl.Series("event_id", events)).write_parquet(d / "b.parquet")
    with pytest.raises(DataError) as err:
        prepare(load_merrec(d), tmp_path / "ds", show_progress=False)
    assert (err.value.file, err.value.row, err.value.column) == (str(d / "b.parquet"), 5, "event")
    assert "teleport" in str(err.value)
    assert not (tmp_path / "ds").exists()


def test_not_found_and_empty_directory(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_merrec(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no \.parquet files"):
        load_merrec(tmp_path / "empty")


def test_columns_constant_matches_merrec():
    assert len(MERREC_COLUMNS) == 22 and MERREC_COLUMNS[:6] == (
        "user_id",
        "sequence_id",
        "session_id",
        "sequence_length",
        "stime",
        "event_id",
    )


def test_prepare_fast_paths_match_slow_references():
    """The lookup-table/bitmap/packed-sort paths that make MerRec-scale prepare fast give exactly
    what the hash-join/rank/multi-column-sort formulations give."""
    from guim.data import prepare as p

    rng = np.random.default_rng(0)
    n = 3000
    session = pl.Series("session_id", rng.integers(5, 900, n) * 7).set(
        pl.Series(rng.random(n) < 0.1), None
    )
    reference = pl.select(
        pl.when(session.is_null()).then(0).otherwise(session.rank("dense")).cast(pl.Int32)
    ).to_series()
    assert p._dense_rank(session).to_list() == reference.to_list()
    ids = pl.Series("item_id", rng.integers(10, 5000, n) * 3)
    assert p._sorted_unique(ids).to_list() == ids.unique().sort().to_list()

    events = pl.DataFrame(
        {
            "user_id": rng.integers(100, 160, n),
            "item_id": ids,
            "timestamp": rng.integers(0, 40, n),
            "event": rng.integers(2, 8, n).astype(np.int8),
            "session_idx": reference,
            ROW: np.arange(n, dtype=np.uint64),
        }
    )
    mapped = events
    for key, idx in (("user_id", "user_idx"), ("item_id", "item_idx")):
        vocab = pl.DataFrame({key: p._sorted_unique(events[key])}).with_row_index(idx, offset=1)
        vocab = vocab.with_columns(pl.col(idx).cast(pl.Int32))
        fast = p._attach_index(mapped, vocab, key, idx)
        assert fast.equals(mapped.join(vocab, on=key, how="left", maintain_order="left"))
        mapped = fast
    fast = p._sort_and_collapse(mapped, collapse=True)
    shuffled = mapped.sample(fraction=1.0, shuffle=True, seed=1)  # ROW out of order: slow path
    assert p._user_time_order(shuffled) is None
    slow = p._sort_and_collapse(shuffled, collapse=True)
    for key in fast:
        assert np.array_equal(fast[key], slow[key]), key

    tags = [list(rng.choice(["a", "b", "c", "d"], rng.integers(0, 4))) for _ in range(50)]
    items = pl.DataFrame(
        {"item_id": np.arange(50), "c0": [f"x{i % 7}" for i in range(50)], "tags": tags}
    )
    item_vocab = pl.DataFrame({"item_id": np.arange(50)}).with_row_index("item_idx", offset=1)
    item_vocab = item_vocab.with_columns(pl.col("item_idx").cast(pl.Int32))
    attrs, item_attr = p._attributes(items, item_vocab)
    long = pl.concat(
        [
            items.select(
                pl.col("item_id") + 1, pl.lit("c0").alias("field"), pl.col("c0").alias("v")
            ),
            items.select(
                pl.col("item_id") + 1, pl.lit("tags").alias("field"), pl.col("tags").alias("v")
            )
            .explode("v")
            .drop_nulls(),
        ]
    ).unique()
    assert attrs.select("field", "value").rows() == sorted(set(long.select("field", "v").rows()))
    code = {(f, v): a for a, f, v in attrs.rows()}
    expected = {i: sorted(code[(f, v)] for j, f, v in long.rows() if j == i) for i in range(1, 51)}
    got = dict(item_attr.rows())
    assert got == {i: a for i, a in expected.items() if a}
    for col in (item_attr["attr_idx"], item_attr["item_idx"], attrs["value"]):
        assert p._list_repr(col) == str(col.to_list()).encode()
