"""`guim leaderboard`: one Markdown table (dataset x task rows, model columns, primary metrics,
best per row in bold) from bench.json files, written between the README's leaderboard markers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from guim.bench.report import KIND_ORDER, best_of, fmt
from guim.errors import UserError
from guim.io import atomic_file, read_json

START, END = "<!-- leaderboard:start -->", "<!-- leaderboard:end -->"


def build_leaderboard(files: Sequence[str | Path]) -> str:
    """The Markdown table; a later file's numbers replace an earlier one's for the same
    dataset, task and model."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}  # (dataset, "task (metric)") -> model -> v
    kinds: dict[str, str] = {}
    for path in files:
        doc = read_json(path)
        for model, info in doc.get("models", {}).items():
            kinds.setdefault(model, info.get("kind", "baseline"))
        for dataset, models in doc["results"].items():
            for task, info in doc.get("tasks", {}).items():
                # the primary metric, then metrics reported beside it under another protocol
                shown = {
                    info["primary_metric"]: info.get("protocol"),
                    **info.get("extra_metrics", {}),
                }
                for metric, protocol in shown.items():
                    key = f"{task}/{metric}"
                    if not any(res.get(key) is not None for res in models.values()):
                        continue
                    label = metric.removesuffix("_unmasked")
                    label = f"{task} ({label}, {protocol})" if protocol else f"{task} ({label})"
                    row = rows.setdefault((dataset, label), {})
                    for model, res in models.items():
                        kinds.setdefault(model, "baseline")
                        if res.get(key) is not None:
                            row[model] = res[key]
    if not rows:
        raise UserError("no results in the given bench files")
    models = sorted(kinds, key=lambda m: KIND_ORDER.get(kinds[m], 3))
    models = [m for m in models if any(m in r for r in rows.values())]
    lines = [
        "| " + " | ".join(["dataset", "task", *models]) + " |",
        "|" + "---|" * (len(models) + 2),
    ]
    for (dataset, task), values in rows.items():
        best = best_of(values, task.split("(")[-1].rstrip(")").split(",")[0])
        cells = [f"**{fmt(values[m])}**" if m in best else fmt(values.get(m)) for m in models]
        lines.append("| " + " | ".join([dataset, task, *cells]) + " |")
    return "\n".join(lines)


def update_readme(readme: str | Path, table: str) -> Path:
    """Replace the text between the leaderboard markers of `readme` with `table`."""
    readme = Path(readme)
    text = readme.read_text(encoding="utf-8")
    if START not in text or END not in text or text.index(START) > text.index(END):
        raise UserError(f"{readme} needs the markers {START} and {END} (in that order)")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    with atomic_file(readme) as tmp:
        tmp.write_text(f"{head}{START}\n{table}\n{END}{tail}", encoding="utf-8")
    return readme
