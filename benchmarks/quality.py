"""The default recipe (`guim train --preset auto`) against each dataset's preset, over several
seeds: test HR/NDCG@10/20 (full ranking, history masked) as mean and standard deviation, best
validation NDCG@10 and training seconds, plus any validation ablation given as a variant.

Every run is `guim train` as the README documents it (a subprocess, one torch thread, up to
`--jobs` side by side). A run directory that already holds a finished run of the same config is
read instead of retrained, so seeds can be added run by run.

    .venv/bin/python benchmarks/quality.py --datasets beauty lastfm --seeds 0 1 2 \
        --variant guim-default=auto [--variant guim-preset=DATASET] [--jobs 2] [--merge]

A variant is NAME=PRESET[,SECTION.KEY=VALUE...]; PRESET "DATASET" is the dataset's own preset.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
from guim_quality import PUBLISHED, WORK, prepared

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "quality.json"
RUNS = REPO / "runs" / "quality-seeds"
PROTOCOL = "leave-one-out test split, full ranking over all items, history masked, pessimistic ties"
METRICS = ("HR@10", "NDCG@10", "HR@20", "NDCG@20")
TARGETS = {"beauty": 0.0623, "lastfm": 0.0503}  # the best published test NDCG@10 (issue 15)


def data_dir(name: str) -> Path:
    if name == "synthetic":  # the quickstart's shop (SynthConfig.small, seed 0)
        out = WORK / "data" / "synthetic"
        if not (out / "stats.json").exists():
            from guim.data.loaders.merrec import load_merrec
            from guim.data.prepare import PrepareConfig, prepare
            from guim.data.synthetic import SynthConfig, synth

            shop = synth(WORK / "shop-synthetic", SynthConfig.small(0), overwrite=True)
            prepare(load_merrec(shop), out, PrepareConfig(name="synthetic"), overwrite=True)
        return out
    return prepared(name)


def parse_variant(text: str, dataset: str) -> tuple[str, str, list[str]]:
    name, _, spec = text.partition("=")
    preset, *overrides = spec.split(",") if spec else [""]
    if not name or not preset:
        raise SystemExit(f"--variant {text!r}: expected NAME=PRESET[,KEY=VALUE...]")
    return name, dataset if preset == "DATASET" else preset, overrides


class Job(NamedTuple):
    dataset: str
    label: str
    seed: int
    data: Path
    run: Path
    preset: str
    sets: list[str]  # the variant's overrides, the seed, one thread

    @property
    def cmd(self) -> list[str]:
        cmd = ["guim", "train", "-d", str(self.data), "-o", str(self.run), "--preset", self.preset]
        return cmd + [x for s in self.sets for x in ("--set", s)]


def finished(job: Job) -> bool:
    """A complete run (test metrics written) of exactly the config this job resolves to: its
    config.json as today's code reads it (an option added since takes its default, which
    keeps the earlier behaviour) equals the job's config."""
    from guim.config import config_from_json, load_config

    if not (job.run / "metrics.json").exists():
        return False
    expected = load_config(job.preset, job.sets, job.data).to_dict()
    return config_from_json(job.run / "config.json").to_dict() == expected


def train_one(job: Job) -> dict[str, Any]:
    from guim.config import config_from_json
    from guim.io import read_json, write_json

    run, cmd = job.run, job.cmd
    if not finished(job):
        if run.exists():
            import shutil

            shutil.rmtree(run)
        run.parent.mkdir(parents=True, exist_ok=True)
        exe = [str(Path(sys.executable).with_name("guim")), *cmd[1:]]
        t0 = time.perf_counter()
        with open(run.parent / f"{run.name}.log", "w") as log:
            subprocess.run(exe, check=True, stdout=log, stderr=subprocess.STDOUT)
        write_json(
            run / "quality-command.json",
            {"command": cmd, "wall_seconds": round(time.perf_counter() - t0, 1)},
        )
    command = run / "quality-command.json"
    return {
        **figures(run),
        # a run trained by `guim train` itself (an ablation reused as a seed) has no wall time
        "wall_seconds": read_json(command).get("wall_seconds") if command.exists() else None,
        # the hash today's code gives the run's config (the one `finished` compares)
        "config_hash": config_from_json(run / "config.json").hash(),
    }


