"""Where a training step's time goes, per method and stage of benchmarks/efficiency.py (issue
12's profile evidence): why the FLOPs SRU++, CoRe and MSLT save do or do not become seconds.

For each method (the same configs as efficiency.py: the dataset's preset + METHOD.toml +
`--set`) and each stage of its plan, the trainer's own step (`guim.train.step_loss`, backward,
`guim.train.optimiser_step`) runs on batches of an epoch chosen at evenly spaced quantiles of
the batch size (an epoch's batches differ in length):
- mean seconds of each phase over `--steps` steps after `--warmup` (forward = model + loss, of
  which the encoder's forward, by hooks on `model.encoder`; backward, of which the encoder's
  where everything trains; clip + optimiser), and that mean x the epoch's batch count, an
  estimate of an epoch's training seconds to set beside efficiency.json's measured ones,
- FLOPs of a step (torch.utils.flop_counter, mean over the timed batches) and the achieved
  GFLOP/s (FLOPs / step seconds):
  a method that trades matmuls for elementwise or memory-bound kernels saves FLOPs, not time,
- torch.profiler self-CPU shares of `--profile-steps` further steps, grouped into kinds of
  kernel (matmul, fused attention, loss softmax, embedding, scan, optimiser, elementwise...),
  and the top operators.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/step_profile.py --dataset synthetic-2m \\
        --set train.threads=2 --set model.dim=128 --set model.ffn_dim=512 --set loss.kind=sampled

Writes (merging per dataset) benchmarks/results/step-profile.json. Run it alone on the machine:
the JSON records the CPU the other processes used meanwhile (`run_conditions`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
RESULTS = REPO / "benchmarks" / "results" / "step-profile.json"

# kernel kinds by operator name (first match wins), for the profiler's self-CPU shares
KINDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("optimizer", ("adam", "_foreach_", "sparse_", "_coalesce", "norm_")),
    ("attention (fused softmax)", ("scaled_dot_product", "flash_attention")),
    ("matmul", ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::addbmm")),
    ("loss softmax", ("log_softmax", "logsumexp", "nll_loss", "cross_entropy", "softmaxnce")),
    ("embedding", ("embedding", "aten::index", "gather", "scatter")),
    ("scan", ("cumsum", "cumprod", "logcumsumexp")),
    ("fft", ("fft",)),
    ("copy / layout", ("copy_", "clone", "contiguous", "cat", "stack", "pad", "to_copy")),
)


def kind_of(op: str) -> str:
    name = op.lower()
    for kind, patterns in KINDS:
        if any(p in name for p in patterns):
            return kind
    return "elementwise & other"


def stratified(batches: list[Any], k: int, offset: float) -> list[Any]:
    """`k` batches at evenly spaced quantiles of the batch size (items x positions), so that
    their mean step time times the number of batches estimates an epoch's; `offset` in [0, 1)
    shifts the quantiles (disjoint samples for timing and profiling)."""
    by_size = sorted(batches, key=lambda b: b.items.numel())
    n = len(by_size)
    return [by_size[min(n - 1, int((i + offset) * n / k))] for i in range(k)]


def stage_profile(
    t: Any, warm: list[Any], timed: list[Any], profiled: list[Any], epoch_batches: int
) -> dict[str, Any]:
    """Time the trainer's step in its current stage: `warm` batches first, then the phases of
    each of `timed`, then torch.profiler over `profiled`; `epoch_batches` batches an epoch."""
    import torch
    from torch.profiler import ProfilerActivity, profile
    from torch.utils.flop_counter import FlopCounterMode

    from guim.train import optimiser_step, step_loss

    stage = t.stages[t.state.stage]
    weight = float(stage.contrastive_weight)
    generator = torch.Generator().manual_seed(0)
    if stage.objective == "sas":  # a stored replacement table, as from a previous epoch
        t.sas_previous = torch.zeros(len(t.seqs.item_idx), dtype=torch.long)
        t.sas_current = torch.zeros_like(t.sas_previous)
    encoder_seconds: list[float] = []
    started: list[float] = []
    hooks = [
        t.model.encoder.register_forward_pre_hook(lambda *_: started.append(time.perf_counter())),
        t.model.encoder.register_forward_hook(
            lambda *_: encoder_seconds.append(time.perf_counter() - started.pop())
        ),
    ]
    # the encoder's backward: from the gradient of its output arriving to that of its input,
    # only where everything trains (under MSLT's frozen stages nothing below the encoder needs
    # a gradient and the two hooks would fire together: the backward's total only)
    back_started: list[float] = []
    encoder_backward: list[float] = []
    if stage.trainable == "all":
        hooks += [
            t.model.encoder.register_full_backward_pre_hook(
                lambda *_: back_started.append(time.perf_counter())
            ),
            t.model.encoder.register_full_backward_hook(
                lambda *_: encoder_backward.append(time.perf_counter() - back_started.pop())
            ),
        ]
    t.model.train()

    def one(batch: Any) -> tuple[float, float, float]:
        for opt in t.optimizers.values():
            opt.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        loss = step_loss(t, batch, generator, weight)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        optimiser_step(t)
        return t1 - t0, t2 - t1, time.perf_counter() - t2

    for batch in warm:
        one(batch)
    encoder_seconds.clear()
    encoder_backward.clear()
    phases = [one(batch) for batch in timed]
    encoder = list(encoder_seconds)
    encoder_back = list(encoder_backward)
    for h in hooks:
        h.remove()
    # means over a sample stratified by batch size: x the epoch's batch count, an epoch
    forward, backward, optimizer = (statistics.fmean(p) for p in zip(*phases, strict=True))
    step = forward + backward + optimizer
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for batch in profiled:
            one(batch)
    ops = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in ops)
    kinds: dict[str, float] = {}
    for e in ops:
        kind = kind_of(e.key)
        kinds[kind] = kinds.get(kind, 0.0) + e.self_cpu_time_total / total
    top = sorted(ops, key=lambda e: e.self_cpu_time_total, reverse=True)[:12]
    with FlopCounterMode(display=False) as counter:  # forward + backward of the timed batches
        for batch in timed:
            step_loss(t, batch, generator, weight).backward()
            t.model.zero_grad(set_to_none=True)
    flops = counter.get_total_flops() / len(timed)
    params = list(t.model.parameters())
    return {
        "stage": t.state.stage,
        "n_layers": t.cfg.model.n_layers,
        "trainable": stage.trainable,
        "trainable_parameters": sum(p.numel() for p in params if p.requires_grad),
        "batch_sizes": [min(b.items.numel() for b in timed), max(b.items.numel() for b in timed)],
        "step_seconds": round(step, 4),
        "epoch_seconds_estimate": round(step * epoch_batches, 2),
        "forward_seconds": round(forward, 4),
        "encoder_forward_seconds": round(statistics.fmean(encoder), 4),
        "backward_seconds": round(backward, 4),
        "encoder_backward_seconds": (
            round(statistics.fmean(encoder_back), 4) if len(encoder_back) == len(timed) else None
        ),
        "optimizer_seconds": round(optimizer, 4),
        "gflops_per_step": round(flops / 1e9, 2),
        "achieved_gflops_per_second": round(flops / 1e9 / step, 1),
        "self_cpu_share": {k: round(v, 4) for k, v in sorted(kinds.items(), key=lambda x: -x[1])},
        "top_operators": {e.key: round(e.self_cpu_time_total / total, 4) for e in top},
        "steps_timed": len(timed),
        "steps_profiled": len(profiled),
    }


def method_profile(
    cfg: Any, data: Path, steps: int, warmup: int, profile_steps: int
) -> list[dict[str, Any]]:
    """`stage_profile` of every stage of `cfg`'s plan (entered as training would, from fresh
    weights: the timings do not depend on what the weights learned)."""
    import numpy as np
    import torch

    from guim.data.batches import make_batches
    from guim.data.dataset import Dataset
    from guim.train import build, enter_stage

    torch.manual_seed(0)
    t = build(cfg, Dataset(data))
    out = []
    for index, stage in enumerate(t.stages):
        if index:
            enter_stage(t, index, restore_best=False)
        before = (t.stages[index - 1].n_layers, t.stages[index - 1].trainable) if index else None
        if not stage.expand and (stage.n_layers, stage.trainable) == before:
            continue  # the same step as the stage before
        tr = replace(t.cfg.train, objective=stage.objective)
        batches = make_batches(t.seqs, t.cfg.data, tr, np.random.default_rng(0))
        warm = stratified(batches, warmup, 0.5)
        timed, profiled = stratified(batches, steps, 0.25), stratified(batches, profile_steps, 0.75)
        out.append(stage_profile(t, warm, timed, profiled, len(batches)))
        r = out[-1]
        print(
            f"  stage {index}: {r['step_seconds']:.3f} s/step (fwd {r['forward_seconds']:.3f}, "
            f"encoder fwd {r['encoder_forward_seconds']:.3f}, bwd {r['backward_seconds']:.3f}, "
            f"encoder bwd {r['encoder_backward_seconds']}, "
            f"opt {r['optimizer_seconds']:.3f}), {r['gflops_per_step']} GFLOP, "
            f"{r['achieved_gflops_per_second']} GFLOP/s, epoch ~{r['epoch_seconds_estimate']} s",
            flush=True,
        )
    return out


def main() -> None:
    from efficiency import METHODS, PRESETS, dataset_dir, method_config

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--preset", help="base preset (default: the dataset's, if it has one)")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per stage")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--profile-steps", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", help="the results' dataset key (default: the dataset's name)")
    args = parser.parse_args()

    import torch

    from guim.provenance import CpuWatch, write_results

    watch = CpuWatch()
    name = Path(args.dataset).name if args.dataset not in PRESETS else args.dataset
    name = args.name or name
    preset = args.preset or PRESETS.get(args.dataset)
    data = dataset_dir(args.dataset)
    results, details = {}, {}
    for method in args.methods:
        print(f"== {name}: {method}", flush=True)
        cfg = method_config(preset, method, args.overrides, 1.0)
        stages = method_profile(cfg, data, args.steps, args.warmup, args.profile_steps)
        details[method] = stages
        results[method] = {
            "step_seconds": [s["step_seconds"] for s in stages],
            "gflops_per_step": [s["gflops_per_step"] for s in stages],
            "achieved_gflops_per_second": [s["achieved_gflops_per_second"] for s in stages],
        }
    reference = details.get("transformer", [{}])[0].get("step_seconds")
    if reference:
        for r in results.values():
            r["step_time_ratio"] = [round(s / reference, 3) for s in r["step_seconds"]]
    write_results(
        args.out,
        {name: results},
        merge=True,
        details={name: details},
        settings={
            name: {
                "dataset": str(data),
                "preset": preset,
                "overrides": args.overrides,
                "torch_threads": torch.get_num_threads(),
                "run_conditions": watch.read(),
            }
        },
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
