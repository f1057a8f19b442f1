"""RecBole peers on LastFM (shrunk model, 1-2 epochs): identical splits and counts, the Embedder
reproducing RecBole's own unmasked full-sort test numbers, caps and PeerRun fields."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

pytest.importorskip(
    "recbole", reason="RecBole peers need the optional extra: pip install -e '.[peers]'"
)

from guim.data.dataset import Dataset, Sequences
from guim.data.loaders.s3rec import load_s3rec
from guim.data.prepare import PrepareConfig, prepare
from guim.embed import Embedder
from guim.evaluate import evaluate, rank_cases
from guim.io import read_json
from guim.peers.recbole import (
    SplitMismatch,
    check_splits,
    load_peer,
    right_padded,
    run_peer,
)

# the real architecture, shrunk so an epoch on LastFM takes seconds; max length 10 < most
# LastFM histories, so truncation (and BERT4Rec's mask-token shift) is exercised
SMALL = {"MAX_ITEM_LIST_LENGTH": 10, "hidden_size": 16, "inner_size": 32, "train_batch_size": 1024}


@pytest.fixture(scope="module")
def lastfm(tmp_path_factory, lastfm_txt) -> Dataset:
    out = tmp_path_factory.mktemp("lastfm") / "lastfm"
    prepare(load_s3rec(lastfm_txt), out, PrepareConfig(name="lastfm"), show_progress=False)
    return Dataset(out)


@pytest.fixture(scope="module")
def sasrec(tmp_path_factory, lastfm):
    out = tmp_path_factory.mktemp("sasrec")
    return run_peer(
        "sasrec",
        lastfm.path,
        out,
        10,
        max_epochs=2,
        threads=1,
        overrides=SMALL,
        show_progress=False,
    )


@pytest.fixture(scope="module")
def bert4rec(tmp_path_factory, lastfm):
    # a time cap far below one epoch: it must stop after the first. No `threads`: the peer must
    # keep torch's setting (what OMP_NUM_THREADS gives a `guim bench` and its GUIM runs)
    out = tmp_path_factory.mktemp("bert4rec")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_peer(
            "bert4rec", lastfm.path, out, 1e-6, max_epochs=3, overrides=SMALL, show_progress=False
        )
    finally:
        torch.set_num_threads(before)


@pytest.fixture(params=["sasrec", "bert4rec"])
def run(request):
    return request.getfixturevalue(request.param)


def _recbole_ranks(run) -> tuple[np.ndarray, np.ndarray]:
    """(user_idx, 0-based rank of the target) from RecBole's own full-sort test scores."""
    parts = run.recbole
    rb_user = np.zeros(int(parts.rb_dataset.user_num), dtype=np.int64)
    rb_user[parts.user_map] = np.arange(len(parts.user_map))
    users, ranks = [], []
    parts.model.eval()
    with torch.no_grad():
        for batch in parts.test:
            interaction, scores, pos_u, pos_i = parts.trainer._full_sort_batch_eval(batch)
            target = scores[pos_u, pos_i]  # (B,)
            ranks.append((scores >= target[:, None]).sum(1).numpy() - 1)  # ties count above
            users.append(rb_user[interaction["user_id"].numpy()])
    users, ranks = np.concatenate(users), np.concatenate(ranks)
    order = np.argsort(users)
    return users[order], ranks[order]


def test_right_padded_is_recbole_layout():
    histories = Sequences.from_lists([[1, 2, 3, 4, 5], [7], [8, 9]])
    item_map = np.arange(10) + 100
    item_map[0] = 0
    items, lengths = right_padded(histories, 3, item_map)
    assert items.tolist() == [[103, 104, 105], [107, 0, 0], [108, 109, 0]]
    assert lengths.tolist() == [3, 1, 2]


def test_counts_and_splits_match(run, lastfm):
    parts = run.recbole
    assert parts.rb_dataset.user_num - 1 == lastfm.n_users
    assert parts.rb_dataset.item_num - 1 == lastfm.n_items
    rows = sum(len(loader._dataset) for loader in (parts.train, parts.valid, parts.test))
    assert (
        rows == lastfm.stats["n_interactions"] - lastfm.n_users
    )  # one example per non-first event
    # the check has teeth: swapping two valid targets is caught
    loaders, emb = (parts.train, parts.valid, parts.test), parts.embedder
    check_splits(lastfm, loaders, parts.user_map, emb.item_map, emb.max_len)
    inter = parts.valid._dataset.inter_feat
    inter["item_id"][[0, 1]] = inter["item_id"][[1, 0]].clone()
    try:
        with pytest.raises(SplitMismatch, match="valid cases differ"):
            check_splits(lastfm, loaders, parts.user_map, emb.item_map, emb.max_len)
    finally:
        inter["item_id"][[0, 1]] = inter["item_id"][[1, 0]].clone()


