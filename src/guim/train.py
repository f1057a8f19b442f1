"""`guim train`: one explicit loop, read top to bottom. `build` makes the model, sampler and
optimisers from the config; `train_epoch` runs one epoch; `validate` scores it and keeps the
best weights (`TrainState` is the early-stopping record); `finish` writes the run.

Next-item (causal), masked-item (Cloze) or SAS (masked-item + replaced-item detection,
`guim.sas`) objective; full-softmax or sampled-InfoNCE loss plus
optional loss terms (the contrastive views, the intents), each a tensor added beside the main loss; training
stages (`[[train.stages]]`) that grow the encoder, choose what trains or change the objective;
atomic checkpoints and `--resume`, also across stage boundaries. Every epoch re-seeds its random
streams from (seed, epoch), so a resumed run continues exactly as the uninterrupted one would.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch

from guim.checkpoint import append_log, load_checkpoint, read_log, save_checkpoint, save_weights
from guim.config import Config, StageConfig, check, config_from_json
from guim.data.batches import Batch, contrastive_view, make_batches
from guim.data.dataset import Dataset, EvalCases, Sequences
from guim.embed import GuimRun
from guim.errors import UserError
from guim.evaluate import rank_cases
from guim.io import read_json, write_json
from guim.losses import intent_info_nce, interest_info_nce, view_info_nce
from guim.metrics import metrics_from_ranks
from guim.models import build_model
from guim.models.guim import ModelOutput
from guim.models.tokens import ItemTables
from guim.progress import console, make_progress
from guim.sampling import NegativeSampler
from guim.sas import DetectionHead, apply_replacements, detection_loss, sample_replacements
from guim.trainer.distill import Distiller
from guim.trainer.distributed import init_distributed, resolve_device, shard, wrap
from guim.trainer.intents import intent_centroids
from guim.trainer.optim import lr_scale, make_optimizers
from guim.trainer.stages import resolve_stages, stage_of, stage_start

# the validation metric that picks the best epoch and stops training early
SELECTION_METRIC = "NDCG@10"


@dataclass
class TrainState:
    """What a checkpoint records besides weights: the early-stopping record and the clock."""

    best: float = -1.0  # best validation SELECTION_METRIC of the current architecture
    best_epoch: int = -1
    bad_epochs: int = 0  # epochs since the last improvement, in this stage
    step: int = 0  # optimiser steps so far (learning-rate schedule)
    train_seconds: float = 0.0
    stage: int = 0  # the stage the model's weights belong to
    next_epoch: int = 0  # the epoch to run next


@dataclass
class Trainer:
    """Everything one run trains with; `build` makes it."""

    cfg: Config  # the configuration as run: stages resolved, model = the current architecture
    stages: list[StageConfig]  # resolved: every field set
    dataset: Dataset
    seqs: Sequences  # training sequences of the config's scheme
    valid: EvalCases  # validation cases
    tables: ItemTables
    model: torch.nn.Module
    sampler: NegativeSampler | None
    optimizers: dict[str, torch.optim.Optimizer]
    known: torch.Tensor  # (n_items + 1,) bool on the device: items seen in training
    device: torch.device
    best: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor] | None
    state: TrainState
    rank: int = 0  # this process's rank under torch.distributed (0 alone)
    world: int = 1  # processes training together
    wrapped: torch.nn.Module | None = None  # the model in DistributedDataParallel (world > 1)
    # SAS: replacements stored by the previous epoch (read) and by this one (written), one
    # item per training event (0 = none); see guim.sas
    sas_previous: torch.Tensor | None = None
    sas_current: torch.Tensor | None = None
    distill: Distiller | None = None  # the teachers' loss terms (cfg.distill.teachers)
    intents: torch.Tensor | None = None  # (I, D) this epoch's intent centroids (ICLRec)


# ---- set-up ----------------------------------------------------------------------------------


def item_tables(cfg: Config, dataset: Dataset, known: np.ndarray) -> ItemTables:
    """The catalogue's tables for a model: attribute ids, text vectors, items seen in training."""
    offsets, flat = dataset.item_attributes
    text = None
    if cfg.data.use_text:
        from guim.text import item_text_vectors

        text = torch.from_numpy(item_text_vectors(dataset, cfg.data.text_model))
    return ItemTables(
        n_items=dataset.n_items,
        n_attributes=dataset.n_attributes,
        attr_offsets=torch.from_numpy(offsets),
        attr_flat=torch.from_numpy(flat),
        known=torch.from_numpy(known),
        text=text,
    )


