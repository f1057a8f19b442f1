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
