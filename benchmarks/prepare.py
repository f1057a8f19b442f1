"""`guim prepare` throughput and peak memory: synthetic MerRec logs of 1M and 10M events, and Beauty.

    .venv/bin/python benchmarks/prepare.py                  # all cases -> results/prepare.json
    .venv/bin/python benchmarks/prepare.py --cases synthetic-1m --repeat 1 --no-write

events/s = raw events / wall seconds of reading (the loader) + preparing, interpreter start and
imports excluded; peak RSS is the whole process's, each run in a fresh subprocess. Targets, on the
synthetic logs: at least 1M events/s, and at most 4 GiB for 10M events. Synthetic logs are
generated once into the user cache directory (--cache-dir) and reused; Beauty (S3-Rec text, parsed
in Python) comes from $GUIM_DATA_DIR or ../shared/datasets. Only a run of every case is written.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import platformdirs

from guim.progress import console
from guim.provenance import write_results

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("GUIM_DATA_DIR", REPO.parent / "shared" / "datasets"))
RESULTS = REPO / "benchmarks" / "results" / "prepare.json"
SYNTHETIC = {"synthetic-1m": 1_000_000, "synthetic-10m": 10_000_000}
CASES = (*SYNTHETIC, "beauty")
TARGETS = {"synthetic_events_per_second_min": 1_000_000, "synthetic_10m_peak_rss_mb_max": 4096}


def synthetic_log(n_events: int, cache_dir: Path) -> Path:
    """The synthetic shop of about `n_events` events (seed 0), generated on first use."""
    from guim.data.synthetic import VERSION, SynthConfig, synth

    config = SynthConfig.for_events(n_events)
    path = cache_dir / f"synthetic-{n_events // 1_000_000}m-seed{config.seed}"
    meta = json.loads((path / "synth.json").read_text()) if (path / "synth.json").exists() else {}
    wanted = json.loads(json.dumps(asdict(config)))
    if meta.get("version") == VERSION and meta.get("config") == wanted:
        return path
    console.print(f"generating {path} (once) ...")
    return synth(path, config, overwrite=True)


def run_child(case: str, source: Path) -> dict[str, float]:
    """One timed load + prepare in a fresh interpreter, which reports its own peak RSS."""
    with tempfile.TemporaryDirectory(prefix="guim-bench-prepare-") as tmp:
        cmd = [sys.executable, __file__, "--child", case, str(source), str(Path(tmp) / "dataset")]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{case}: the benchmark child failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: Linux carries the parent's peak over fork
    and exec into a child's ru_maxrss, which would charge the log generator to every case."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    scale = 2**20 if sys.platform == "darwin" else 2**10  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def child(case: str, source: str, out: str) -> None:
    """Runs in the subprocess: read and prepare `source`, print timings as one JSON line."""
    from guim.data.loaders.merrec import load_merrec
    from guim.data.loaders.s3rec import load_s3rec
    from guim.data.prepare import prepare
    from guim.io import read_json

    t0, cpu0 = time.perf_counter(), time.process_time()
    raw = load_s3rec(source) if case == "beauty" else load_merrec(source)
    t_read = time.perf_counter() - t0
    prepare(raw, out, show_progress=False)
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - cpu0
    stats = read_json(Path(out) / "stats.json")
    print(
        json.dumps(
            {
                "seconds": seconds,
                "cpu_seconds": cpu_seconds,
                "read_seconds": t_read,
                "n_events": stats["n_raw_events"],
                "n_interactions": stats["n_interactions"],
                "peak_rss_mb": peak_rss_mb(),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated subset")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case (median reported)")
    parser.add_argument("--cache-dir", type=Path, default=Path(platformdirs.user_cache_dir("guim")))
    parser.add_argument("--no-write", action="store_true", help="print only; keep the JSON")
    parser.add_argument(
        "--child", nargs=3, metavar=("CASE", "SOURCE", "OUT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    results: dict[str, dict[str, dict[str, float]]] = {}
    details: dict[str, dict] = {}
    load_before = os.getloadavg()  # timings on a busy machine are not comparable
    for case in args.cases.split(","):
        if case in SYNTHETIC:
            source = synthetic_log(SYNTHETIC[case], args.cache_dir / "benchmarks")
        elif case == "beauty":
            source = DATA_DIR / "s3rec" / "Beauty.txt"
            if not source.exists():
                console.print(f"[yellow]skipping beauty: {source} not found[/]")
                continue
        else:
            raise SystemExit(f"unknown case {case!r}; expected some of {', '.join(CASES)}")
        runs = [run_child(case, source) for _ in range(args.repeat)]
        seconds = statistics.median(r["seconds"] for r in runs)
        n_events = runs[0]["n_events"]
        results[case] = {
            "guim": {
                "events_per_second": round(n_events / seconds),
                "peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs), 1),
                "seconds": round(seconds, 3),
            }
        }
        details[case] = {
            "source": (
                f"SynthConfig.for_events({SYNTHETIC[case]:_}, seed=0)"
                if case in SYNTHETIC
                else "s3rec/Beauty.txt"
            ),
            "n_events": n_events,
            "n_interactions": runs[0]["n_interactions"],
            "read_seconds": round(statistics.median(r["read_seconds"] for r in runs), 3),
            "cpu_seconds": round(statistics.median(r["cpu_seconds"] for r in runs), 3),
            "runs_seconds": [round(r["seconds"], 3) for r in runs],
        }
        m = results[case]["guim"]
        console.print(
            f"{case:14s} {n_events:>11,} events  {m['seconds']:7.2f} s  "
            f"{m['events_per_second']:>11,} events/s  peak {m['peak_rss_mb']:8.1f} MB  "
            f"(cpu {details[case]['cpu_seconds']:.2f} s)",
            soft_wrap=True,
        )
    synthetic = [results[c]["guim"] for c in SYNTHETIC if c in results]
    meets = {
        "synthetic_events_per_second": all(
            m["events_per_second"] >= TARGETS["synthetic_events_per_second_min"] for m in synthetic
        ),
        "synthetic_10m_peak_rss": (
            results["synthetic-10m"]["guim"]["peak_rss_mb"]
            <= TARGETS["synthetic_10m_peak_rss_mb_max"]
            if "synthetic-10m" in results
            else None
        ),
    }
    console.print(f"targets met: {meets}", soft_wrap=True)
    if args.no_write or set(results) != set(CASES):
        console.print("not written (--no-write, or not every case ran)")
        return
    write_results(
        RESULTS,
        results,
        cases=details,
        targets=TARGETS,
        meets_targets=meets,
        repeat=args.repeat,
        load_average_1min={"before": load_before[0], "after": os.getloadavg()[0]},
    )
    console.print(f"wrote {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