def enter_stage(t: Trainer, index: int, restore_best: bool) -> bool:
    """Shape the model for stage `index`: grow the encoder (from the best weights so far when
    `restore_best`), set the objective and what trains, and fresh optimisers. Returns whether
    the architecture changed."""
    stage, model = t.stages[index], t.model
    if restore_best:
        model.load_state_dict(t.best)
    grown = stage.n_layers != t.cfg.model.n_layers
    if grown:
        torch.manual_seed(t.cfg.train.seed * 1_000_003 + index)  # "random" growth
        model.grow(stage.n_layers, stage.grow)
        t.cfg = replace(t.cfg, model=model.model_cfg)
    m = t.cfg.model
    expand = stage.ffn_rank not in (None, m.ffn_rank) or stage.attention not in (None, m.attention)
    if expand:  # CoRe: low-rank FFN multiplied out, attention switched
        model.relax(stage.ffn_rank, stage.attention)
        t.cfg = replace(t.cfg, model=model.model_cfg)
        grown = True
    model.causal = stage.objective == "next"
    model.set_trainable(stage.trainable)
    if hasattr(model, "detector"):  # SAS's detection head trains like the interest head
        model.detector.requires_grad_(True)
    t.optimizers = make_optimizers(model, t.cfg)
    t.state.stage = index
    return grown


def build(cfg: Config, dataset: Dataset, rank: int = 0, world: int = 1) -> Trainer:
    """Model (first stage's architecture, on train.device), sampler and optimisers; with
    `world` > 1 processes, each builds the same model (same seed) and trains its share."""
    stages = list(resolve_stages(cfg))
    device = resolve_device(cfg.train.device, world)
    popularity = dataset.item_popularity(cfg.data.scheme)
    known = popularity > 0
    first = stages[0]
    relaxed = {"ffn_rank": first.ffn_rank, "attention": first.attention}
    cfg = replace(
        cfg,
        model=replace(
            cfg.model,
            n_layers=first.n_layers,
            **{k: v for k, v in relaxed.items() if v is not None},
        ),
        train=replace(cfg.train, stages=tuple(stages) if cfg.train.stages else ()),
    )
    torch.manual_seed(cfg.train.seed)
    sparse = cfg.loss.kind == "sampled" and world == 1
    if cfg.loss.kind == "sampled" and world > 1 and rank == 0:
        console.print(
            "[yellow]loss.kind=sampled under torch.distributed: the id embedding gets dense "
            "gradients (DDP all-reduces dense tensors; AdamW instead of SparseAdam for it)[/]"
        )
    if cfg.loss.hard_negatives and world > 1:
        raise UserError("loss.hard_negatives is not supported under torch.distributed")
    causal = first.objective == "next"
    tables = item_tables(cfg, dataset, known)
    model = build_model(cfg.model, cfg.data, tables, causal, sparse)
    if any(s.objective == "sas" for s in stages):
        if world > 1:
            raise UserError("train.objective = 'sas' is not supported under torch.distributed")
        model.detector = DetectionHead(cfg.model.dim)  # trained, not saved with the run
    distiller = None
    if cfg.distill.teachers:  # loads the teachers; may initialise the student from them
        distiller = Distiller.attach(cfg, model, dataset.hash, torch.from_numpy(known))
        distiller.to(device)
    model.to(device)
    # sampled InfoNCE under torch.distributed too (only the id embedding's gradient is dense)
    sampler = NegativeSampler(cfg.loss, popularity, known) if cfg.loss.kind == "sampled" else None
    t = Trainer(
        cfg,
        stages,
        dataset,
        dataset.train_sequences(cfg.data.scheme),
        dataset.eval_cases(cfg.data.scheme, "valid"),
        tables,
        model,
        sampler,
        {},
        torch.from_numpy(known).to(device),
        device,
        best={},
        ema=None,
        state=TrainState(),
        rank=rank,
        world=world,
    )
    t.distill = distiller
    enter_stage(t, 0, restore_best=False)
    t.best = _copy(model.state_dict())
    t.ema = _copy(model.state_dict()) if cfg.train.ema_decay > 0 else None
    return t


