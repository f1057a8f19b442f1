"""`guim train`: one explicit loop. Next-item (causal, every position predicts the next item) or
masked-item (Cloze) objective; full-softmax or sampled-InfoNCE loss; validation NDCG@10 every
epoch with early stopping and the best weights kept; atomic checkpoints and `--resume`.

Every epoch re-seeds its random streams from (seed, epoch), so a run resumed from a checkpoint
continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from guim.checkpoint import (
    append_log,
    load_checkpoint,
    load_weights,
    read_log,
    save_checkpoint,
    save_weights,
)
from guim.config import Config, config_from_json
from guim.data.dataset import Dataset, Sequences
from guim.embed import GuimRun
from guim.evaluate import rank_cases
from guim.io import write_json
from guim.losses import info_nce
from guim.metrics import metrics_from_ranks
from guim.models.guim import GUIM
from guim.models.mor import interest_scores, nearest_interest
from guim.progress import console, make_progress
from guim.sampling import NegativeSampler

MONITOR = "NDCG@10"


@dataclass
class Batch:
    items: torch.Tensor  # (B, T) input item indices, left-padded
    events: torch.Tensor  # (B, T)
    timestamps: torch.Tensor  # (B, T)
    targets: torch.Tensor  # (B, T) item to predict at each position, 0 = none
    masked: torch.Tensor | None  # (B, T) bool, masked-item objective only


def build_model(cfg: Config, dataset: Dataset, known: np.ndarray) -> GUIM:
    """A fresh GUIM for `dataset`; `known` (n_items + 1,) marks items seen in training."""
    offsets, flat = dataset.item_attributes
    text = None
    if cfg.data.use_text:
        from guim.text import item_text_vectors

        text = torch.from_numpy(item_text_vectors(dataset, cfg.data.text_model))
    return GUIM(
        cfg,
        n_items=dataset.n_items,
        n_attributes=dataset.n_attributes,
        attr_offsets=torch.from_numpy(offsets),
        attr_flat=torch.from_numpy(flat),
        known=torch.from_numpy(known),
        text=text,
    )


def make_batches(
    seqs: Sequences, cfg: Config, rng: np.random.Generator, generator: torch.Generator
) -> list[Batch]:
    """One epoch of batches of windows over the training sequences, grouped by length to limit
    padding, batches in random order.

    data.windows = "crop": one window per user, a random crop when the sequence is longer than
    the model's window. "all": every sequence is cut, from its end, into windows ending
    `data.window_stride` items apart (default: max_len, i.e. consecutive windows whose targets do
    not overlap); a window is trained on its last `window_stride` targets only (the first window
    of a sequence on all of its own), so each interaction is predicted once per epoch however long
    the history, and with a smaller stride every target sees more context.
    """
    max_len, next_item = cfg.data.max_len, cfg.train.objective == "next"
    span = max_len + 1 if next_item else max_len
    step = span - 1 if next_item else span  # next-item windows share one (input-only) item
    # window_stride / recent_targets are checked with the config (guim.config.check)
    stride, recent = cfg.data.window_stride or step, cfg.data.recent_targets
    lengths = seqs.lengths
    rows = np.flatnonzero(lengths >= 2)
    n = lengths[rows]
    n_targets = None  # "all": targets trained per window, its last ones (crop: all of them)
    if cfg.data.windows == "crop":
        start_in_row = (rng.random(len(rows)) * np.maximum(n - span + 1, 1)).astype(np.int64)
        take = np.minimum(n, span)
        starts = seqs.offsets[rows] + start_in_row
    else:
        # window j of a row ends at n - j * stride, until one starts at the row's first item
        n_windows = 1 + (np.maximum(n - span, 0) + stride - 1) // stride
        row_of = np.repeat(np.arange(len(rows)), n_windows)
        j = np.arange(len(row_of)) - np.repeat(np.cumsum(n_windows) - n_windows, n_windows)
        end = n[row_of] - j * stride
        start = np.maximum(end - span, 0)
        take = end - start
        starts = seqs.offsets[rows][row_of] + start
        # targets of window j: its last n_targets positions, i.e. items [end - n_targets, end)
        n_targets = np.where(start > 0, stride, take - 1)
        if recent:
            # only targets among the row's last `recent` items: [n - recent, n)
            first = np.maximum(n[row_of] - recent, 1)
            n_targets = np.minimum(n_targets, end - first)
            keep = n_targets > 0
            n_targets, take, starts = n_targets[keep], take[keep], starts[keep]
    order = np.lexsort((rng.random(len(take)), take))  # by length, random among equals
    bs = cfg.train.batch_size
    chunks = [order[i : i + bs] for i in range(0, len(order), bs)]
    rng.shuffle(chunks)
    batches = []
    for chunk in chunks:
        t = int(take[chunk].max())
        b = len(chunk)
        items = np.zeros((b, t), dtype=np.int64)
        events = np.zeros((b, t), dtype=np.int64)
        times = np.zeros((b, t), dtype=np.int64)
        for r, c in enumerate(chunk):
            s, k = starts[c], take[c]
            items[r, t - k :] = seqs.item_idx[s : s + k]
            events[r, t - k :] = seqs.event[s : s + k]
            times[r, t - k :] = seqs.timestamp[s : s + k]
        if next_item:
            targets = np.zeros_like(items[:, 1:])
            targets[:] = items[:, 1:]
            targets[items[:, :-1] == 0] = 0
            if n_targets is not None:  # "all" windows: only their last n_targets count
                keep = np.arange(t - 1)[None, :] >= (t - 1) - n_targets[chunk][:, None]
                targets[~keep] = 0
            batches.append(
                Batch(
                    torch.from_numpy(items[:, :-1]),
                    torch.from_numpy(events[:, :-1]),
                    torch.from_numpy(times[:, :-1]),
                    torch.from_numpy(targets),
                    None,
                )
            )
        else:
            batches.append(_mask_batch(items, events, times, cfg, rng))
    return batches


def _mask_batch(items, events, times, cfg: Config, rng: np.random.Generator) -> Batch:
    real = items > 0
    masked = (rng.random(items.shape) < cfg.train.mask_prob) & real
    last_only = rng.random(len(items)) < cfg.train.last_mask_prob
    masked[last_only] = False
    masked[last_only, -1] = True
    # every window predicts at least one item
    none = ~masked.any(axis=1)
    masked[none, -1] = True
    targets = np.where(masked, items, 0)
    inputs = np.where(masked, 0, items)
    return Batch(
        torch.from_numpy(inputs),
        torch.from_numpy(events),
        torch.from_numpy(times),
        torch.from_numpy(targets),
        torch.from_numpy(masked),
    )


def step_loss(
    model: GUIM,
    batch: Batch,
    cfg: Config,
    known_t: torch.Tensor,
    sampler: NegativeSampler | None,
    generator: torch.Generator,
) -> torch.Tensor:
    """Loss of one batch (mean over predicted positions), plus the contrastive term if on."""
    states = model.encode(batch.items, batch.events, batch.timestamps, batch.masked)  # (B,T,K,D)
    sel = batch.targets > 0
    users = model.output(states[sel])  # (P, K, D)
    targets = batch.targets[sel]  # (P,)
    if sampler is None:
        cand_vecs = model.item_vectors()  # (N + 1, D)
        positive, log_q, allowed = targets, None, known_t
    else:
        cand = sampler.candidates(targets, generator)
        cand_vecs = model.output(model.tokens(cand.items))  # (C, D)
        positive, log_q, allowed = cand.positive, cand.log_q, cand.allowed
    m = cfg.model
    if m.n_interests > 1 and m.interest_score == "softmax":
        scores = interest_scores(users, cand_vecs, "softmax", m.interest_temperature)
    else:
        user = nearest_interest(users, cand_vecs[positive])  # (P, D); K = 1: the only one
        scores = user @ cand_vecs.T  # (P, C)
    loss = info_nce(scores, positive, log_q, cfg.loss.temperature, allowed)
    if cfg.loss.contrastive_weight > 0:
        loss = loss + cfg.loss.contrastive_weight * contrastive_loss(
            model, batch, states, cfg, generator
        )
    return loss


def contrastive_loss(
    model: GUIM, batch: Batch, states: torch.Tensor, cfg: Config, generator: torch.Generator
) -> torch.Tensor:
    """InfoNCE between two views of each sequence's last-position user vector: this pass and a
    second pass with fresh dropout and, for "mask"/"crop", a corrupted input."""
    lc = cfg.loss
    items, masked = batch.items, batch.masked
    real = items > 0
    if lc.contrastive_view == "mask":
        drop = (torch.rand(items.shape, generator=generator) < lc.contrastive_rate) & real
        drop[:, -1] = False  # keep the latest item
        masked = drop if masked is None else masked | drop
        items = items.masked_fill(drop, 0)
    elif lc.contrastive_view == "crop":
        n = real.sum(dim=1, keepdim=True)
        cut = (n.float() * lc.contrastive_rate * torch.rand(n.shape, generator=generator)).long()
        rank = real.long().cumsum(dim=1)  # 1-based rank among real tokens
        items = items.masked_fill(rank <= cut, 0)
    other = model.encode(items, batch.events * (items > 0), batch.timestamps, masked)
    z1 = torch.nn.functional.normalize(states[:, -1].mean(dim=1), dim=-1)  # (B, D)
    z2 = torch.nn.functional.normalize(other[:, -1].mean(dim=1), dim=-1)  # (B, D)
    sim = z1 @ z2.T  # (B, B)
    labels = torch.arange(len(sim))
    t = lc.contrastive_temperature
    return 0.5 * (info_nce(sim, labels, temperature=t) + info_nce(sim.T, labels, temperature=t))


def _optimizers(model: GUIM, cfg: Config) -> dict[str, torch.optim.Optimizer]:
    tr = cfg.train
    sparse = [model.tokens.id_emb.weight] if cfg.loss.kind == "sampled" else []
    sparse_ids = {id(p) for p in sparse}
    dense = [p for p in model.parameters() if id(p) not in sparse_ids]
    opts: dict[str, torch.optim.Optimizer] = {
        "dense": torch.optim.AdamW(dense, lr=tr.lr, weight_decay=tr.weight_decay)
    }
    if sparse:
        opts["sparse"] = torch.optim.SparseAdam(sparse, lr=tr.lr)
    return opts


def _lr_scale(step: int, cfg: Config, total_steps: int) -> float:
    """Linear warm-up over warmup_steps, then constant or cosine decay to 0 at total_steps."""
    tr = cfg.train
    if tr.warmup_steps > 0 and step < tr.warmup_steps:
        return (step + 1) / tr.warmup_steps
    if tr.lr_schedule == "cosine":
        span = max(total_steps - tr.warmup_steps, 1)
        progress = min(max(step - tr.warmup_steps, 0) / span, 1.0)
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


def train(
    cfg: Config,
    dataset_dir: str | Path,
    out_dir: str | Path,
    resume: bool = False,
    show_progress: bool = True,
    evaluate_test: bool = True,
) -> Path:
    """Train GUIM on a prepared dataset; returns the run directory."""
    out_dir = Path(out_dir)
    if resume:
        if not (out_dir / "config.json").exists():
            raise FileNotFoundError(f"nothing to resume in {out_dir} (no config.json)")
        saved = config_from_json(out_dir / "config.json")
        if saved != cfg:
            console.print("[yellow]--resume: using the run's saved config.json[/]")
        cfg = saved
    elif (out_dir / "config.json").exists():
        raise FileExistsError(f"{out_dir} already holds a run; use --resume or another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    tr = cfg.train
    if tr.threads:
        torch.set_num_threads(tr.threads)
    dataset = Dataset(dataset_dir)
    write_json(out_dir / "config.json", cfg.to_dict())
    GuimRun.write_dataset_info(out_dir, dataset)

    seqs = dataset.train_sequences(cfg.data.scheme)
    popularity = dataset.item_popularity(cfg.data.scheme)
    known = popularity > 0
    valid = dataset.eval_cases(cfg.data.scheme, "valid")
    torch.manual_seed(tr.seed)
    model = build_model(cfg, dataset, known)
    known_t = torch.from_numpy(known)
    sampler = NegativeSampler(cfg.loss, popularity, known) if cfg.loss.kind == "sampled" else None
    optimizers = _optimizers(model, cfg)

    state = {"best": -1.0, "best_epoch": -1, "bad_epochs": 0, "step": 0, "train_seconds": 0.0}
    best = _copy(model.state_dict())
    ema = _copy(model.state_dict()) if tr.ema_decay > 0 else None
    start_epoch = 0
    if resume and (restored := load_checkpoint(out_dir, model, optimizers)) is not None:
        ckpt_state, best, extra = restored
        ema = extra.get("ema", ema)
        state = {k: ckpt_state[k] for k in state}
        start_epoch = ckpt_state["epoch"] + 1
        _truncate_log(out_dir, ckpt_state["epoch"])
        console.print(f"resuming after epoch {ckpt_state['epoch']}")
    elif not resume:
        (out_dir / "train_log.jsonl").unlink(missing_ok=True)

    n_params = sum(p.numel() for p in model.parameters())
    console.print(
        f"[bold]guim train[/] {dataset.name}: {len(seqs)} users, {dataset.n_items} items, "
        f"{n_params / 1e6:.2f}M parameters, config {cfg.hash()}"
    )
    stop_reason = "epochs"
    for epoch in range(start_epoch, tr.epochs):
        t0 = time.perf_counter()
        rng = np.random.default_rng([tr.seed, epoch])
        torch.manual_seed(tr.seed * 100_003 + epoch)
        generator = torch.Generator().manual_seed(tr.seed * 7_919 + epoch)
        batches = make_batches(seqs, cfg, rng, generator)
        model.train()
        total, n_pred = 0.0, 0
        with make_progress(transient=True) as progress:
            task = progress.add_task(f"epoch {epoch + 1}/{tr.epochs}", total=len(batches), info="")
            for batch in batches:
                for opt in optimizers.values():
                    for g in opt.param_groups:
                        g["lr"] = tr.lr * _lr_scale(state["step"], cfg, tr.epochs * len(batches))
                    opt.zero_grad(set_to_none=True)
                loss = step_loss(model, batch, cfg, known_t, sampler, generator)
                loss.backward()
                if tr.grad_clip > 0:
                    dense = [
                        p for p in model.parameters() if p.grad is not None and not p.grad.is_sparse
                    ]
                    torch.nn.utils.clip_grad_norm_(dense, tr.grad_clip)
                for opt in optimizers.values():
                    opt.step()
                if ema is not None:
                    _update_ema(ema, model, tr.ema_decay)
                state["step"] += 1
                n = int((batch.targets > 0).sum())
                total += loss.item() * n
                n_pred += n
                rate = n_pred / max(time.perf_counter() - t0, 1e-9)
                progress.update(task, advance=1, info=f"loss {total / n_pred:.4f} {rate:,.0f} ev/s")
        train_seconds = time.perf_counter() - t0
        state["train_seconds"] += train_seconds
        record = {
            "epoch": epoch,
            "loss": total / max(n_pred, 1),
            "train_seconds": round(train_seconds, 3),
            "events_per_second": round(n_pred / train_seconds, 1),
        }
        if (epoch + 1) % tr.eval_every == 0 or epoch == tr.epochs - 1:
            t1 = time.perf_counter()
            current = _copy(model.state_dict()) if ema is not None else None
            if ema is not None:
                model.load_state_dict(ema)  # validate (and keep) the averaged weights
            metrics = metrics_from_ranks(rank_cases(GuimRun(model, cfg), valid), ks=(10, 20))
            record.update({f"valid_{k}": round(v, 6) for k, v in metrics.items()})
            record["eval_seconds"] = round(time.perf_counter() - t1, 3)
            if metrics[MONITOR] > state["best"]:
                state.update(best=metrics[MONITOR], best_epoch=epoch, bad_epochs=0)
                best = _copy(model.state_dict())
            else:
                state["bad_epochs"] += tr.eval_every
            if current is not None:
                model.load_state_dict(current)
        mark = "*" if state["best_epoch"] == epoch else " "
        console.print(
            f"epoch {epoch + 1:3d} loss {record['loss']:.4f} "
            f"valid {MONITOR} {record.get('valid_' + MONITOR, float('nan')):.4f}{mark} "
            f"({train_seconds:.1f}s train, {record.get('eval_seconds', 0):.1f}s eval)"
        )
        append_log(out_dir, record)
        extra = {"ema": ema} if ema is not None else None
        save_checkpoint(out_dir, epoch, model, best, optimizers, state, extra)
        if state["bad_epochs"] >= tr.patience:
            stop_reason = f"early stop: no better valid {MONITOR} in {tr.patience} epochs"
            break
        if tr.max_minutes and state["train_seconds"] / 60 >= tr.max_minutes:
            stop_reason = f"time budget of {tr.max_minutes} minutes reached"
            break

    model.load_state_dict(best)
    save_weights(out_dir / "model.safetensors", model.state_dict())
    log = read_log(out_dir)
    summary = {
        "dataset": dataset.name,
        "dataset_hash": dataset.hash,
        "config_hash": cfg.hash(),
        "epochs_run": len(log),
        "best_epoch": state["best_epoch"] + 1,
        f"valid_{MONITOR}": state["best"],
        "train_seconds": round(state["train_seconds"], 2),
        "stopped": stop_reason,
    }
    if evaluate_test:
        t2 = time.perf_counter()
        run = GuimRun(model, cfg)
        test = dataset.eval_cases(cfg.data.scheme, "test")
        summary["test"] = metrics_from_ranks(rank_cases(run, test), ks=(5, 10, 20))
        summary["eval_seconds"] = round(time.perf_counter() - t2, 2)
    write_json(out_dir / "metrics.json", summary)
    console.print(f"[green]done[/]: {stop_reason}; best epoch {summary['best_epoch']} -> {out_dir}")
    return out_dir


def _copy(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in weights.items()}


@torch.no_grad()
def _update_ema(ema: dict[str, torch.Tensor], model: GUIM, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * weights (buffers that are not floats are copied)."""
    for name, value in model.state_dict().items():
        if value.is_floating_point():
            ema[name].mul_(decay).add_(value, alpha=1.0 - decay)
        else:
            ema[name].copy_(value)


def _truncate_log(run_dir: Path, last_epoch: int) -> None:
    """Drop log records written after the checkpoint being resumed from."""
    records = [r for r in read_log(run_dir) if r["epoch"] <= last_epoch]
    (run_dir / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def load_best(run_dir: str | Path) -> dict[str, torch.Tensor]:
    return load_weights(Path(run_dir) / "model.safetensors")


def epochs_to_reach(run_dir: str | Path, target: float, metric: str = MONITOR) -> float | None:
    """Training seconds until validation `metric` first reached `target` (None if never)."""
    seconds = 0.0
    for record in read_log(run_dir):
        seconds += record["train_seconds"]
        if record.get(f"valid_{metric}", -math.inf) >= target:
            return seconds
    return None
