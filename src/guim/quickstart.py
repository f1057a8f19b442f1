"""The chains that train and then benchmark: `guim quickstart` (the whole chain on the built-in
synthetic shop, in minutes: synth -> prepare -> train GUIM (leave-one-out and cold-start runs)
-> GUIM-bench against the baselines -> Markdown and HTML report) and `guim bench --train`
(`train_and_bench`). `guim.bench` itself scores frozen runs only."""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from guim.bench.run import DEFAULT_BASELINES, ModelSpec, bench, check_labels, parse_train
from guim.data.loaders.merrec import load_merrec
from guim.data.prepare import PrepareConfig, prepare
from guim.data.synthetic import SynthConfig, synth
from guim.errors import UserError
from guim.io import read_json
from guim.progress import console
from guim.provenance import CpuWatch


def run_quickstart(out: str | Path, size: str = "small", seed: int = 0) -> Path:
    """Build everything under `out`; returns the path of the HTML report."""
    out = Path(out)
    config = SynthConfig.tiny(seed) if size == "tiny" else SynthConfig.small(seed)
    preset = "tiny" if size == "tiny" else "synthetic"
    console.rule("[bold]1/3 synthetic shop")
    shop = synth(out / "shop", config, overwrite=True)
    console.rule("[bold]2/3 prepare")
    data = prepare(
        load_merrec(shop),
        out / "dataset",
        PrepareConfig(name="synthetic", seed=seed),
        overwrite=True,
    )
    console.rule("[bold]3/3 train GUIM and run GUIM-bench")
    bench_dir = out / "bench"
    if bench_dir.exists():
        shutil.rmtree(bench_dir)
    bench_json = train_and_bench(
        models=[],
        dataset_dir=data,
        out_dir=bench_dir,
        train=[f"guim={preset}", f"guim={preset}:cold"],
        baselines=("random", "popularity", "item2vec", "cml"),
        seed=seed,
        command=f"guim quickstart --out {out} --size {size} --seed {seed}",
    )
    _print_leaderboard(bench_json)
    report = bench_dir / "report.html"
    console.print(f"Markdown report: {bench_dir / 'report.md'}")
    return report


def _print_leaderboard(bench_json: Path) -> None:
    from rich import box
    from rich.table import Table

    doc = read_json(bench_json)
    (dataset, models), *_ = doc["results"].items()
    # no outer or vertical rules: the table fits an 80-column terminal uncut
    table = Table(
        "task",
        "metric",
        *models,
        title=f"GUIM-bench on the {dataset} shop (test)",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        padding=(0, 1),
        pad_edge=False,
        collapse_padding=True,
    )
    for task, info in doc["tasks"].items():
        metric = info["primary_metric"]
        values = [models[m].get(f"{task}/{metric}") for m in models]
        table.add_row(task, metric, *("-" if v is None else f"{v:.4f}" for v in values))
    console.print(table)


def train_models(
    train: Sequence[str], dataset_dir: Path, out_dir: Path, seed: int, overrides: Sequence[str]
) -> list[ModelSpec]:
    """Train GUIM for each `[LABEL=]PRESET[:SCHEME]` spec into out_dir/runs/LABEL-SCHEME (fresh
    each time, so its training time is measured in this invocation)."""
    from guim.config import load_config
    from guim.train import train as train_fn

    grouped: dict[str, dict[str, Path]] = {}
    for text in train:
        label, preset, scheme = parse_train(text)
        cfg = load_config(
            preset, [*overrides, f"train.seed={seed}", f"data.scheme={scheme}"], dataset_dir
        )
        run_dir = out_dir / "runs" / f"{label}-{scheme}"
        if scheme in grouped.setdefault(label, {}):
            raise UserError(f"--train: {label!r} is trained twice on {scheme}")
        if run_dir.exists():
            shutil.rmtree(run_dir)
        console.rule(f"[bold]training {label} ({preset}, {scheme})")
        train_fn(cfg, dataset_dir, run_dir)
        grouped[label][scheme] = run_dir
    return [ModelSpec(label, runs) for label, runs in grouped.items()]


def train_and_bench(
    models: Sequence[ModelSpec],
    dataset_dir: str | Path,
    out_dir: str | Path,
    train: Sequence[str] = (),
    train_overrides: Sequence[str] = (),
    seed: int = 0,
    **bench_options: Any,
) -> Path:
    """Train the `train` specs (`train_overrides` applied), then `guim.bench.run.bench` them
    with the given runs `models`: a label may combine runs trained here with given runs of other
    schemes. Labels are checked before anything trains. Returns bench.json's path."""
    given = [ModelSpec(m.label.lower(), dict(m.runs)) for m in models]
    pairs = [(label, scheme) for label, _, scheme in map(parse_train, train)]
    pairs += [(s.label, scheme) for s in given for scheme in s.runs]
    check_labels(
        pairs,
        bench_options.get("baselines", DEFAULT_BASELINES),
        bench_options.get("peers", ()),
        [s.label for s in given],
    )
    specs = given
    watch = CpuWatch()  # run_conditions in bench.json cover the training too
    train_wall_seconds = None
    if train:
        t0 = time.perf_counter()
        trained = train_models(train, Path(dataset_dir), Path(out_dir), seed, train_overrides)
        train_wall_seconds = round(time.perf_counter() - t0, 2)
        by_label = {s.label: s for s in given}
        for spec in trained:
            if spec.label in by_label:
                by_label[spec.label].runs.update(spec.runs)
        specs = [s for s in trained if s.label not in by_label] + given
    return bench(
        specs,
        dataset_dir,
        out_dir,
        seed=seed,
        watch=watch,
        train_wall_seconds=train_wall_seconds,
        **bench_options,
    )
