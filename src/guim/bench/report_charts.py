"""Charts of the benchmark report (matplotlib, Agg canvas, PNG bytes): the primary metric of
every task as small multiples, grouped bars per task, and validation curves over training time.
Each model keeps the colour `guim.bench.report.colours` gives it."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from guim.bench.report import best_of, comparison_peer, model_order

DPI = 200
FULL_WIDTH, HALF_WIDTH = 10.6, 6.0  # inches; the page shows about 100 px per inch


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _style(ax, grid: str = "y") -> None:
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color("#94a3b8")
    ax.tick_params(colors="#334155", labelsize=8.5, length=3)
    ax.grid(axis=grid, color="#e2e8f0", linewidth=0.7)
    ax.set_axisbelow(True)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white")
    return buf.getvalue()


def _label(v: float) -> str:
    return f"{v:.3f}" if abs(v) < 10 else f"{v:.3g}"


def bar_chart(
    groups: Sequence[str],
    models: Sequence[str],
    values: dict[str, dict[str, Any]],
    palette: dict[str, str],
) -> bytes:
    """Grouped bars: one group per entry of `groups` (metrics), one bar per model;
    values[model][group]. Sized for half the page width; values on bars while they fit."""
    n_groups, n_models = len(groups), max(len(models), 1)
    n_bars = n_groups * n_models
    fig = _figure(HALF_WIDTH if n_bars <= 24 else FULL_WIDTH, 3.1)
    ax = fig.add_subplot()
    width = 0.82 / n_models
    top = 0.0
    for j, model in enumerate(models):
        xs, ys = [], []
        for i, group in enumerate(groups):
            v = values.get(model, {}).get(group)
            if isinstance(v, int | float):
                xs.append(i - 0.41 + width * (j + 0.5))
                ys.append(v)
        top = max([top, *ys])
        bars = ax.bar(xs, ys, width * 0.9, color=palette[model], label=model, zorder=2)
        if n_bars <= 24:
            ax.bar_label(
                bars,
                labels=[_label(y) for y in ys],
                fontsize=7.5 if n_bars <= 12 else 6.5,
                rotation=0 if n_bars <= 10 else 90,
                padding=1.5,
                color="#334155",
            )
    ax.set_xticks(range(n_groups), list(groups), fontsize=9.5)
    ax.set_ylim(0, top * (1.15 if n_bars <= 12 else 1.28) or 1.0)
    _style(ax)
    ax.legend(
        frameon=False,
        fontsize=8.5,
        ncol=min(n_models, 5),
        loc="lower left",
        bbox_to_anchor=(0, 1.0),
        handlelength=1.0,
        columnspacing=1.2,
    )
    return _png(fig)


def overview_chart(
    tasks: dict[str, dict[str, Any]],
    models: Sequence[str],
    primary: dict[str, dict[str, Any]],
    palette: dict[str, str],
) -> bytes:
    """Small multiples: one panel per task (its own scale), a horizontal bar per model."""
    names = list(tasks)
    cols = min(len(names), 4)
    rows = -(-len(names) // cols)
    panel_h = 0.55 + 0.24 * len(models)
    fig = _figure(FULL_WIDTH, rows * panel_h + 0.1)
    axes = fig.subplots(rows, cols, squeeze=False, sharey=True)
    ys = list(range(len(models)))
    for k, ax in enumerate(axes.flat):
        if k >= len(names):
            ax.set_visible(False)
            continue
        task = names[k]
        vals = [primary[m].get(task) for m in models]
        known = [v for v in vals if isinstance(v, int | float)]
        top = max(known, default=0.0) or 1.0
        bars = ax.barh(
            ys,
            [v if isinstance(v, int | float) else 0.0 for v in vals],
            0.72,
            color=[palette[m] for m in models],
            zorder=2,
        )
        best = best_of(dict(zip(models, vals, strict=True)), tasks[task]["primary_metric"])
        for bar, m, v in zip(bars, models, vals, strict=True):
            text = _label(v) if isinstance(v, int | float) else "–"
            ax.text(
                bar.get_width() + top * 0.02,
                bar.get_y() + bar.get_height() / 2,
                text,
                va="center",
                fontsize=7.5,
                color="#0f172a" if m in best else "#475569",
                fontweight="bold" if m in best else "normal",
            )
        ax.set_xlim(0, top * 1.32)
        ax.set_title(
            f"{task}  ·  {tasks[task]['primary_metric']}",
            loc="left",
            fontsize=9.5,
            fontweight="bold",
            color="#0f172a",
        )
        ax.set_yticks(ys, list(models))
        if k == 0:  # shared y: inverting once puts the first model on top everywhere
            ax.invert_yaxis()
        ax.xaxis.set_major_locator(_ticks(3))
        _style(ax, grid="x")
    return _png(fig)


def _ticks(n: int):
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(n)


def curve_chart(doc: dict[str, Any], palette: dict[str, str]) -> bytes | None:
    """Validation NDCG@10 against cumulative training time for every model with a curve; each
    peer's best as a dashed line, the point where GUIM first reaches it as a ring."""
    curves = {
        m: doc["models"][m]["curve"]
        for m in model_order(doc)
        if doc.get("models", {}).get(m, {}).get("curve")
    }
    if not curves:
        return None
    longest = max(p["train_seconds"] for c in curves.values() for p in c)
    scale, unit = (60.0, "minutes") if longest > 300 else (1.0, "seconds")
    fig = _figure(FULL_WIDTH, 3.6)
    ax = fig.add_subplot()
    for model, curve in curves.items():
        xs = [0.0] + [p["train_seconds"] / scale for p in curve]
        ys = [None] + [p["valid_NDCG@10"] for p in curve]
        ax.plot(xs[1:], ys[1:], color=palette[model], linewidth=2, marker="o", markersize=3)
        b = max(range(1, len(ys)), key=lambda i: ys[i])
        ax.plot(xs[b], ys[b], marker="*", markersize=12, color=palette[model], zorder=3)
        at_right = xs[b] > 0.75 * longest / scale
        ax.annotate(
            f"{model}  {ys[b]:.4f}",
            (xs[b], ys[b]),
            xytext=(-8 if at_right else 8, 7),
            textcoords="offset points",
            ha="right" if at_right else "left",
            fontsize=8,
            color=palette[model],
            fontweight="bold",
        )
    for key, comp in doc.get("comparisons", {}).items():
        peer = comparison_peer(key)
        target = comp.get("peer_best_valid_NDCG@10")
        if target is None or peer not in palette:
            continue
        ax.axhline(target, color=palette[peer], linestyle="--", linewidth=1, alpha=0.6)
        reach, guim = comp.get("guim_seconds_to_reach"), comp.get("guim_model")
        if reach is not None and guim in palette:
            ax.plot(
                reach / scale,
                target,
                marker="o",
                markersize=11,
                markerfacecolor="none",
                markeredgewidth=1.8,
                color=palette[guim],
                zorder=4,
            )
    ax.set_xlabel(f"training time ({unit})", fontsize=9, color="#334155")
    ax.set_ylabel("valid NDCG@10", fontsize=9, color="#334155")
    ax.set_xlim(left=0)
    ax.margins(x=0.08, y=0.12)
    _style(ax, grid="both")
    return _png(fig)
