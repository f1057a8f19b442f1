"""RecBole 1.2.1's SASRec and BERT4Rec (Zhao et al., CIKM 2021) as peers: trained on exactly a
prepared dataset's leave-one-out split and scored through our `Embedder` protocol.

`run_peer` converts the dataset with `write_recbole`, lets RecBole split it leave-one-out (checked
equal to ours row for row, with nothing filtered), trains it epoch by epoch with RecBole's own
Trainer, keeps the epoch with the best valid NDCG@10 under OUR protocol (full ranking, history
masked) and returns the model as an Embedder together with its training curve.

Runtime shims (see ../shared/docs/PEERS.md), applied by `import_recbole`; site-packages is not edited:
1. numpy >= 2 dropped np.float_, np.complex_ and np.unicode_, which RecBole's config code reads:
   the three aliases (float64, complex128, str_) are re-created before RecBole is imported.
2. torch >= 2.6 loads with weights_only=True, which RecBole's pickled checkpoints fail. Never
   reached: the best weights are kept in memory, `Trainer.evaluate(load_best_model=False)` is
   used, and a run is saved as safetensors, not as a RecBole checkpoint.
3. recbole.quick_start imports ray (-> pkg_resources, gone from setuptools >= 81): never imported;
   Config -> create_dataset -> data_preparation -> model -> Trainer are called here instead.
4. SINE's module switches torch anomaly detection on at import (about 6x slower training): it is
   set back to its previous state right after the import.
5. pandas 3 turns RecBole's fillna(inplace=True) into a no-op: harmless, since prepared datasets
   have no missing ids or times (the count and split checks would fail otherwise).
Side effects contained: Config reads `--key=value` overrides from sys.argv and sets
CUDA_VISIBLE_DEVICES (argv hidden and the variable restored while it is built); Trainer opens a
TensorBoard writer under ./log_tensorboard (it is built inside a fresh private directory).
RecBole unpickles `<checkpoint_dir>/*.pth` when one exists: its data and checkpoint directory is
a new mkdtemp directory per run, removed afterwards, so no planted file can ever be loaded.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from guim.checkpoint import append_log, load_weights, save_weights
from guim.data.dataset import Dataset, Sequences
from guim.data.loaders.recbole import write_recbole
from guim.data.schema import ITEM_ID, TIMESTAMP, USER_ID
from guim.errors import UserError
from guim.evaluate import rank_cases
from guim.io import read_json, sweep_stale, write_json
from guim.metrics import metrics_from_ranks
from guim.progress import console

MONITOR = "NDCG@10"
ATOMIC_NAME = "guim"  # RecBole's dataset name; a fixed one, so no built-in dataset yaml applies
MODEL_CLASSES = {"sasrec": "SASRec", "bert4rec": "BERT4Rec"}
# PEERS.md: the S3-Rec-lineage SASRec settings, shared by both models; BERT4Rec adds RecBole's
# default mask ratio (20% of positions masked, int(0.2 * 50) = 10 predictions per sequence)
HPARAMS: dict[str, Any] = {
    "hidden_size": 64,
    "inner_size": 256,
    "n_layers": 2,
    "n_heads": 2,
    "hidden_dropout_prob": 0.5,
    "attn_dropout_prob": 0.5,
    "MAX_ITEM_LIST_LENGTH": 50,
    "train_batch_size": 256,
    "learning_rate": 1e-3,
    "loss_type": "CE",
}
MODEL_HPARAMS: dict[str, dict[str, Any]] = {"sasrec": {}, "bert4rec": {"mask_ratio": 0.2}}


class SplitMismatch(ValueError):
    """RecBole's view of the data differs from ours (counts, ids or leave-one-out cases)."""


# ---- importing RecBole -------------------------------------------------------------------------

_RECBOLE: SimpleNamespace | None = None