def restore(t: Trainer, run_dir: Path) -> bool:
    """Load the latest checkpoint of `run_dir` into `t` (its stage's architecture first)."""
    latest = run_dir / "checkpoints" / "latest.json"
    if not latest.exists():
        return False
    saved = read_json(run_dir / "checkpoints" / read_json(latest)["checkpoint"] / "state.json")
    for index in range(1, int(saved.get("stage", 0)) + 1):
        enter_stage(t, index, restore_best=False)
    restored = load_checkpoint(run_dir, t.model, t.optimizers)
    assert restored is not None
    ckpt, t.best, extra = restored
    t.ema = extra.get("ema", t.ema)
    t.sas_previous = extra.get("sas", {}).get("replacements")
    known = {f.name for f in fields(TrainState)}
    t.state = TrainState(**{k: v for k, v in ckpt.items() if k in known})
    if "next_epoch" not in ckpt:  # a checkpoint of an earlier guim
        t.state.next_epoch = ckpt["epoch"] + 1
    if t.rank == 0:
        _truncate_log(run_dir, ckpt["epoch"])
        console.print(f"resuming after epoch {ckpt['epoch']}")
    return True


# ---- one epoch -------------------------------------------------------------------------------


def step_loss(
    t: Trainer, batch: Batch, generator: torch.Generator, contrastive_weight: float
) -> torch.Tensor:
    """Loss of one batch (mean over predicted positions) plus the weighted extra terms."""
    cfg = t.cfg
    targets = batch.targets[batch.targets > 0]  # (P,) on the CPU, where the sampler draws
    candidates, positive, log_q, allowed = None, targets, None, t.known
    if t.sampler is not None:
        windows = target_rows = None  # for the false-negative mask of retrieved hard negatives
        if cfg.loss.hard_negatives:
            target_rows = (batch.targets > 0).nonzero()[:, 0]  # (P,) each target's window
            windows = torch.cat([batch.items, batch.targets], dim=1)  # what a window holds
        cand = t.sampler.candidates(targets, generator, windows, target_rows)
        candidates, positive, log_q, allowed = cand.items, cand.positive, cand.log_q, cand.allowed
    view = contrastive_view(batch, cfg, generator) if contrastive_weight > 0 else None
    dev = t.device
    sas = t.stages[t.state.stage].objective == "sas"
    shown, replaced = batch, None
    if sas:  # the previous epoch's replacements at unmasked positions
        assert batch.masked is not None and batch.event_index is not None
        items, replaced = apply_replacements(
            batch.items, batch.masked, batch.event_index, t.sas_previous
        )
        shown = replace(batch, items=items)
    out = (t.model if t.wrapped is None else t.wrapped)(
        shown.to(dev),
        None if candidates is None else candidates.to(dev),
        None if view is None else view.to(dev),
    )
    m = cfg.model
    loss = out.users.new_zeros(())  # a student taught by its teachers alone skips its own loss
    if t.distill is None or cfg.distill.label_weight:
        loss = interest_info_nce(
            out.users,
            out.items,
            positive.to(dev),
            None if log_q is None else log_q.to(dev),
            cfg.loss.temperature,
            None if allowed is None else allowed.to(dev),
            m.interest_score,
            m.interest_temperature,
            cfg.loss.interest_readout,
        )
    if t.distill is not None:  # label_weight x the loss above + the teachers' terms
        loss = t.distill.loss(loss, shown.to(dev), out, t.model)
    if view is not None:
        contrastive = view_info_nce(out.states, out.view_states, cfg.loss.contrastive_temperature)
        loss = loss + contrastive_weight * contrastive
    if t.intents is not None and cfg.loss.intent_weight > 0:
        intent = intent_info_nce(
            out.states, t.intents, cfg.loss.intent_temperature, out.view_states
        )
        loss = loss + cfg.loss.intent_weight * intent
    if sas:
        assert replaced is not None and batch.masked is not None
        if t.sas_previous is not None and cfg.loss.detection_weight > 0:  # after the cold start
            where = ((shown.items > 0) & ~batch.masked).to(dev)
            logits = t.model.detector(out.states)  # (B, T)
            detection = detection_loss(logits, replaced.to(dev), where)
            loss = loss + cfg.loss.detection_weight * detection
        _store_replacements(t, out, batch, generator, candidates, log_q)
    return loss


