"""The benchmark report: tables, one chart per task, training curves, a self-contained HTML page,
and the README leaderboard built from bench JSON files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from guim.bench.leaderboard import build_leaderboard, update_readme
from guim.bench.report import best_of, colours, write_report


def curve(seconds_per_epoch: float, values: list[float]) -> list[dict[str, float]]:
    return [
        {"epoch": i + 1, "train_seconds": round(seconds_per_epoch * (i + 1), 3), "valid_NDCG@10": v}
        for i, v in enumerate(values)
    ]


def model(kind: str, train_seconds: float | None = None, **extra) -> dict:
    return {
        "kind": kind,
        "runs": None,
        "config": None,
        "config_hash": f"hash-{kind}",
        "train_seconds": train_seconds,
        "epochs": None,
        "curve": None,
        "cap": None,
        **extra,
    }


BENCH = {
    "command": "guim bench --train base --train base:cold --peers sasrec,bert4rec -d data/beauty",
    "machine": "Test CPU, 2 cores, 8 GiB RAM, Linux x86_64, no GPU",
    "git": "0123456789ab",
    "results": {
        "beauty": {
            "guim-base": {
                "next_item/HR@10": 0.0921,
                "next_item/NDCG@10": 0.0534,
                "next_item/HR@20": 0.1302,
                "next_item/NDCG@20": 0.0630,
                "next_item/n_cases": 22363,
                "cold_item/HR@10": 0.0412,
                "cold_item/NDCG@10": 0.0213,
                "item_attribute/macro_F1": 0.61,
                "item_attribute/micro_F1": 0.74,
            },
            "sasrec": {
                "next_item/HR@10": 0.0845,
                "next_item/NDCG@10": 0.0511,
                "next_item/HR@20": 0.1190,
                "next_item/NDCG@20": 0.0598,
                "next_item/n_cases": 22363,
                "item_attribute/macro_F1": 0.55,
                "item_attribute/micro_F1": 0.70,
            },
            "random": {
                "next_item/HR@10": 0.0008,
                "next_item/NDCG@10": 0.0004,
                "next_item/HR@20": 0.0017,
                "next_item/NDCG@20": 0.0006,
                "next_item/n_cases": 22363,
                "cold_item/HR@10": 0.0101,
                "cold_item/NDCG@10": 0.0046,
                "item_attribute/macro_F1": 0.05,
                "item_attribute/micro_F1": 0.08,
            },
            "popularity": {
                "next_item/HR@10": 0.0117,
                "next_item/NDCG@10": 0.0058,
                "next_item/HR@20": 0.0198,
                "next_item/NDCG@20": 0.0079,
                "next_item/n_cases": 22363,
                "cold_item/HR@10": 0.0402,
                "cold_item/NDCG@10": 0.0213,
                "item_attribute/macro_F1": 0.04,
                "item_attribute/micro_F1": 0.21,
            },
            "item2vec+attr": {
                "next_item/HR@10": 0.0606,
                "next_item/NDCG@10": 0.0330,
                "next_item/HR@20": 0.0891,
                "next_item/NDCG@20": 0.0402,
                "next_item/n_cases": 22363,
                "cold_item/HR@10": 0.0297,
                "cold_item/NDCG@10": 0.0151,
                "item_attribute/macro_F1": 0.58,
                "item_attribute/micro_F1": 0.69,
            },
        }
    },
    "dataset": {
        "name": "beauty",
        "hash": "9f1c2e3d4b5a",
        "path": "/data/beauty",
        "n_users": 22363,
        "n_items": 12101,
        "n_interactions": 198502,
    },
    "tasks": {
        "next_item": {
            "primary_metric": "NDCG@10",
            "description": "Next-item retrieval: rank the item each user interacted with next "
            "among ALL items (leave-one-out, history masked, exact full ranking).",
            "scheme": "loo",
            "split": "test",
        },
        "cold_item": {
            "primary_metric": "NDCG@10",
            "description": "Cold-start items: rank items never seen in training, from their "
            "attributes.",
            "scheme": "cold",
            "split": "test",
        },
        "item_attribute": {
            "primary_metric": "macro_F1",
            "description": "Item attribute prediction with a linear probe on item vectors.",
            "scheme": "loo",
            "split": "test",
        },
    },
    "skipped": {
        "user_profile": "the dataset has no user attributes",
        "cold_item/sasrec": "no cold embedder for sasrec",
        "next_item/bert4rec": "RecBole is not installed; pip install recbole to run peers",
    },
    "models": {
        "guim-base": model(
            "guim",
            540.2,
            runs={"loo": "runs/guim-base-loo", "cold": "runs/guim-base-cold"},
            config={"train": {"epochs": 200}},
            epochs=40,
            curve=curve(13.5, [0.010, 0.021, 0.033, 0.041, 0.047, 0.050, 0.052, 0.053, 0.053]),
            cap="epochs=200, patience=10, max_minutes=45.0; stopped: early stop",
        ),
        "sasrec": model(
            "peer",
            1200.0,
            runs={"loo": "peers/sasrec"},
            epochs=60,
            curve=curve(20.0, [0.004, 0.012, 0.022, 0.030, 0.037, 0.042, 0.046, 0.049, 0.050]),
            cap="45 minutes",
        ),
        "random": model("baseline", 0.01),
        "popularity": model("baseline", 0.2),
        "item2vec+attr": model("baseline", 31.5),
    },
    "comparisons": {
        "guim_vs_sasrec": {
            "peer_best_valid_NDCG@10": 0.050,
            "peer_seconds_to_best": 180.0,
            "guim_seconds_to_reach": 81.0,
            "ratio": 0.45,
            "guim_model": "guim-base",
        }
    },
    "seconds": {
        "next_item": {"guim-base": 3.2, "sasrec": 2.9, "random": 1.1, "popularity": 0.8},
        "cold_item": {"guim-base": 0.9, "random": 0.4, "popularity": 0.3},
    },
    "wall_seconds": 2050.4,
    "seed": 0,
    "run_conditions": {
        "torch_threads": 2,
        "env": {"OMP_NUM_THREADS": "2"},
        "cores": 2,
        "wall_seconds": 2210.0,
        "own_cpu_seconds": 4100.2,
        "other_cpu_seconds": 22.1,
        "other_cores_mean": 0.01,
        "alone": True,
        "train_wall_seconds": 160.0,
    },
}


@pytest.fixture
def report(tmp_path: Path) -> tuple[Path, Path]:
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(BENCH))
    return write_report(path, tmp_path)


def leaderboard_rows(md: str) -> dict[str, list[str]]:
    section = md.split("## Leaderboard", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    return {r.split("|")[1].strip(): [c.strip() for c in r.split("|")[2:-1]] for r in rows}


def test_markdown_leaderboard_bolds_the_best_per_column(report):
    md = report[0].read_text()
    rows = leaderboard_rows(md)
    assert rows["model"] == ["next_item/NDCG@10", "cold_item/NDCG@10", "item_attribute/macro_F1"]
    assert list(rows)[1:] == ["guim-base", "sasrec", "random", "popularity", "item2vec+attr"]
    assert rows["guim-base"] == ["**0.0534**", "**0.0213**", "**0.6100**"]
    # a tie shares the bold; a model without the task shows a dash
    assert rows["popularity"][1] == "**0.0213**"
    assert rows["sasrec"][1] == "–"
    assert "| beauty | 22,363 | 12,101 | 198,502 | `9f1c2e3d4b5a` |" in md
    assert "| guim-base | sasrec | 0.0500 | 3.0 min | 1.4 min | 0.45× |" in md


def test_markdown_links_one_chart_per_task_and_the_curves(report, tmp_path):
    md = report[0].read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert images == [
        "plots/overview.png",
        "plots/task-next_item.png",
        "plots/task-cold_item.png",
        "plots/task-item_attribute.png",
        "plots/curves.png",
    ]
    for image in images:
        assert (tmp_path / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_html_is_self_contained_with_one_chart_per_task(report):
    page = report[1].read_text()
    charts = re.findall(r'<img class="chart" data-chart="([^"]+)"[^>]*src="([^"]+)"', page)
    names = [name for name, _ in charts]
    assert names == [
        "overview",
        "task-next_item",
        "task-cold_item",
        "task-item_attribute",
        "curves",
    ]
    assert all(src.startswith("data:image/png;base64,") for _, src in charts)
    # nothing fetched from elsewhere: no URLs, scripts, stylesheets or fonts
    assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", page, re.IGNORECASE)
    assert not re.search(r"<script|<link|@import|url\(", page, re.IGNORECASE)
    assert all(src.startswith("data:") for src in re.findall(r'src="([^"]*)"', page))
    # leaderboard: best cells highlighted; curve callout with the ratio; skipped reasons listed
    assert page.count('class="best"') >= 3
    assert "0.45×" in page
    assert "RecBole is not installed" in page
    assert "9f1c2e3d4b5a" in page and "0123456789ab" in page
    assert (
        "2 torch thread(s) (OMP_NUM_THREADS=2), 2 cores, invocation 36.8 min (training 2.7 min), "
        "other processes used 0.01 cores on average: alone"
    ) in page


def test_colours_are_stable_and_distinct():
    palette = colours(BENCH)
    assert len(set(palette.values())) == len(palette) == 5
    assert palette == colours(json.loads(json.dumps(BENCH)))


def test_best_of_handles_ties_missing_values_and_lower_is_better():
    assert best_of({"a": 0.2, "b": 0.2, "c": None}, "NDCG@10") == {"a", "b"}
    assert best_of({"a": 0.2, "b": 0.1}, "RMSE") == {"b"}
    assert best_of({"a": None}, "HR@10") == set()


def test_leaderboard_table_and_readme_markers(tmp_path):
    second = json.loads(json.dumps(BENCH))
    second["dataset"]["name"] = "lastfm"
    second["results"] = {"lastfm": {"guim-base": {"next_item/NDCG@10": 0.08}, "random": {}}}
    second["tasks"] = {"next_item": BENCH["tasks"]["next_item"]}
    files = []
    for i, doc in enumerate([BENCH, second]):
        files.append(tmp_path / f"b{i}.json")
        files[-1].write_text(json.dumps(doc))
    table = build_leaderboard(files)
    lines = table.splitlines()
    assert lines[0].startswith("| dataset | task | guim-base | sasrec | random |")
    assert "| beauty | next_item (NDCG@10) | **0.0534** | 0.0511 | 0.0004 |" in lines[2]
    assert any(line.startswith("| lastfm | next_item (NDCG@10) | **0.0800** |") for line in lines)

    # a task with a protocol gets it in the row label, and a metric reported beside the primary
    # one under another protocol gets a row of its own where any model has it
    third = json.loads(json.dumps(second))
    third["dataset"]["name"] = "shop"
    third["tasks"]["next_item"].update(
        protocol="history masked", extra_metrics={"NDCG@10_unmasked": "nothing masked"}
    )
    third["results"] = {
        "shop": {
            "guim-base": {"next_item/NDCG@10": 0.15, "next_item/NDCG@10_unmasked": 0.25},
            "random": {"next_item/NDCG@10": 0.01, "next_item/NDCG@10_unmasked": 0.02},
        }
    }
    (tmp_path / "b2.json").write_text(json.dumps(third))
    rows = build_leaderboard([tmp_path / "b2.json"]).splitlines()[2:]
    assert rows == [
        "| shop | next_item (NDCG@10, history masked) | **0.1500** | 0.0100 |",
        "| shop | next_item (NDCG@10, nothing masked) | **0.2500** | 0.0200 |",
    ]

    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- leaderboard:start -->\nSTALE\n<!-- leaderboard:end -->\nrest\n")
    update_readme(readme, table)
    text = readme.read_text()
    assert "STALE" not in text and table in text
    assert text.startswith("intro\n<!-- leaderboard:start -->\n") and text.endswith(
        "<!-- leaderboard:end -->\nrest\n"
    )
    update_readme(readme, table)  # idempotent
    assert readme.read_text() == text
    readme.write_text("no markers here\n")
    with pytest.raises(ValueError, match="leaderboard:start"):
        update_readme(readme, table)


def test_report_renders_in_headless_chromium(report, tmp_path):
    from guim.bench.screenshot import BINARIES, find_chromium, screenshot

    try:
        find_chromium()
    except FileNotFoundError:
        pytest.skip(f"no Chromium binary on PATH ({', '.join(BINARIES)}); apt-get install chromium")
    import matplotlib.image as mpimg

    png = screenshot(report[1], tmp_path / "shot.png", width=900, height=1200)
    pixels = mpimg.imread(png)
    assert pixels.shape[:2] == (1200, 900)
    # the page drew something: neither blank nor one flat colour
    assert pixels[..., :3].std() > 0.05
    assert len(np.unique(pixels[..., :3].reshape(-1, 3).round(2), axis=0)) > 50


def test_repeat_share_is_shown_next_to_the_task_not_scored(tmp_path):
    doc = json.loads(json.dumps(BENCH))
    (results,) = doc["results"].values()
    for res in results.values():
        if "next_item/NDCG@10" in res:
            res["next_item/repeat_share"] = 0.25
    doc["tasks"]["next_item"]["protocol"] = "history masked"
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(doc))
    md, html = write_report(path, tmp_path)
    text = md.read_text()
    assert "history masked, 25.0% of targets repeat a history item" in text
    section = text.split("### next_item", 1)[1].split("\n### ", 1)[0]
    assert "repeat_share" not in section  # a property of the data, not a score column
    assert "repeat targets <b>25.0%</b>" in html.read_text()
