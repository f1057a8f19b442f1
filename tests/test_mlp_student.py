"""BERT2DNN feed-forward student: it reproduces a tiny teacher's top-1 items on a fixed set of
prefixes (overfit), its every-prefix states equal its user vectors of each prefix, it rebuilds
from a state dict and exports to ONNX with parity."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from guim.data.batches import Batch
from guim.data.dataset import Dataset, Sequences
from guim.distill import score_kl
from guim.embed import load_run
from guim.models.mlp import MLPConfig, MLPStudent
from guim.models.tokens import ItemTables

MARGIN = 0.02  # teacher top-1 leads by at least this: not a near-tie
TEMPERATURE = 0.05  # of the soft labels the student is trained on


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    from guim.config import load_config
    from guim.data.loaders.merrec import load_merrec
    from guim.data.prepare import PrepareConfig, prepare
    from guim.data.synthetic import SynthConfig, synth
    from guim.train import train

    root = tmp_path_factory.mktemp("shop")
    raw = synth(root / "raw", SynthConfig.tiny(seed=3), show_progress=False)
    ds = prepare(load_merrec(raw), root / "ds", PrepareConfig(name="shop"), show_progress=False)
    cfg = load_config("tiny", ["train.threads=1", "train.epochs=10", "train.patience=100"])
    out = train(cfg, ds, root / "teacher", show_progress=False, evaluate_test=False)
    return load_run(out), Dataset(ds)


def prefixes(seqs: Sequences, n: int, seed: int = 0) -> Sequences:
    """`n` random prefixes (length >= 1) of the training histories."""
    rows, ends = [], []
    for r in range(len(seqs)):
        for e in range(seqs.offsets[r] + 1, seqs.offsets[r + 1] + 1):
            rows.append(int(seqs.offsets[r]))
            ends.append(int(e))
    pick = np.random.default_rng(seed).choice(len(rows), size=n, replace=False)
    sl = [slice(rows[i], ends[i]) for i in pick]
    return Sequences.from_lists(
        [seqs.item_idx[s].tolist() for s in sl],
        [seqs.event[s].tolist() for s in sl],
        [seqs.timestamp[s].tolist() for s in sl],
    )


def tensors(histories: Sequences, max_len: int) -> tuple[torch.Tensor, ...]:
    p = histories.padded(max_len)
    return tuple(torch.from_numpy(p[k]) for k in ("item_idx", "event", "timestamp"))


def make_student(run, dataset: Dataset, mlp: MLPConfig) -> MLPStudent:
    model_cfg = dataclasses.replace(run.cfg.model, dropout=0.0)
    if mlp.tokens == "teacher":
        return MLPStudent.from_teacher(run.model, run.cfg.data, mlp, model_cfg)
    from guim.train import item_tables

    tables = item_tables(run.cfg, dataset, np.ones(dataset.n_items + 1, dtype=bool))
    return MLPStudent(model_cfg, run.cfg.data, tables, mlp=mlp)


@pytest.mark.parametrize(
    "mlp",
    [
        MLPConfig(n_recent=20, pooling="weighted", hidden=(64,), tokens="teacher"),
        MLPConfig(n_recent=20, pooling="concat", hidden=(64,), tokens="own"),
    ],
    ids=["weighted-teacher-table", "concat-own-tokens"],
)
def test_student_reproduces_the_teachers_top_items_on_an_overfit_case(teacher, mlp):
    """60 prefixes labelled by the teacher (its softened scores over the whole catalogue); the
    student, trained on those soft labels only, ranks the teacher's top-1 item first wherever
    the teacher's choice is not a near-tie (margin >= 0.02), and elsewhere an item the teacher
    scores within the soft labels' temperature of its top-1."""
    run, dataset = teacher
    torch.manual_seed(0)
    histories = prefixes(dataset.train_sequences(), 60)
    inputs = tensors(histories, run.cfg.data.max_len)
    with torch.no_grad():
        target = run.model.score(run.model.user_vectors(*inputs), run.model.item_vectors())
    mask = torch.ones(target.shape[1], dtype=torch.bool)
    mask[0] = False  # the padding item
    student = make_student(run, dataset, mlp)
    opt = torch.optim.Adam([p for p in student.parameters() if p.requires_grad], lr=0.03)
    for _ in range(200):
        scores = student.score(student.user_vectors(*inputs), student.item_vectors())
        loss = score_kl(target, scores, temperature=TEMPERATURE, mask=mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
    teacher_scores = target.masked_fill(~mask, float("-inf"))
    student_top = scores.detach().masked_fill(~mask, float("-inf")).argmax(dim=1)
    top2 = teacher_scores.topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1]) >= MARGIN
    agree = student_top == teacher_scores.argmax(dim=1)
    assert clear.sum() >= 30, "the teacher should have a clear favourite on most prefixes"
    assert agree[clear].all()
    # elsewhere it picks an item the teacher scores within the soft labels' temperature of its
    # favourite (items closer than that are barely told apart by the KL at that temperature)
    picked = teacher_scores.gather(1, student_top[:, None])[:, 0]
    assert (picked >= top2[:, 0] - TEMPERATURE).all(), (top2[:, 0] - picked)[~agree].tolist()