@torch.no_grad()
def _store_replacements(
    t: Trainer,
    out: ModelOutput,
    batch: Batch,
    generator: torch.Generator,
    candidates: torch.Tensor | None = None,
    log_q: torch.Tensor | None = None,
) -> None:
    """SAS: draw a replacement for every masked position from the model's masked-item softmax
    and store it under the position's event, for the next epoch (t.sas_current). Under the
    sampled loss the draw is among the step's candidates (`out.items`, logQ-corrected), so its
    cost follows the candidate set, not the catalogue."""
    if t.sas_current is None:
        return
    cfg, model = t.cfg, t.model
    scores = model.score(out.users.detach(), out.items.detach()) / cfg.loss.temperature  # (P, C)
    hit = batch.targets > 0
    drawn = sample_replacements(
        scores, batch.targets[hit].to(scores.device), t.known, cfg.loss.sas_temperature,
        cfg.loss.sas_no_hit, generator, columns=candidates, log_q=log_q,
    )  # fmt: skip
    assert batch.event_index is not None
    t.sas_current[batch.event_index[hit]] = drawn


@torch.no_grad()
def refresh_hard_negatives(t: Trainer) -> None:
    """Re-index the current item vectors for the retrieved hard negatives (eval mode, so no
    dropout and no random numbers drawn)."""
    assert t.sampler is not None
    training = t.model.training
    t.model.eval()
    vectors = t.model.item_vectors().float().cpu().numpy()
    t.model.train(training)
    t.sampler.refresh(vectors)