def test_embedder_reproduces_recbole_unmasked_test(run, lastfm):
    assert isinstance(run.embedder, Embedder)
    ours = evaluate(run.embedder, lastfm, "loo", "test", mask_history=False)
    n = ours["n_cases"]
    for k in (5, 10, 20):
        for ours_key, rb_key in (
            (f"HR@{k}", f"hit@{k}"),
            (f"NDCG@{k}", f"ndcg@{k}"),
            (f"MRR@{k}", f"mrr@{k}"),
        ):
            assert abs(ours[ours_key] - run.recbole_test[rb_key]) <= 2 / n, (
                ours_key,
                ours,
                run.recbole_test,
            )
    # case by case: the same rank from our exact ranking as from RecBole's own scores
    cases = lastfm.eval_cases("loo", "test")
    users, rb_ranks = _recbole_ranks(run)
    assert np.array_equal(users, cases.user_idx)
    our_ranks = rank_cases(run.embedder, cases, mask_history=False)
    assert (our_ranks == rb_ranks).mean() >= 0.99
    assert np.abs(our_ranks - rb_ranks).max() <= 2  # float32 near-ties only
    # masking the history can only lift the target
    assert (rank_cases(run.embedder, cases) <= our_ranks).all()


def test_peer_run_fields(run, lastfm):
    curve = run.curve
    assert run.epochs == len(curve) >= 1 and [r["epoch"] for r in curve] == list(
        range(1, run.epochs + 1)
    )
    ndcg = [r["valid_NDCG@10"] for r in curve]
    assert run.best_epoch == int(np.argmax(ndcg)) + 1
    assert run.seconds_to_best == pytest.approx(
        curve[run.best_epoch - 1]["train_seconds"], abs=1e-3
    )
    assert 0 < run.seconds_to_best <= run.train_seconds
    assert all(a["train_seconds"] < b["train_seconds"] for a, b in itertools.pairwise(curve))
    # the embedder holds the best epoch's weights: our valid NDCG@10 is the recorded best
    valid = evaluate(run.embedder, lastfm, "loo", "valid")
    assert valid["NDCG@10"] == pytest.approx(run.best_valid_ndcg10, abs=1e-9)
    assert run.best_valid_ndcg10 > 0.005  # above random (~0.003 with 3646 items), after 1 epoch
    items = run.embedder.embed_items()
    assert items.shape == (lastfm.n_items + 1, run.embedder.dim) and not items[0].any()
    users = run.embedder.embed_users(Sequences.from_lists([[1, 2, 3], []]))
    assert users.shape == (2, 1, run.embedder.dim) and users[0].any() and not users[1].any()
    assert set(run.recbole_test) >= {"hit@10", "ndcg@10"}
    assert (run.out_dir / "peer.json").exists() and (run.out_dir / "model.safetensors").exists()


def test_caps(sasrec, bert4rec):
    assert sasrec.epochs == 2 and sasrec.cap.startswith("epochs")
    assert bert4rec.epochs == 1 and bert4rec.cap.startswith("time cap")


def test_peer_keeps_torch_threads_by_default(bert4rec):
    assert read_json(bert4rec.out_dir / "peer.json")["threads"] == 1


def test_load_peer_gives_the_same_embeddings(sasrec, lastfm):
    loaded = load_peer(sasrec.out_dir)
    assert loaded.best_epoch == sasrec.best_epoch and loaded.cap == sasrec.cap
    np.testing.assert_array_equal(loaded.embedder.embed_items(), sasrec.embedder.embed_items())
    histories = lastfm.eval_cases("loo", "test").history
    np.testing.assert_allclose(
        loaded.embedder.embed_users(histories), sasrec.embedder.embed_users(histories), atol=1e-6
    )


def test_short_users_fail_loudly(tmp_path):
    # RecBole's leave-one-out cannot hold out valid and test for a user with 3 interactions
    lines = [f"{u} " + " ".join(str((u * 7 + j) % 40 + 1) for j in range(6)) for u in range(1, 30)]
    lines.append("30 1 2 3")
    (tmp_path / "Tiny.txt").write_text("\n".join(lines) + "\n")
    prepare(
        load_s3rec(tmp_path / "Tiny.txt"),
        tmp_path / "tiny",
        PrepareConfig(name="tiny"),
        show_progress=False,
    )
    with pytest.raises(SplitMismatch, match="1-3 interactions"):
        run_peer(
            "sasrec", tmp_path / "tiny", tmp_path / "run", 1, max_epochs=1, show_progress=False
        )
