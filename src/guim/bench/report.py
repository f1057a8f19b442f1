"""The benchmark report: bench.json -> report.md (plots beside it in plots/) and a self-contained
report.html (plots embedded as base64 PNG, inline CSS, no external assets).

Sections: dataset, leaderboard (primary metrics, best per column in bold), one chart and table
per task, training curves, GUIM vs peers, skipped runs, time per task, provenance. Every model
keeps one colour across all charts. All metrics are taken as higher-is-better except the few
names in `LOWER_IS_BETTER`. Charts: `guim.bench.report_charts`; rendering:
`guim.bench.report_pages`.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from guim.io import atomic_file, read_json

LOWER_IS_BETTER = ("MSE", "RMSE", "MAE", "loss", "mean_rank", "median_rank")
NOT_SCORES = ("rate", "repeat_share")  # describe the data: base rates, share of repeat targets
GUIM_COLOURS = ("#2563eb", "#7c3aed", "#0891b2", "#4338ca")
PEER_COLOURS = ("#ea580c", "#e11d48", "#ca8a04", "#c026d3")
BASELINE_COLOURS = {
    "random": "#cbd5e1",
    "popularity": "#94a3b8",
    "item2vec": "#a3c9bf",
    "item2vec+attr": "#5f9e8f",
    "cml": "#c2a878",
}
OTHER_COLOURS = ("#a8a29e", "#b4a5c9", "#9fb7cf")
KIND_ORDER = {"guim": 0, "peer": 1, "baseline": 2}


# ---- reading bench.json ---------------------------------------------------------------------


def model_order(doc: dict[str, Any]) -> list[str]:
    """Models as shown: GUIM first, then peers, then baselines (bench order within each)."""
    names = list(doc.get("models", {}))
    for res in doc["results"].values():
        names += [m for m in res if m not in names]
    return sorted(names, key=lambda m: KIND_ORDER.get(kind_of(doc, m), 3))


def kind_of(doc: dict[str, Any], model: str) -> str:
    return doc.get("models", {}).get(model, {}).get("kind", "baseline")


def colours(doc: dict[str, Any]) -> dict[str, str]:
    """One colour per model, the same in every chart."""
    out: dict[str, str] = {}
    used = {"guim": 0, "peer": 0, "other": 0}
    for model in model_order(doc):
        kind = kind_of(doc, model)
        if kind in ("guim", "peer"):
            palette = GUIM_COLOURS if kind == "guim" else PEER_COLOURS
            out[model] = palette[used[kind] % len(palette)]
            used[kind] += 1
        elif model in BASELINE_COLOURS:
            out[model] = BASELINE_COLOURS[model]
        else:
            out[model] = OTHER_COLOURS[used["other"] % len(OTHER_COLOURS)]
            used["other"] += 1
    return out


def is_score(metric: str) -> bool:
    """False for what describes the data rather than the model: counts (n_cases, c0/n_items)
    and base rates (cart/rate)."""
    last = metric.rsplit("/", 1)[-1]
    return not (last.startswith("n_") or last in NOT_SCORES)


def task_metrics(results: dict[str, dict[str, Any]], task: str) -> list[str]:
    """The scores of `task` in the order the task reported them (see `is_score`)."""
    seen: dict[str, None] = {}
    for res in results.values():
        for key in res:
            name, _, metric = key.partition("/")
            if name == task and is_score(metric):
                seen[metric] = None
    return list(seen)


def is_lower_better(metric: str) -> bool:
    return metric.rsplit("/", 1)[-1].split("@")[0] in LOWER_IS_BETTER


def best_of(values: dict[str, Any], metric: str) -> set[str]:
    """Models holding the best value of `metric` (ties all count)."""
    known = {m: v for m, v in values.items() if isinstance(v, int | float)}
    if not known:
        return set()
    target = (min if is_lower_better(metric) else max)(known.values())
    return {m for m, v in known.items() if v == target}


def fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:,.1f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "–"
    if s < 0.1:
        return f"{s * 1000:.0f} ms"
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.2f} h"


def fmt_conditions(c: dict[str, Any] | None) -> str:
    """bench.json's `run_conditions` in one line: threads, the whole invocation's wall time and
    how many cores other processes used meanwhile."""
    if not c:
        return "–"
    env = " ".join(f"{k}={v}" for k, v in (c.get("env") or {}).items())
    parts = [f"{c.get('torch_threads', '–')} torch thread(s)" + (f" ({env})" if env else "")]
    parts.append(f"{c.get('cores', '–')} cores")
    parts.append(f"invocation {fmt_seconds(c.get('wall_seconds'))}")
    if c.get("train_wall_seconds") is not None:
        parts[-1] += f" (training {fmt_seconds(c['train_wall_seconds'])})"
    other = c.get("other_cores_mean")
    if other is None:
        parts.append("other processes' CPU not measured")
    else:
        verdict = "alone" if c.get("alone") else "shared"
        parts.append(f"other processes used {other:.2f} cores on average: {verdict}")
    return ", ".join(parts)


def comparison_peer(key: str) -> str:
    """The peer a comparison key ("guim_vs_sasrec", "LABEL_vs_sasrec") refers to."""
    return key.rsplit("_vs_", 1)[-1]


# ---- the report -------------------------------------------------------------------------------


def build_charts(doc: dict[str, Any]) -> dict[str, bytes]:
    """PNG bytes by chart name: overview, task-TASK (one per task), curves."""
    from guim.bench.report_charts import bar_chart, curve_chart, overview_chart

    r = ReportData(doc)
    models = [m for m in r.models if r.results.get(m)]
    charts: dict[str, bytes] = {}
    if len(r.tasks) > 1:
        primary = {
            m: {t: r.value(m, f"{t}/{i['primary_metric']}") for t, i in r.tasks.items()}
            for m in models
        }
        charts["overview"] = overview_chart(r.tasks, models, primary, r.palette)
    for task in r.tasks:
        metrics = task_metrics(r.results, task)
        values = {m: {k: r.value(m, f"{task}/{k}") for k in metrics} for m in models}
        shown = [m for m in models if any(v is not None for v in values[m].values())]
        if metrics and shown:
            charts[f"task-{task}"] = bar_chart(metrics, shown, values, r.palette)
    curves = curve_chart(doc, r.palette)
    if curves is not None:
        charts["curves"] = curves
    return charts


def write_report(bench_json_path: str | Path, out_dir: str | Path) -> tuple[Path, Path]:
    """Write out_dir/report.md (with plots/*.png) and the self-contained out_dir/report.html."""
    from guim.bench.report_pages import render_html, render_markdown

    doc = read_json(bench_json_path)
    out_dir = Path(out_dir)
    charts = build_charts(doc)
    plots = out_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    for name, png in charts.items():
        with atomic_file(plots / f"{name}.png") as tmp:
            tmp.write_bytes(png)
    ctx = ReportData(doc)
    md_path, html_path = out_dir / "report.md", out_dir / "report.html"
    with atomic_file(md_path) as tmp:
        tmp.write_text(render_markdown(ctx, {n: f"plots/{n}.png" for n in charts}))
    with atomic_file(html_path) as tmp:
        uris = {
            n: "data:image/png;base64," + base64.b64encode(p).decode() for n, p in charts.items()
        }
        tmp.write_text(render_html(ctx, uris))
    return md_path, html_path


class ReportData:
    """bench.json, read once into the rows both renderers print."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.dataset: dict[str, Any] = doc.get("dataset") or {"name": next(iter(doc["results"]))}
        name = self.dataset["name"]
        self.results = doc["results"].get(name) or next(iter(doc["results"].values()))
        self.models = [
            m for m in model_order(doc) if m in self.results or m in doc.get("models", {})
        ]
        self.tasks: dict[str, dict[str, Any]] = doc.get("tasks", {})
        self.palette = colours(doc)
        self.model_info: dict[str, dict[str, Any]] = doc.get("models", {})

    def kind(self, model: str) -> str:
        return kind_of(self.doc, model)

    def value(self, model: str, key: str) -> Any:
        return self.results.get(model, {}).get(key)

    def leaderboard(self) -> tuple[list[str], list[list[Any]], list[set[str]]]:
        """(column keys "task/metric", rows [model, values...], best models per column)."""
        keys = [f"{t}/{i['primary_metric']}" for t, i in self.tasks.items()]
        rows = [[m, *(self.value(m, k) for k in keys)] for m in self.models]
        best = [best_of({m: self.value(m, k) for m in self.models}, k) for k in keys]
        return keys, rows, best

    def task_table(self, task: str) -> tuple[list[str], list[list[Any]], list[set[str]]]:
        metrics = task_metrics(self.results, task)
        models = [
            m for m in self.models if any(self.value(m, f"{task}/{k}") is not None for k in metrics)
        ]
        rows = [[m, *(self.value(m, f"{task}/{k}") for k in metrics)] for m in models]
        best = [best_of({m: self.value(m, f"{task}/{k}") for m in models}, k) for k in metrics]
        return metrics, rows, best

    def n_cases(self, task: str) -> int | None:
        for res in self.results.values():
            if res.get(f"{task}/n_cases") is not None:
                return int(res[f"{task}/n_cases"])
        return None

    def repeat_share(self, task: str) -> float | None:
        """Share of the task's targets that repeat a history item (misses under masking)."""
        for res in self.results.values():
            if res.get(f"{task}/repeat_share") is not None:
                return float(res[f"{task}/repeat_share"])
        return None

    def curve_rows(self) -> list[list[Any]]:
        """model, epochs, train time, best valid NDCG@10, epoch of best, cap."""
        rows = []
        for m in self.models:
            info = self.model_info.get(m, {})
            curve = info.get("curve") or []
            best = max(curve, key=lambda p: p["valid_NDCG@10"]) if curve else None
            if info.get("kind") in ("guim", "peer"):
                rows.append(
                    [
                        m,
                        info.get("epochs"),
                        fmt_seconds(info.get("train_seconds")),
                        best["valid_NDCG@10"] if best else None,
                        best["epoch"] if best else None,
                        info.get("cap") or "–",
                    ]
                )
        return rows

    def comparisons(self) -> list[dict[str, Any]]:
        out = []
        for key, c in self.doc.get("comparisons", {}).items():
            out.append({"key": key, "peer": comparison_peer(key), **c})
        return out

    def skipped(self) -> dict[str, str]:
        return dict(self.doc.get("skipped", {}))

    def seconds(self) -> tuple[list[str], list[list[Any]]]:
        table = self.doc.get("seconds", {})
        models = [m for m in self.models if any(m in v for v in table.values())]
        rows = [[t, *(table[t].get(m) for m in models)] for t in table]
        return models, rows

    def provenance(self) -> list[tuple[str, str]]:
        d = self.dataset
        return [
            ("command", self.doc.get("command", "–")),
            ("machine", self.doc.get("machine", "–")),
            ("git revision", self.doc.get("git", "–")),
            ("dataset", f"{d.get('name')} at {d.get('path', '–')}"),
            ("dataset hash", str(d.get("hash", "–"))),
            ("seed", str(self.doc.get("seed", "–"))),
            ("wall time", fmt_seconds(self.doc.get("wall_seconds"))),
            ("run conditions", fmt_conditions(self.doc.get("run_conditions"))),
        ]

    def config_hashes(self) -> list[tuple[str, str, str]]:
        return [
            (m, self.kind(m), str(self.model_info[m].get("config_hash") or "–"))
            for m in self.models
            if m in self.model_info
        ]
