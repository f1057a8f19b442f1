"""ONNX export of the user encoder: parity with PyTorch on random histories (max abs difference
<= 1e-4), static shapes but the batch, and the ONNX Runtime embedder behind the run's interface."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip(
    "onnxruntime", reason="ONNX export needs the export extra: pip install 'guim[export]'"
)
pytest.importorskip(
    "onnxscript", reason="ONNX export needs the export extra: pip install 'guim[export]'"
)

import onnx

from guim.embed import load_run
from guim.onnx import ONNX_FILE, OnnxRun, OnnxUserEncoder, random_histories

TOLERANCE = 1e-4

# a causal Transformer with K = 2 interests; a masked-item (bidirectional, [MASK] slot) one
RUNS = {
    "next-k2": ["model.n_interests=2", "model.dim=12", "model.ffn_dim=20"],
    "masked": ["train.objective=masked", "data.max_len=9"],
    # BSARec filter: PyTorch pads a batch to its longest history, ONNX to max_len
    "next-bsarec": ["model.freq_alpha=0.7", 'data.windows="prefix"'],
}


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Path:
    from guim.data.loaders.merrec import load_merrec
    from guim.data.prepare import PrepareConfig, prepare
    from guim.data.synthetic import SynthConfig, synth

    root = tmp_path_factory.mktemp("shop")
    raw = synth(root / "raw", SynthConfig.tiny(seed=5), show_progress=False)
    return prepare(load_merrec(raw), root / "ds", PrepareConfig(name="shop"), show_progress=False)


@pytest.fixture(scope="module", params=sorted(RUNS))
def exported(request, shop, tmp_path_factory) -> tuple:
    from guim.config import load_config
    from guim.train import train

    cfg = load_config("tiny", ["train.threads=1", "train.epochs=2", *RUNS[request.param]])
    out = train(cfg, shop, tmp_path_factory.mktemp("runs") / request.param, show_progress=False)
    run = load_run(out)
    return run, OnnxRun(run, threads=1)


def test_parity_with_pytorch_on_random_histories(exported):
    """Histories of 1 .. 2 * max_len events (cut to the last max_len), unknown gaps and events."""
    run, onnx_run = exported
    n_items = run.model.item_vectors().shape[0] - 1
    histories = random_histories(41, run.cfg.data.max_len, n_items, seed=7)
    expected = run.embed_users(histories)  # PyTorch, each batch padded to its longest history
    got = onnx_run.embed_users(histories)  # ONNX Runtime, padded to max_len
    assert got.shape == expected.shape == (41, run.cfg.model.n_interests, run.cfg.model.dim)
    assert np.abs(got - expected).max() <= TOLERANCE
    # batch 1 goes through the same graph
    one = histories.take([3])
    assert np.abs(onnx_run.embed_users(one) - run.embed_users(one)).max() <= TOLERANCE
    # and the recommendations agree
    top_torch, _ = run.recommend(histories, k=5)
    top_onnx, _ = onnx_run.recommend(histories, k=5)
    assert (top_torch == top_onnx).mean() > 0.95  # near-ties may swap at 1e-7
    assert (onnx_run.item_ids(top_onnx) == run.item_ids(top_onnx)).all()  # raw ids at the edge


def test_graph_has_static_shapes_but_the_batch_and_a_token_table(exported):
    run, _ = exported
    path = Path(run.run_dir) / ONNX_FILE
    graph = onnx.load(str(path)).graph
    max_len, k, d = run.cfg.data.max_len, run.cfg.model.n_interests, run.cfg.model.dim
    for value in graph.input:
        dims = value.type.tensor_type.shape.dim
        assert dims[0].dim_param and not dims[0].HasField("dim_value")  # symbolic batch
        assert dims[1].dim_value == max_len
        assert value.type.tensor_type.elem_type == onnx.TensorProto.INT64
    out = graph.output[0].type.tensor_type.shape.dim
    assert [out[1].dim_value, out[2].dim_value] == [k, d]
    n_items = run.model.item_vectors().shape[0] - 1
    tables = [t for t in graph.initializer if list(t.dims) == [n_items + 1, d]]
    assert tables, "the item-token table should be a constant of the graph"
    # item tokens are only gathered: no bag-of-attributes arithmetic left in the graph
    assert not any(node.op_type in {"EmbeddingBag", "Loop", "NonZero"} for node in graph.node)


def test_export_is_reused_and_max_len_is_checked(exported, tmp_path):
    run, onnx_run = exported
    path = Path(run.run_dir) / ONNX_FILE
    before = path.stat().st_mtime_ns
    OnnxRun(run, threads=1)  # same weights: no second export
    assert path.stat().st_mtime_ns == before
    # other weights (a resumed run): exported again
    changed = copy.deepcopy(run)
    torch.manual_seed(0)
    with torch.no_grad():
        for weight in changed.model.parameters():
            weight.add_(0.1 * torch.randn_like(weight))
    stale = tmp_path / "stale.onnx"
    shutil.copy(path, stale)
    again = OnnxRun(changed, stale, threads=1)
    histories = random_histories(5, run.cfg.data.max_len, 50, seed=1)
    assert np.abs(again.embed_users(histories) - changed.embed_users(histories)).max() <= TOLERANCE
    assert np.abs(again.embed_users(histories) - run.embed_users(histories)).max() > 1e-3
    assert onnx_run.encoder.max_len == run.cfg.data.max_len
    with pytest.raises(ValueError, match="max_len"):
        OnnxUserEncoder(path, max_len=run.cfg.data.max_len + 1)
    empty = random_histories(0, 5, 10)
    assert onnx_run.embed_users(empty).shape == (0, run.cfg.model.n_interests, run.cfg.model.dim)


def test_load_run_with_the_onnx_backend(exported):
    run, _ = exported
    onnx_run = load_run(run.run_dir, backend="onnx", threads=1)
    assert isinstance(onnx_run, OnnxRun)
    histories = random_histories(6, run.cfg.data.max_len, 50, seed=2)
    diff = np.abs(onnx_run.embed_users(histories) - run.embed_users(histories)).max()
    assert diff <= TOLERANCE
    np.testing.assert_array_equal(onnx_run.embed_items(), run.embed_items())
    with pytest.raises(ValueError, match="backend"):
        load_run(run.run_dir, backend="tensorflow")  # type: ignore[arg-type]
