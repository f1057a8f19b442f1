"""Benchmark tasks on data where the answer is known: an embedder built by hand to carry the
answer must find it, the same embedder with its rows shuffled must score at chance, and every
task gives the same dict twice. Plus a smoke run of the baselines on ml-100k."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from guim.bench.tasks import (
    _probe,
    cold_start,
    event_propensity,
    future_interest,
    item_attributes,
    item_similarity,
    next_item,
    user_profile,
)
from guim.bench.tasks._probe import field_labels, folds
from guim.data.dataset import Dataset, Sequences
from guim.data.loaders.merrec import load_merrec
from guim.data.loaders.recbole import load_recbole
from guim.data.prepare import PrepareConfig, prepare
from guim.data.schema import EVENT_CODE
from guim.data.synthetic import SynthConfig, synth

TASKS = (
    cold_start,
    event_propensity,
    future_interest,
    item_attributes,
    item_similarity,
    user_profile,
)


# ---- data -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def shop(tmp_path_factory) -> Dataset:
    """The tiny synthetic shop, widened to 800 users so that probes have a few hundred cases;
    40% of the items are cold so that cold-start ranks among ~60 items."""
    root = tmp_path_factory.mktemp("bench_shop")
    config = replace(SynthConfig.tiny(), n_users=800, n_items=300, shard_events=5000)
    synth(root / "raw", config, show_progress=False)
    prepare(
        load_merrec(root / "raw"),
        root / "shop",
        PrepareConfig(name="shop", cold_fraction=0.4),
        show_progress=False,
    )
    return Dataset(root / "shop")


GENRES = ("action", "comedy", "drama", "horror", "romance", "scifi")
OCCUPATIONS = ("artist", "engineer", "student", "teacher", "writer")


@pytest.fixture(scope="session")
def movies(tmp_path_factory) -> Dataset:
    """An ml-100k-like dataset in RecBole atomic files: 400 users with age, gender, occupation;
    120 movies with 1-3 genres; 15 random ratings per user."""
    root = tmp_path_factory.mktemp("bench_movies")
    rng = np.random.default_rng(7)
    n_users, n_items = 400, 120
    inter = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    for u in range(1, n_users + 1):
        for t, i in enumerate(rng.choice(n_items, 15, replace=False) + 1):
            inter.append(f"{u}\t{i}\t4\t{1000 * u + t}")
    item = ["item_id:token\tmovie_title:token_seq\tclass:token_seq"]
    for i in range(1, n_items + 1):
        genres = rng.choice(GENRES, rng.integers(1, 4), replace=False)
        item.append(f"{i}\tMovie {i}\t{' '.join(genres)}")
    user = ["user_id:token\tage:token\tgender:token\toccupation:token"]
    for u in range(1, n_users + 1):
        age, gender = rng.integers(15, 70), rng.choice(["M", "F"])
        user.append(f"{u}\t{age}\t{gender}\t{rng.choice(OCCUPATIONS)}")
    for suffix, lines in (("inter", inter), ("item", item), ("user", user)):
        (root / f"movies.{suffix}").write_text("\n".join(lines) + "\n")
    prepare(
        load_recbole(root), root / "prepared", PrepareConfig(name="movies"), show_progress=False
    )
    return Dataset(root / "prepared")


# ---- hand-made embedders ---------------------------------------------------------------------


class Fixed:
    """An Embedder from tables: a user's vectors are looked up by user_idx (so they may encode
    anything about the user, the answer included), items' vectors are given."""

    def __init__(self, users: np.ndarray, items: np.ndarray, name: str = "fixed") -> None:
        self.users = np.asarray(users, dtype=np.float32)  # (n_users + 1, K, D)
        self.items = np.asarray(items, dtype=np.float32)  # (n_items + 1, D)
        self.name = name

    def embed_users(self, histories: Sequences) -> np.ndarray:
        return self.users[histories.user_idx]

    def embed_items(self) -> np.ndarray:
        return self.items

    def shuffled(self, seed: int = 1) -> Fixed:
        """The same vectors dealt to other users and items (padding stays in place)."""
        rng = np.random.default_rng(seed)
        users = np.r_[0, 1 + rng.permutation(len(self.users) - 1)]
        items = np.r_[0, 1 + rng.permutation(len(self.items) - 1)]
        return Fixed(self.users[users], self.items[items], self.name + "-shuffled")


