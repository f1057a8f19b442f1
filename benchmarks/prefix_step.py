"""Seconds per training step under prefix windows, with the top block computed at every position
(as before) and at the target position only (`GUIM.top_at_targets`, the default).

Both variants train the same model from the same initial weights on the same batches (the first
`--steps` batches of epoch 0, after `--warmup` untimed ones), alternating in blocks of
`--block` steps so that machine noise falls on both alike; the step is the trainer's
(`guim.train.step_loss`, backward, gradient clipping, optimiser). Also checks, in eval mode, that
the two paths give the same user vectors (largest absolute difference).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/prefix_step.py \
        --dataset beauty=runs/quality/data/beauty --dataset lastfm=runs/quality/data/lastfm \
        --threads 2 --ran-alone

Writes benchmarks/results/prefix-step.json (results.DATASET.{full-top,top-at-targets}).
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from guim.config import load_config
from guim.data.batches import make_batches
from guim.data.dataset import Dataset
from guim.provenance import write_results
from guim.train import build, step_loss

RESULTS = Path(__file__).parent / "results" / "prefix-step.json"


def measure(dataset: Path, steps: int, warmup: int, block: int, overrides: list[str]) -> dict:
    cfg = load_config("auto", overrides, dataset=dataset)
    if cfg.data.windows != "prefix":
        raise SystemExit(f"{dataset}: the recipe chose {cfg.data.windows!r} windows, not prefix")
    t = build(cfg, Dataset(dataset))
    tr = t.cfg.train
    batches = make_batches(t.seqs, t.cfg.data, tr, np.random.default_rng([tr.seed, 0]))
    batches = batches[: warmup + steps]
    model0 = copy.deepcopy(t.model.state_dict())
    opt0 = {k: copy.deepcopy(o.state_dict()) for k, o in t.optimizers.items()}
    # one model + optimiser state per variant, stepped alternately on the same batches
    variants = {"full-top": False, "top-at-targets": True}
    states = {name: (copy.deepcopy(model0), copy.deepcopy(opt0)) for name in variants}
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    losses: dict[str, list[float]] = {name: [] for name in variants}
    t.model.train()
    for start in range(0, len(batches), block):
        for name, top in variants.items():
            weights, opts = states[name]
            t.model.load_state_dict(weights)
            for k, o in t.optimizers.items():
                o.load_state_dict(opts[k])
            t.model.top_at_targets = top
            generator = torch.Generator().manual_seed(start)
            for i in range(start, min(start + block, len(batches))):
                tic = time.perf_counter()
                for o in t.optimizers.values():
                    o.zero_grad(set_to_none=True)
                loss = step_loss(t, batches[i], generator, 0.0)
                loss.backward()
                if tr.grad_clip > 0:
                    params = [p for p in t.model.parameters() if p.grad is not None]
                    torch.nn.utils.clip_grad_norm_(params, tr.grad_clip, foreach=True)
                for o in t.optimizers.values():
                    o.step()
                if i >= warmup:
                    seconds[name].append(time.perf_counter() - tic)
                    losses[name].append(float(loss.detach()))
            states[name] = (
                copy.deepcopy(t.model.state_dict()),
                {k: copy.deepcopy(o.state_dict()) for k, o in t.optimizers.items()},
            )
    # same function: user vectors of the validation histories through both paths, eval mode
    t.model.load_state_dict(states["top-at-targets"][0])
    t.model.eval()
    diff = _max_difference(t, 1024)
    tokens = int(sum(int((b.items > 0).sum()) for b in batches[warmup:]))
    out: dict[str, Any] = {}
    for name in variants:
        s = np.asarray(seconds[name])
        out[name] = {
            "step_seconds": round(float(np.mean(s)), 5),
            "step_seconds_median": round(float(np.median(s)), 5),
            "tokens_per_second": round(tokens / float(s.sum()), 1),
            "mean_loss": round(float(np.mean(losses[name])), 4),
        }
    out["top-at-targets"]["speedup"] = round(
        out["full-top"]["step_seconds"] / out["top-at-targets"]["step_seconds"], 3
    )
    out["top-at-targets"]["max_abs_user_vector_difference"] = diff
    out["top-at-targets"]["steps"] = steps
    return out


@torch.no_grad()
def _max_difference(t: Any, n: int) -> float:
    """Largest |difference| of user vectors, top block at every position vs last one only, for
    the first n training-window histories (eval mode, no dropout)."""
    seqs = t.seqs
    rows = np.flatnonzero(seqs.lengths >= 1)[:n]
    width = t.cfg.data.max_len
    items = np.zeros((len(rows), width), dtype=np.int64)
    for r, row in enumerate(rows):
        s, k = seqs.offsets[row], min(int(seqs.lengths[row]), width)
        e = s + int(seqs.lengths[row])
        items[r, width - k :] = seqs.item_idx[e - k : e]
    x = torch.from_numpy(items)
    zeros = torch.zeros_like(x)
    model = t.model
    full = model.output(model.encode(x, zeros, zeros)[:, -1])
    last = model.user_vectors(x, zeros, zeros)
    return float((full - last).abs().max())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", action="append", required=True, help="NAME=PREPARED_DIR")
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--block", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ran-alone", action="store_true", help="record that nothing else ran")
    ap.add_argument("--merge", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    results = {}
    for spec in args.dataset:
        name, path = spec.split("=", 1)
        overrides = [f"train.threads={args.threads}"]
        results[name] = measure(Path(path), args.steps, args.warmup, args.block, overrides)
        print(name, results[name], flush=True)
    note = f"{args.threads} torch threads, " + (
        "alone on the machine" if args.ran_alone else "other jobs may have shared the CPU"
    )
    write_results(RESULTS, results, merge=args.merge, conditions=note)


if __name__ == "__main__":
    main()
