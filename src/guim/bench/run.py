"""`guim bench`: score trained GUIM runs, the baselines and RecBole peers on every benchmark task
the dataset supports, then write bench.json and the Markdown/HTML report.

Embeddings are frozen; each task uses the model's embedder trained on the task's split scheme
(loo, temporal or cold), so no model is scored on interactions it was trained on.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import math
import pkgutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from guim.bench.curves import CURVE_KEY, seconds_to_reach
from guim.data.dataset import SCHEMES, Dataset
from guim.embed import Embedder
from guim.errors import UserError
from guim.io import read_json
from guim.progress import console, make_progress
from guim.provenance import CpuWatch

DEFAULT_BASELINES = ("random", "popularity", "item2vec", "cml")
# --baselines name -> (label in the results, guim.baselines name, settings)
BASELINE_SPECS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "random": ("random", "random", {}),
    "popularity": ("popularity", "popularity", {}),
    "item2vec": ("item2vec+attr", "item2vec", {"attributes": True}),
    "item2vec+attr": ("item2vec+attr", "item2vec", {"attributes": True}),
    "item2vec-plain": ("item2vec", "item2vec", {}),
    "cml": ("cml", "cml", {}),
}


@dataclass(frozen=True)
class ModelSpec:
    """A GUIM model under one label: its run directories, one per split scheme."""

    label: str
    runs: dict[str, Path] = field(default_factory=dict)

    @staticmethod
    def from_runs(label: str, run_dirs: Sequence[str | Path]) -> ModelSpec:
        """Group run directories under `label`, keyed by each run's config.data.scheme."""
        runs: dict[str, Path] = {}
        for run_dir in map(Path, run_dirs):
            scheme = run_scheme(run_dir)
            if scheme in runs:
                raise UserError(
                    f"model {label!r} has two {scheme} runs: {runs[scheme]} and {run_dir}"
                )
            runs[scheme] = run_dir
        return ModelSpec(label.lower(), runs)


def run_scheme(run_dir: Path) -> str:
    """The split scheme a run directory was trained on."""
    if not (run_dir / "config.json").exists():
        raise FileNotFoundError(f"{run_dir} is not a GUIM run directory (no config.json)")
    return read_json(run_dir / "config.json")["data"]["scheme"]


def parse_train(text: str) -> tuple[str, str, str]:
    """`[LABEL=]PRESET[:SCHEME]` -> (label, preset, scheme); the label defaults to guim-PRESET."""
    label, _, rest = text.rpartition("=")
    preset, _, scheme = rest.partition(":")
    scheme = scheme or "loo"
    if not preset:
        raise UserError(f"--train {text!r}: expected PRESET, PRESET:cold or LABEL=PRESET[:SCHEME]")
    if scheme not in SCHEMES:
        raise UserError(f"--train {text!r}: scheme must be one of {SCHEMES}, not {scheme!r}")
    return (label or f"guim-{Path(preset).stem}").lower(), preset, scheme


def discover_tasks() -> tuple[dict[str, Any], dict[str, str]]:
    """Every task module in guim.bench.tasks that defines TASK: ({name: (task, module)}, errors).

    A module that fails to import is reported in `errors` ({module: reason}), not raised.
    """
    import guim.bench.tasks as package

    found: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        try:
            module = importlib.import_module(f"{package.__name__}.{info.name}")
        except Exception as e:
            errors[info.name] = f"task module failed to import: {type(e).__name__}: {e}"
            continue
        task = getattr(module, "TASK", None)
        if task is not None:
            found[task.name] = (task, module)
    order = sorted(found, key=lambda n: (n != "next_item", n))
    return {n: found[n] for n in order}, errors


def describe(task: Any, module: Any) -> str:
    """The task's summary: the first paragraph of its module docstring (or class docstring)."""
    doc = inspect.getdoc(module) or inspect.getdoc(type(task)) or task.name
    return " ".join(doc.strip().split("\n\n")[0].split())


def _hash(obj: Any) -> str:
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.blake2b(blob, digest_size=6).hexdigest()


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def guim_curve(run_dir: Path) -> list[dict[str, float]]:
    """Validation NDCG@10 after each evaluated epoch vs cumulative training seconds."""
    from guim.checkpoint import read_log

    curve, seconds = [], 0.0
    for record in read_log(run_dir):
        seconds += record["train_seconds"]
        if CURVE_KEY in record:
            curve.append(
                {
                    "epoch": record["epoch"] + 1,
                    "train_seconds": round(seconds, 3),
                    CURVE_KEY: record[CURVE_KEY],
                }
            )
    return curve


