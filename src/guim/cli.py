"""`guim` command line: thin Typer wrappers over the pipeline's functions (paths in, path out).

prepare -> train -> eval / bench; plus synth (the synthetic shop), datasets (public data),
baseline (random / popularity / item2vec) and quickstart (the whole chain on a synthetic shop).
"""

from __future__ import annotations

import errno
import functools
import json
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table

from guim.errors import UserError
from guim.index import IndexConfig, IndexKind
from guim.progress import console

app = typer.Typer(
    name="guim",
    help="General User & Item eMbeddings: prepare logs, train, benchmark and serve embeddings.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
datasets_app = typer.Typer(help="Public datasets: list them, download them.", no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")

F = TypeVar("F", bound=Callable[..., Any])
IX = IndexConfig()  # `guim export`'s defaults are the index config's own


def friendly_errors(fn: F) -> F:
    """Turn the user's and the environment's failures into one red line and exit status 2.

    Caught: UserError (bad options, inputs and outputs; DataError is one), ConfigError, and the
    operating system refusing a path (missing, existing, not a directory, no permission, a
    read-only or full file system). Anything else is a bug and keeps its traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from guim.config import ConfigError

        try:
            return fn(*args, **kwargs)
        except (UserError, ConfigError) as e:
            console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except OSError as e:
            if not isinstance(e, _PATH_ERRORS) and e.errno not in _ENVIRONMENT_ERRNOS:
                raise
            console.print(f"[bold red]error:[/] {_os_message(e)}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


_PATH_ERRORS = (
    FileExistsError,
    FileNotFoundError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)
_ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.ENAMETOOLONG, errno.ELOOP}


def _os_message(e: OSError) -> str:
    """'<path>: <what went wrong>' on one line (the message alone when no path is attached)."""
    if e.filename is None:
        return str(e).splitlines()[0] if str(e) else type(e).__name__
    where = f"{e.filename} -> {e.filename2}" if e.filename2 else str(e.filename)
    reason = e.strerror or type(e).__name__
    return f"{where}: {reason}"


def _pairs(values: list[str], what: str) -> dict[str, str | tuple[str, str]]:
    """['canonical=column', ...] -> {canonical: column}; 'genres=col[|]' splits a list column."""
    out: dict[str, str | tuple[str, str]] = {}
    for v in values:
        if "=" not in v:
            raise UserError(f"{what} {v!r} must look like name=column")
        k, col = v.split("=", 1)
        if not k.strip() or not col.strip():
            raise UserError(f"{what} {v!r} must look like name=column")
        out[k.strip()] = col.strip()
    return out


def _quantiles(text: str, option: str) -> tuple[float, float]:
    """'0.8,0.9' -> (0.8, 0.9): two increasing fractions strictly between 0 and 1."""
    parts = [p.strip() for p in text.split(",")]
    try:
        q = tuple(float(p) for p in parts)
    except ValueError:
        q = ()
    if len(q) != 2 or not 0.0 < q[0] <= q[1] < 1.0:
        raise UserError(
            f"{option} must be two quantiles of time 'q1,q2' with 0 < q1 <= q2 < 1 "
            f"(e.g. 0.8,0.9), got {text!r}"
        )
    return q[0], q[1]


# ---- data ---------------------------------------------------------------------------------


@app.command()
@friendly_errors
def prepare(
    input: Annotated[
        Path | None, typer.Argument(help="Event log file or directory (format auto-detected).")
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Dataset directory to write.")] = Path(
        "data/dataset"
    ),
    dataset: Annotated[
        str | None,
        typer.Option(help="Prepare a public dataset by name (fetched or taken from --from)."),
    ] = None,
    from_dir: Annotated[
        Path | None, typer.Option("--from", help="Local copy of the public dataset.")
    ] = None,
    format: Annotated[
        str, typer.Option(help="auto, generic, s3rec, recbole, grouplens or merrec.")
    ] = "auto",
    items: Annotated[Path | None, typer.Option(help="Item table (generic format).")] = None,
    users: Annotated[Path | None, typer.Option(help="User table (generic format).")] = None,
    map: Annotated[
        list[str] | None,
        typer.Option("--map", help="Event column mapping canonical=column, e.g. user_id=uid."),
    ] = None,
    item_map: Annotated[
        list[str] | None,
        typer.Option(help="Item column mapping, e.g. title=name, genres='genre_list[|]'."),
    ] = None,
    user_map: Annotated[list[str] | None, typer.Option(help="User column mapping.")] = None,
    separator: Annotated[
        str | None,
        typer.Option(help="Field separator of CSV/TSV/TXT files: one character ('tab' or '\\t')."),
    ] = None,
    time_unit: Annotated[
        str, typer.Option(help="Unit of numeric timestamps: s, ms, us, ns.")
    ] = "s",
    name: Annotated[str | None, typer.Option(help="Dataset name (default: --out's name).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the cold-start item split.")] = 0,
    cold_fraction: Annotated[
        float, typer.Option(help="Fraction of items held out for cold start.")
    ] = 0.1,
    temporal: Annotated[
        str, typer.Option(help="Quantiles of time for the temporal valid/test cut-offs.")
    ] = "0.8,0.9",
    collapse: Annotated[
        bool, typer.Option(help="Merge consecutive events of a user on one item.")
    ] = True,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out.")] = False,
) -> None:
    """Validate an event log, map ids to indices, split it and write a dataset directory."""
    from guim.data.loaders import load_raw
    from guim.data.prepare import PrepareConfig, check_output, prepare

    quantiles = _quantiles(temporal, "--temporal")
    if dataset:
        from guim.data.download import fetch, source_of

        local = fetch(dataset, from_dir=from_dir)
        format, input = source_of(dataset, local)
        name = name or dataset
    if input is None:
        raise UserError("give an INPUT path or --dataset NAME")
    check_output(out, [input], overwrite)  # before a long read, checked again before writing
    # every option goes to the loader, which uses it or refuses it naming the option
    options: dict[str, Any] = {"separator": separator, "time_unit": time_unit}
    if items or users or map or item_map or user_map:
        format = "generic" if format == "auto" else format
        options.update(
            mapping=_pairs(map or [], "--map"),
            items=items,
            item_mapping=_pairs(item_map or [], "--item-map") or None,
            users=users,
            user_mapping=_pairs(user_map or [], "--user-map") or None,
        )
    raw = load_raw(input, format, **options)
    cfg = PrepareConfig(
        name=name,
        seed=seed,
        cold_fraction=cold_fraction,
        temporal_quantiles=quantiles,
        collapse_repeats=collapse,
    )
    path = prepare(raw, out, cfg, overwrite=overwrite, inputs=[input])
    _print_stats(path)


def _print_stats(path: Path) -> None:
    from guim.io import read_json

    s = read_json(path / "stats.json")
    loo = s["splits"]["loo"]
    console.print(
        f"[green]prepared[/] {s['name']}: {s['n_users']:,} users, {s['n_items']:,} items, "
        f"{s['n_interactions']:,} interactions ({s['n_raw_events']:,} raw events), "
        f"{s['n_attributes']:,} attribute ids; leave-one-out train/valid/test "
        f"{loo['train']:,}/{loo['valid']:,}/{loo['test']:,} -> {path}"
    )


@app.command()
@friendly_errors
def synth(
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for the raw shop logs.")],
    size: Annotated[str, typer.Option(help="tiny, small, or a number of events (e.g. 1e6).")] = (
        "small"
    ),
    seed: Annotated[int, typer.Option()] = 0,
    overwrite: Annotated[bool, typer.Option()] = False,
) -> None:
    """Generate a synthetic shop (MerRec columns, planted user interests as ground truth)."""
    from guim.data.synthetic import synth

    path = synth(out, synth_config(size, seed), overwrite=overwrite)
    info = json.loads((path / "synth.json").read_text())
    console.print(
        f"[green]synthetic shop[/]: {info['n_users']:,} users, {info['n_items']:,} items, "
        f"{info['n_events']:,} events -> {path}  (next: guim prepare {path} --out DIR)"
    )


def synth_config(size: str, seed: int):
    from guim.data.synthetic import SynthConfig

    if size == "tiny":
        return SynthConfig.tiny(seed)
    if size == "small":
        return SynthConfig.small(seed)
    try:
        return SynthConfig.for_events(int(float(size)), seed)
    except ValueError:
        raise UserError(f"--size must be tiny, small or a number of events, not {size!r}") from None


@datasets_app.command("list")
def datasets_list() -> None:
    """The public datasets guim can fetch."""
    from guim.data.download import DATASETS

    table = Table("name", "format", "description")
    for name, spec in DATASETS.items():
        table.add_row(name, spec.format, spec.description)
    console.print(table)


@datasets_app.command("fetch")
@friendly_errors
def datasets_fetch(
    name: Annotated[str, typer.Argument(help="beauty, sports, toys, yelp, lastfm, ml-100k, ml-1m")],
    from_dir: Annotated[
        Path | None, typer.Option("--from", help="Use this local copy instead of downloading.")
    ] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Cache directory.")] = None,
    mirror: Annotated[str | None, typer.Option(help="Base URL or directory of a mirror.")] = None,
    force: Annotated[bool, typer.Option(help="Download again even if cached.")] = False,
) -> None:
    """Download a public dataset (checksum-verified, cached) or copy it from --from."""
    from guim.data.download import fetch, source_of

    path = fetch(name, from_dir=from_dir, cache_dir=cache_dir, force=force, base_url=mirror)
    fmt, main = source_of(name, path)
    console.print(f"[green]{name}[/] ({fmt}) at {path}  (next: guim prepare {main} --out DIR)")


# ---- baselines, training, evaluation ------------------------------------------------------


@app.command()
@friendly_errors
def baseline(
    names: Annotated[list[str], typer.Argument(help="random, popularity, item2vec")],
    dataset: Annotated[Path, typer.Option("--dataset", "-d", help="Prepared dataset directory.")],
    scheme: Annotated[str, typer.Option(help="Split scheme: loo, temporal, cold.")] = "loo",
    split: Annotated[str, typer.Option(help="valid or test.")] = "test",
    set: Annotated[
        list[str] | None, typer.Option("--set", help="Baseline setting key=value.")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Save fitted baselines under this dir.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print metrics as JSON.")] = False,
) -> None:
    """Fit baselines on the training split and evaluate them (full ranking, history masked)."""
    from guim.baselines import build, save
    from guim.config import parse_override
    from guim.data.dataset import Dataset
    from guim.evaluate import evaluate

    ds = Dataset(dataset)
    overrides: dict[str, Any] = {}
    for text in set or []:
        overrides.update(parse_override(text))
    results = {}
    for name in names:
        with console.status(f"fitting {name} on the {scheme} training split"):
            emb = build(name, ds, scheme, **overrides.get(name, {}))
        results[name] = evaluate(emb, ds, scheme, split, show_progress=True)
        if out:
            save(emb, out / name, dataset_hash=ds.hash, scheme=scheme)
    _show(results, as_json, f"{ds.name} {scheme} {split}")


def _show(results: dict[str, dict[str, float]], as_json: bool, title: str) -> None:
    if as_json:
        sys.stdout.write(json.dumps(results, indent=2) + "\n")
        return
    shown = ("HR@10", "NDCG@10", "MRR@10", "HR@20", "NDCG@20")
    metrics = [m for m in next(iter(results.values())) if m in shown] or [
        m for m in next(iter(results.values())) if m not in ("n_cases", "repeat_share")
    ]
    table = Table(*(["model", *metrics]), title=title)
    for model, res in results.items():
        table.add_row(model, *(f"{res[m]:.4f}" for m in metrics))
    console.print(table)


@app.command()
@friendly_errors
def train(
    dataset: Annotated[Path, typer.Option("--dataset", "-d", help="Prepared dataset directory.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory to write.")],
    preset: Annotated[
        str,
        typer.Option(
            help="Preset: auto (the default recipe, derived from the dataset's statistics; "
            "guim.recipe), none (the config defaults alone), beauty, lastfm, ml-100k, "
            "synthetic, or a .toml file."
        ),
    ] = "auto",
    set: Annotated[
        list[str] | None, typer.Option("--set", help="Override, e.g. train.lr=3e-4.")
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run in --out.")] = False,
    nproc: Annotated[
        int,
        typer.Option(
            help="Train on N processes with torch.distributed (runs torchrun --standalone "
            "--nproc-per-node N -m guim train ... for you)."
        ),
    ] = 1,
) -> None:
    """Train the GUIM teacher; validation every epoch, best weights kept, resumable. On several
    processes: `torchrun --nproc-per-node N -m guim train ...` (rank 0 validates and writes)."""
    import os

    from guim.config import load_config
    from guim.train import train as train_fn

    cfg = load_config(preset, set or [], dataset)
    if nproc < 1:
        raise UserError(f"--nproc must be >= 1, got {nproc}")
    if nproc > 1 and "RANK" not in os.environ:
        _torchrun_train(nproc, dataset, out, preset, set or [], resume)
        return
    rank0 = os.environ.get("RANK", "0") == "0"
    if rank0:
        console.print_json(json.dumps(cfg.to_dict()))
    train_fn(cfg, dataset, out, resume=resume)
    if not rank0:
        return
    summary = json.loads((out / "metrics.json").read_text())
    if "test" in summary:
        _show({"guim": summary["test"]}, False, f"{summary['dataset']} test")


@app.command()
@friendly_errors
def distill(
    teacher: Annotated[
        list[Path], typer.Option("--teacher", "-t", help="Teacher run (repeat to stack).")
    ],
    student: Annotated[
        str,
        typer.Option(
            help="Student preset (minilm, bert2dnn) or .toml: differences from the teacher's "
            "config."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Student run directory to write.")],
    set: Annotated[
        list[str] | None,
        typer.Option("--set", help="Student override, e.g. model.n_layers=1."),
    ] = None,
    assistant: Annotated[
        str | None,
        typer.Option(
            help="Teacher-assistant preset or .toml: trained first into OUT-assistant from the "
            "teachers; the student then learns from it."
        ),
    ] = None,
    assistant_set: Annotated[
        list[str] | None, typer.Option("--assistant-set", help="Override for the assistant.")
    ] = None,
    dataset: Annotated[
        Path | None, typer.Option("--dataset", "-d", help="Dataset (default: the teacher's).")
    ] = None,
) -> None:
    """Distil teacher runs into a student run (MiniLM: a smaller Transformer matching the last
    layer's attention and value relations; BERT2DNN: a feed-forward net matching the teachers'
    softened scores on every prefix). The student is an ordinary run: `guim eval`, `guim bench`
    and `guim.load_run` read it like any other."""
    from guim.trainer.distill import distill as distill_fn

    path = distill_fn(teacher, student, out, set or [], dataset, assistant, assistant_set or [])
    summary = json.loads((path / "metrics.json").read_text())
    if "test" in summary:
        _show({path.name: summary["test"]}, False, f"{summary['dataset']} test")


def _torchrun_train(
    nproc: int, dataset: Path, out: Path, preset: str | None, overrides: list[str], resume: bool
) -> None:
    """`guim train --nproc N`: the same command under torchrun, N processes on this machine."""
    import subprocess

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += [f"--nproc-per-node={nproc}", "-m", "guim", "train", "-d", str(dataset), "-o", str(out)]
    cmd += ["--preset", preset] if preset else []
    for text in overrides:
        cmd += ["--set", text]
    cmd += ["--resume"] if resume else []
    code = subprocess.run(cmd).returncode
    if code:
        raise UserError(f"guim train --nproc {nproc}: the processes exited with status {code}")


@app.command("eval")
@friendly_errors
def eval_cmd(
    run: Annotated[Path, typer.Argument(help="Run directory.")],
    dataset: Annotated[
        Path | None, typer.Option("--dataset", "-d", help="Dataset (default: the run's).")
    ] = None,
    split: Annotated[str, typer.Option(help="valid or test.")] = "test",
    scheme: Annotated[str | None, typer.Option(help="Default: the run's scheme.")] = None,
    mask_history: Annotated[
        bool,
        typer.Option(
            help="Mask every item the user has seen, a repeated target too (S3-Rec protocol); "
            "--no-mask-history ranks them like any item (RecBole protocol)."
        ),
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print metrics as JSON.")] = False,
) -> None:
    """Evaluate a trained run with the exact full-ranking protocol; prints the share of targets
    that repeat a history item next to the metrics (under masking, no model can hit those)."""
    from guim.data.dataset import Dataset
    from guim.embed import load_run
    from guim.evaluate import evaluate

    r = load_run(run)
    try:
        info = json.loads((run / "dataset.json").read_text())
        recorded = (info["path"], info["hash"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"{run / 'dataset.json'} is missing or unreadable ({e})") from None
    ds = Dataset(dataset or recorded[0])
    if ds.hash != info["hash"]:
        console.print("[yellow]warning: this dataset differs from the one the run trained on[/]")
    res = evaluate(
        r, ds, scheme or r.cfg.data.scheme, split, mask_history=mask_history, show_progress=True
    )
    protocol = "history masked" if mask_history else "nothing masked"
    _show({"guim": res}, as_json, f"{ds.name} {split} ({protocol})")
    if not as_json:
        console.print(
            f"repeat targets: {res['repeat_share']:.1%} of {res['n_cases']:,} cases repeat an "
            "item of the user's history"
            + (" (misses under this protocol)" if mask_history and res["repeat_share"] else "")
        )


@app.command()
@friendly_errors
def quickstart(
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for everything.")] = Path(
        "runs/quickstart"
    ),
    size: Annotated[str, typer.Option(help="Synthetic shop size: tiny or small.")] = "small",
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """The whole chain on the built-in synthetic shop: synth -> prepare -> train -> bench ->
    report."""
    from guim.quickstart import run_quickstart

    report = run_quickstart(out, size=size, seed=seed)
    console.print(f"[green]report[/]: {report}")


# ---- benchmark ----------------------------------------------------------------------------


def _csv(text: str | None) -> list[str]:
    return [x.strip() for x in (text or "").split(",") if x.strip()]


@app.command()
@friendly_errors
def bench(
    runs: Annotated[
        list[Path] | None,
        typer.Argument(help="GUIM run directories, each labelled by its directory name."),
    ] = None,
    dataset: Annotated[
        Path | None,
        typer.Option("--dataset", "-d", help="Prepared dataset (default: the first run's)."),
    ] = None,
    run: Annotated[
        list[str] | None,
        typer.Option(
            "--run", help="LABEL=PATH: group runs of several schemes under one label (repeat)."
        ),
    ] = None,
    train: Annotated[
        list[str] | None,
        typer.Option(
            "--train",
            help="Train GUIM here first: PRESET, PRESET:cold or LABEL=PRESET[:SCHEME] (repeat).",
        ),
    ] = None,
    set: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override for --train runs, e.g. train.lr=3e-4."),
    ] = None,
    tasks: Annotated[str | None, typer.Option(help="Comma list of tasks (default: all).")] = None,
    baselines: Annotated[
        str,
        typer.Option(
            help="Comma list: random, popularity, item2vec (+attributes), "
            "item2vec-plain, cml; '' for none."
        ),
    ] = "random,popularity,item2vec,cml",
    peers: Annotated[
        str, typer.Option(help="Comma list of RecBole peers, e.g. sasrec,bert4rec.")
    ] = "",
    peer_minutes: Annotated[float, typer.Option(help="Training cap per peer, in minutes.")] = 45.0,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")] = Path(
        "runs/bench"
    ),
    split: Annotated[str, typer.Option(help="valid or test.")] = "test",
    seed: Annotated[int, typer.Option(help="Seed of baselines, peers and --train runs.")] = 0,
) -> None:
    """Score GUIM runs, baselines and peers on every benchmark task; write bench.json and an
    HTML/Markdown report."""
    from guim.bench.run import ModelSpec
    from guim.io import read_json
    from guim.quickstart import train_and_bench

    grouped: dict[str, list[Path]] = {}
    for text in run or []:
        label, sep, path = text.partition("=")
        if not sep or not label or not path:
            raise UserError(f"--run {text!r} must look like LABEL=PATH")
        grouped.setdefault(label.strip().lower(), []).append(Path(path.strip()))
    models = [ModelSpec.from_runs(p.name, [p]) for p in runs or []]
    models += [ModelSpec.from_runs(label, paths) for label, paths in grouped.items()]
    if dataset is None:
        first = next((p for m in models for p in m.runs.values()), None)
        if first is None or not (first / "dataset.json").exists():
            raise UserError("give --dataset DIR (no run to take the dataset from)")
        dataset = Path(read_json(first / "dataset.json")["path"])
    if not models and not train and not _csv(baselines) and not _csv(peers):
        raise UserError(
            "nothing to benchmark: give RUN dirs, --run, --train, --baselines or --peers"
        )
    path = train_and_bench(
        models,
        dataset,
        out,
        train=train or [],
        train_overrides=set or [],
        seed=seed,
        tasks=_csv(tasks) or None,
        split=split,
        baselines=_csv(baselines),
        peers=_csv(peers),
        peer_minutes=peer_minutes,
    )
    doc = read_json(path)
    results = next(iter(doc["results"].values()))
    keys = [f"{t}/{i['primary_metric']}" for t, i in doc["tasks"].items()]
    table = Table("model", *keys, title=f"{doc['dataset']['name']} {split}")
    for model, res in results.items():
        table.add_row(model, *(f"{res[k]:.4f}" if res.get(k) is not None else "-" for k in keys))
    console.print(table)
    for key, reason in doc["skipped"].items():
        console.print(f"[yellow]skipped[/] {key}: {reason}")


@app.command()
@friendly_errors
def leaderboard(
    files: Annotated[list[Path], typer.Argument(help="bench.json files.")],
    readme: Annotated[
        Path | None,
        typer.Option(help="Write the table between the README's leaderboard markers."),
    ] = None,
) -> None:
    """One Markdown table of primary metrics (datasets x tasks x models) from bench.json files."""
    from guim.bench.leaderboard import build_leaderboard, update_readme

    table = build_leaderboard(files)
    if readme is not None:
        update_readme(readme, table)
        console.print(f"[green]updated[/] {readme}")
    sys.stdout.write(table + "\n")


# ---- export and serving ---------------------------------------------------------------------


@app.command("export")
@friendly_errors
def export_cmd(
    run: Annotated[Path, typer.Argument(help="Run directory.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Export directory to write.")],
    index: Annotated[
        str, typer.Option(help="auto (exact up to --flat-max items, else hnsw), flat, hnsw, ivf.")
    ] = IX.kind,
    flat_max: Annotated[int, typer.Option(help="Largest catalogue indexed exactly.")] = IX.flat_max,
    hnsw_m: Annotated[int, typer.Option(help="HNSW links per node.")] = IX.hnsw_m,
    ef_construction: Annotated[int, typer.Option(help="HNSW build beam.")] = IX.ef_construction,
    ef_search: Annotated[int, typer.Option(help="HNSW query beam.")] = IX.ef_search,
    nlist: Annotated[int, typer.Option(help="IVF lists (0 = 4 sqrt(n)).")] = IX.nlist,
    nprobe: Annotated[int, typer.Option(help="IVF lists probed per query.")] = IX.nprobe,
    dataset: Annotated[
        Path | None, typer.Option("--dataset", "-d", help="Dataset (default: the run's).")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out.")] = False,
    onnx: Annotated[
        bool, typer.Option(help="Export the user encoder for ONNX Runtime too (guim[export]).")
    ] = False,
) -> None:
    """Export item and user vectors (Parquet), a FAISS index with its measured recall@10 and
    latency, and the model files `guim serve` needs."""
    from guim.export import export

    kinds = typing.get_args(IndexKind)
    if index not in kinds:
        raise UserError(f"--index must be one of {', '.join(kinds)}, not {index!r}")
    cfg = IndexConfig(
        kind=index,  # type: ignore[arg-type]
        flat_max=flat_max,
        hnsw_m=hnsw_m,
        ef_construction=ef_construction,
        ef_search=ef_search,
        nlist=nlist,
        nprobe=nprobe,
    )
    path = export(run, out, cfg, dataset_dir=dataset, overwrite=overwrite, onnx=onnx)
    manifest = json.loads((path / "manifest.json").read_text())
    ix = manifest["index"]
    console.print(
        f"[green]exported[/] {path}: {manifest['n_items']} items, {manifest['n_users']} users, "
        f"{ix['kind']} index recall@10 {ix['recall@10']:.4f}, {ix['query_ms']:.3f} ms/query"
    )


@app.command()
@friendly_errors
def serve(
    source: Annotated[
        Path, typer.Argument(help="Export directory (guim export) or run directory.")
    ],
    store: Annotated[
        str,
        typer.Option(help="sqlite:///path (default SOURCE/events.db) or redis://host:port."),
    ] = "",
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes.")] = 1,
    admin_token: Annotated[
        str | None,
        typer.Option(help="Bearer token of /admin routes.", envvar="GUIM_SERVE_ADMIN_TOKEN"),
    ] = None,
    gate_tolerance: Annotated[
        float, typer.Option(help="Allowed drop of the gate NDCG@10 for a model swap.")
    ] = 0.0,
    torch_threads: Annotated[int, typer.Option(help="torch threads per worker.")] = 1,
    backend: Annotated[
        str, typer.Option(help="torch, or onnx (the ONNX Runtime user encoder, guim[export]).")
    ] = "torch",
) -> None:
    """Serve recommendations over HTTP (FastAPI + uvicorn); learns from posted events."""
    import os

    import uvicorn

    if not source.exists():
        raise FileNotFoundError(f"{source} does not exist")
    env = {
        "GUIM_SERVE_SOURCE": str(source.resolve()),
        "GUIM_SERVE_STORE": store,
        "GUIM_SERVE_GATE_TOLERANCE": str(gate_tolerance),
        "GUIM_SERVE_TORCH_THREADS": str(torch_threads),
        "GUIM_SERVE_BACKEND": backend,
    }
    if admin_token:
        env["GUIM_SERVE_ADMIN_TOKEN"] = admin_token
    os.environ.update(env)  # the factory (in every worker) reads its settings from these
    try:
        uvicorn.run(
            "guim.serve.app:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="warning",
        )
    finally:
        from guim.serve.pointer import remove_pointers

        remove_pointers(os.getpid())  # the workers' model pointer (this process supervised them)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
