"""Run directories and checkpoints: weights in safetensors, everything else in JSON, never pickle.

run dir:   config.json  model.safetensors  dataset.json  vocab/  metrics.json  train_log.jsonl
           checkpoints/latest.json -> checkpoints/epoch-NNNN/{model,best,optim}.safetensors,
           state.json

A checkpoint is written into its own directory and only then published by atomically replacing
checkpoints/latest.json, so a kill at any moment leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from guim.errors import CheckpointError
from guim.io import atomic_file, read_json, write_json


def save_weights(path: str | Path, tensors: dict[str, torch.Tensor]) -> None:
    """Atomic safetensors write of a flat {name: tensor} dict."""
    flat = {k: v.detach().contiguous().clone() for k, v in tensors.items()}
    with atomic_file(path) as tmp:
        save_file(flat, str(tmp))


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A safetensors file's {name: tensor}; CheckpointError naming the file when it is missing
    or cannot be read (truncated, corrupt, not safetensors). Never unpickles anything."""
    path = Path(path)
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "not found"
        raise CheckpointError(f"{path}: weights file {what}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{path}: not a readable safetensors file ({reason}); it may be truncated or "
            "corrupt: restore it or train again"
        ) from None


# ---- optimiser state: tensors to safetensors, the rest to JSON ----------------------------


def optimizer_to_flat(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    state = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, entries in state["state"].items():
        for name, value in entries.items():
            if torch.is_tensor(value):
                t = value.coalesce().to_dense() if value.is_sparse else value
                tensors[f"{pid}.{name}"] = t
            else:
                scalars.setdefault(str(pid), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_from_flat(opt: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    for pid, entries in meta["scalars"].items():
        state.setdefault(int(pid), {}).update(entries)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


# ---- checkpoints -------------------------------------------------------------------------


def save_checkpoint(
    run_dir: Path,
    epoch: int,
    model: torch.nn.Module,
    best: dict[str, torch.Tensor],
    optimizers: dict[str, torch.optim.Optimizer],
    state: dict[str, Any],
    extra: dict[str, dict[str, torch.Tensor]] | None = None,
) -> Path:
    """Write checkpoints/epoch-NNNN and publish it as the latest; older ones are removed.

    `extra` holds further named weight sets (e.g. the moving average) saved beside the model.
    The new checkpoint is complete before checkpoints/latest.json names it, and the one it
    names is never touched before that: a failure (a full disk) or a kill at any moment leaves
    the previous checkpoint loadable, and a failed write removes what it wrote."""
    ckpt_root = run_dir / "checkpoints"
    ckpt_root.mkdir(parents=True, exist_ok=True)
    current = _latest_name(ckpt_root)
    ckpt = ckpt_root / f"epoch-{epoch:04d}"
    if ckpt.name == current:  # the same epoch again: keep the published one until replaced
        ckpt = ckpt_root / f"epoch-{epoch:04d}-{os.getpid()}-{time.time_ns()}"
    elif ckpt.exists():  # an unpublished leftover
        shutil.rmtree(ckpt)
    ckpt.mkdir()
    try:
        save_weights(ckpt / "model.safetensors", model.state_dict())
        save_weights(ckpt / "best.safetensors", best)
        for name, tensors in (extra or {}).items():
            save_weights(ckpt / f"extra-{name}.safetensors", tensors)
        optim_meta = {}
        for name, opt in optimizers.items():
            tensors, meta = optimizer_to_flat(opt)
            save_weights(ckpt / f"optim-{name}.safetensors", tensors)
            optim_meta[name] = meta
        write_json(
            ckpt / "state.json",
            {**state, "epoch": epoch, "optimizers": optim_meta, "extra": sorted(extra or {})},
        )
        write_json(ckpt_root / "latest.json", {"checkpoint": ckpt.name, "epoch": epoch})
    except BaseException:
        shutil.rmtree(ckpt, ignore_errors=True)
        raise
    for old in ckpt_root.glob("epoch-*"):
        if old.name != ckpt.name:
            shutil.rmtree(old, ignore_errors=True)
    return ckpt


def _latest_name(ckpt_root: Path) -> str | None:
    """The checkpoint directory latest.json names, or None (none yet, or unreadable)."""
    try:
        return str(read_json(ckpt_root / "latest.json")["checkpoint"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def load_checkpoint(
    run_dir: Path, model: torch.nn.Module, optimizers: dict[str, torch.optim.Optimizer]
) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, dict[str, torch.Tensor]]] | None:
    """Restore the latest checkpoint into model/optimizers; returns (state, best weights,
    extra weight sets)."""
    latest = run_dir / "checkpoints" / "latest.json"
    if not latest.exists():
        return None
    ckpt = run_dir / "checkpoints" / str(_read_checkpoint_json(latest)["checkpoint"])
    state = _read_checkpoint_json(ckpt / "state.json")
    model.load_state_dict(load_weights(ckpt / "model.safetensors"))
    for name, opt in optimizers.items():
        optimizer_from_flat(
            opt, load_weights(ckpt / f"optim-{name}.safetensors"), state["optimizers"][name]
        )
    extra = {n: load_weights(ckpt / f"extra-{n}.safetensors") for n in state.get("extra", [])}
    return state, load_weights(ckpt / "best.safetensors"), extra


def _read_checkpoint_json(path: Path) -> dict[str, Any]:
    try:
        doc = read_json(path)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: not found (the checkpoint is incomplete)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e}); the checkpoint is corrupt") from None
    if not isinstance(doc, dict) or ("checkpoint" not in doc and "epoch" not in doc):
        raise CheckpointError(f"{path}: not a guim checkpoint file")
    return doc


def append_log(run_dir: Path, record: dict[str, Any]) -> None:
    with open(run_dir / "train_log.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def read_log(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "train_log.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