def import_recbole() -> SimpleNamespace:
    """Apply the shims, import the parts of RecBole used here (once) and return them."""
    global _RECBOLE
    if _RECBOLE is None:
        for alias, target in (
            ("float_", np.float64),
            ("complex_", np.complex128),
            ("unicode_", np.str_),
        ):
            if not hasattr(np, alias):
                setattr(np, alias, target)  # shim 1
        anomaly = torch.is_anomaly_enabled()
        from recbole.config import Config
        from recbole.data import create_dataset, data_preparation
        from recbole.model.sequential_recommender import BERT4Rec, SASRec
        from recbole.trainer import Trainer
        from recbole.utils import init_seed

        torch.autograd.set_detect_anomaly(anomaly)  # shim 4
        _RECBOLE = SimpleNamespace(
            Config=Config,
            create_dataset=create_dataset,
            data_preparation=data_preparation,
            Trainer=Trainer,
            init_seed=init_seed,
            models={"SASRec": SASRec, "BERT4Rec": BERT4Rec},
        )
    return _RECBOLE


@contextlib.contextmanager
def _quiet_process_state() -> Iterator[None]:
    """Hide sys.argv from RecBole's Config and restore CUDA_VISIBLE_DEVICES after it."""
    argv, cuda = sys.argv, os.environ.get("CUDA_VISIBLE_DEVICES")
    sys.argv = argv[:1]
    try:
        yield
    finally:
        sys.argv = argv
        if cuda is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = cuda


