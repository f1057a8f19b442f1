"""`guim quickstart`: the whole chain on the built-in synthetic shop, end to end, in minutes:
synth -> prepare -> baselines -> train GUIM -> evaluate -> Markdown report."""

from __future__ import annotations

import time
from pathlib import Path

from guim.baselines import build
from guim.config import load_config
from guim.data.dataset import Dataset
from guim.data.loaders.merrec import load_merrec
from guim.data.prepare import PrepareConfig, prepare
from guim.data.synthetic import SynthConfig, synth
from guim.embed import load_run
from guim.evaluate import evaluate
from guim.io import atomic_file
from guim.progress import console
from guim.train import train

METRICS = ("HR@10", "NDCG@10", "HR@20", "NDCG@20")


def run_quickstart(out: str | Path, size: str = "small", seed: int = 0) -> Path:
    """Build everything under `out` and return the path of the Markdown report."""
    out = Path(out)
    t0 = time.perf_counter()
    config = SynthConfig.tiny(seed) if size == "tiny" else SynthConfig.small(seed)
    console.rule("[bold]1/4 synthetic shop")
    shop = synth(out / "shop", config, overwrite=True)
    console.rule("[bold]2/4 prepare")
    data = prepare(
        load_merrec(shop),
        out / "dataset",
        PrepareConfig(name="synthetic", seed=seed),
        overwrite=True,
    )
    ds = Dataset(data)
    console.rule("[bold]3/4 baselines and GUIM")
    results: dict[str, dict[str, float]] = {}
    seconds: dict[str, float] = {}
    for name, overrides in (
        ("random", {}),
        ("popularity", {}),
        ("item2vec", {}),
        ("item2vec+attributes", {"attributes": True}),
    ):
        t = time.perf_counter()
        emb = build(name.split("+")[0], ds, "loo", **overrides)
        seconds[name] = time.perf_counter() - t
        results[name] = evaluate(emb, ds, "loo", "test")
    preset = "tiny" if size == "tiny" else "synthetic"
    run_dir = out / "runs" / "guim"
    if (run_dir / "config.json").exists():
        import shutil

        shutil.rmtree(run_dir)
    t = time.perf_counter()
    train(load_config(preset, [f"train.seed={seed}"]), data, run_dir)
    seconds["guim"] = time.perf_counter() - t
    results["guim"] = evaluate(load_run(run_dir), ds, "loo", "test")
    console.rule("[bold]4/4 report")
    report = out / "report.md"
    with atomic_file(report) as tmp:
        tmp.write_text(_markdown(ds, results, seconds, time.perf_counter() - t0))
    console.print(_markdown_table(results))
    return report


def _markdown_table(results: dict[str, dict[str, float]]) -> str:
    lines = ["| model | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
    for model, res in results.items():
        lines.append(f"| {model} | " + " | ".join(f"{res[m]:.4f}" for m in METRICS) + " |")
    return "\n".join(lines)


def _markdown(ds: Dataset, results, seconds, total: float) -> str:
    s = ds.stats
    return (
        "# guim quickstart\n\n"
        f"Synthetic shop: {s['n_users']:,} users, {s['n_items']:,} items, "
        f"{s['n_interactions']:,} interactions ({s['n_raw_events']:,} raw events).\n\n"
        "Next-item retrieval on the leave-one-out test split: full ranking over every item, "
        "items already in the user's history masked.\n\n"
        + _markdown_table(results)
        + "\n\nFit/train seconds: "
        + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items())
        + f". Total {total:.0f} s.\n"
    )
