"""End to end: `guim quickstart` on a tiny synthetic shop through Typer's CliRunner."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from guim.cli import app


def test_quickstart_tiny(tmp_path):
    result = CliRunner().invoke(app, ["quickstart", "--out", str(tmp_path), "--size", "tiny"])
    assert result.exit_code == 0, result.output
    bench = json.loads((tmp_path / "bench" / "bench.json").read_text())
    models = bench["results"]["synthetic"]
    assert {"guim", "random", "popularity", "item2vec+attr"} <= set(models)
    for model in ("guim", "popularity"):
        ndcg = models[model]["next_item/NDCG@10"]
        assert 0.0 <= ndcg <= 1.0
    assert "cold_start/NDCG@10" in models["guim"]  # the cold-scheme run was trained and scored
    html = (tmp_path / "bench" / "report.html").read_text()
    assert "<img" in html and "next_item" in html
    assert (tmp_path / "dataset" / "stats.json").exists()
    for scheme in ("loo", "cold"):
        assert (tmp_path / "bench" / "runs" / f"guim-{scheme}" / "model.safetensors").exists()


def test_closing_table_fits_80_columns(tmp_path):
    """The quickstart's closing leaderboard is read in a terminal: no column may be cut."""
    from guim.progress import console
    from guim.quickstart import _print_leaderboard

    tasks = {
        "next_item": "NDCG@10",
        "cold_start": "NDCG@10",
        "event_propensity": "cart/AUC",
        "future_interest": "Recall@10",
        "item_attributes": "score",
        "item_similarity": "Recall@10",
        "user_profile": "AUC",
    }
    models = ["guim", "random", "popularity", "item2vec+attr", "cml"]
    doc = {
        "results": {
            "synthetic": {m: {f"{t}/{k}": 0.123456 for t, k in tasks.items()} for m in models}
        },
        "tasks": {t: {"primary_metric": k} for t, k in tasks.items()},
    }
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(doc))
    width = console.width
    console.width = 80
    try:
        with console.capture() as captured:
            _print_leaderboard(path)
    finally:
        console.width = width
    lines = captured.get().splitlines()
    assert max(len(line) for line in lines) <= 80
    text = captured.get()
    assert "…" not in text
    assert all(name in text for name in [*tasks, *models])