def train_epoch(t: Trainer, epoch: int, show_progress: bool = True) -> dict[str, float]:
    """One epoch of the current stage; returns its log record."""
    tr, stage = t.cfg.train, t.stages[t.state.stage]
    total_epochs = sum(s.epochs for s in t.stages)
    t0 = time.perf_counter()
    rng = np.random.default_rng([tr.seed, epoch])
    torch.manual_seed(tr.seed * 100_003 + epoch)
    generator = torch.Generator().manual_seed(tr.seed * 7_919 + epoch)
    batches = make_batches(t.seqs, t.cfg.data, replace(tr, objective=stage.objective), rng)
    weight = float(stage.contrastive_weight)
    if stage.objective == "sas":  # this epoch stores the next one's replacements
        t.sas_current = torch.zeros(len(t.seqs.item_idx), dtype=torch.long)
    if t.cfg.loss.intent_weight > 0:  # ICLRec's E-step: cluster the current user vectors
        t.intents = intent_centroids(t.model, t.cfg, t.seqs, generator.initial_seed())
    t.model.train()
    total, n_pred = 0.0, 0
    with make_progress(transient=True) as progress:
        progress.disable = not show_progress
        task = progress.add_task(f"epoch {epoch + 1}/{total_epochs}", total=len(batches), info="")
        for index, batch in enumerate(batches):
            if t.sampler is not None and t.cfg.loss.hard_negatives:
                refresh = t.cfg.loss.hard_refresh_steps
                if index == 0 or (refresh and index % refresh == 0):
                    refresh_hard_negatives(t)
            for opt in t.optimizers.values():
                for g in opt.param_groups:
                    g["lr"] = tr.lr * lr_scale(t.state.step, t.cfg, total_epochs * len(batches))
                opt.zero_grad(set_to_none=True)
            batch, scale = shard(batch, t.rank, t.world)
            with torch.autocast(t.device.type, torch.bfloat16, enabled=tr.precision == "bf16"):
                loss = step_loss(t, batch, generator, weight)
            (loss if scale == 1.0 else loss * scale).backward()
            optimiser_step(t)
            if t.ema is not None:
                _update_ema(t.ema, t.model, tr.ema_decay)
            t.state.step += 1
            n = int((batch.targets > 0).sum())
            total += loss.item() * n
            n_pred += n
            rate = n_pred / max(time.perf_counter() - t0, 1e-9)
            progress.update(task, advance=1, info=f"loss {total / n_pred:.4f} {rate:,.0f} ev/s")
    if t.world > 1:  # the epoch's loss over every process's share
        sums = torch.tensor([total, float(n_pred)], dtype=torch.float64)
        torch.distributed.all_reduce(sums)
        total, n_pred = float(sums[0]), int(sums[1])
    seconds = time.perf_counter() - t0
    t.state.train_seconds += seconds
    if t.sas_current is not None:  # read by the next epoch, never by this one
        t.sas_previous, t.sas_current = t.sas_current, None
    record = {
        "epoch": epoch,
        "loss": total / max(n_pred, 1),
        "train_seconds": round(seconds, 3),
        "events_per_second": round(n_pred / seconds, 1),
    }
    if len(t.stages) > 1:
        record["stage"] = t.state.stage
    return record


def optimiser_step(t: Trainer) -> None:
    """After the backward pass: clip the dense gradients to train.grad_clip (sparse ones, the
    sampled loss's id embedding, are not clipped) and step every optimiser."""
    if t.cfg.train.grad_clip > 0:
        dense = [p for p in t.model.parameters() if p.grad is not None and not p.grad.is_sparse]
        torch.nn.utils.clip_grad_norm_(dense, t.cfg.train.grad_clip, foreach=True)
    for opt in t.optimizers.values():
        opt.step()


# ---- validation and the end ----------------------------------------------------------------


def validate(t: Trainer, epoch: int) -> dict[str, float]:
    """Validation metrics of the current (or moving-average) weights; keeps the best weights
    and updates the early-stopping record."""
    t1 = time.perf_counter()
    current = _copy(t.model.state_dict()) if t.ema is not None else None
    if t.ema is not None:
        t.model.load_state_dict(t.ema)  # validate (and keep) the averaged weights
    metrics = metrics_from_ranks(rank_cases(GuimRun(t.model, t.cfg), t.valid), ks=(10, 20))
    record = {f"valid_{k}": round(v, 6) for k, v in metrics.items()}
    record["eval_seconds"] = round(time.perf_counter() - t1, 3)
    if metrics[SELECTION_METRIC] > t.state.best:
        t.state.best, t.state.best_epoch, t.state.bad_epochs = metrics[SELECTION_METRIC], epoch, 0
        t.best = _copy(t.model.state_dict())
    else:
        t.state.bad_epochs += t.cfg.train.eval_every
    if current is not None:
        t.model.load_state_dict(current)
    return record


