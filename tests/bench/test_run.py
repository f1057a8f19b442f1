"""The benchmark runner end to end on the tiny synthetic shop: bench.json's schema, scheme
routing, skips, the peer comparison, determinism, the baseline cache and `guim bench`."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from guim.baselines import RandomConfig, RandomEmbedder
from guim.bench.run import ModelSpec, bench, parse_train
from guim.bench.tasks import next_item
from guim.checkpoint import read_log
from guim.cli import app
from guim.config import load_config
from guim.data.dataset import Dataset
from guim.data.loaders.merrec import load_merrec
from guim.data.prepare import PrepareConfig, prepare
from guim.data.synthetic import SynthConfig, synth
from guim.embed import load_run
from guim.evaluate import evaluate
from guim.io import read_json
from guim.quickstart import train_and_bench
from guim.train import train

TINY = ["train.threads=1"]


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    """The tiny synthetic shop, prepared, with a tiny GUIM trained on loo and on cold."""
    root = tmp_path_factory.mktemp("shop")
    raw = synth(root / "raw", SynthConfig.tiny(), show_progress=False)
    data = prepare(
        load_merrec(raw), root / "data", PrepareConfig(name="Synthetic"), show_progress=False
    )
    runs = {
        scheme: train(
            load_config("tiny", [*TINY, f"data.scheme={scheme}"]),
            data,
            root / f"run-{scheme}",
            show_progress=False,
        )
        for scheme in ("loo", "cold")
    }
    return data, runs


@dataclass(frozen=True)
class ColdProbe:
    """Cold-scheme retrieval: checks that each model is scored with its cold embedder."""

    name: str = "cold_probe"
    primary_metric: str = "NDCG@10"
    scheme: str = "cold"
    seen: list[Any] = field(default_factory=list)

    def supports(self, dataset: Dataset) -> bool | str:
        return True

    def run(self, embedder, dataset: Dataset, split: str = "test") -> dict[str, float]:
        self.seen.append(getattr(embedder, "run_dir", embedder.name))
        out = evaluate(embedder, dataset, "cold", split, ks=(10,))
        return {"HR@10": out["HR@10"], "NDCG@10": out["NDCG@10"], "n_cases": out["n_cases"]}


@dataclass(frozen=True)
class NeedsUsers:
    name: str = "needs_users"
    primary_metric: str = "AUC"
    scheme: str = "loo"

    def supports(self, dataset: Dataset) -> bool | str:
        return "the dataset has no user attributes"

    def run(self, embedder, dataset, split="test"):  # pragma: no cover
        raise AssertionError("an unsupported task must not run")


@dataclass(frozen=True)
class FailsOnPopularity:
    name: str = "fragile"
    primary_metric: str = "score"
    scheme: str = "loo"

    def supports(self, dataset: Dataset) -> bool | str:
        return True

    def run(self, embedder, dataset: Dataset, split: str = "test") -> dict[str, float]:
        if embedder.name == "popularity":
            raise RuntimeError("one-dimensional vectors")
        return {"score": 0.5}


def fake_tasks(monkeypatch) -> ColdProbe:
    probe = ColdProbe()
    module = types.ModuleType("fake", "Cold probe: retrieval of cold items.\n\nDetails.")
    tasks = {
        "next_item": (next_item.TASK, next_item),
        "cold_probe": (probe, module),
        "needs_users": (NeedsUsers(), module),
        "fragile": (FailsOnPopularity(), module),
    }
    errors = {"half_written": "task module failed to import: SyntaxError: oops"}
    monkeypatch.setattr("guim.bench.run.discover_tasks", lambda: (tasks, errors))
    return probe


def test_bench_json_schema_routing_and_skips(shop, tmp_path, monkeypatch):
    data, runs = shop
    probe = fake_tasks(monkeypatch)
    models = [ModelSpec("GUIM", runs), ModelSpec("loo-only", {"loo": runs["loo"]})]
    path = bench(models, data, tmp_path, baselines=("random", "popularity"))
    doc = read_json(path)

    assert set(doc) == {
        "command", "machine", "git", "results", "dataset", "tasks", "skipped", "models",
        "comparisons", "seconds", "wall_seconds", "seed", "run_conditions",
    }  # fmt: skip
    assert list(doc["results"]) == ["synthetic"]
    results = doc["results"]["synthetic"]
    assert list(results) == ["guim", "loo-only", "random", "popularity"]
    ds = Dataset(data)
    assert doc["dataset"] == {
        "name": "synthetic",
        "hash": ds.hash,
        "path": str(Path(data).resolve()),
        "n_users": ds.n_users,
        "n_items": ds.n_items,
        "n_interactions": ds.stats["n_interactions"],
        "repeat_share": {s: ds.stats["repeat_targets"]["loo"][s] for s in ("valid", "test")},
    }
    assert doc["tasks"]["next_item"]["primary_metric"] == "NDCG@10"
    assert doc["tasks"]["next_item"]["description"].startswith("Next-item retrieval: rank")
    assert doc["tasks"]["next_item"]["description"].endswith("exact full ranking).")
    assert doc["tasks"]["next_item"]["protocol"] == "history masked"
    assert doc["tasks"]["next_item"]["extra_metrics"] == {"NDCG@10_unmasked": "nothing masked"}
    assert doc["tasks"]["cold_probe"] == {
        "primary_metric": "NDCG@10",
        "description": "Cold probe: retrieval of cold items.",
        "scheme": "cold",
        "split": "test",
    }
    assert set(doc["tasks"]) == {"next_item", "cold_probe", "fragile"}

    # each task uses the run of its scheme; the numbers are the evaluator's
    loo = evaluate(load_run(runs["loo"]), ds, "loo", "test", ks=(10, 20))
    for metric in ("HR@10", "NDCG@10", "HR@20", "NDCG@20"):
        assert results["guim"][f"next_item/{metric}"] == pytest.approx(loo[metric], abs=1e-12)
    assert results["guim"]["next_item/n_cases"] == loo["n_cases"]
    assert probe.seen[0] == runs["cold"]
    assert "cold_probe/NDCG@10" in results["random"] and "cold_probe/NDCG@10" in results["guim"]
    assert "cold_probe/NDCG@10" not in results["loo-only"]
    assert doc["skipped"] == {
        "half_written": "task module failed to import: SyntaxError: oops",
        "needs_users": "the dataset has no user attributes",
        "cold_probe/loo-only": "no cold embedder for loo-only",
        "fragile/popularity": "failed: RuntimeError: one-dimensional vectors",
    }

    guim = doc["models"]["guim"]
    metrics = read_json(runs["loo"] / "metrics.json")
    log = read_log(runs["loo"])
    assert guim["kind"] == "guim"
    assert guim["runs"] == {"loo": str(runs["loo"]), "cold": str(runs["cold"])}
    assert guim["config"] == read_json(runs["loo"] / "config.json")
    assert guim["config_hash"] == metrics["config_hash"]
    assert guim["train_seconds"] == metrics["train_seconds"]
    assert guim["epochs"] == len(log) == len(guim["curve"])
    assert guim["curve"][-1]["train_seconds"] == pytest.approx(
        sum(r["train_seconds"] for r in log), abs=1e-3
    )
    assert [p["valid_NDCG@10"] for p in guim["curve"]] == [r["valid_NDCG@10"] for r in log]
    random = doc["models"]["random"]
    assert random["kind"] == "baseline" and random["runs"] is None and random["curve"] is None
    assert random["config"] == {"baseline": "random", "dim": 32, "seed": 0}
    assert doc["comparisons"] == {}
    assert set(doc["seconds"]["cold_probe"]) == {"guim", "random", "popularity"}
    assert doc["wall_seconds"] > 0 and doc["seed"] == 0
    conditions = doc["run_conditions"]  # what else used the CPU meanwhile, measured
    assert conditions["train_wall_seconds"] is None  # nothing trained in this invocation
    assert conditions["torch_threads"] >= 1 and conditions["wall_seconds"] > 0
    assert conditions["own_cpu_seconds"] > 0
    assert {"other_cpu_seconds", "other_cores_mean", "alone", "env", "cores"} <= set(conditions)
    html = (tmp_path / "report.html").read_text()
    assert html.count('data-chart="task-') == 3


def test_same_command_twice_gives_identical_results(shop, tmp_path, monkeypatch):
    data, runs = shop
    fake_tasks(monkeypatch)
    args = ([ModelSpec("guim", runs)], data, tmp_path)
    kwargs: dict[str, Any] = {"tasks": ["next_item", "cold_probe"], "seed": 3}
    kwargs["baselines"] = ("random", "popularity")
    first = read_json(bench(*args, **kwargs))
    cache = tmp_path / "baselines" / "cold" / "random" / "model.safetensors"
    stamp = cache.stat().st_mtime_ns
    second = read_json(bench(*args, **kwargs))
    assert cache.stat().st_mtime_ns == stamp  # fitted once, then loaded from the cache
    assert second["results"] == first["results"]
    assert first["models"]["random"]["config"]["seed"] == 3
    # a fresh directory (fresh fits) gives the same numbers too
    third = read_json(bench(args[0], data, tmp_path / "fresh", **kwargs))
    assert third["results"] == first["results"]


def test_peers_time_ratio_and_missing_recbole(shop, tmp_path, monkeypatch):
    data, runs = shop
    log = read_log(runs["loo"])
    target = log[1]["valid_NDCG@10"]  # guim first reaches this at epoch 2 at the latest
    reach = next(
        sum(r["train_seconds"] for r in log[: i + 1])
        for i in range(len(log))
        if log[i]["valid_NDCG@10"] >= target
    )

    def run_peer(name, dataset_dir, out_dir, max_minutes, seed):
        if name == "bert4rec":
            raise ImportError("No module named 'recbole'")
        assert max_minutes == 0.5 and seed == 0
        embedder = RandomEmbedder(RandomConfig(dim=8), Dataset(dataset_dir).n_items)
        return types.SimpleNamespace(
            embedder=embedder,
            train_seconds=12.0,
            epochs=3,
            best_epoch=2,
            best_valid_ndcg10=target,
            seconds_to_best=8.0,
            curve=[{"epoch": e, "train_seconds": 4.0 * e, "valid_NDCG@10": target} for e in (1, 2)],
            cap="30 seconds",
            hparams={"lr": 0.001},
        )

    peers_module = types.ModuleType("guim.peers.recbole")
    peers_module.run_peer = run_peer  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "guim.peers.recbole", peers_module)
    path = bench(
        [ModelSpec("guim", runs)],
        data,
        tmp_path,
        tasks=["next_item"],
        baselines=(),
        peers=("SASRec", "bert4rec"),
        peer_minutes=0.5,
    )
    doc = read_json(path)
    assert list(doc["results"]["synthetic"]) == ["guim", "sasrec"]
    assert doc["models"]["sasrec"]["kind"] == "peer"
    assert doc["models"]["sasrec"]["cap"] == "30 seconds"
    assert doc["models"]["sasrec"]["config"] == {"lr": 0.001}
    assert "RecBole is not installed" in doc["skipped"]["next_item/bert4rec"]
    comp = doc["comparisons"]["guim_vs_sasrec"]
    assert comp["peer_best_valid_NDCG@10"] == target
    assert comp["peer_seconds_to_best"] == 8.0
    assert comp["guim_seconds_to_reach"] == pytest.approx(reach, abs=1e-3)
    assert comp["ratio"] == pytest.approx(reach / 8.0, abs=1e-3)
    assert "guim_vs_bert4rec" not in doc["comparisons"]


def test_parse_train_and_model_spec_errors(shop):
    assert parse_train("tiny") == ("guim-tiny", "tiny", "loo")
    assert parse_train("tiny:cold") == ("guim-tiny", "tiny", "cold")
    assert parse_train("Mine=configs/x.toml:temporal") == ("mine", "configs/x.toml", "temporal")
    with pytest.raises(ValueError, match="scheme"):
        parse_train("tiny:sideways")
    _, runs = shop
    with pytest.raises(ValueError, match="two loo runs"):
        ModelSpec.from_runs("x", [runs["loo"], runs["loo"]])


def test_guim_bench_cli(shop, tmp_path):
    data, runs = shop
    out = tmp_path / "bench"
    result = CliRunner().invoke(
        app,
        [
            "bench", str(runs["loo"]),
            "--run", f"both={runs['loo']}", "--run", f"both={runs['cold']}",
            "--train", "tiny", "--set", "train.threads=1",
            "--dataset", str(data), "--tasks", "next_item",
            "--baselines", "random,popularity", "--out", str(out),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = read_json(out / "bench.json")
    results = doc["results"]["synthetic"]
    assert list(results) == ["guim-tiny", "run-loo", "both", "random", "popularity"]
    assert doc["models"]["both"]["runs"] == {"loo": str(runs["loo"]), "cold": str(runs["cold"])}
    # trained here with the fixture's settings: the same model, the same numbers
    assert doc["models"]["guim-tiny"]["runs"] == {"loo": str(out / "runs" / "guim-tiny-loo")}
    assert results["guim-tiny"] == pytest.approx(results["run-loo"])
    assert results["both"] == results["run-loo"]
    assert (out / "report.html").exists() and (out / "report.md").exists()
    # run_conditions cover the whole invocation: the training --train did before scoring too
    conditions = doc["run_conditions"]
    assert 0 < conditions["train_wall_seconds"] < conditions["wall_seconds"]
    assert conditions["wall_seconds"] > doc["wall_seconds"]  # bench.json's own: scoring only
    assert "run conditions" in (out / "report.md").read_text()

    bad = CliRunner().invoke(app, ["bench", "--run", "nolabel", "--dataset", str(data)])
    assert bad.exit_code == 2 and "LABEL=PATH" in bad.output


def test_label_combines_trained_and_given_runs_of_other_schemes(shop, tmp_path):
    data, runs = shop
    kw = dict(tasks=["next_item"], baselines=[], train_overrides=TINY)
    path = train_and_bench(
        [ModelSpec.from_runs("mix", [runs["cold"]])],
        data,
        tmp_path / "b",
        train=["mix=tiny"],
        **kw,
    )
    doc = read_json(path)
    assert doc["models"]["mix"]["runs"] == {
        "loo": str(tmp_path / "b" / "runs" / "mix-loo"),
        "cold": str(runs["cold"]),
    }
    # the same label twice on one scheme is refused before anything trains
    with pytest.raises(ValueError, match=r"mix \(cold\)"):
        train_and_bench(
            [ModelSpec.from_runs("mix", [runs["cold"]])],
            data,
            tmp_path / "c",
            train=["mix=tiny:cold"],
            **kw,
        )
    assert not (tmp_path / "c" / "runs").exists()
