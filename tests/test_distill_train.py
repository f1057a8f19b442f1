"""`guim distill` through the trainer: students are ordinary runs (load_run, `guim eval`, `guim
bench`), the teachers' terms are what guim.distill computes (stacking averages probabilities),
a feed-forward student learns a teacher's ranking, and the teacher-assistant chain runs."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from guim.cli import app
from guim.config import ConfigError, load_config
from guim.data.batches import make_batches
from guim.data.dataset import Dataset
from guim.distill import soften
from guim.embed import load_run
from guim.trainer.distill import student_config

runner = CliRunner()
FAST = ["--set", "train.threads=1", "--set", "train.epochs=2", "--set", "train.patience=100"]


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """A tiny synthetic shop and two tiny next-item teachers (seeds 0 and 1)."""
    from guim.data.loaders.merrec import load_merrec
    from guim.data.prepare import PrepareConfig, prepare
    from guim.data.synthetic import SynthConfig, synth
    from guim.train import train

    root = tmp_path_factory.mktemp("distill")
    raw = synth(root / "raw", SynthConfig.tiny(seed=5), show_progress=False)
    ds = prepare(load_merrec(raw), root / "ds", PrepareConfig(name="shop"), show_progress=False)
    teachers = []
    for seed in (0, 1):
        cfg = load_config("tiny", ["train.threads=1", "train.epochs=6", f"train.seed={seed}"])
        teachers.append(train(cfg, ds, root / f"teacher{seed}", show_progress=False))
    return root, Path(ds), teachers


def test_student_config_is_the_teachers_plus_the_preset(shop):
    _, _, (teacher, _) = shop
    cfg = student_config([teacher], "bert2dnn", ["model.mlp.n_recent=7"])
    t = load_run(teacher).cfg
    assert cfg.model.kind == "mlp" and cfg.model.mlp.n_recent == 7
    assert cfg.model.dim == t.model.dim and cfg.data.max_len == t.data.max_len
    assert cfg.distill.teachers == (str(teacher.resolve()),)
    assert cfg.distill.teacher_hashes == (t.hash(),)
    with pytest.raises(ConfigError, match=r"needs distill\.teachers"):
        load_config(None, ["model.kind=mlp", "model.mlp.tokens=teacher"])


def test_bert2dnn_student_is_an_ordinary_run_for_eval_and_bench(shop, tmp_path):
    _, _, (teacher, _) = shop
    out = tmp_path / "student"
    res = runner.invoke(
        app, ["distill", "-t", str(teacher), "--student", "bert2dnn", "-o", str(out), *FAST]
    )
    assert res.exit_code == 0, res.output
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"]["kind"] == "mlp"
    assert cfg["distill"]["teachers"] == [str(teacher.resolve())]
    recorded = json.loads((out / "teachers.json").read_text())
    assert recorded[0]["config_hash"] == load_run(teacher).cfg.hash()
    run = load_run(out)
    assert type(run.model).__name__ == "MLPStudent"
    # the frozen table is the teacher's item tokens: items score exactly as the teacher's do
    teacher_items = load_run(teacher).embed_items()
    assert torch.allclose(torch.from_numpy(run.embed_items()), torch.from_numpy(teacher_items))

    res = runner.invoke(app, ["eval", str(out), "--json"])
    assert res.exit_code == 0, res.output
    # `guim eval` scores the student as any run: the test figures its training recorded
    scored = json.loads(res.output[res.output.index("{") :])["guim"]
    recorded_test = json.loads((out / "metrics.json").read_text())["test"]
    assert scored["HR@10"] == pytest.approx(recorded_test["HR@10"], abs=1e-12)
    assert scored["NDCG@10"] == pytest.approx(recorded_test["NDCG@10"], abs=1e-12)
    bench_dir = tmp_path / "bench"
    res = runner.invoke(
        app, ["bench", str(out), "--baselines", "popularity", "--tasks", "next_item", "-o",
              str(bench_dir)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    doc = json.loads((bench_dir / "bench.json").read_text())
    scores = next(iter(doc["results"].values()))["student"]
    assert scores["next_item/NDCG@10"] == pytest.approx(recorded_test["NDCG@10"], abs=1e-9)


def _term(cfg, ds: Path, teachers: list[Path], student_seed: int = 0) -> tuple:
    """The trainer's teacher term on one batch, and the pieces to recompute it by hand."""
    from guim.train import build

    torch.manual_seed(student_seed)
    t = build(cfg, Dataset(ds))
    batch = make_batches(t.seqs, cfg.data, cfg.train, np.random.default_rng(0))[0]
    t.model.eval()  # no dropout: the forward pass below is the one the term sees
    out = t.model(batch)
    term = t.distill.loss(torch.tensor(0.0), batch, out, t.model)
    return t, batch, out, term