def finish(t: Trainer, out_dir: Path, stop_reason: str, evaluate_test: bool) -> Path:
    """Best weights -> model.safetensors, config.json = the architecture trained, metrics.json
    (with the test metrics unless `evaluate_test` is off)."""
    model, cfg = t.model, t.cfg
    model.load_state_dict(t.best)
    write_json(out_dir / "config.json", cfg.to_dict())
    # the run is the encoder and its item tokens; SAS's detection head only served training
    weights = {k: v for k, v in model.state_dict().items() if not k.startswith("detector.")}
    save_weights(out_dir / "model.safetensors", weights)
    summary = {
        "dataset": t.dataset.name,
        "dataset_hash": t.dataset.hash,
        "config_hash": cfg.hash(),
        "epochs_run": len(read_log(out_dir)),
        "best_epoch": t.state.best_epoch + 1,
        f"valid_{SELECTION_METRIC}": t.state.best,
        "train_seconds": round(t.state.train_seconds, 2),
        "stopped": stop_reason,
    }
    if evaluate_test:
        t2 = time.perf_counter()
        test = t.dataset.eval_cases(cfg.data.scheme, "test")
        summary["test"] = metrics_from_ranks(rank_cases(GuimRun(model, cfg), test), ks=(5, 10, 20))
        summary["eval_seconds"] = round(time.perf_counter() - t2, 2)
    write_json(out_dir / "metrics.json", summary)
    console.print(f"[green]done[/]: {stop_reason}; best epoch {summary['best_epoch']} -> {out_dir}")
    return out_dir


def train(
    cfg: Config,
    dataset_dir: str | Path,
    out_dir: str | Path,
    resume: bool = False,
    show_progress: bool = True,
    evaluate_test: bool = True,
) -> Path:
    """Train a model on a prepared dataset; returns the run directory.

    Everything is checked and built before anything is written: a bad config, a missing
    dataset or (with `resume`) another dataset than the run's leaves no trace. Started by
    torchrun (WORLD_SIZE > 1), each process trains its share of every batch (train.batch_size
    is the batch of all processes together) and rank 0 alone validates, logs and writes."""
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
    check(cfg)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    dataset = Dataset(dataset_dir)
    if resume:
        _check_same_dataset(out_dir, dataset)
    rank, world = init_distributed(cfg)
    try:
        t = build(cfg, dataset, rank, world)
        if rank != 0:
            console.quiet = True
            if resume:
                restore(t, out_dir)
        else:
            created = not out_dir.exists()
            try:
                out_dir.mkdir(parents=True, exist_ok=True)
                if not (resume and restore(t, out_dir)):
                    (out_dir / "train_log.jsonl").unlink(missing_ok=True)
                write_json(out_dir / "config.json", t.cfg.to_dict())
                GuimRun.write_dataset_info(out_dir, dataset, t.tables, cfg.data.scheme)
            except BaseException:
                if created and not resume:
                    shutil.rmtree(out_dir, ignore_errors=True)
                raise
        t.wrapped = wrap(t.model, t.device, t.world)
        done = _loop(t, out_dir, show_progress, evaluate_test)
        if world > 1:
            # every process leaves together: a process that tears its gloo group down while a
            # peer is still writing or evaluating could abort at exit (rank 1's SIGABRT,
            # "terminate called without an active exception", seen once in the DDP tests)
            torch.distributed.barrier()
        return done
    finally:
        if world > 1:
            torch.distributed.destroy_process_group()


