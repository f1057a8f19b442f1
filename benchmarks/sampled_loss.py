"""The sampled InfoNCE loss, forward + backward, side by side in one invocation: materialised
(`info_nce` on the (P, C) score matrix: scores / tau - logQ, cross-entropy, autograd; the
trainer's path before commit 445037f) against the fused, chunked kernel the trainer uses now
(`full_softmax_nce(..., log_q=...)`: each chunk's logits, logQ, softmax and gradients made in
cache, the (P, C) matrix never written whole).

Shapes: P predicted positions x D from a training step, C = the P in-batch targets plus the
shared negatives (`loss.n_negatives`, 1,024), all distinct (the worst case). `synthetic-2m`
is that shop's step in benchmarks/efficiency.py (256 windows x 50 positions, dim 128);
`synthetic-1k` is vocab_scaling.py's (1,280 positions, dim 64). Each case runs in a fresh
subprocess (peak RSS = its VmHWM), `--threads` torch threads; run it alone on the machine:

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/sampled_loss.py --threads 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "sampled-loss.json"
SHAPES = {"synthetic-2m": (12_800, 128), "synthetic-1k": (1_280, 64)}  # (P, D)
KERNELS = ("sampled-materialised", "sampled-fused")


def one_case(kernel: str, p: int, d: int, negatives: int, steps: int, threads: int) -> dict:
    import torch

    from guim.losses import full_softmax_nce, info_nce

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    c = p + negatives
    users = (0.1 * torch.randn(p, d)).requires_grad_()
    items = (0.1 * torch.randn(c, d)).requires_grad_()
    positive = torch.randperm(c)[:p]
    log_q = torch.log(torch.rand(c).clamp_min(1e-4))

    def step() -> float:
        users.grad = items.grad = None
        if kernel == "sampled-fused":
            loss = full_softmax_nce(users, items, positive, 0.5, None, log_q=log_q)
        else:
            loss = info_nce(users @ items.T, positive, log_q, 0.5)
        loss.backward()
        return float(loss.detach())

    losses = [step() for _ in range(2)]  # warm-up
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        losses.append(step())
        times.append(time.perf_counter() - t0)
    with open("/proc/self/status") as f:
        peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM"))
    return {
        "seconds": statistics.median(times),
        "seconds_p90": sorted(times)[int(0.9 * (len(times) - 1))],
        "peak_rss_mb": round(peak / 1024, 1),
        "positions": p,
        "candidates": c,
        "dim": d,
        "loss": losses[-1],
        "steps_timed": steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--negatives", type=int, default=1024)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--case", nargs=3, metavar=("KERNEL", "P", "D"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:  # the child
        kernel, p, d = args.case[0], int(args.case[1]), int(args.case[2])
        print(json.dumps(one_case(kernel, p, d, args.negatives, args.steps, args.threads)))
        return

    from guim.provenance import CpuWatch, write_results

    watch = CpuWatch()
    results: dict[str, dict[str, dict]] = {}
    for name, (p, d) in SHAPES.items():
        for kernel in KERNELS:
            argv = [sys.executable, __file__, "--threads", str(args.threads)]
            argv += ["--steps", str(args.steps), "--negatives", str(args.negatives)]
            out = subprocess.run(
                [*argv, "--case", kernel, str(p), str(d)],
                check=True,
                capture_output=True,
                text=True,
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            results.setdefault(name, {})[kernel] = r
            print(
                f"{name:14s} {kernel:22s} {r['seconds']:.4f} s  {r['peak_rss_mb']} MB", flush=True
            )
        pair = results[name]
        pair["sampled-fused"]["speedup"] = round(
            pair["sampled-materialised"]["seconds"] / pair["sampled-fused"]["seconds"], 2
        )
        gap = abs(pair["sampled-fused"]["loss"] - pair["sampled-materialised"]["loss"])
        if gap > 1e-3 * abs(pair["sampled-materialised"]["loss"]):
            raise SystemExit(f"{name}: the two kernels' losses differ ({gap})")
    write_results(args.out, results, run_conditions=watch.read(), threads=args.threads)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