def test_stacking_averages_the_teachers_probabilities_not_their_logits(shop):
    _, ds, teachers = shop
    # a low temperature: sharp distributions, where averaging logits and probabilities differ
    cfg = student_config(teachers, "bert2dnn", ["train.threads=1", "distill.temperature=0.05"])
    t, batch, out, term = _term(cfg, ds, teachers)
    hit, allowed, temp = batch.targets > 0, t.distill.allowed, cfg.distill.temperature
    probs, logits = [], []
    for path in teachers:
        teacher = load_run(path).model
        with torch.no_grad():
            users = teacher.output(teacher.encode(batch.items, batch.events, batch.timestamps)[hit])
            scores = teacher.score(users, teacher.item_vectors())
        probs.append(soften(scores, temp, allowed))
        logits.append(scores)
    student = torch.log_softmax(
        (t.model.score(out.users, t.model.item_vectors()) / temp).masked_fill(~allowed, -torch.inf),
        dim=-1,
    )

    def kl(target):
        inside = target > 0
        terms = target[inside] * (target[inside].log() - student[inside])
        return terms.sum() / len(target) * temp**2

    by_probs = kl((probs[0] + probs[1]) / 2)
    by_logits = kl(soften((logits[0] + logits[1]) / 2, temp, allowed))
    gap = abs(by_probs - by_logits).item()  # what the choice changes on this batch
    assert gap > 1e-6
    assert abs(term - by_probs).item() < 0.01 * gap


def test_minilm_term_is_zero_for_a_student_copied_from_its_teacher(shop):
    """init_from_teacher copies every weight of a same-shaped student: its attention, value
    relations and scores are the teacher's, so every teacher term is 0 (and > 0 otherwise)."""
    _, ds, (teacher, _) = shop
    cfg = student_config([teacher], "minilm", ["train.threads=1"])
    *_, same = _term(cfg, ds, [teacher])
    assert same.abs().item() < 1e-7
    cfg = replace(cfg, distill=replace(cfg.distill, init_from_teacher=False))
    *_, fresh = _term(cfg, ds, [teacher])
    # the tiny teacher's attention is still near uniform, as a fresh student's: the term is small
    # (~2e-4 here) but three orders of magnitude above a copied student's
    assert fresh.item() > 1000 * max(same.abs().item(), 1e-8)


def test_mlp_student_reproduces_the_teachers_scores_on_an_overfit_case(shop):
    """The trainer's own step (step_loss with the teacher term only, no labels) repeated on one
    small batch: the feed-forward student then ranks the teacher's top-1 item first at every
    prefix where the teacher has a clear favourite (margin >= 0.02), and at >= 90% of all."""
    from guim.train import build, step_loss

    _, ds, (teacher, _) = shop
    sets = ["train.threads=1", "train.batch_size=12", "train.lr=0.01", "model.dropout=0.0",
            "distill.temperature=0.05", "model.mlp.hidden=[64]"]  # fmt: skip
    cfg = student_config([teacher], "bert2dnn", sets)
    torch.manual_seed(0)
    t = build(cfg, Dataset(ds))
    batch = make_batches(t.seqs, cfg.data, cfg.train, np.random.default_rng(0))[0]
    generator = torch.Generator().manual_seed(0)
    for _ in range(500):
        for opt in t.optimizers.values():
            opt.zero_grad(set_to_none=True)
        step_loss(t, batch, generator, 0.0).backward()
        for opt in t.optimizers.values():
            opt.step()
    hit, allowed = batch.targets > 0, t.distill.allowed
    teacher_model = t.distill.teachers[0]
    with torch.no_grad():
        states = teacher_model.encode(batch.items, batch.events, batch.timestamps)[hit]
        target = teacher_model.score(teacher_model.output(states), teacher_model.item_vectors())
        t.model.eval()
        scores = t.model.score(t.model(batch).users, t.model.item_vectors())
    target = target.masked_fill(~allowed, -torch.inf)
    scores = scores.masked_fill(~allowed, -torch.inf)
    top2 = target.topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1]) >= 0.02
    agree = scores.argmax(dim=1) == target.argmax(dim=1)
    assert hit.sum() >= 30 and clear.sum() >= 0.5 * hit.sum()
    assert agree[clear].all()
    assert agree.float().mean() >= 0.9


def test_teacher_assistant_chain(shop, tmp_path):
    _, _, (teacher, _) = shop
    out = tmp_path / "small"
    res = runner.invoke(
        app,
        ["distill", "-t", str(teacher), "--assistant", "minilm", "--student", "minilm",
         "--set", "model.dim=8", "--set", "model.ffn_dim=16", "-o", str(out), *FAST,
         "--assistant-set", "train.threads=1", "--assistant-set", "train.epochs=1"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assistant = tmp_path / "small-assistant"
    assert json.loads((out / "config.json").read_text())["distill"]["teachers"] == [
        str(assistant.resolve())
    ]
    assert json.loads((assistant / "config.json").read_text())["distill"]["teachers"] == [
        str(teacher.resolve())
    ]
    assert load_run(out).cfg.model.dim == 8