def noisy(x: np.ndarray, scale: float = 0.05, seed: int = 0) -> np.ndarray:
    """x plus a little Gaussian noise, so that no two vectors tie."""
    return x + np.random.default_rng(seed).normal(0.0, scale, x.shape)


def item_one_hot(ds: Dataset, fields: tuple[str, ...]) -> np.ndarray:
    """(n_items + 1, n_attributes + 1): the item's attribute ids of `fields`, one-hot."""
    out = np.zeros((ds.n_items + 1, ds.n_attributes + 1))
    for field in fields:
        for i, ids in enumerate(field_labels(ds, field)):
            out[i, ids] = 1.0
    return out


def users_from(ds: Dataset, rows: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """(n_users + 1, 1, D) table holding `vectors` at user_idx `rows` and zeros elsewhere."""
    out = np.zeros((ds.n_users + 1, 1, vectors.shape[1]))
    out[rows, 0] = vectors
    return out


# ---- cold start ------------------------------------------------------------------------------


def test_cold_start_planted_and_shuffled(shop):
    cases = shop.eval_cases("cold", "test")
    n_cold = int((shop.item_cold == 2).sum())
    assert len(cases) > 100 and n_cold > 40
    items = noisy(np.eye(shop.n_items + 1))
    planted = Fixed(noisy(users_from(shop, cases.user_idx, items[cases.target])), items)
    assert cold_start.TASK.supports(shop) is True
    got = cold_start.TASK.run(planted, shop)
    assert got["HR@10"] > 0.95 and got["NDCG@10"] > 0.9
    assert set(got) == {"HR@10", "NDCG@10", "HR@20", "NDCG@20", "n_cases"}
    chance = cold_start.TASK.run(planted.shuffled(), shop)
    assert abs(chance["HR@10"] - 10 / n_cold) < 0.1


def test_cold_start_needs_cold_items(movies):
    assert cold_start.TASK.supports(movies) is True
    stats = dict(movies.stats, splits={"cold": {"valid_items": 0, "test_items": 0}})
    no_cold = _with_stats(movies, stats)
    assert "no cold items" in cold_start.TASK.supports(no_cold)


def _with_stats(ds: Dataset, stats: dict) -> Dataset:
    copy = Dataset(ds.path)
    copy.stats = stats
    return copy


# ---- item attributes -------------------------------------------------------------------------


def test_item_attributes_planted_and_shuffled(shop):
    planted = Fixed(
        np.zeros((shop.n_users + 1, 1, 2)), noisy(item_one_hot(shop, ("c0", "c2", "brand")))
    )
    got = item_attributes.TASK.run(planted, shop)
    for field in ("c0", "c2", "brand"):
        assert got[f"{field}/macro_F1"] > 0.95, field
    assert got["score"] > 0.95
    chance = item_attributes.TASK.run(planted.shuffled(), shop)
    # chance: no better than always answering the most common class
    seen = np.flatnonzero(shop.item_popularity("loo") > 0)
    c0 = np.concatenate([field_labels(shop, "c0")[i] for i in seen])
    majority = np.bincount(c0).max() / len(c0)
    assert chance["c0/micro_F1"] < majority + 0.05
    for field in ("c0", "c2", "brand"):
        assert chance[f"{field}/macro_F1"] < 0.5 * got[f"{field}/macro_F1"], field
    assert chance["score"] < 0.4


def test_item_attributes_multilabel_genres(movies):
    planted = Fixed(np.zeros((movies.n_users + 1, 1, 2)), noisy(item_one_hot(movies, ("class",))))
    got = item_attributes.TASK.run(planted, movies)
    assert got["class/n_labels"] == len(GENRES)
    assert got["class/mAP"] > 0.95 and got["score"] == got["class/mAP"]
    chance = item_attributes.TASK.run(planted.shuffled(), movies)
    y = item_one_hot(movies, ("class",))[1:]
    prevalence = y[:, y.any(axis=0)].mean()  # the AP of a random ranking
    assert abs(chance["class/mAP"] - prevalence) < 0.07


def test_item_attributes_unseen_items(shop, movies):
    # hold a third of the seen items out of the probe's training, as if they had no interactions
    for ds, field, fields in ((shop, "c2", ("c0", "c2", "brand")), (movies, "class", ("class",))):
        items = noisy(item_one_hot(ds, fields))
        labels = field_labels(ds, field)
        n_labels = np.array([len(x) for x in labels])
        seen = ds.item_popularity("loo") > 0
        seen[0] = False
        unseen = seen & (np.arange(ds.n_items + 1) % 3 == 0)
        seen &= ~unseen
        probe = item_attributes._multilabel if field == "class" else item_attributes._multiclass
        key = "unseen_mAP" if field == "class" else "unseen_macro_F1"
        got = probe(items, labels, n_labels, seen, unseen)
        assert got["n_unseen"] >= item_attributes.MIN_UNSEEN and got[key] > 0.95, field
        shuffled = items[np.r_[0, 1 + np.random.default_rng(2).permutation(ds.n_items)]]
        chance = probe(shuffled, labels, n_labels, seen, unseen)
        assert chance[key] < 0.5 * got[key], field


# ---- future interest -------------------------------------------------------------------------


def test_future_interest_planted_and_shuffled(shop):
    cases = shop.eval_cases("loo", "test")
    items = noisy(item_one_hot(shop, ("c2",)))
    planted = Fixed(users_from(shop, cases.user_idx, items[cases.target]), items)
    got = future_interest.TASK.run(planted, shop)
    n_attr = got["n_attributes"]
    assert n_attr == (shop.attribute_field == "c2").sum()
    assert got["Recall@5"] > 0.95 and got["NDCG@10"] > 0.95
    chance = future_interest.TASK.run(planted.shuffled(), shop)
    for k in (5, 10):
        assert abs(chance[f"Recall@{k}"] - k / n_attr) < 0.1, k


def test_future_interest_ranking_by_hand():
    # 4 attributes, relevant = {1, 3}; scores put 3 first, then 0, then 1 tied with 2
    scores = np.array([[0.5, 0.2, 0.2, 0.9]])
    relevant = np.array([[False, True, False, True]])
    recall5, recall10, ndcg = future_interest.ranking_metrics(scores, relevant)[0]
    assert recall5 == recall10 == 1.0
    # pessimistic tie: attribute 1 (relevant) is placed after 2, at rank 3
    ideal = 1 + 1 / math.log2(3)
    assert ndcg == pytest.approx((1 + 1 / math.log2(5)) / ideal)
    # one relevant attribute of 6, scored last: outside the top 5, inside the top 10
    last = future_interest.ranking_metrics(
        np.array([[0.1, 0.4, 0.4, 0.3, 0.2, 0.0]]), np.eye(6, dtype=bool)[[5]]
    )
    assert last[0, 0] == 0.0 and last[0, 1] == 1.0


# ---- user profile ----------------------------------------------------------------------------


def _profile_vectors(ds: Dataset) -> np.ndarray:
    """(n_users + 1, 1, D): every user attribute of `user_labels`, one-hot, plus noise."""
    labels = user_profile.user_labels(ds, np.arange(ds.n_users + 1))
    columns = []
    for y in labels.values():
        if y.ndim == 2:
            columns.append(y.astype(float))
        else:
            text = np.array([str(v) for v in y])
            columns.append((text[:, None] == np.unique(text)[None, :]).astype(float))
    return noisy(np.hstack(columns), scale=0.3)[:, None, :]


def test_user_profile_movies_planted_and_shuffled(movies):
    planted = Fixed(_profile_vectors(movies), np.zeros((movies.n_items + 1, 2)))
    got = user_profile.TASK.run(planted, movies)
    assert got["age/n_classes"] == 4 and got["gender/n_classes"] == 2
    assert got["occupation/n_classes"] == len(OCCUPATIONS)
    for name in ("age", "gender", "occupation"):
        assert got[f"{name}/AUC"] > 0.95 and got[f"{name}/accuracy"] > 0.85, name
    chance = user_profile.TASK.run(planted.shuffled(), movies)
    for name in ("age", "gender", "occupation"):
        assert abs(chance[f"{name}/AUC"] - 0.5) < 0.08, name
    assert abs(chance["AUC"] - 0.5) < 0.05


def test_user_profile_planted_interests(shop):
    labels = user_profile.user_labels(shop, np.arange(1, 4))
    assert set(labels) == {"interests", "style"}
    planted = Fixed(_profile_vectors(shop), np.zeros((shop.n_items + 1, 2)))
    got = user_profile.TASK.run(planted, shop)
    assert got["interests/AUC"] > 0.95 and got["style/AUC"] > 0.95
    chance = user_profile.TASK.run(planted.shuffled(), shop)
    assert abs(chance["interests/AUC"] - 0.5) < 0.08 and abs(chance["style/AUC"] - 0.5) < 0.08


def test_user_profile_age_buckets(movies):
    users = pl.DataFrame(
        {"user_idx": [1, 2, 3, 4, 5], "age": ["24", "25", "44", "45", None]},
        schema_overrides={"user_idx": pl.Int32},
    )
    ds = Dataset(movies.path)
    ds.__dict__["users"] = users  # cached_property: replace the table
    got = user_profile.user_labels(ds, np.array([1, 2, 3, 4, 5]))["age"]
    assert got.tolist() == ["<25", "25-34", "35-44", "45+", None]


def test_probe_folds_are_disjoint_and_stratified():
    groups = np.repeat(np.arange(60), 2)  # two rows per group
    labels = np.repeat(np.arange(60) % 3, 2)
    splits = folds(labels, groups)
    assert len(splits) == 5
    tests = np.concatenate([test for _, test in splits])
    assert sorted(tests.tolist()) == list(range(120))
    for train, test in splits:
        assert not set(groups[train]) & set(groups[test])
        assert np.bincount(labels[test], minlength=3).tolist() == [8, 8, 8]


def test_probe_scores_do_not_depend_on_the_number_of_workers(shop, movies, monkeypatch):
    """The probe heads run side by side in worker processes; every fit is deterministic, so one
    worker and two give the same figures (multi-class fields, a multi-label field, unseen items)."""
    runs = {}
    for jobs in ("1", "2"):
        monkeypatch.setenv("GUIM_PROBE_JOBS", jobs)
        runs[jobs] = []
        for ds, fields in ((shop, ("c0", "c2", "brand")), (movies, ("class",))):
            items = noisy(item_one_hot(ds, fields), scale=1.0, seed=4)  # imperfect probes
            seen = ds.item_popularity("loo") > 0
            seen[0] = False
            unseen = seen & (np.arange(ds.n_items + 1) % 3 == 0)
            seen &= ~unseen
            for field in fields:
                labels = field_labels(ds, field)
                n_labels = np.array([len(x) for x in labels])
                probe = (
                    item_attributes._multilabel if field == "class" else item_attributes._multiclass
                )
                runs[jobs].append(probe(items, labels, n_labels, seen, unseen))
    assert runs["1"] == runs["2"]
    assert all("n_unseen" in r for r in runs["2"])
    monkeypatch.setenv("GUIM_PROBE_JOBS", "zero")
    with pytest.raises(ValueError, match="GUIM_PROBE_JOBS"):
        _probe.probe_jobs()


# ---- item similarity -------------------------------------------------------------------------


def test_item_similarity_planted_and_shuffled(shop):
    query, target = item_similarity.held_out_pairs(shop)
    assert len(query) > 100 and (query != target).all()
    # no pair was adjacent in training
    train = shop.train_sequences("loo")
    adjacent = set()
    for row in range(len(train)):
        s = train.items_of(row).tolist()
        adjacent |= {frozenset(p) for p in itertools.pairwise(s)}
    assert not {frozenset(p) for p in zip(query.tolist(), target.tolist(), strict=True)} & adjacent
    # one private dimension per pair, shared by its two items
    items = noisy(np.zeros((shop.n_items + 1, 8 + len(query))), scale=0.1)
    items[query, 8 + np.arange(len(query))] = 1.0
    items[target, 8 + np.arange(len(query))] = 1.0
    planted = Fixed(np.zeros((shop.n_users + 1, 1, items.shape[1])), items)
    got = item_similarity.TASK.run(planted, shop)
    assert got["Recall@10"] > 0.9 and got["n_pairs"] == len(query)
    chance = item_similarity.TASK.run(planted.shuffled(), shop)
    assert abs(chance["Recall@10"] - 10 / shop.n_items) < 0.05
    assert abs(chance["Recall@20"] - 20 / shop.n_items) < 0.06


# ---- event propensity ------------------------------------------------------------------------


def test_event_propensity_planted_and_shuffled(shop):
    cases = shop.eval_cases("loo", "test")
    cart = cases.target_event >= EVENT_CODE["add_to_cart"]
    bought = cases.target_event == EVENT_CODE["purchase"]
    assert cart.sum() >= 40 and bought.sum() >= 15
    signal = np.stack([cart, bought], axis=1).astype(float)
    users = noisy(users_from(shop, cases.user_idx, np.hstack([signal, np.zeros((len(cart), 4))])))
    items = noisy(np.ones((shop.n_items + 1, 6)), scale=0.5)
    planted = Fixed(users, items)
    got = event_propensity.TASK.run(planted, shop)
    assert got["cart/AUC"] > 0.95 and got["purchase/AUC"] > 0.95
    assert got["cart/rate"] == pytest.approx(cart.mean())
    chance = event_propensity.TASK.run(planted.shuffled(), shop)
    assert abs(chance["cart/AUC"] - 0.5) < 0.1 and abs(chance["purchase/AUC"] - 0.5) < 0.15


class LastEvent:
    """User vector = one-hot of the event type of the LAST history position: if the target's own
    event were in the history, this would predict it perfectly."""

    name = "last-event"

    def __init__(self, n_items: int) -> None:
        self.n_items = n_items

    def embed_users(self, histories: Sequences) -> np.ndarray:
        last = histories.event[histories.offsets[1:] - 1]
        return np.eye(len(EVENT_CODE))[last][:, None, :]

    def embed_items(self) -> np.ndarray:
        return np.ones((self.n_items + 1, len(EVENT_CODE)))


def test_event_propensity_never_sees_the_target_event(shop):
    got = event_propensity.TASK.run(LastEvent(shop.n_items), shop)
    assert got["cart/AUC"] < 0.8


def test_event_propensity_uses_the_scorers_interest(shop):
    # two interests: the label lives in the one that the item vector selects under "max"
    cases = shop.eval_cases("loo", "test")
    cart = (cases.target_event >= EVENT_CODE["add_to_cart"]).astype(float)
    users = np.zeros((shop.n_users + 1, 2, 3))
    users[cases.user_idx, 0] = np.stack([np.full(len(cart), 10.0), cart, 0 * cart], axis=1)
    users[cases.user_idx, 1] = np.stack([0 * cart, 1 - cart, np.full(len(cart), -10.0)], axis=1)
    items = np.tile([1.0, 0.0, 1.0], (shop.n_items + 1, 1))  # dot: interest 0 -> 10, 1 -> -10
    assert event_propensity.TASK.run(Fixed(noisy(users, 0.01), items), shop)["cart/AUC"] > 0.95


def test_event_propensity_needs_event_types(movies):
    assert "no event types" in event_propensity.TASK.supports(movies)


class Truth(Fixed):
    """The synthetic shop's own generator as an embedder: a user is the weights of the planted
    leaf interests plus the preferred style, an item is its leaf and style (one-hot)."""

    def __init__(self, ds: Dataset) -> None:
        truth = ds.path / "truth"
        n_leaves = int(pl.read_parquet(truth / "categories.parquet")["c2_id"].max())
        users = pl.read_parquet(truth / "users.parquet").with_columns(pl.col("user_id").cast(str))
        items = pl.read_parquet(truth / "items.parquet").with_columns(pl.col("item_id").cast(str))
        n_styles = int(items["style"].max()) + 1
        u = np.zeros((ds.n_users + 1, 1, n_leaves + n_styles))
        rows = ds.users.join(users, on="user_id")
        for idx, leaves, weights, style in rows.select(
            "user_idx", "interests", "weights", "style"
        ).iter_rows():
            u[idx, 0, np.array(leaves) - 1] = weights
            u[idx, 0, n_leaves + style] = 0.5
        v = np.zeros((ds.n_items + 1, n_leaves + n_styles))
        rows = ds.items.join(items, on="item_id")
        idx = rows["item_idx"].to_numpy()
        v[idx, rows["c2_id"].to_numpy() - 1] = 1.0
        v[idx, n_leaves + rows["style"].to_numpy()] = 1.0
        super().__init__(u, v, "truth")


def test_the_generators_own_vectors_carry_its_signal(shop):
    truth = Truth(shop)
    shuffled = truth.shuffled()
    # next categories follow the planted interests
    got = future_interest.TASK.run(truth, shop)
    assert got["Recall@5"] > 0.6
    assert future_interest.TASK.run(shuffled, shop)["Recall@5"] < 0.5 * got["Recall@5"]
    # the funnel deepens with user-item affinity, so [u, v, u * v] predicts carts
    got = event_propensity.TASK.run(truth, shop)
    assert got["cart/AUC"] > 0.58
    assert abs(event_propensity.TASK.run(shuffled, shop)["cart/AUC"] - 0.5) < 0.1
    # cold items get vectors from their leaf, and interests pick the right ones
    got = cold_start.TASK.run(truth, shop)
    n_cold = int((shop.item_cold == 2).sum())
    assert got["HR@10"] > 2 * 10 / n_cold


def test_next_item_reports_both_protocols_where_targets_repeat(shop):
    """The synthetic shop has repeat targets: the primary metric masks the whole history (a
    repeated target is a miss), the unmasked protocol is reported beside it, and an embedder
    that knows the answer hits every target unmasked but only the non-repeats masked."""
    cases = shop.eval_cases("loo", "test")
    share = float(np.mean([t in cases.history.items_of(i) for i, t in enumerate(cases.target)]))
    assert 0 < share < 1
    # users' vectors point at their own test target (one-hot item vectors)
    items = np.eye(shop.n_items + 1, dtype=np.float32)[:, 1:] * 2.0
    users = np.zeros((shop.n_users + 1, 1, shop.n_items), dtype=np.float32)
    users[cases.user_idx, 0, cases.target - 1] = 1.0
    got = next_item.TASK.run(Fixed(users, items), shop)
    assert got["repeat_share"] == pytest.approx(share)
    assert got["HR@10_unmasked"] == 1.0 and got["NDCG@10_unmasked"] == 1.0
    assert got["HR@10"] == pytest.approx(1.0 - share)
    assert got["NDCG@10"] == pytest.approx(1.0 - share)


# ---- every task ------------------------------------------------------------------------------


@pytest.mark.parametrize("task", TASKS, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_task_shape_and_determinism(task, shop):
    t = task.TASK
    assert task.__doc__ and "Why you care" in task.__doc__
    assert t.scheme in ("loo", "cold", "temporal") and t.supports(shop) is True
    rng = np.random.default_rng(3)
    embedder = Fixed(
        rng.normal(size=(shop.n_users + 1, 2, 8)), rng.normal(size=(shop.n_items + 1, 8))
    )
    first, second = t.run(embedder, shop), t.run(embedder, shop)
    np.testing.assert_equal(first, second)
    assert t.primary_metric in first
    assert all(isinstance(v, float) for v in first.values()), first


# ---- real data: the baselines on ml-100k ------------------------------------------------------


@pytest.fixture(scope="session")
def ml100k(tmp_path_factory, ml100k_dir: Path) -> Dataset:
    out = tmp_path_factory.mktemp("ml100k") / "ml-100k"
    prepare(load_recbole(ml100k_dir), out, PrepareConfig(name="ml-100k"), show_progress=False)
    return Dataset(out)


def test_baselines_on_ml100k(ml100k):
    from guim import baselines

    fitted = {
        "random": baselines.build("random", ml100k),
        "popularity": baselines.build("popularity", ml100k),
        "item2vec": baselines.build("item2vec", ml100k, dim=16, epochs=2),
    }
    results = {}
    for name, embedder in fitted.items():
        for task in (future_interest, user_profile, item_attributes, item_similarity):
            if name == "random" and task is item_attributes:
                continue  # the slowest probe; random's chance level is checked on user_profile
            assert task.TASK.supports(ml100k) is True
            results[name, task.TASK.name] = task.TASK.run(embedder, ml100k)
    assert event_propensity.TASK.supports(ml100k) is not True  # ratings have no event types
    for (name, task_name), out in results.items():
        for key, value in out.items():
            if not key.startswith("n_") and "/n_" not in key:
                assert 0.0 <= value <= 1.0, (name, task_name, key, value)
    print({k: {m: round(v, 3) for m, v in out.items()} for k, out in results.items()})
    # learnt co-occurrence beats noise where item2vec is known to work
    for task_name, metric in (("item_similarity", "Recall@10"), ("future_interest", "Recall@10")):
        assert results["item2vec", task_name][metric] > results["random", task_name][metric]
    assert abs(results["random", "user_profile"]["AUC"] - 0.5) < 0.06
