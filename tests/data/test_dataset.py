"""Dataset directory, splits and sequences: exact contents on a hand-made log, and no leaks."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from guim.data.dataset import Dataset, Sequences
from guim.data.prepare import PrepareConfig, prepare
from guim.data.raw import ROW, Locator, RawData, Table
from guim.data.schema import EVENT_CODE


def _raw(rows: list[tuple], items: list[tuple] | None = None) -> RawData:
    """rows: (user_id, item_id, timestamp[, event])."""
    cols = ["user_id", "item_id", "timestamp", "event"][: len(rows[0])]
    df = pl.DataFrame(rows, schema=cols, orient="row").with_row_index(ROW)
    table = None
    if items is not None:
        frame = pl.DataFrame(items, schema=["item_id", "brand"], orient="row").with_row_index(ROW)
        table = Table(frame, Locator(files=("items.csv",)))
    return RawData(events=df.lazy(), events_locator=Locator(files=("events.csv",)), items=table)


@pytest.fixture
def tiny(tmp_path) -> Dataset:
    # user u1: 5 interactions, u2: 4 (one consecutive repeat on "b" collapses), u3: 2 (train only)
    rows = [
        ("u1", "a", 10, "view"),
        ("u1", "b", 20, "view"),
        ("u1", "c", 30, "purchase"),
        ("u1", "d", 40, "view"),
        ("u1", "e", 50, "view"),
        ("u2", "b", 11, "view"),
        ("u2", "b", 12, "add_to_cart"),
        ("u2", "a", 5, "view"),  # out of order in the file: sorted by time
        ("u2", "c", 60, "view"),
        ("u2", "f", 70, "like"),
        ("u3", "a", 1, "view"),
        ("u3", "f", 2, "view"),
    ]
    items = [(x, "acme" if x in "abc" else "zeta") for x in "abcdefg"]
    return Dataset(prepare(_raw(rows, items), tmp_path / "ds", PrepareConfig(cold_fraction=0.0)))


def test_indices_and_collapse(tiny):
    assert tiny.n_users == 3 and tiny.n_items == 7  # item g is in the catalogue only
    ev = tiny.events
    assert ev.height == 11  # 12 raw events, u2's consecutive b-view/b-cart collapse into one
    u2 = ev.filter(pl.col("user_idx") == 2)
    # items sorted by raw id: a=1 b=2 c=3 d=4 e=5 f=6 g=7; u2 in time order: a(5) b(11) c(60) f(70)
    assert u2["item_idx"].to_list() == [1, 2, 3, 6]
    assert u2["event"].to_list() == [
        EVENT_CODE["view"],
        EVENT_CODE["add_to_cart"],  # deepest stage of the collapsed pair
        EVENT_CODE["view"],
        EVENT_CODE["like"],
    ]
    assert u2["timestamp"].to_list() == [5, 11, 60, 70]


def test_leave_one_out(tiny):
    train = tiny.train_sequences("loo")
    assert train.user_idx.tolist() == [1, 2, 3]
    assert [train.items_of(i).tolist() for i in range(3)] == [[1, 2, 3], [1, 2], [1, 6]]
    valid = tiny.eval_cases("loo", "valid")
    test = tiny.eval_cases("loo", "test")
    assert valid.user_idx.tolist() == [1, 2] and valid.target.tolist() == [4, 3]
    assert test.user_idx.tolist() == [1, 2] and test.target.tolist() == [5, 6]
    assert [test.history.items_of(i).tolist() for i in range(2)] == [[1, 2, 3, 4], [1, 2, 3]]
    assert [valid.history.items_of(i).tolist() for i in range(2)] == [[1, 2, 3], [1, 2]]


def test_no_target_leaks_into_training(tiny):
    train = tiny.train_sequences("loo")
    ev = tiny.events
    for split in ("valid", "test"):
        cases = tiny.eval_cases("loo", split)
        for u, t in zip(cases.user_idx, cases.target, strict=True):
            row = int(np.flatnonzero(train.user_idx == u)[0])
            # the target's interaction (and anything after it) is not in the training sequence
            user_events = ev.filter(pl.col("user_idx") == int(u))
            target_pos = user_events["item_idx"].to_list().index(int(t))
            assert len(train.items_of(row)) <= target_pos - (1 if split == "test" else 0)


def test_temporal_split(tiny):
    q = tiny.stats["splits"]["temporal"]["cutoffs"]
    ev = tiny.events
    ts, tsplit = ev["timestamp"].to_numpy(), ev["tsplit"].to_numpy()
    assert ((tsplit == 0) == (ts < q[0])).all() and ((tsplit == 2) == (ts >= q[1])).all()
    train = tiny.train_sequences("temporal")
    assert train.timestamp.max() < q[0]
    test = tiny.eval_cases("temporal", "test")
    for i, u in enumerate(test.user_idx):
        user = ev.filter(pl.col("user_idx") == int(u))
        first_test = user.filter(pl.col("tsplit") == 2).row(0, named=True)
        assert test.target[i] == first_test["item_idx"]
        # history = every earlier interaction of the user, whatever its split
        earlier = user.filter(pl.col("timestamp") < first_test["timestamp"])
        assert test.history.items_of(i).tolist() == earlier["item_idx"].to_list()


def test_cold_items_absent_from_training(tmp_path):
    rng = np.random.default_rng(0)
    rows = [(f"u{u}", f"i{rng.integers(40)}", t) for u in range(30) for t in range(12)]
    ds = Dataset(prepare(_raw(rows), tmp_path / "ds", PrepareConfig(cold_fraction=0.25, seed=3)))
    cold = ds.item_cold
    assert (cold == 1).sum() >= 1 and (cold == 2).sum() >= 1
    train = ds.train_sequences("cold")
    assert (cold[train.item_idx] == 0).all()
    assert ds.item_popularity("cold")[cold > 0].sum() == 0
    for split, code in (("valid", 1), ("test", 2)):
        cases = ds.eval_cases("cold", split)
        assert len(cases) > 0
        assert (cold[cases.target] == code).all()
        assert (cases.candidates == (cold == code)).all()
        assert (cold[cases.history.item_idx] == 0).all()  # histories hold warm items only
    # the same seed gives the same cold items; another seed another set
    ds2 = Dataset(prepare(_raw(rows), tmp_path / "ds2", PrepareConfig(cold_fraction=0.25, seed=3)))
    ds3 = Dataset(prepare(_raw(rows), tmp_path / "ds3", PrepareConfig(cold_fraction=0.25, seed=4)))
    assert (ds2.item_cold == cold).all() and not (ds3.item_cold == cold).all()
    assert ds2.hash == ds.hash and ds3.hash != ds.hash


def test_attributes_shared_space(tiny):
    attrs = tiny.attributes
    assert attrs["field"].to_list() == ["brand", "brand"]
    offsets, flat = tiny.item_attributes
    acme = int(attrs.filter(pl.col("value") == "acme")["attr_idx"][0])
    assert flat[offsets[1] : offsets[2]].tolist() == [acme]  # item a
    assert offsets[0] == offsets[1]  # padding has no attributes


def test_sequences_padded_and_take():
    seqs = Sequences.from_lists([[5, 6, 7], [8], [1, 2, 3, 4, 9]], user_idx=[1, 2, 3])
    p = seqs.padded(4)["item_idx"]
    assert p.tolist() == [[0, 5, 6, 7], [0, 0, 0, 8], [2, 3, 4, 9]]
    sub = seqs.take([2, 0])
    assert sub.user_idx.tolist() == [3, 1]
    assert sub.items_of(0).tolist() == [1, 2, 3, 4, 9] and sub.items_of(1).tolist() == [5, 6, 7]


def test_atomic_failure_leaves_nothing(tmp_path):
    bad = _raw([("u1", "a", 1), ("u1", None, 2)])
    with pytest.raises(ValueError, match="item_id"):
        prepare(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert list(tmp_path.iterdir()) == []  # no temporary directory left behind either


def test_overwrite_protection(tmp_path, tiny):
    raw = _raw([("u1", "a", 1), ("u1", "b", 2), ("u1", "c", 3)])
    prepare(raw, tmp_path / "o")
    with pytest.raises(FileExistsError):
        prepare(raw, tmp_path / "o")
    prepare(raw, tmp_path / "o", overwrite=True)
    assert Dataset(tmp_path / "o").n_items == 3


def test_id_types_differing_between_events_and_items(tmp_path):
    """Integer ids in the log, text ids in the catalogue: matched as text, never merged loosely."""
    events = pl.DataFrame({"user_id": [1, 1, 1], "item_id": [7, 8, 7], "timestamp": [1, 2, 3]})
    ok_items = pl.DataFrame({"item_id": ["7", "8"], "brand": ["a", "b"]})
    bad_items = pl.DataFrame({"item_id": ["007", "8"], "brand": ["a", "b"]})

    def raw(items: pl.DataFrame) -> RawData:
        return RawData(
            events=events.with_row_index(ROW).lazy(),
            events_locator=Locator(files=("log.csv",)),
            items=Table(items.with_row_index(ROW), Locator(files=("items.csv",))),
        )

    ds = Dataset(prepare(raw(ok_items), tmp_path / "ok", PrepareConfig(cold_fraction=0.0)))
    assert ds.n_items == 2 and ds.attributes.height == 2
    with pytest.raises(ValueError, match=r"log\.csv, line 2, column 'item_id'.*'7'"):
        prepare(raw(bad_items), tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_lazy_read_failure_is_a_data_error(tmp_path):
    bad = tmp_path / "broken.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    raw = RawData(events=pl.scan_parquet(bad), events_locator=Locator(files=(str(bad),)))
    with pytest.raises(ValueError, match=r"broken\.parquet.*cannot read the events"):
        prepare(raw, tmp_path / "out")
    assert not (tmp_path / "out").exists()
