"""The synthetic shop: determinism, MerRec's exact schema, and that the planted structure is real."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from guim.data.loaders.merrec import MERREC_COLUMNS, MERREC_EVENTS
from guim.data.synthetic import TAXONOMY, SynthConfig, synth


def _digests(root: Path) -> dict[str, str]:
    return {
        str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(root.rglob("*.parquet"))
    }


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Path:
    """About 60k events: big enough for rates and frequencies, generated once (< 1 s)."""
    out = tmp_path_factory.mktemp("synth") / "shop"
    return synth(
        out,
        replace(SynthConfig.for_events(60_000, seed=3), shard_events=25_000),
        show_progress=False,
    )


@pytest.fixture(scope="module")
def events(shop: Path) -> pl.DataFrame:
    return pl.read_parquet(shop / "events" / "*.parquet")


@pytest.fixture(scope="module")
def truth_users(shop: Path) -> pl.DataFrame:
    return pl.read_parquet(shop / "truth" / "users.parquet")


def test_same_seed_gives_identical_bytes(tmp_path):
    a = synth(tmp_path / "a", SynthConfig.tiny(seed=5), show_progress=False)
    b = synth(tmp_path / "b", SynthConfig.tiny(seed=5), show_progress=False)
    c = synth(tmp_path / "c", SynthConfig.tiny(seed=6), show_progress=False)
    assert len(_digests(a)) >= 3 + 2  # several event shards + truth tables
    assert _digests(a) == _digests(b)
    assert _digests(a) != _digests(c)


def test_exact_merrec_schema_and_order(shop, events):
    files = sorted((shop / "events").glob("part-*.parquet"))
    assert len(files) >= 2
    for f in files:
        assert tuple(pl.read_parquet_schema(f)) == MERREC_COLUMNS
    assert events.schema["stime"] == pl.Datetime("us", "UTC")
    assert set(events["event_id"].unique()) == set(MERREC_EVENTS)
    assert (
        events.null_count()
        .select(["user_id", "item_id", "stime", "event_id", "name"])
        .sum_horizontal()
        .item()
        == 0
    )
    # sorted by user, then time, within and across shards
    assert (
        events.select((pl.col("user_id").diff() != 0).sum()).item()
        == events["user_id"].n_unique() - 1
    )
    assert events.select(
        (pl.col("stime").diff().dt.total_microseconds() >= 0)
        .filter(pl.col("user_id").diff() == 0)
        .all()
    ).item()
    # sequence_length is the size of its (user, sequence); a session belongs to one user
    sizes = events.group_by("user_id", "sequence_id").agg(
        pl.len(), pl.col("sequence_length").unique()
    )
    assert (sizes["sequence_length"].list.len() == 1).all()
    assert (sizes["len"] == sizes["sequence_length"].list.first()).all()
    assert events.group_by("session_id").agg(pl.col("user_id").n_unique())["user_id"].max() == 1


def test_counts_near_config(shop, events):
    import json

    meta = json.loads((shop / "synth.json").read_text())
    assert meta["n_events"] == events.height
    assert 0.85 * 60_000 < events.height < 1.15 * 60_000
    assert meta["config"]["seed"] == 3
    cfg = SynthConfig.for_events(60_000)
    assert events["user_id"].n_unique() == cfg.n_users


def test_events_concentrate_in_planted_interests(events, truth_users):
    views = events.filter(pl.col("event_id") == "item_view").join(truth_users, on="user_id")
    in_interest = views.select(pl.col("interests").list.contains(pl.col("c2_id")).mean()).item()
    n_leaves = events["c2_id"].n_unique()
    chance = truth_users["interests"].list.len().mean() / n_leaves
    assert in_interest > 0.6 > 10 * chance
    # and within the interests, more weight -> more views
    top = views.select(
        (pl.col("interests").list.get(pl.col("weights").list.arg_max()) == pl.col("c2_id")).mean()
    ).item()
    assert top > in_interest / truth_users["interests"].list.len().mean()


def test_item_popularity_is_zipf_like(events):
    counts = np.sort(
        events.filter(pl.col("event_id") == "item_view")["item_id"]
        .value_counts()["count"]
        .to_numpy()
    )[::-1]
    top_1pct = counts[: max(1, len(counts) // 100)].sum() / counts.sum()
    assert top_1pct > 0.08  # ten times the uniform share
    ranks = np.arange(1, len(counts) + 1)
    sel = (ranks >= 10) & (ranks <= len(counts) // 2)
    slope = np.polyfit(np.log(ranks[sel]), np.log(counts[sel]), 1)[0]
    assert -2.0 < slope < -0.4


def test_funnel_rates_near_config_and_ordered(events):
    cfg = SynthConfig()
    n = dict(events["event_id"].value_counts().iter_rows())
    view_slots = n["item_view"] / (1 - cfg.cart_rate * cfg.cart_without_view_rate)
    assert n["item_like"] / view_slots == pytest.approx(cfg.like_rate, rel=0.2)
    assert n["item_add_to_cart_tap"] / view_slots == pytest.approx(cfg.cart_rate, rel=0.2)
    assert n["buy_comp"] / n["buy_start"] == pytest.approx(cfg.purchase_rate, rel=0.1)
    # a funnel event follows a view of the same item by the same user (carts: usually)
    ev = events.with_columns(
        prev=pl.col("event_id").shift(1),
        prev_item=pl.col("item_id").shift(1),
        prev_user=pl.col("user_id").shift(1),
    )
    same = (pl.col("item_id") == pl.col("prev_item")) & (pl.col("user_id") == pl.col("prev_user"))
    carts = ev.filter(pl.col("event_id") == "item_add_to_cart_tap")
    assert (
        carts.select(((pl.col("prev") == "item_view") | (pl.col("prev") == "item_like")) & same)
        .to_series()
        .mean()
        > 0.85
    )
    buys = ev.filter(pl.col("event_id") == "buy_comp")
    assert buys.select((pl.col("prev") == "buy_start") & same).to_series().all()


def test_purchases_depend_on_user_item_affinity(events, truth_users):
    per_item = (
        events.join(truth_users.select("user_id", "interests"), on="user_id")
        .with_columns(in_interest=pl.col("interests").list.contains(pl.col("c2_id")))
        .group_by("in_interest")
        .agg(
            views=(pl.col("event_id") == "item_view").sum(),
            buys=(pl.col("event_id") == "buy_comp").sum(),
        )
        .with_columns(rate=pl.col("buys") / pl.col("views"))
    )
    rate = dict(per_item.select("in_interest", "rate").iter_rows())
    assert rate[True] > 3 * rate[False]


def test_sessions_have_sequential_structure(shop, events):
    categories = pl.read_parquet(shop / "truth" / "categories.parquet")
    complement = dict(categories.select("c2_id", "complement_c2_id").iter_rows())
    truth_items = pl.read_parquet(shop / "truth" / "items.parquet")
    related = dict(truth_items.select("item_id", "related_item_id").iter_rows())
    views = events.filter(pl.col("event_id") == "item_view").with_columns(
        new=pl.col("item_id").is_first_distinct().over("user_id")
    )
    # moves of the walk; revisits (a step back to an earlier item) go back by design
    pairs = views.with_columns(
        next_item=pl.col("item_id").shift(-1),
        next_leaf=pl.col("c2_id").shift(-1),
        next_new=pl.col("new").shift(-1),
    ).filter((pl.col("session_id") == pl.col("session_id").shift(-1)) & pl.col("next_new"))
    leaf, nxt = pairs["c2_id"].to_numpy(), pairs["next_leaf"].to_numpy()
    comp = np.vectorize(complement.get)(leaf)
    assert (leaf == nxt).mean() > 0.5
    assert (comp == nxt).mean() > 0.08  # directed: far above the reverse direction
    back = np.vectorize(complement.get)(nxt)
    assert (comp == nxt).mean() > 3 * ((back == leaf) & (leaf != nxt)).mean()
    rel = np.vectorize(related.get)(pairs["item_id"].to_numpy())
    assert (rel == pairs["next_item"].to_numpy()).mean() > 0.08


def test_repeat_behaviour_is_the_configured_one(tmp_path):
    """Without revisits, accidental repeats are redrawn; revisits add repeats of recent views,
    never of the view just before (prepare would merge those)."""
    from guim.data.dataset import repeats_earlier

    def views(**kw):
        config = replace(SynthConfig.tiny(seed=5), n_users=300, n_items=3000, **kw)
        path = synth(tmp_path / str(sorted(kw.items())), config)
        ev = pl.read_parquet(path / "events").filter(pl.col("event_id") == "item_view")
        ev = ev.sort("user_id", "stime")
        user = ev["user_id"].rank("dense").to_numpy()
        item = ev["item_id"].rank("dense").to_numpy()
        return user, item

    rates = []
    for kw in ({"redraw_repeats": False, "p_revisit": 0.0}, {"p_revisit": 0.0}, {"p_revisit": 0.3}):
        user, item = views(**kw)
        rates.append(repeats_earlier(user, item).mean())
    assert rates[1] < rates[0] < rates[2]
    same_user = user[1:] == user[:-1]
    assert (item[1:][same_user] != item[:-1][same_user]).mean() > 0.97


def test_truth_tables(shop, events, truth_users):
    assert truth_users.height == events["user_id"].n_unique()
    sums = truth_users.select(pl.col("weights").list.sum()).to_series().to_numpy()
    assert np.allclose(sums, 1.0)
    lo, hi = SynthConfig().interests_per_user
    lens = truth_users["interests"].list.len()
    assert lens.min() >= lo and lens.max() <= hi
    items = pl.read_parquet(shop / "truth" / "items.parquet")
    assert set(events["item_id"].unique()) <= set(items["item_id"])
    # an item's leaf in the truth table is the one in the events
    check = events.select("item_id", "c2_id").unique().join(items, on="item_id", suffix="_truth")
    assert (check["c2_id"] == check["c2_id_truth"]).all()


def test_titles_are_built_from_category_brand_and_attributes(events):
    row = events.filter(pl.col("brand_name").is_not_null() & pl.col("size_id").is_not_null()).row(
        0, named=True
    )
    name = row["name"]
    assert name.startswith(row["brand_name"] + " " + row["color"] + " ")
    assert row["c2_name"].lower() in name and " size " in name
    nouns = [n for c1 in TAXONOMY.values() for leaves in c1.values() for n in leaves]
    assert len(nouns) == len(set(nouns))


def test_config_validation():
    with pytest.raises(ValueError, match="n_items"):
        SynthConfig(n_items=10)
    with pytest.raises(ValueError, match="move probabilities"):
        SynthConfig(p_same_leaf=0.9)
    big = SynthConfig.for_events(10_000_000)
    assert 250_000 < big.n_users < 350_000 and big.n_items == 500_000


def test_refuses_to_overwrite(tmp_path):
    out = synth(tmp_path / "s", SynthConfig.tiny(), show_progress=False)
    with pytest.raises(FileExistsError):
        synth(out, SynthConfig.tiny(), show_progress=False)
