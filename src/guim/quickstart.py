"""`guim quickstart`: the whole chain on the built-in synthetic shop, in minutes:
synth -> prepare -> train GUIM (leave-one-out and cold-start runs) -> GUIM-bench against the
baselines -> Markdown and HTML report."""

from __future__ import annotations

import shutil
from pathlib import Path

from guim.bench.run import bench
from guim.data.loaders.merrec import load_merrec
from guim.data.prepare import PrepareConfig, prepare
from guim.data.synthetic import SynthConfig, synth
from guim.io import read_json
from guim.progress import console


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
    bench_json = bench(
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
    from rich.table import Table

    doc = read_json(bench_json)
    (dataset, models), *_ = doc["results"].items()
    table = Table("task", "metric", *models, title=f"GUIM-bench on the {dataset} shop (test)")
    for task, info in doc["tasks"].items():
        metric = info["primary_metric"]
        values = [models[m].get(f"{task}/{metric}") for m in models]
        table.add_row(task, metric, *("-" if v is None else f"{v:.4f}" for v in values))
    console.print(table)