def test_every_prefix_state_is_the_user_vector_of_that_prefix(teacher):
    """encode (every position, the trainer's states) agrees with user_vectors of each prefix,
    and left padding changes nothing."""
    run, dataset = teacher
    torch.manual_seed(1)
    model_cfg = dataclasses.replace(run.cfg.model, n_interests=3, dim=12)
    from guim.train import item_tables

    tables = item_tables(run.cfg, dataset, np.ones(dataset.n_items + 1, dtype=bool))
    student = MLPStudent(
        model_cfg, run.cfg.data, tables, mlp=MLPConfig(n_recent=5, pooling="concat", hidden=(7,))
    ).eval()
    histories = prefixes(dataset.train_sequences(), 7, seed=2)
    items, events, times = tensors(histories, 9)
    states = student.encode(items, events, times)  # (7, 9, 3, 12)
    assert states.shape == (7, 9, 3, 12)
    for t in range(9):
        direct = student.user_vectors(items[:, : t + 1], events[:, : t + 1], times[:, : t + 1])
        real = items[:, t] > 0
        torch.testing.assert_close(states[real, t], direct[real], rtol=1e-5, atol=1e-6)
    wide = tensors(histories, 14)  # 5 more columns of padding
    torch.testing.assert_close(student.user_vectors(*wide), states[:, -1])
    targets = (items > 0).long()  # every real prefix predicted (forward computes only those)
    out = student(Batch(items, events, times, targets, None))
    torch.testing.assert_close(out.users, states[items > 0], rtol=1e-5, atol=1e-6)
    assert out.items.shape == (dataset.n_items + 1, 12)
    with pytest.raises(ValueError, match="next"):
        MLPStudent(model_cfg, run.cfg.data, tables, causal=False)


@pytest.mark.parametrize("tokens", ["own", "teacher"])
def test_rebuilds_from_a_state_dict_and_exports_to_onnx(teacher, tokens, tmp_path: Path):
    """As load_run does: placeholder tables of the recorded sizes, then the saved weights
    (buffers included); the ONNX export of the student matches PyTorch within 1e-4."""
    run, dataset = teacher
    mlp = MLPConfig(n_recent=6, hidden=(8, 8), tokens=tokens)  # type: ignore[arg-type]
    student = make_student(run, dataset, mlp).eval()
    from guim.train import item_tables

    sizes = item_tables(run.cfg, dataset, np.ones(dataset.n_items + 1, dtype=bool)).sizes()
    if tokens == "teacher":  # a frozen table: no attribute tables
        sizes = {**sizes, "n_attributes": 0, "n_attribute_links": 0, "text_dim": 0}
    rebuilt = MLPStudent(
        student.model_cfg,
        run.cfg.data,
        ItemTables.placeholder(sizes),
        mlp=student.mlp_cfg,
    )
    rebuilt.load_state_dict(student.state_dict())
    rebuilt.eval()
    histories = prefixes(dataset.train_sequences(), 11, seed=4)
    inputs = tensors(histories, run.cfg.data.max_len)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.user_vectors(*inputs), student.user_vectors(*inputs))
        torch.testing.assert_close(rebuilt.item_vectors(), student.item_vectors())
    if tokens == "own":
        return
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from guim.onnx import OnnxUserEncoder, export_user_encoder

    path = export_user_encoder(student, run.cfg.data.max_len, tmp_path / "student.onnx")
    got = OnnxUserEncoder(path, threads=1).embed_users(histories)
    with torch.no_grad():
        want = student.user_vectors(*inputs).numpy()
    assert np.abs(got - want).max() <= 1e-4