def _loop(t: Trainer, out_dir: Path, show_progress: bool, evaluate_test: bool) -> Path:
    """Epochs from t.state.next_epoch to the end of the last stage (or an early stop)."""
    tr = t.cfg.train
    total_epochs = sum(s.epochs for s in t.stages)
    n_params = sum(p.numel() for p in t.model.parameters())
    console.print(
        f"[bold]guim train[/] {t.dataset.name}: {len(t.seqs)} users, {t.dataset.n_items} items, "
        f"{n_params / 1e6:.2f}M parameters, config {t.cfg.hash()}, device {t.device}"
        + (f", {t.world} processes" if t.world > 1 else "")
    )
    stop_reason = "epochs"
    epoch = t.state.next_epoch
    while epoch < total_epochs:
        index = stage_of(t.stages, epoch)
        if index != t.state.stage:
            if enter_stage(t, index, restore_best=True):  # a new architecture: a new best
                t.best = _copy(t.model.state_dict())
                t.state.best, t.state.best_epoch = -1.0, -1
                if t.rank == 0:
                    write_json(out_dir / "config.json", t.cfg.to_dict())
            t.wrapped = wrap(t.model, t.device, t.world)
            if t.ema is not None:
                t.ema = _copy(t.model.state_dict())
            t.state.bad_epochs = 0
            s = t.stages[index]
            console.print(
                f"[bold]stage {index + 1}/{len(t.stages)}[/]: {s.n_layers} layers, "
                f"{s.objective} objective, trainable {s.trainable}, {s.epochs} epochs"
            )
        record = train_epoch(t, epoch, show_progress)
        last_of_stage = stage_start(t.stages, index + 1) - 1
        if t.rank == 0 and ((epoch + 1) % tr.eval_every == 0 or epoch == last_of_stage):
            record.update(validate(t, epoch))
        if t.world > 1:  # every process follows rank 0's record (early stop, time budget)
            shared = [asdict(t.state)]
            torch.distributed.broadcast_object_list(shared, src=0)
            t.state = TrainState(**shared[0])
        mark = "*" if t.state.best_epoch == epoch else " "
        console.print(
            f"epoch {epoch + 1:3d} loss {record['loss']:.4f} "
            f"valid {SELECTION_METRIC} {record.get('valid_' + SELECTION_METRIC, float('nan')):.4f}"
            f"{mark} ({record['train_seconds']:.1f}s train, {record.get('eval_seconds', 0):.1f}s "
            "eval)"
        )
        early = t.state.bad_epochs >= tr.patience
        t.state.next_epoch = stage_start(t.stages, index + 1) if early else epoch + 1
        if t.rank == 0:
            append_log(out_dir, record)
            extra = {"ema": t.ema} if t.ema is not None else {}
            if t.sas_previous is not None:
                extra["sas"] = {"replacements": t.sas_previous}
            save_checkpoint(
                out_dir, epoch, t.model, t.best, t.optimizers, asdict(t.state), extra or None
            )
        if early and index == len(t.stages) - 1:
            stop_reason = f"early stop: no better valid {SELECTION_METRIC} in {tr.patience} epochs"
            break
        if tr.max_minutes and t.state.train_seconds / 60 >= tr.max_minutes:
            stop_reason = f"time budget of {tr.max_minutes} minutes reached"
            break
        epoch = t.state.next_epoch
    if t.rank != 0:
        return out_dir
    return finish(t, out_dir, stop_reason, evaluate_test)


def _check_same_dataset(run_dir: Path, dataset: Dataset) -> None:
    """Refuse to resume a run on another dataset than the one it was trained on."""
    path = run_dir / "dataset.json"
    if not path.exists():
        return
    info = read_json(path)
    if info.get("hash") != dataset.hash:
        raise UserError(
            f"--resume: {dataset.path} (hash {dataset.hash}) is not the dataset {run_dir} was "
            f"trained on ({info.get('path')}, hash {info.get('hash')})"
        )
    for key in ("n_items", "n_attributes"):
        if key in info and info[key] != getattr(dataset, key):
            raise UserError(
                f"--resume: {dataset.path} has {key}={getattr(dataset, key)}, the run's "
                f"dataset {info[key]}"
            )


def _copy(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in weights.items()}


@torch.no_grad()
def _update_ema(ema: dict[str, torch.Tensor], model: torch.nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * weights, for the parameters, in one fused call; the
    buffers (item tables, masks) do not change in training and stay as copied."""
    names, values = zip(*model.named_parameters(), strict=True)
    torch._foreach_lerp_([ema[n] for n in names], list(values), 1.0 - decay)


def _truncate_log(run_dir: Path, last_epoch: int) -> None:
    """Drop log records written after the checkpoint being resumed from."""
    records = [r for r in read_log(run_dir) if r["epoch"] <= last_epoch]
    (run_dir / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
