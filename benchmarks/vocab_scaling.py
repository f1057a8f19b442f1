"""Time per training step and peak memory vs catalogue size: sampled InfoNCE vs full softmax.

Each (catalogue size, loss) case runs in a fresh subprocess (peak RSS = that process's VmHWM)
on the same batch shape: synthetic sequences of item indices, 3 attribute ids per item, the
default GUIM encoder. The sampled loss's step must not grow with the catalogue
(target: step time at 1M items <= 1.5 x at 10k).

    .venv/bin/python benchmarks/vocab_scaling.py            # writes results/vocab-scaling.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

SIZES = (10_000, 100_000, 1_000_000)
LOSSES = ("sampled", "full")
RESULTS = Path(__file__).parent / "results" / "vocab-scaling.json"


def one_case(n_items: int, loss: str, batch: int, length: int, steps: int, threads: int) -> dict:
    """Train `steps` steps on random sequences; return timing and memory."""
    from types import SimpleNamespace

    import numpy as np
    import torch

    from guim.config import load_config
    from guim.data.batches import Batch
    from guim.models.guim import GUIM
    from guim.models.tokens import ItemTables
    from guim.sampling import NegativeSampler
    from guim.train import step_loss
    from guim.trainer.optim import make_optimizers

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    cfg = load_config(None, [f"loss.kind={loss}", "loss.n_negatives=1024", "train.grad_clip=1.0"])
    n_attr = 1000
    # item 0 (padding) has no attributes; item i has flat[3 (i - 1) : 3 i]
    offsets = torch.cat([torch.zeros(1, dtype=torch.int64), torch.arange(0, 3 * n_items + 1, 3)])
    flat = torch.from_numpy(rng.integers(1, n_attr + 1, size=3 * n_items))
    known = torch.ones(n_items + 1, dtype=torch.bool)
    known[0] = False
    tables = ItemTables(n_items, n_attr, offsets, flat, known)
    model = GUIM(cfg.model, cfg.data, tables, causal=True, sparse=loss == "sampled")
    popularity = (1e6 / np.arange(1, n_items + 2) ** 1.1).astype(np.int64) + 1
    popularity[0] = 0
    sampler = NegativeSampler(cfg.loss, popularity, known.numpy()) if loss == "sampled" else None
    opts = make_optimizers(model, cfg)
    gen = torch.Generator().manual_seed(0)

    def make_batch() -> Batch:
        # Zipf-distributed items, like real logs
        items = torch.from_numpy(
            np.minimum(rng.zipf(1.2, size=(batch, length + 1)), n_items).astype(np.int64)
        )
        return Batch(
            items[:, :-1],
            torch.ones(batch, length, dtype=torch.int64),
            torch.arange(length).expand(batch, length).contiguous(),
            items[:, 1:],
            None,
        )

    times = []
    for i in range(steps + 3):
        b = make_batch()
        t0 = time.perf_counter()
        for o in opts.values():
            o.zero_grad(set_to_none=True)
        trainer = SimpleNamespace(
            cfg=cfg,
            known=known,
            sampler=sampler,
            device=torch.device("cpu"),
            model=model,
            wrapped=None,
        )
        loss_value = step_loss(trainer, b, gen, contrastive_weight=0.0)
        loss_value.backward()
        dense = [p for p in model.parameters() if p.grad is not None and not p.grad.is_sparse]
        torch.nn.utils.clip_grad_norm_(dense, 1.0)
        for o in opts.values():
            o.step()
        if i >= 3:  # warm-up steps are not timed
            times.append(time.perf_counter() - t0)
    peak_kb = 0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                peak_kb = int(line.split()[1])
    return {
        "step_seconds": statistics.median(times),
        "step_seconds_p90": sorted(times)[int(0.9 * (len(times) - 1))],
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "positions_per_step": batch * length,
        "steps_timed": len(times),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--length", type=int, default=20)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--full-steps", type=int, default=5, help="timed steps of the full softmax")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--case", nargs=2, metavar=("N_ITEMS", "LOSS"), help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    if args.case:  # child process: one measurement, JSON on stdout
        n, loss = int(args.case[0]), args.case[1]
        steps = args.steps if loss == "sampled" else args.full_steps
        print(json.dumps(one_case(n, loss, args.batch, args.length, steps, args.threads)))
        return

    from guim.provenance import write_results

    results: dict[str, dict[str, dict[str, float]]] = {}
    for n in SIZES:
        name = f"synthetic-{n // 1000}k" if n < 1_000_000 else f"synthetic-{n // 1_000_000}m"
        results[name] = {}
        for loss in LOSSES:
            cmd = [sys.executable, __file__, "--case", str(n), loss]
            cmd += ["--batch", str(args.batch), "--length", str(args.length)]
            cmd += ["--steps", str(args.steps), "--full-steps", str(args.full_steps)]
            cmd += ["--threads", str(args.threads)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            res = json.loads(out.strip().splitlines()[-1])
            results[name][f"guim-{loss}"] = res
            print(name, loss, res, flush=True)
    small, large = results["synthetic-10k"], results["synthetic-1m"]
    ratio_sampled = large["guim-sampled"]["step_seconds"] / small["guim-sampled"]["step_seconds"]
    ratio_full = large["guim-full"]["step_seconds"] / small["guim-full"]["step_seconds"]
    write_results(
        args.out,
        results,
        settings={
            "batch": args.batch,
            "length": args.length,
            "n_negatives": 1024,
            "threads": args.threads,
            "model": "default GUIM (dim 64, 2 layers), 3 attribute ids per item",
        },
        ratios={"sampled_1m_over_10k": ratio_sampled, "full_1m_over_10k": ratio_full},
        target={"sampled_1m_over_10k_max": 1.5, "met": ratio_sampled <= 1.5},
    )
    print(f"sampled 1M/10k = {ratio_sampled:.2f}, full 1M/10k = {ratio_full:.1f}")


if __name__ == "__main__":
    main()