@contextlib.contextmanager
def _recbole_warnings() -> Iterator[None]:
    """Silence warnings raised from RecBole's own code: pandas 3's chained-assignment notices for
    its no-op fillna (shim 5) and deprecations of the numpy and torch APIs it calls."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"recbole(\.|$)")
        # numpy 2 on the torch tensors RecBole sorts with np.argsort
        warnings.filterwarnings("ignore", "__array_wrap__ must accept", DeprecationWarning)
        yield


# ---- the embedder ------------------------------------------------------------------------------


def right_padded(
    histories: Sequences, max_len: int, item_map: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """RecBole's input layout: the last `max_len` items of each history from position 0, then
    padding, mapped through `item_map` (our item_idx -> its id; 0 -> 0).

    Returns (items (N, max_len) int64, lengths (N,) int64).
    """
    left = histories.padded(max_len)["item_idx"]  # (N, max_len), left-padded
    lengths = np.minimum(histories.lengths, max_len).astype(np.int64)
    cols = (np.arange(max_len)[None, :] + (max_len - lengths)[:, None]) % max_len
    return item_map[np.take_along_axis(left, cols, axis=1)], lengths


class RecBoleEmbedder:
    """A RecBole SASRec / BERT4Rec model as an Embedder (K = 1).

    Users: the model's sequence output at the last position, computed exactly as its
    `full_sort_predict` does (BERT4Rec: `reconstruct_test_data` appends the mask token and drops
    the first position, which for histories shorter than max_len drops their first item -- as
    RecBole does). Items: its item embedding table reordered to our item_idx, row 0 zero.
    BERT4Rec adds a per-item output bias, carried as one extra dimension (user 1, item bias), so
    dot products equal RecBole's scores. An empty history gets a zero vector.
    """

    def __init__(
        self, kind: str, model: torch.nn.Module, item_map: np.ndarray, batch_size: int = 512
    ) -> None:
        self.kind = kind
        self.name = f"recbole-{kind}"
        self.model = model
        self.item_map = item_map  # (n_items + 1,) int64: our item_idx -> RecBole item id
        self.max_len = int(model.max_seq_length)
        self.batch_size = batch_size

    @property
    def dim(self) -> int:
        return self.model.hidden_size + (1 if self.kind == "bert4rec" else 0)

    def embed_users(self, histories: Sequences) -> np.ndarray:
        """(N, 1, D) float32 user vectors."""
        model, device = self.model, next(self.model.parameters()).device
        items, lengths = right_padded(histories, self.max_len, self.item_map)
        out = np.zeros((len(histories), 1, self.dim), dtype=np.float32)
        was_training = model.training
        model.eval()
        with torch.inference_mode():
            for b0 in range(0, len(histories), self.batch_size):
                rows = np.arange(b0, min(b0 + self.batch_size, len(histories)))
                rows = rows[lengths[rows] > 0]
                if len(rows) == 0:
                    continue
                seq = torch.from_numpy(items[rows]).to(device)  # (B, L)
                seq_len = torch.from_numpy(lengths[rows]).to(device)  # (B,)
                if self.kind == "sasrec":
                    user = model.forward(seq, seq_len)  # (B, H)
                else:
                    seq = model.reconstruct_test_data(seq, seq_len)  # (B, L), mask token last
                    user = model.gather_indexes(model.forward(seq), seq_len - 1)  # (B, H)
                    user = torch.cat([user, torch.ones_like(user[:, :1])], dim=1)  # (B, H + 1)
                out[rows, 0] = user.float().cpu().numpy()
        model.train(was_training)
        return out

    def embed_items(self) -> np.ndarray:
        """(n_items + 1, D) float32 item vectors indexed by our item_idx; row 0 is zero."""
        with torch.no_grad():
            table = self.model.item_embedding.weight.detach().float().cpu()  # (n_rb, H)
            rows = torch.from_numpy(self.item_map)
            items = table[rows]  # (n_items + 1, H)
            if self.kind == "bert4rec":
                bias = self.model.output_bias.detach().float().cpu()[rows]  # (n_items + 1,)
                items = torch.cat([items, bias[:, None]], dim=1)  # (n_items + 1, H + 1)
        out = items.numpy().copy()
        out[0] = 0.0
        return out


# ---- a run -------------------------------------------------------------------------------------


@dataclass
class PeerRun:
    """One trained peer. Epochs count from 1; `train_seconds` excludes evaluation; the curve's
    `train_seconds` are cumulative; `recbole_test` is RecBole's own full-sort test result (history
    NOT masked), for reference."""

    name: str
    embedder: RecBoleEmbedder
    train_seconds: float
    epochs: int
    best_epoch: int
    best_valid_ndcg10: float
    seconds_to_best: float
    curve: list[dict[str, float]]
    cap: str
    recbole_test: dict[str, float]
    out_dir: Path
    hparams: dict[str, Any] = field(default_factory=dict)
    # RecBole's config, dataset, dataloaders and trainer (large; for checks and debugging)
    recbole: SimpleNamespace | None = field(default=None, repr=False, compare=False)


# the PeerRun fields saved to peer.json
PEER_FIELDS = (
    "name",
    "train_seconds",
    "epochs",
    "best_epoch",
    "best_valid_ndcg10",
    "seconds_to_best",
    "curve",
    "cap",
    "recbole_test",
    "hparams",
)


@contextlib.contextmanager
def private_workdir(out_dir: Path) -> Iterator[Path]:
    """A directory for RecBole that nobody else can have written into: created fresh (mkdtemp:
    new, random name, mode 0700) inside `out_dir` and removed afterwards. RecBole unpickles
    `<checkpoint_dir>/<dataset>-<class>.pth` whenever such a file exists, so it must never see
    a directory that could hold a planted one; leftovers of a killed run are swept."""
    sweep_stale(out_dir / "recbole")
    work = Path(tempfile.mkdtemp(prefix=f".recbole.{os.getpid()}.", suffix=".tmp", dir=out_dir))
    try:
        yield work.resolve()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _setup(
    name: str, dataset_dir: Path, work: Path, seed: int, overrides: dict[str, Any]
) -> SimpleNamespace:
    """Atomic files -> Config -> dataset -> checked splits -> dataloaders -> model -> Trainer,
    with every RecBole file under `work` (a `private_workdir`)."""
    if name not in MODEL_CLASSES:
        raise UserError(f"unknown peer {name!r}; expected one of {sorted(MODEL_CLASSES)}")
    rb = import_recbole()
    ds = Dataset(dataset_dir)
    atomic = write_recbole(dataset_dir, work / ATOMIC_NAME, ATOMIC_NAME)
    load_col = {"inter": [USER_ID, ITEM_ID, TIMESTAMP], "item": [ITEM_ID]}
    if (atomic / f"{ATOMIC_NAME}.user").exists():
        load_col["user"] = [USER_ID]
    hparams = {**HPARAMS, **MODEL_HPARAMS[name], **overrides}
    config_dict = {
        **hparams,
        "data_path": str(work),
        "checkpoint_dir": str(work / "saved"),
        "USER_ID_FIELD": USER_ID,
        "ITEM_ID_FIELD": ITEM_ID,
        "TIME_FIELD": TIMESTAMP,
        "load_col": load_col,
        # every filter off: the data is ours, exactly
        "rm_dup_inter": None,
        "val_interval": None,
        "filter_inter_by_user_or_item": False,
        "user_inter_num_interval": "[0,inf)",
        "item_inter_num_interval": "[0,inf)",
        "eval_args": {
            "split": {"LS": "valid_and_test"},
            "order": "TO",
            "group_by": "user",
            "mode": "full",
        },
        "train_neg_sample_args": None,
        "metrics": ["Hit", "NDCG", "MRR"],
        "topk": [5, 10, 20],
        "valid_metric": MONITOR,
        "metric_decimal_place": 12,
        "eval_batch_size": 1024,
        "seed": seed,
        "reproducibility": True,
        "show_progress": False,
        "save_dataset": False,
        "save_dataloaders": False,
        "dataset_save_path": None,
        "dataloaders_save_path": None,
        "worker": 0,
    }
    with _quiet_process_state():
        config = rb.Config(
            model=rb.models[MODEL_CLASSES[name]], dataset=ATOMIC_NAME, config_dict=config_dict
        )
    rb.init_seed(seed, True)
    with _recbole_warnings():
        dataset = rb.create_dataset(config)
    user_map = _id_map(dataset, USER_ID, ds.users["user_idx"], ds.users[USER_ID], "user")
    item_map = _id_map(dataset, ITEM_ID, ds.items["item_idx"], ds.items[ITEM_ID], "item")
    if dataset.user_num - 1 != ds.n_users or dataset.item_num - 1 != ds.n_items:
        raise SplitMismatch(
            f"RecBole kept {dataset.user_num - 1} users and {dataset.item_num - 1} items; "
            f"the dataset has {ds.n_users} and {ds.n_items} (a filter or id parsing differs)"
        )
    with _recbole_warnings():
        train, valid, test = rb.data_preparation(config, dataset)
    check_splits(ds, (train, valid, test), user_map, item_map, config["MAX_ITEM_LIST_LENGTH"])
    rb.init_seed(seed, True)
    model = rb.models[MODEL_CLASSES[name]](config, train._dataset).to(config["device"])
    with contextlib.chdir(work):  # its TensorBoard writer opens ./log_tensorboard
        trainer = rb.Trainer(config, model)
    return SimpleNamespace(
        dataset=ds,
        config=config,
        rb_dataset=dataset,
        train=train,
        valid=valid,
        test=test,
        model=model,
        trainer=trainer,
        embedder=RecBoleEmbedder(name, model, item_map),
        user_map=user_map,
        hparams=hparams,
    )


def _id_map(rb_dataset, field_name: str, idx, tokens, what: str) -> np.ndarray:
    """(n + 1,) int64: our index -> RecBole's internal id (0 -> 0), via its token vocabulary."""
    token_id = rb_dataset.field2token_id[field_name]
    idx = idx.to_numpy()
    out = np.zeros(int(idx.max()) + 1 if len(idx) else 1, dtype=np.int64)
    missing = [str(t) for t in tokens.to_list() if str(t) not in token_id]
    if missing:
        raise SplitMismatch(
            f"{len(missing)} {what} id(s) missing from RecBole's vocabulary, e.g. {missing[:3]} "
            "(RecBole reads ids with pandas: 'NA', 'null' or quoted ids do not survive)"
        )
    out[idx] = [token_id[str(t)] for t in tokens.to_list()]
    return out


