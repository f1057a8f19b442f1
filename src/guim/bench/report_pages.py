"""The two renderings of the benchmark report: Markdown (charts linked as files) and one
self-contained HTML page (charts as data: URIs, inline CSS, no scripts, fonts or links)."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from guim.bench.report import ReportData, fmt, fmt_seconds

# ---- Markdown -----------------------------------------------------------------------------------


def _md_cell(value: Any, bold: bool = False) -> str:
    text = (fmt(value) if not isinstance(value, str) else value).replace("|", "\\|")
    return f"**{text}**" if bold and value is not None else text


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _md_scored(keys: list[str], rows: list[list[Any]], best: list[set[str]], first: str) -> str:
    body = [
        [row[0], *(_md_cell(v, row[0] in best[i]) for i, v in enumerate(row[1:]))] for row in rows
    ]
    return _md_table([first, *keys], body)


def render_markdown(r: ReportData, images: dict[str, str]) -> str:
    """The Markdown report; `images` maps chart names to their paths relative to the report."""
    d = r.dataset
    out = [
        f"# GUIM-bench: {d['name']}",
        "",
        f"{len(r.models)} models on {len(r.tasks)} tasks, frozen embeddings, exact full ranking. "
        "Best value per column in **bold**.",
        "",
        "## Dataset",
        "",
        _md_table(
            ["name", "users", "items", "interactions", "hash"],
            [
                [
                    d["name"],
                    *(fmt(d.get(k)) for k in ("n_users", "n_items", "n_interactions")),
                    f"`{d.get('hash', '–')}`",
                ]
            ],
        ),
        "",
        "## Leaderboard",
        "",
    ]
    keys, rows, best = r.leaderboard()
    out.append(_md_scored(keys, rows, best, "model"))
    if "overview" in images:
        out += ["", f"![Primary metric of every task]({images['overview']})"]
    out += ["", "## Tasks"]
    for task, info in r.tasks.items():
        metrics, trows, tbest = r.task_table(task)
        n = r.n_cases(task)
        out += [
            "",
            f"### {task} — {info['primary_metric']}",
            "",
            info.get("description", ""),
            "",
            f"Scheme `{info.get('scheme')}`, split `{info.get('split')}`"
            + (f", {info['protocol']}" if info.get("protocol") else "")
            + (
                f", {r.repeat_share(task):.1%} of targets repeat a history item"
                if r.repeat_share(task) is not None
                else ""
            )
            + (f", {fmt(n)} cases." if n is not None else "."),
            "",
            _md_scored(metrics, trows, tbest, "model")
            if trows
            else "No model got a defined score on this data.",
        ]
        if f"task-{task}" in images:
            out += ["", f"![{task}]({images[f'task-{task}']})"]
    curve_rows = r.curve_rows()
    if curve_rows or "curves" in images:
        out += ["", "## Training curves", ""]
        if "curves" in images:
            out += [f"![Validation NDCG@10 during training]({images['curves']})", ""]
        out.append(
            _md_table(
                ["model", "epochs", "train time", "best valid NDCG@10", "best epoch", "cap"],
                [[_md_cell(v) for v in row] for row in curve_rows],
            )
        )
    comps = r.comparisons()
    if comps:
        out += ["", "## GUIM vs peers: time to reach the peer's best", ""]
        out.append(
            _md_table(
                [
                    "GUIM model",
                    "peer",
                    "peer best valid NDCG@10",
                    "peer time to best",
                    "GUIM time to reach",
                    "ratio",
                ],
                [
                    [
                        _md_cell(c.get("guim_model")),
                        c["peer"],
                        _md_cell(c.get("peer_best_valid_NDCG@10")),
                        fmt_seconds(c.get("peer_seconds_to_best")),
                        fmt_seconds(c.get("guim_seconds_to_reach"))
                        if c.get("guim_seconds_to_reach") is not None
                        else "never",
                        f"{c['ratio']:.2f}×" if c.get("ratio") is not None else "–",
                    ]
                    for c in comps
                ],
            )
        )
        out += [
            "",
            "Ratio = GUIM's training time to first reach the peer's best validation NDCG@10, divided by the peer's time to its best (below 1: GUIM is faster).",
        ]
    skipped = r.skipped()
    if skipped:
        out += ["", "## Skipped", ""]
        out += [f"- `{k}`: {v}" for k, v in skipped.items()]
    models, srows = r.seconds()
    if srows:
        out += ["", "## Seconds per task", ""]
        out.append(
            _md_table(
                ["task", *models], [[row[0], *(fmt_seconds(v) for v in row[1:])] for row in srows]
            )
        )
    out += ["", "## Provenance", ""]
    out += [
        f"- **{k}**: `{v}`"
        if k in ("command", "git revision", "dataset hash")
        else f"- **{k}**: {v}"
        for k, v in r.provenance()
    ]
    out += [
        "",
        _md_table(
            ["model", "kind", "config hash"], [[m, k, f"`{h}`"] for m, k, h in r.config_hashes()]
        ),
        "",
    ]
    return "\n".join(out)


# ---- HTML ---------------------------------------------------------------------------------------

CSS = """
:root { --ink:#0f172a; --muted:#64748b; --line:#e2e8f0; --soft:#f8fafc; --accent:#2563eb; }
* { box-sizing: border-box; }
body { margin:0; background:#f1f5f9; color:var(--ink);
  font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 0 28px 48px; }
header.hero { background: linear-gradient(120deg, #1e3a8a, #2563eb 55%, #0891b2);
  color:white; padding: 36px 0 30px; margin-bottom: 28px; }
header.hero .inner { max-width:1180px; margin:0 auto; padding:0 28px; }
header.hero h1 { margin:0; font-size: 30px; letter-spacing:-0.5px; }
header.hero p { margin:6px 0 0; opacity:.85; }
.cards { display:grid; grid-template-columns: repeat(auto-fit, minmax(160px, 1fr)); gap:14px;
  margin-top:22px; }
.card { background: rgba(255,255,255,.12); border:1px solid rgba(255,255,255,.25);
  border-radius:12px; padding:12px 16px; }
.card .v { font-size: 24px; font-weight: 700; font-variant-numeric: tabular-nums; }
.card .k { font-size: 12px; text-transform: uppercase; letter-spacing: .6px; opacity:.8; }
section { background:white; border-radius:14px; padding: 22px 26px; margin: 0 0 22px;
  box-shadow: 0 1px 2px rgba(15,23,42,.06), 0 4px 16px rgba(15,23,42,.04); }
h2 { margin: 0 0 4px; font-size: 20px; }
h3 { margin: 0; font-size: 17px; }
.sub { color: var(--muted); margin: 0 0 14px; font-size: 14px; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; font-size:14px; }
th, td { padding: 7px 10px; border-bottom: 1px solid var(--line); text-align: right; white-space: nowrap; }
th { font-size: 12.5px; color: #334155; font-weight: 600; background: var(--soft);
  vertical-align: bottom; }
th .m { display:block; font-weight: 500; color: var(--muted); font-size: 11.5px; }
th.text { text-align: left; }
th:first-child, td:first-child { text-align: left; }
td.best { font-weight: 700; background: #ecfdf5; color: #065f46; }
td.text { text-align: left; white-space: normal; color: var(--muted); }
tr:hover td { background: #f8fafc; }
tr:hover td.best { background: #d1fae5; }
.sw { display:inline-block; width:11px; height:11px; border-radius:3px; margin-right:8px;
  vertical-align: -1px; }
.badge { display:inline-block; font-size:10.5px; font-weight:600; text-transform:uppercase;
  letter-spacing:.5px; padding:1px 7px; border-radius:99px; margin-left:8px; vertical-align: 1px; }
.badge.guim { background:#dbeafe; color:#1d4ed8; } .badge.peer { background:#ffedd5; color:#c2410c; }
.badge.baseline { background:#f1f5f9; color:#475569; }
.chips { margin: 8px 0 12px; } .chip { display:inline-block; background:var(--soft);
  border:1px solid var(--line); border-radius:99px; padding:1px 10px; margin-right:6px; font-size:12.5px;
  color:#334155; }
.chip b { color: var(--ink); }
img.chart { width:100%; height:auto; display:block; margin: 14px 0 6px; }
.task-body { display:grid; grid-template-columns: minmax(0, 1.25fr) minmax(0, 1fr); gap: 22px;
  align-items: center; }
.task-body.wide { grid-template-columns: 1fr; }
.task-body img.chart { margin: 0; }
.task { border-top: 1px solid var(--line); padding-top: 18px; margin-top: 18px; }
.task:first-of-type { border-top: 0; padding-top: 0; margin-top: 8px; }
.big { font-size: 28px; font-weight: 700; } .good { color:#059669; } .bad { color:#dc2626; }
.callouts { display:grid; grid-template-columns: repeat(auto-fit, minmax(260px, 1fr)); gap:14px; margin: 6px 0 16px; }
.callout { border:1px solid var(--line); border-radius:12px; padding:14px 16px; background:var(--soft); }
dl { display:grid; grid-template-columns: 160px 1fr; gap: 6px 16px; margin:0; font-size:14px; }
dt { color: var(--muted); } dd { margin:0; } code { font-family: ui-monospace, Menlo, Consolas, monospace;
  font-size: 12.5px; background: var(--soft); padding: 1px 5px; border-radius: 5px; word-break: break-all; }
ul.skipped { margin: 0; padding-left: 18px; color:#334155; font-size:14px; }
.scroll { overflow-x: auto; }
footer { color: var(--muted); font-size: 12px; text-align:center; margin-top: 10px; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _model_cell(r: ReportData, model: str, badge: bool = True) -> str:
    kind = r.kind(model)
    tag = f'<span class="badge {kind}">{_e(kind)}</span>' if badge else ""
    return (
        f'<td><span class="sw" style="background:{r.palette.get(model, "#999")}"></span>'
        f"<b>{_e(model)}</b>{tag}</td>"
    )


def _th(key: str) -> str:
    """A column header; "task/metric" shows the metric under the task name."""
    task, _, metric = key.partition("/")
    return (
        f'<th>{_e(task)}<span class="m">{_e(metric)}</span></th>'
        if metric
        else f"<th>{_e(key)}</th>"
    )


def _html_scored(
    r: ReportData,
    keys: list[str],
    rows: list[list[Any]],
    best: list[set[str]],
    extra: dict[str, str] | None = None,
) -> str:
    """A models x metrics table, best cell of each column highlighted; `extra`: a train-time
    column (the leaderboard)."""
    head = "<th>model</th>" + "".join(_th(k) for k in keys)
    head += "<th>train time</th>" if extra is not None else ""
    body = []
    for row in rows:
        cells = [_model_cell(r, row[0], badge=extra is not None)]
        for i, v in enumerate(row[1:]):
            cls = ' class="best"' if row[0] in best[i] else ""
            cells.append(f"<td{cls}>{_e(fmt(v))}</td>")
        if extra is not None:
            cells.append(f"<td>{_e(extra.get(row[0], '–'))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _img(uri: str | None, alt: str, name: str) -> str:
    return f'<img class="chart" data-chart="{_e(name)}" alt="{_e(alt)}" src="{uri}">' if uri else ""


def render_html(r: ReportData, images: dict[str, str]) -> str:
    """The self-contained HTML report; `images` maps chart names to data: URIs."""
    d = r.dataset
    cards = "".join(
        f'<div class="card"><div class="v">{_e(v)}</div><div class="k">{_e(k)}</div></div>'
        for k, v in (
            ("users", fmt(d.get("n_users"))),
            ("items", fmt(d.get("n_items"))),
            ("interactions", fmt(d.get("n_interactions"))),
            ("models", len(r.models)),
            ("tasks", len(r.tasks)),
        )
    )
    parts = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>GUIM-bench · {_e(d['name'])}</title><style>{CSS}</style></head><body>",
        f'<header class="hero"><div class="inner"><h1>GUIM-bench · {_e(d["name"])}</h1>',
        "<p>Frozen user and item embeddings, scored with fixed heads and exact full ranking "
        f"· split <b>{_e(_split(r))}</b> · seed {_e(r.doc.get('seed', '–'))} "
        f'· git <code style="background:rgba(255,255,255,.15);color:white">{_e(r.doc.get("git", "–"))}</code></p>',
        f'<div class="cards">{cards}</div></div></header><main>',
    ]
    keys, rows, best = r.leaderboard()
    train_time = {m: fmt_seconds(r.model_info.get(m, {}).get("train_seconds")) for m in r.models}
    parts += [
        "<section><h2>Leaderboard</h2>",
        '<p class="sub">Primary metric of each task; best per column highlighted. '
        "Train time: GUIM and peer training, baseline fitting.</p>",
        _html_scored(r, keys, rows, best, train_time),
        _img(images.get("overview"), "Primary metric of every task", "overview"),
        "</section>",
    ]
    parts.append(
        '<section><h2>Tasks</h2><p class="sub">Every metric of every task, models side by side.</p>'
    )
    for task, info in r.tasks.items():
        metrics, trows, tbest = r.task_table(task)
        n = r.n_cases(task)
        wide = " wide" if not trows or len(metrics) > 4 or len(metrics) * len(trows) > 24 else ""
        chips = "".join(
            f'<span class="chip">{k} <b>{_e(v)}</b></span>'
            for k, v in (
                ("primary", info["primary_metric"]),
                *((("protocol", info["protocol"]),) if info.get("protocol") else ()),
                *(
                    (("repeat targets", f"{r.repeat_share(task):.1%}"),)
                    if r.repeat_share(task) is not None
                    else ()
                ),
                ("scheme", info.get("scheme")),
                ("split", info.get("split")),
                *((("cases", fmt(n)),) if n is not None else ()),
            )
        )
        parts += [
            f'<div class="task" id="task-{_e(task)}"><h3>{_e(task)}</h3>',
            f'<p class="sub" style="margin:4px 0 0">{_e(info.get("description", ""))}</p>',
            f'<div class="chips">{chips}</div>',
            f'<div class="task-body{wide}">',
            _img(images.get(f"task-{task}"), f"{task}: metrics per model", f"task-{task}"),
            _html_scored(r, metrics, trows, tbest)
            if trows
            else '<p class="sub">No model got a defined score on this data.</p>',
            "</div></div>",
        ]
    parts.append("</section>")
    parts += _html_training(r, images)
    skipped = r.skipped()
    if skipped:
        items = "".join(f"<li><code>{_e(k)}</code> {_e(v)}</li>" for k, v in skipped.items())
        parts.append(
            f'<section><h2>Skipped</h2><p class="sub">Task/model pairs that did not run, and why.</p><ul class="skipped">{items}</ul></section>'
        )
    models, srows = r.seconds()
    if srows:
        head = "".join(f"<th>{_e(x)}</th>" for x in ["task", *models])
        body = "".join(
            "<tr>"
            + f"<td>{_e(row[0])}</td>"
            + "".join(f"<td>{_e(fmt_seconds(v))}</td>" for v in row[1:])
            + "</tr>"
            for row in srows
        )
        parts.append(
            '<section><h2>Seconds per task</h2><p class="sub">Wall time of each task on each model (embedding plus scoring).</p>'
            f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div></section>'
        )
    prov = "".join(f"<dt>{_e(k)}</dt><dd><code>{_e(v)}</code></dd>" for k, v in r.provenance())
    hashes = "".join(
        f"<tr>{_model_cell(r, m)}<td><code>{_e(h)}</code></td></tr>"
        for m, _, h in r.config_hashes()
    )
    parts += [
        f"<section><h2>Provenance</h2><dl>{prov}</dl>",
        f'<h3 style="margin-top:18px">Config hashes</h3><table><thead><tr><th>model</th><th>config hash</th></tr></thead><tbody>{hashes}</tbody></table></section>',
        "<footer>Generated by <code>guim bench</code> from bench.json.</footer></main></body></html>",
    ]
    return "\n".join(parts)


def _split(r: ReportData) -> str:
    splits = sorted({str(i.get("split")) for i in r.tasks.values()})
    return ", ".join(splits) or "–"


def _html_training(r: ReportData, images: dict[str, str]) -> list[str]:
    curve_rows = r.curve_rows()
    comps = r.comparisons()
    if not curve_rows and "curves" not in images:
        return []
    parts = [
        "<section><h2>Training</h2>",
        '<p class="sub">Validation NDCG@10 after each epoch against cumulative training time '
        "(★ best epoch; dashed: a peer's best; ring: where GUIM first reaches it).</p>",
    ]
    if comps:
        callouts = []
        for c in comps:
            ratio = c.get("ratio")
            if ratio is not None:
                verdict = f'<span class="big {"good" if ratio < 1 else "bad"}">{ratio:.2f}×</span>'
                text = (
                    f"{_e(c.get('guim_model') or 'guim')} reaches {_e(c['peer'])}'s best validation "
                    f"NDCG@10 ({fmt(c.get('peer_best_valid_NDCG@10'))}) in "
                    f"{_e(fmt_seconds(c.get('guim_seconds_to_reach')))}; {_e(c['peer'])} needed "
                    f"{_e(fmt_seconds(c.get('peer_seconds_to_best')))}."
                )
            else:
                verdict = '<span class="big bad">never</span>'
                text = (
                    f"{_e(c.get('guim_model') or 'guim')} did not reach {_e(c['peer'])}'s best "
                    f"validation NDCG@10 ({fmt(c.get('peer_best_valid_NDCG@10'))})."
                )
            callouts.append(
                f'<div class="callout"><div class="k" style="color:#64748b;font-size:12px;'
                f'text-transform:uppercase;letter-spacing:.5px">GUIM vs {_e(c["peer"])} · time ratio</div>'
                f"{verdict}<div>{text}</div></div>"
            )
        parts.append(f'<div class="callouts">{"".join(callouts)}</div>')
    parts.append(_img(images.get("curves"), "Validation NDCG@10 during training", "curves"))
    head = "".join(
        f"<th>{h}</th>"
        for h in ("model", "epochs", "train time", "best valid NDCG@10", "best epoch")
    )
    head += '<th class="text">cap</th>'
    body = "".join(
        "<tr>"
        + _model_cell(r, row[0])
        + "".join(f"<td>{_e(fmt(v))}</td>" for v in row[1:5])
        + f'<td class="text">{_e(row[5])}</td></tr>'
        for row in curve_rows
    )
    parts.append(
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div></section>'
    )
    return parts