def figures(run: Path) -> dict[str, Any]:
    """A finished run's test and best validation figures and its training time."""
    from guim.io import read_json

    m = read_json(run / "metrics.json")
    return {
        **{k: m["test"][k] for k in METRICS},
        "valid_NDCG@10": m["valid_NDCG@10"],
        "train_seconds": m["train_seconds"],
        "epochs": m["epochs_run"],
        "best_epoch": m["best_epoch"],
    }


def summarise(runs: dict[int, dict[str, Any]], cmd: list[str]) -> dict[str, Any]:
    seeds = sorted(runs)
    out: dict[str, Any] = {}
    for k in (*METRICS, "valid_NDCG@10"):
        out[k] = statistics.fmean(runs[s][k] for s in seeds)
    out["NDCG@10_std"] = (
        statistics.stdev(runs[s]["NDCG@10"] for s in seeds) if len(seeds) > 1 else None
    )
    out["train_seconds"] = statistics.fmean(runs[s]["train_seconds"] for s in seeds)
    out["seeds"] = seeds
    out["per_seed"] = {str(s): runs[s] for s in seeds}
    shown = [c if not c.startswith(str(REPO)) else str(Path(c).relative_to(REPO)) for c in cmd]
    # one command for every seed: the last seed's value and run directory read as SEED
    shown = [re.sub(rf"-s{seeds[-1]}$", "-sSEED", c) if "/" in c else c for c in shown]
    out["command"] = " ".join(shown).replace(f"train.seed={seeds[-1]}", "train.seed=SEED")
    return out