def check_splits(
    ds: Dataset, loaders: tuple, user_map: np.ndarray, item_map: np.ndarray, max_len: int
) -> None:
    """Raise SplitMismatch unless RecBole's train/valid/test equal ours (loo): the same training
    targets per user in the same order, and the same valid/test cases (user, target, history)."""
    rb_user = np.zeros(user_map.max() + 1, dtype=np.int64)
    rb_user[user_map] = np.arange(len(user_map))
    rb_item = np.zeros(item_map.max() + 1, dtype=np.int64)
    rb_item[item_map] = np.arange(len(item_map))
    rb_ds = loaders[0]._dataset
    uid, iid = rb_ds.uid_field, rb_ds.iid_field
    seq_field, len_field = rb_ds.item_id_list_field, rb_ds.item_list_length_field
    lengths = np.bincount(ds.events["user_idx"].to_numpy(), minlength=ds.n_users + 1)[1:]
    hint = (
        f" ({int(((lengths > 0) & (lengths < 4)).sum())} users have 1-3 interactions: RecBole's "
        "leave-one-out keeps such users' sequences whole in training, ours holds their last "
        "one or two out)"
    )

    def rows(loader) -> tuple[np.ndarray, ...]:
        inter = loader._dataset.inter_feat
        users = rb_user[inter[uid].numpy()]
        order = np.argsort(users, kind="stable")  # rows are in time order within a user
        return users[order], rb_item[inter[iid].numpy()][order], order, inter

    users, targets, _, _ = rows(loaders[0])
    seqs = ds.train_sequences("loo")
    first = np.zeros(len(seqs.item_idx), dtype=bool)
    first[seqs.offsets[:-1]] = True
    want_users = np.repeat(seqs.user_idx, seqs.lengths - 1)
    if not (np.array_equal(users, want_users) and np.array_equal(targets, seqs.item_idx[~first])):
        raise SplitMismatch(
            f"RecBole's training split has {len(users)} next-item examples, ours "
            f"{len(want_users)}, or they differ in users, targets or order" + hint
        )
    for split, loader in (("valid", loaders[1]), ("test", loaders[2])):
        cases = ds.eval_cases("loo", split)
        users, targets, order, inter = rows(loader)
        history = rb_item[inter[seq_field].numpy()[order]]
        history_len = inter[len_field].numpy()[order]
        want, want_len = right_padded(cases.history, max_len, np.arange(ds.n_items + 1))
        if not np.array_equal(users, cases.user_idx):
            raise SplitMismatch(
                f"RecBole's {split} split has {len(users)} cases, ours {len(cases)}, or they "
                "belong to different users" + hint
            )
        bad = (targets != cases.target) | (history_len != want_len) | (history != want).any(1)
        if bad.any():
            raise SplitMismatch(
                f"{int(bad.sum())} of {len(cases)} {split} cases differ from ours in target or "
                f"history, e.g. user_idx {int(users[bad][0])}"
            )


