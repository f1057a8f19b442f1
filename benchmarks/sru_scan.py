"""SRU++ speed on CPU: the vectorised scans against the step-by-step loop, and the SRU++ encoder
against the Transformer encoder, forward + backward on one synthetic batch (default B=256, T=50,
D=64, left-padded, causal). Both encoders use the default ModelConfig (2 layers; SRU++ with
attention in the last layer). Timings only compare on the same machine; run it alone:

    flock -x /tmp/guim-cpu.lock .venv/bin/python benchmarks/sru_scan.py

The JSON records whether the parent process held that exclusive lock.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "sru-scan.json"
LOCK = "/tmp/guim-cpu.lock"


def median_ms(fn: Callable[[], Any], repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return round(1e3 * statistics.median(times), 3)


def time_kernel(kernel: Callable, b: int, t: int, d: int, repeats: int, warmup: int) -> dict:
    """The recurrence alone: log f, input (B, T, D) -> states (B, T, D)."""
    g = torch.Generator().manual_seed(0)
    log_f = F.logsigmoid(torch.randn(b, t, d, generator=g)).requires_grad_()
    inp = torch.randn(b, t, d, generator=g).requires_grad_()

    def fwd_bwd() -> None:
        kernel(log_f, inp).sum().backward()

    def fwd() -> None:
        with torch.no_grad():
            kernel(log_f, inp)

    return {
        "fwd_bwd_ms": median_ms(fwd_bwd, repeats, warmup),
        "fwd_ms": median_ms(fwd, repeats, warmup),
    }


def time_encoder(
    encoder: torch.nn.Module, b: int, t: int, d: int, repeats: int, warmup: int
) -> dict:
    """A training step's encoder work (train mode, causal) and inference (eval, no grad)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(b, t, d, generator=g).requires_grad_()
    lengths = torch.randint(1, t + 1, (b,), generator=g)
    real = torch.arange(t)[None, :] >= (t - lengths)[:, None]  # (B, T) left-padded

    def fwd_bwd() -> None:
        encoder.train()
        encoder(x, real, causal=True)[real].pow(2).mean().backward()

    def fwd() -> None:
        encoder.eval()
        with torch.no_grad():
            encoder(x, real, causal=True)

    return {
        "fwd_bwd_ms": median_ms(fwd_bwd, repeats, warmup),
        "fwd_ms": median_ms(fwd, repeats, warmup),
        "params": sum(p.numel() for p in encoder.parameters()),
    }


def held_lock() -> tuple[bool, str | None]:
    """Whether the parent process is `flock -x LOCK ...` (and its command line)."""
    try:
        raw = Path(f"/proc/{os.getppid()}/cmdline").read_bytes()
    except OSError:
        return False, None
    argv = [a.decode() for a in raw.split(b"\0") if a]
    is_flock = bool(argv) and Path(argv[0]).name == "flock"
    exclusive = is_flock and "-x" in argv and LOCK in argv
    return exclusive, shlex.join(argv) if is_flock else None


def main() -> None:
    from guim.config import ModelConfig
    from guim.models.sru import SCANS, SRUEncoder
    from guim.models.transformer import TransformerEncoder
    from guim.provenance import write_results

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--length", type=int, default=50)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    b, t, d, n, w = args.batch, args.length, args.dim, args.repeats, args.warmup

    results: dict[str, dict[str, Any]] = {}
    cfg = ModelConfig(encoder="sru", dim=d)
    for name, kernel in (
        ("sru-scan", "doubling"),
        ("sru-scan-chunked", "chunked"),
        ("sru-loop", "loop"),
    ):
        encoder = SRUEncoder(cfg)
        for layer in encoder.layers:
            layer.kernel = kernel
        results[name] = {"kernel": kernel, **time_encoder(encoder, b, t, d, n, w)}
        print(name, results[name], flush=True)
    results["transformer"] = time_encoder(TransformerEncoder(ModelConfig(dim=d)), b, t, d, n, w)
    print("transformer", results["transformer"], flush=True)
    for kernel, fn in SCANS.items():
        results[f"recurrence-{kernel}"] = time_kernel(fn, b, t, d, n, w)
        print(f"recurrence-{kernel}", results[f"recurrence-{kernel}"], flush=True)

    exclusive, wrapper = held_lock()
    write_results(
        args.out,
        {"synthetic": results},
        command=wrapper,
        setting=f"random inputs B={b}, T={t}, D={d} (left-padded, causal); median of "
        f"{n} runs after {w} warm-up; {torch.get_num_threads()} torch threads; torch "
        f"{torch.__version__}; fwd_bwd_ms: train mode (dropout on), fwd_ms: eval, no grad; "
        "sru-* = SRU++ encoder (default config) with that recurrence kernel, recurrence-* = "
        "the kernel alone",
        exclusive_cpu_lock=exclusive,
        note=f"run under `flock -x {LOCK}`, alone on the CPUs"
        if exclusive
        else f"NOT run under `flock -x {LOCK}`: other jobs may have shared the CPUs",
    )


if __name__ == "__main__":
    main()