def differences(config: dict[str, Any], base: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The settings of a run's config.json that differ from `base`, as section.key: value."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            out.update(differences(value, base[key], f"{prefix}{key}."))
        elif base.get(key) != value and key not in ("seed", "threads"):
            out[f"{prefix}{key}"] = value
    return out


def ablation(run: Path) -> dict[str, Any]:
    """A finished run's validation and test figures and its settings (differences from the
    config defaults), for the validation ablations recorded beside the seeds."""
    from guim.config import Config
    from guim.io import read_json

    return {
        **figures(run),
        # defaults through JSON, so tuples compare equal to the saved lists
        "settings": differences(
            read_json(run / "config.json"), json.loads(json.dumps(Config().to_dict()))
        ),
    }


def short_conditions(text: str, entry: dict[str, Any] | None = None) -> str:
    """An entry's run conditions, "2 thread(s), 1 at a time": its `threads` and `jobs` fields,
    or for entries recorded before those fields, parsed from the text ("each run 2 torch
    thread(s), up to 1 side by side ...")."""
    if entry is not None and "threads" in entry and "jobs" in entry:
        return f"{entry['threads']} thread(s), {entry['jobs']} at a time"
    m = re.search(r"each run (\w+) torch thread(?:\(s\))?, up to (\w+) side by side", text)
    if not m:
        return ""
    words = {"one": "1", "two": "2"}
    threads, jobs = (words.get(x, x) for x in m.groups())
    return f"{threads} thread(s), {jobs} at a time"


def table(path: Path) -> str:
    """The README table of a quality.json: each dataset's default recipe and preset."""
    from guim.io import read_json

    doc = read_json(path)
    rows = [
        "| dataset | run | seeds | test NDCG@10 (mean ± std) | HR@10 | NDCG@20 | HR@20 "
        "| valid NDCG@10 | train s | runs | best published NDCG@10 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    earlier = doc.get("protocol_of_earlier_entries", "")
    order = ["beauty", "lastfm", "ml-100k", "synthetic"]  # the README's order, then the rest
    names = sorted(doc["results"], key=lambda n: (order.index(n) if n in order else len(order), n))
    for name in names:
        models = doc["results"][name]
        for label in ("guim-default", "guim-preset"):
            if label not in models:
                continue
            r = models[label]
            std = f" ± {r['NDCG@10_std']:.4f}" if r.get("NDCG@10_std") is not None else ""
            target = doc.get("targets_NDCG_at_10", {}).get(name)
            rows.append(
                f"| {name} | {'recipe' if label == 'guim-default' else 'preset'} "
                f"| {len(r['seeds'])} | {r['NDCG@10']:.4f}{std} | {r['HR@10']:.4f} "
                f"| {r['NDCG@20']:.4f} | {r['HR@20']:.4f} | {r['valid_NDCG@10']:.4f} "
                f"| {r['train_seconds']:.0f} "
                # entries read from another results file (`source`) ran under that file's terms
                f"| {short_conditions(r.get('conditions', '' if 'source' in r else earlier), r)} "
                f"| {'' if target is None else target} |"
            )
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--datasets",
        nargs="*",
        default=["beauty", "lastfm", "ml-100k", "synthetic"],
        help="datasets to train / read seeds of (none: only record --ablation runs, with --merge)",
    )
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--variant", action="append", default=[], help="NAME=PRESET[,KEY=VALUE...]")
    ap.add_argument("--jobs", type=int, default=2, help="runs side by side")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--merge", action="store_true", help="keep other datasets / variants in --out")
    ap.add_argument(
        "--presets-from",
        type=Path,
        help="results file of benchmarks/guim_quality.py: its preset runs become guim-preset",
    )
    ap.add_argument(
        "--ablation",
        action="append",
        default=[],
        help="DATASET:NAME=RUN_DIR, a finished run recorded under ablations (validation choice)",
    )
    ap.add_argument("--table", action="store_true", help="print the README table of --out")
    args = ap.parse_args()
    if args.table:
        print(table(args.out))
        return

    from guim.io import read_json
    from guim.provenance import write_results

    if not args.datasets and not args.merge:
        raise SystemExit("--datasets with no dataset records ablations into --out: add --merge")
    variants = args.variant or ["guim-default=auto"]
    jobs = []
    for name in args.datasets:
        data = data_dir(name)
        for text in variants:
            label, preset, overrides = parse_variant(text, name)
            for seed in args.seeds:
                run = RUNS / name / f"{label}-s{seed}"
                sets = [*overrides, f"train.seed={seed}", f"train.threads={args.threads}"]
                jobs.append(Job(name, label, seed, data, run, preset, sets))
    with ThreadPoolExecutor(args.jobs) as pool:
        done = list(pool.map(train_one, jobs))
    old_doc = read_json(args.out) if args.merge and args.out.exists() else {}
    old = old_doc.get("results", {})
    # this invocation's datasets, keeping their other variants; write_results keeps the rest
    results: dict[str, dict[str, Any]] = {n: dict(old.get(n, {})) for n in args.datasets}
    grouped: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
    cmds = {}
    for job, res in zip(jobs, done, strict=True):
        grouped.setdefault((job.dataset, job.label), {})[job.seed] = res
        cmds[(job.dataset, job.label)] = job.cmd
    for (name, label), runs in grouped.items():
        results.setdefault(name, {})[label] = {
            **summarise(runs, cmds[(name, label)]),
            # per variant: variants of one dataset may be measured on different days and loads
            "conditions": f"each run {args.threads} torch thread(s), up to {args.jobs} side by "
            "side on the 2-core machine",
            "threads": args.threads,  # the same, for programs
            "jobs": args.jobs,
        }
        print(
            name, label, {k: results[name][label][k] for k in ("NDCG@10", "NDCG@10_std", "HR@10")}
        )
    if args.presets_from:  # today's presets, one seed each, as guim_quality.py recorded them
        for name, models in read_json(args.presets_from)["results"].items():
            if name in results and "guim" in models and "guim-preset" not in results[name]:
                r = models["guim"]
                results[name]["guim-preset"] = {
                    **{k: r[k] for k in (*METRICS, "valid_NDCG@10", "train_seconds")},
                    "NDCG@10_std": None,
                    "seeds": [0],
                    "command": r["command"],
                    "source": f"{args.presets_from.name} (one seed; measured on an earlier day)",
                }
    # with --merge, earlier ablations stay (a label given again is re-read from its run)
    ablations = {n: dict(v) for n, v in old_doc.get("ablations", {}).items()}
    for text in args.ablation:
        where, _, run = text.partition("=")
        name, _, label = where.partition(":")
        ablations.setdefault(name, {})[label] = ablation(Path(run))
    # an earlier file's protocol text (which carried the run conditions before they moved into
    # each variant) stays readable beside the entries it describes
    earlier = {}
    if old_doc.get("protocol", PROTOCOL) != PROTOCOL:
        earlier["protocol_of_earlier_entries"] = old_doc["protocol"]
    write_results(
        args.out,
        results,
        merge=args.merge,
        ablations=ablations,
        protocol=PROTOCOL,
        published_NDCG_at_10=PUBLISHED,
        targets_NDCG_at_10=TARGETS,
        **earlier,
    )


if __name__ == "__main__":
    main()