def _valid_metrics(embedder: RecBoleEmbedder, cases) -> dict[str, float]:
    return metrics_from_ranks(rank_cases(embedder, cases, mask_history=True), ks=(10, 20))


def run_peer(
    name: str,
    dataset_dir: str | Path,
    out_dir: str | Path,
    max_minutes: float,
    seed: int = 0,
    max_epochs: int | None = None,
    *,
    patience: int | None = 10,
    threads: int = 0,
    overrides: dict[str, Any] | None = None,
    show_progress: bool = True,
) -> PeerRun:
    """Train RecBole's `name` ("sasrec" or "bert4rec") on a prepared dataset's loo split.

    Stops after the epoch at which the training time reaches `max_minutes` (0 or inf: no time
    cap), after `max_epochs`, or after `patience` epochs without a better valid NDCG@10 (our
    protocol, checked every epoch; RecBole's default stopping_step). The best epoch's weights
    are kept. `threads` fixes torch's CPU threads (0: leave torch's setting, i.e.
    OMP_NUM_THREADS or the core count - the rule guim's `train.threads = 0` follows, so a peer
    and a GUIM run trained in one `guim bench` use the same threads); `overrides` replaces
    RecBole settings (HPARAMS). Writes (over any earlier run) out_dir/{train_log.jsonl,
    model.safetensors (best weights), peer.json}; RecBole's own files (the atomic files, its
    TensorBoard log) live in a `private_workdir`, removed at the end. `load_peer` reads it back.
    """
    if max_epochs is not None and max_epochs < 1:
        raise UserError(f"max_epochs must be >= 1 or None, got {max_epochs}")
    dataset_dir, out_dir = Path(dataset_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if threads:
        torch.set_num_threads(threads)
    overrides = dict(overrides or {})
    with private_workdir(out_dir) as work:
        return _train_peer(
            name,
            dataset_dir,
            out_dir,
            work,
            max_minutes,
            seed,
            max_epochs,
            patience,
            overrides,
            show_progress,
        )


def _train_peer(
    name: str,
    dataset_dir: Path,
    out_dir: Path,
    work: Path,
    max_minutes: float,
    seed: int,
    max_epochs: int | None,
    patience: int | None,
    overrides: dict[str, Any],
    show_progress: bool,
) -> PeerRun:
    parts = _setup(name, dataset_dir, work, seed, overrides)
    model, trainer, embedder = parts.model, parts.trainer, parts.embedder
    valid = parts.dataset.eval_cases("loo", "valid")
    (out_dir / "train_log.jsonl").unlink(missing_ok=True)
    time_cap = max_minutes * 60 if max_minutes and math.isfinite(max_minutes) else math.inf
    epoch_cap = max_epochs if max_epochs is not None else parts.config["epochs"]
    curve: list[dict[str, float]] = []
    best = {"ndcg": -1.0, "epoch": 0, "seconds": 0.0, "state": None}
    train_seconds, cap = 0.0, f"epochs: {epoch_cap} run"
    for epoch in range(1, epoch_cap + 1):
        t0 = time.perf_counter()
        with _recbole_warnings():
            loss = trainer._train_epoch(parts.train, epoch - 1, show_progress=False)
        epoch_seconds = time.perf_counter() - t0
        train_seconds += epoch_seconds
        t1 = time.perf_counter()
        metrics = _valid_metrics(embedder, valid)
        record = {
            "epoch": epoch,
            "loss": float(loss) / len(parts.train),
            "train_seconds": round(train_seconds, 3),
            "epoch_seconds": round(epoch_seconds, 3),
            **{f"valid_{k}": round(v, 6) for k, v in metrics.items()},
            "eval_seconds": round(time.perf_counter() - t1, 3),
        }
        curve.append(record)
        append_log(out_dir, record)
        improved = metrics[MONITOR] > best["ndcg"]
        if improved:
            state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            best = {
                "ndcg": metrics[MONITOR],
                "epoch": epoch,
                "seconds": train_seconds,
                "state": state,
            }
        if show_progress:
            console.print(
                f"{name} epoch {epoch:3d} loss {record['loss']:.4f} valid {MONITOR} "
                f"{metrics[MONITOR]:.4f}{'*' if improved else ' '} ({epoch_seconds:.1f}s train, "
                f"{record['eval_seconds']:.1f}s eval)"
            )
        if train_seconds >= time_cap:
            cap = f"time cap: {max_minutes:g} min reached after epoch {epoch}"
            break
        if patience is not None and epoch - best["epoch"] >= patience:
            cap = f"early stop: no better valid {MONITOR} in {patience} epochs"
            break
    model.load_state_dict(best["state"])
    with _recbole_warnings():
        result = trainer.evaluate(parts.test, load_best_model=False)
    recbole_test = {k: float(v) for k, v in result.items()}
    run = PeerRun(
        name=name,
        embedder=embedder,
        train_seconds=round(train_seconds, 3),
        epochs=len(curve),
        best_epoch=best["epoch"],
        best_valid_ndcg10=best["ndcg"],
        seconds_to_best=round(best["seconds"], 3),
        curve=curve,
        cap=cap,
        recbole_test=recbole_test,
        out_dir=out_dir,
        hparams=parts.hparams,
        recbole=parts,
    )
    save_weights(out_dir / "model.safetensors", model.state_dict())
    summary = {k: getattr(run, k) for k in PEER_FIELDS}
    summary.update(
        dataset=str(dataset_dir.resolve()),
        dataset_hash=parts.dataset.hash,
        seed=seed,
        threads=torch.get_num_threads(),
        overrides=overrides,
        max_minutes=max_minutes,
        max_epochs=max_epochs,
        patience=patience,
        device=str(parts.config["device"]),
    )
    write_json(out_dir / "peer.json", summary)
    if show_progress:
        console.print(
            f"[green]{name}[/]: {cap}; best epoch {run.best_epoch} (valid {MONITOR} "
            f"{run.best_valid_ndcg10:.4f}); RecBole test ndcg@10 {recbole_test['ndcg@10']:.4f} "
            "(unmasked)"
        )
    return run


def load_peer(out_dir: str | Path) -> PeerRun:
    """Rebuild a finished `run_peer` run from out_dir (peer.json + model.safetensors); RecBole
    re-reads the atomic files and the splits are checked again."""
    out_dir = Path(out_dir)
    summary = read_json(out_dir / "peer.json")
    if threads := summary.get("threads"):
        torch.set_num_threads(threads)
    with private_workdir(out_dir) as work:
        parts = _setup(
            summary["name"], Path(summary["dataset"]), work, summary["seed"], summary["overrides"]
        )
    if parts.dataset.hash != summary["dataset_hash"]:
        raise UserError(f"{summary['dataset']} changed since the peer was trained on it")
    parts.model.load_state_dict(load_weights(out_dir / "model.safetensors"))
    fields = {k: summary[k] for k in PEER_FIELDS}
    return PeerRun(embedder=parts.embedder, out_dir=out_dir, recbole=parts, **fields)