def guim_entry(spec: ModelSpec) -> dict[str, Any]:
    """The bench.json "models" entry of a GUIM model; timings come from its loo run (else the
    first run), the one compared with peers."""
    scheme = "loo" if "loo" in spec.runs else next(iter(spec.runs))
    run_dir = spec.runs[scheme]
    config = read_json(run_dir / "config.json")
    metrics = read_json(run_dir / "metrics.json") if (run_dir / "metrics.json").exists() else {}
    tr = config.get("train", {})
    cap = (
        f"epochs={tr.get('epochs')}, patience={tr.get('patience')}, "
        f"max_minutes={tr.get('max_minutes')}; stopped: {metrics.get('stopped', 'unknown')}"
    )
    return {
        "kind": "guim",
        "runs": {s: str(p) for s, p in spec.runs.items()},
        "config": config,
        "config_hash": metrics.get("config_hash") or _config_hash(config),
        "train_seconds": metrics.get("train_seconds"),
        "epochs": metrics.get("epochs_run"),
        "curve": guim_curve(run_dir),
        "cap": cap,
    }


def _config_hash(config: dict[str, Any]) -> str:
    from guim.config import from_dict

    return from_dict(config).hash()


def check_labels(
    pairs: Sequence[tuple[str, str]],
    baselines: Sequence[str],
    peers: Sequence[str],
    labels: Sequence[str] = (),
) -> None:
    """Refuse (label, scheme) pairs of GUIM runs that repeat, model `labels` given twice, or
    labels taken by a baseline or a peer."""
    reserved = {BASELINE_SPECS[b][0] for b in baselines if b in BASELINE_SPECS}
    reserved |= {p.lower() for p in peers}
    pairs, labels = list(pairs), list(labels)
    clash = sorted(
        {x for x in labels if labels.count(x) > 1}
        | {f"{label} ({scheme})" for label, scheme in pairs if pairs.count((label, scheme)) > 1}
        | ({label for label, _ in pairs} & reserved)
    )
    if clash:
        raise UserError(
            f"model labels must be unique per split scheme and differ from baselines/peers: {clash}"
        )


def fit_baseline(
    key: str, dataset: Dataset, scheme: str, out_dir: Path, seed: int
) -> tuple[Embedder, dict[str, Any], float]:
    """Fit (or load the cached fit of) baseline `key` on `scheme`: (embedder, config, seconds).

    Settings tuned on the dataset's validation split (guim.baselines.TUNED) are applied. Fits are
    cached under out_dir/baselines/SCHEME/LABEL and reused when the dataset hash and the config
    are unchanged.
    """
    from guim.baselines import BASELINES, load, make_config, save, tuned

    label, name, settings = BASELINE_SPECS[key]
    known = {f.name for f in fields(BASELINES[name].config)}
    settings = {**tuned(name, dataset.name), **settings}
    settings = {**settings, **({"seed": seed} if "seed" in known else {})}
    config = json.loads(json.dumps(asdict(make_config(name, **settings))))
    cache = out_dir / "baselines" / scheme / label
    if (cache / "config.json").exists():
        doc = read_json(cache / "config.json")
        meta = doc.get("meta", {})
        if doc["config"] == config and meta.get("dataset_hash") == dataset.hash:
            return load(cache), config, meta.get("fit_seconds", 0.0)
    t0 = time.perf_counter()
    embedder = BASELINES[name].fit(dataset, scheme, make_config(name, **settings))
    seconds = round(time.perf_counter() - t0, 3)
    save(embedder, cache, dataset_hash=dataset.hash, scheme=scheme, fit_seconds=seconds)
    return embedder, config, seconds


def run_peers(
    names: Sequence[str], dataset_dir: Path, out_dir: Path, minutes: float, seed: int
) -> tuple[dict[str, Any], dict[str, str]]:
    """Train each RecBole peer: ({name: PeerRun}, {name: reason it was skipped})."""
    runs: dict[str, Any] = {}
    failed: dict[str, str] = {}
    for name in names:
        console.rule(f"[bold]peer {name} (at most {minutes:g} minutes)")
        try:
            from guim.peers.recbole import run_peer

            runs[name] = run_peer(name, dataset_dir, out_dir / "peers" / name, minutes, seed)
        except ImportError as e:
            failed[name] = (
                f"RecBole is not installed ({e}); install the peers extra (pip install 'guim[peers]') to run peers"
            )
        except Exception as e:
            failed[name] = f"peer {name} failed: {type(e).__name__}: {e}"
        if name in failed:
            console.print(f"[yellow]skipping peer {name}:[/] {failed[name]}")
    return runs, failed


def peer_entry(peer: Any, peer_dir: Path) -> dict[str, Any]:
    config = getattr(peer, "config", None) or getattr(peer, "hparams", None) or None
    return {
        "kind": "peer",
        "runs": {getattr(peer, "scheme", "loo"): str(peer_dir)},
        "config": config,
        "config_hash": _hash(config) if config is not None else None,
        "train_seconds": _finite(peer.train_seconds),
        "epochs": peer.epochs,
        "curve": list(peer.curve) if peer.curve is not None else None,
        "cap": peer.cap,
    }


