"""Export: vectors in Parquet equal the inference path's, the manifest's recall is measured, and
approximate indexes are checked against exact search."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from guim.data.dataset import Dataset
from guim.embed import load_run
from guim.export import all_histories, column_vectors, export
from guim.index import IndexConfig, build_index, exact_search, measure, recall_at_k, search


def test_round_trip_vectors_equal_the_inference_path(export_dir, good_run, shop_dataset):
    run = load_run(good_run)
    manifest = json.loads((export_dir / "manifest.json").read_text())
    items = pq.read_table(export_dir / "items.parquet")
    d = manifest["dim"]
    np.testing.assert_array_equal(column_vectors(items["vector"], (d,)), run.embed_items()[1:])
    assert items["item_id"].to_pylist() == [
        str(x) for x in run.item_ids(np.arange(1, len(items) + 1))
    ]
    ds = Dataset(shop_dataset)
    assert items["cold"].to_numpy().sum() > 0, "cold items are exported too"
    users = pq.read_table(export_dir / "users.parquet")
    k = manifest["n_interests"]
    expected = run.embed_users(all_histories(ds))
    np.testing.assert_allclose(column_vectors(users["vectors"], (k, d)), expected, rtol=0, atol=0)
    assert users.num_rows == ds.n_users
    assert manifest["config_hash"] == run.cfg.hash()
    assert manifest["dataset_hash"] == ds.hash
    assert manifest["index"]["kind"] == "flat"
    assert manifest["index"]["recall@10"] == 1.0  # exact index against exact search
    assert manifest["index"]["query_ms"] > 0
    assert manifest["run_id"].startswith("good-")


def test_new_items_embed_like_catalogue_items_unseen_in_training(good_run, shop_dataset):
    """`embed_new_items` from raw attribute strings equals the model's own item tokens with the
    id embedding switched off (how `embed_items` embeds an item unseen in training)."""
    import copy

    import torch

    run = load_run(good_run)
    ds = Dataset(shop_dataset)
    vocab = {i: a for a, i in run.attribute_vocab().items()}
    assert len(vocab) > 0
    items = ds.items.sort("item_idx")
    attrs = [[vocab[a] for a in row] for row in items["attr_idx"].to_list()]
    assert run.model.tokens.use_attributes and all(attrs), "every tiny-shop item has attributes"
    model = copy.deepcopy(run.model)
    model.tokens.known.zero_()  # every item as if never seen in training
    with torch.inference_mode():
        reference = model.item_vectors()[1:].numpy()
    vectors, unknown = run.embed_new_items(attrs)
    assert vectors.shape == reference.shape and vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, reference, rtol=1e-5, atol=1e-6)
    assert unknown == [[]] * len(attrs) and (np.linalg.norm(vectors, axis=1) > 0).all()
    # the id embedding matters: known items differ from their cold vectors
    assert not np.allclose(vectors, run.embed_items()[1:], atol=1e-4)
    # unknown attributes are reported and leave the vector alone; no attribute at all: zero
    more, unknown = run.embed_new_items([[*attrs[0], "colour=never-seen"], []], [None, ""])
    np.testing.assert_allclose(more[0], vectors[0], rtol=1e-6)
    assert unknown == [["colour=never-seen"], []]
    np.testing.assert_array_equal(more[1], 0)
    with pytest.raises(ValueError, match="titles"):
        run.embed_new_items([[], []], ["one title"])


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_index_against_exact(kind):
    rng = np.random.default_rng(7)
    centers = rng.normal(size=(40, 24)).astype(np.float32)
    vectors = (centers[rng.integers(0, 40, 6000)] + 0.3 * rng.normal(size=(6000, 24))).astype(
        np.float32
    )
    queries = vectors[rng.choice(6000, 200, replace=False)] + 0.1
    index = build_index(vectors, IndexConfig(kind=kind, nprobe=16, ef_search=64))
    res = measure(index, vectors, queries, k=10)
    assert res["recall@10"] >= 0.9
    # the exact index finds exactly what exact search finds
    flat = build_index(vectors, IndexConfig(kind="flat"))
    assert recall_at_k(search(flat, queries, 10)[0], exact_search(vectors, queries, 10)[0]) == 1.0


def test_recall_at_k_by_hand():
    found = np.array([[1, 2, 3], [4, 5, -1]])
    truth = np.array([[3, 2, 9], [4, 6, 7]])
    assert recall_at_k(found, truth) == pytest.approx((2 / 3 + 1 / 3) / 2)


def test_auto_index_switches_to_hnsw_above_flat_max(good_run, tmp_path):
    out = export(good_run, tmp_path / "exp", IndexConfig(flat_max=10, ef_search=200))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["index"]["kind"] == "hnsw"
    assert manifest["index"]["recall@10"] >= 0.9


def test_cli_export(good_run, tmp_path):
    from guim.cli import app

    res = CliRunner().invoke(
        app,
        ["export", str(good_run), "--out", str(tmp_path / "e"), "--index", "ivf", "--nprobe", "4"],
    )
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "e" / "manifest.json").read_text())["index"]["kind"] == "ivf"
    res = CliRunner().invoke(app, ["export", str(good_run), "--out", str(tmp_path / "e")])
    assert res.exit_code == 2 and "already exists" in res.output
    res = CliRunner().invoke(
        app, ["export", str(good_run), "--out", str(tmp_path / "f"), "--index", "annoy"]
    )
    assert res.exit_code == 2 and "auto, flat, hnsw, ivf" in res.output, res.output
    assert not (tmp_path / "f").exists()


def test_onnx_user_encoder_exported_and_served(good_run, tmp_path):
    pytest.importorskip("onnxruntime", reason="the ONNX encoder needs guim[export]")
    from guim.serve.model import load_model

    out = export(good_run, tmp_path / "exp", onnx=True)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["onnx_user_encoder"] == "model/user_encoder.onnx"
    assert (out / manifest["onnx_user_encoder"]).exists()
    torch_model, onnx_model = load_model(out), load_model(out, backend="onnx")
    assert onnx_model.describe()["backend"] == "onnx"
    users = list(torch_model.base_users)[:20]
    histories = [torch_model.base_history(u) for u in users]
    a, b = torch_model.user_vectors(histories), onnx_model.user_vectors(histories)
    np.testing.assert_allclose(a, b, atol=1e-4)
    for h, ua, ub in zip(histories, a, b, strict=True):
        seen = set(h[0])
        ra, rb = torch_model.retrieve(ua, 10, seen, set()), onnx_model.retrieve(ub, 10, seen, set())
        assert ra.item_ids[:5] == rb.item_ids[:5]


def test_a_loaded_run_embeds_users_without_switching_modes(good_run, shop_dataset):
    """`load_run` puts the model in eval mode once, so a served request pays no walk over the
    modules; a model handed over mid-training (validation) is switched for the call and back."""
    run = load_run(good_run)
    histories = all_histories(Dataset(shop_dataset)).take(np.arange(20))
    switches: list[bool] = []
    run.model.train = lambda mode=True: switches.append(mode)  # eval() is train(False)
    vectors = run.embed_users(histories)
    del run.model.train
    assert switches == [] and not run.model.training
    run.model.train()
    np.testing.assert_array_equal(run.embed_users(histories), vectors)
    assert all(m.training for m in run.model.modules()), "training mode restored"