def compare(guim_label: str, guim_run: Path, peer: Any) -> dict[str, Any]:
    """Training time guim needs to reach the peer's own best validation NDCG@10, relative to the
    time the peer needed (ratio < 1: guim gets there faster)."""
    target = peer.best_valid_ndcg10
    reach = seconds_to_reach(guim_run, target) if target is not None else None
    peer_s = peer.seconds_to_best
    return {
        "peer_best_valid_NDCG@10": _finite(target),
        "peer_seconds_to_best": _finite(peer_s),
        "guim_seconds_to_reach": None if reach is None else round(reach, 3),
        "ratio": None if reach is None or not peer_s else round(reach / peer_s, 4),
        "guim_model": guim_label,
    }


def select_tasks(
    dataset: Dataset, names: Sequence[str] | None, split: str
) -> tuple[list[Any], dict[str, Any], dict[str, str]]:
    """The tasks to run (`names`, or all) that the dataset supports: (tasks, their bench.json
    "tasks" entries, {task: why it is skipped})."""
    available, import_errors = discover_tasks()
    if names:
        missing = [t for t in names if t not in available]
        if missing:
            raise UserError(f"unknown task(s) {missing}; available: {list(available)}")
        available = {t: available[t] for t in names}
    skipped: dict[str, str] = {} if names else dict(import_errors)
    info: dict[str, Any] = {}
    selected = []
    for name, (task, module) in available.items():
        ok = task.supports(dataset)
        if ok is not True:
            skipped[name] = str(ok) if ok else "not supported by this dataset"
            continue
        selected.append(task)
        info[name] = {
            "primary_metric": task.primary_metric,
            "description": describe(task, module),
            "scheme": task.scheme,
            "split": split,
        }
        if getattr(task, "protocol", None):
            info[name]["protocol"] = task.protocol
            info[name]["extra_metrics"] = dict(getattr(task, "extra_metrics", ()))
    return selected, info, skipped


def fit_baselines(
    key: str, dataset: Dataset, schemes: Sequence[str], out_dir: Path, seed: int
) -> tuple[dict[str, Embedder], dict[str, Any]] | None:
    """Baseline `key` fitted on each scheme: ({scheme: embedder}, its bench.json "models"
    entry), or None when this install lacks it."""
    from guim.baselines import BASELINES

    label, name, _ = BASELINE_SPECS[key]
    if name not in BASELINES:
        return None
    embedders: dict[str, Embedder] = {}
    fit_seconds, config = 0.0, None
    for scheme in schemes:
        with console.status(f"fitting {label} on {scheme}"):
            embedders[scheme], settings, seconds = fit_baseline(key, dataset, scheme, out_dir, seed)
        config = {"baseline": name, **settings}
        fit_seconds += seconds
    return embedders, {
        "kind": "baseline",
        "runs": None,
        "config": config,
        "config_hash": _hash(config) if config is not None else None,
        "train_seconds": round(fit_seconds, 3),
        "epochs": None,
        "curve": None,
        "cap": None,
    }


def bench(
    models: Sequence[ModelSpec],
    dataset_dir: str | Path,
    out_dir: str | Path,
    tasks: Sequence[str] | None = None,
    split: str = "test",
    baselines: Sequence[str] = DEFAULT_BASELINES,
    peers: Sequence[str] = (),
    peer_minutes: float = 45.0,
    seed: int = 0,
    command: str | None = None,
    watch: CpuWatch | None = None,
    train_wall_seconds: float | None = None,
) -> Path:
    """Run every (selected) task on every model (frozen runs: nothing is trained here) and
    write out_dir/bench.json plus the report; returns bench.json's path. Training models for a
    bench invocation is the caller's (`guim.quickstart.train_and_bench`), which passes the
    `watch` it started before training and the seconds training took, so that `run_conditions`
    covers the whole invocation (`wall_seconds` is this function's own time)."""
    from guim.bench.report import write_report
    from guim.embed import load_run
    from guim.provenance import write_results

    t_start = time.perf_counter()
    watch = watch or CpuWatch()
    dataset_dir, out_dir = Path(dataset_dir), Path(out_dir)
    dataset = Dataset(dataset_dir)
    if split not in ("valid", "test"):
        raise UserError(f"--split must be valid or test, not {split!r}")
    unknown = [b for b in baselines if b not in BASELINE_SPECS]
    if unknown:
        raise UserError(f"unknown baseline(s) {unknown}; expected some of {list(BASELINE_SPECS)}")

    selected, task_info, skipped = select_tasks(dataset, tasks, split)
    schemes = sorted({t.scheme for t in selected}, key=SCHEMES.index)

    # ---- models: GUIM runs, baselines, peers -------------------------------------------------
    specs = [ModelSpec(m.label.lower(), dict(m.runs)) for m in models]
    peers = [p.lower() for p in peers]
    pairs = [(s.label, scheme) for s in specs for scheme in s.runs]
    check_labels(pairs, baselines, peers, [s.label for s in specs])
    entries: dict[str, dict[str, Any]] = {}
    embedders: dict[str, dict[str, Any]] = {}  # label -> scheme -> Embedder or loader
    for spec in specs:
        entries[spec.label] = guim_entry(spec)
        embedders[spec.label] = {}
        for scheme, run_dir in spec.runs.items():
            info = run_dir / "dataset.json"
            if info.exists() and read_json(info)["hash"] != dataset.hash:
                raise UserError(f"{run_dir} was trained on another dataset than {dataset_dir}")
            embedders[spec.label][scheme] = run_dir

    peer_runs, peer_failed = run_peers(peers, dataset_dir, out_dir, peer_minutes, seed)
    for name, peer in peer_runs.items():
        entries[name] = peer_entry(peer, out_dir / "peers" / name)
        embedders[name] = {getattr(peer, "scheme", "loo"): peer.embedder}

    for key in dict.fromkeys(baselines):
        label = BASELINE_SPECS[key][0]
        fitted = fit_baselines(key, dataset, schemes, out_dir, seed)
        if fitted is None:
            for t in selected:
                skipped[f"{t.name}/{label}"] = f"baseline {key} is not available in this install"
            continue
        embedders[label], entries[label] = fitted

    # ---- tasks x models --------------------------------------------------------------------
    results: dict[str, dict[str, float | None]] = {label: {} for label in entries}
    seconds: dict[str, dict[str, float]] = {}
    pairs = []
    for task in selected:
        for label in entries:
            if task.scheme in embedders.get(label, {}):
                pairs.append((task, label))
            else:
                skipped[f"{task.name}/{label}"] = f"no {task.scheme} embedder for {label}"
        for name, reason in peer_failed.items():
            skipped[f"{task.name}/{name}"] = reason
    with make_progress() as progress:
        bar = progress.add_task("bench", total=len(pairs), info="")
        for task, label in pairs:
            progress.update(bar, description=task.name, info=label)
            embedder = embedders[label][task.scheme]
            if isinstance(embedder, Path):
                embedder = embedders[label][task.scheme] = load_run(embedder)
            t0 = time.perf_counter()
            try:
                out = task.run(embedder, dataset, split)
            except Exception as e:
                skipped[f"{task.name}/{label}"] = f"failed: {type(e).__name__}: {e}"
                console.print(f"[red]{task.name} failed on {label}:[/] {e}")
                out = {}
            seconds.setdefault(task.name, {})[label] = round(time.perf_counter() - t0, 3)
            for metric, value in out.items():
                value = None if value is None else _finite(float(value))
                if metric.rsplit("/", 1)[-1].startswith("n_") and value is not None:
                    value = int(value)  # counts
                results[label][f"{task.name}/{metric}"] = value
            progress.advance(bar)

    comparisons: dict[str, Any] = {}
    guim_labels = [s.label for s in specs if "loo" in s.runs]
    for i, label in enumerate(guim_labels):
        spec = next(s for s in specs if s.label == label)
        for name, peer in peer_runs.items():
            key = f"guim_vs_{name}" if i == 0 else f"{label}_vs_{name}"
            comparisons[key] = compare(label, spec.runs["loo"], peer)

    path = write_results(
        out_dir / "bench.json",
        {dataset.name.lower(): {label.lower(): res for label, res in results.items()}},
        command=command,
        dataset={
            "name": dataset.name.lower(),
            "hash": dataset.hash,
            "path": str(dataset_dir.resolve()),
            "n_users": dataset.n_users,
            "n_items": dataset.n_items,
            "n_interactions": int(dataset.stats["n_interactions"]),
            # share of loo targets repeating a history item: misses under the masked protocol
            "repeat_share": {s: dataset.repeat_share("loo", s) for s in ("valid", "test")},
        },
        tasks=task_info,
        skipped=skipped,
        models={label.lower(): entry for label, entry in entries.items()},
        comparisons=comparisons,
        seconds=seconds,
        wall_seconds=round(time.perf_counter() - t_start, 2),
        seed=seed,
        run_conditions=watch.read(train_wall_seconds=train_wall_seconds),
    )
    md, html = write_report(path, out_dir)
    console.print(f"[green]bench[/]: {path}\n[green]report[/]: {md}, {html}")
    return path
