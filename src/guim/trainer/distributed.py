"""Devices and torch.distributed: `train.device`, the process group torchrun starts (gloo on the
CPU, NCCL on CUDA), DistributedDataParallel, and each process's share of a batch."""

from __future__ import annotations

import os

import torch

from guim.config import Config
from guim.data.batches import Batch
from guim.errors import UserError


def resolve_device(spec: str, world: int = 1) -> torch.device:
    """train.device -> a torch device; "auto" is the first GPU when one is present (under
    torch.distributed with several processes on CUDA: the process's LOCAL_RANK GPU)."""
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cuda" and world > 1:
        spec = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"train.device={spec!r}, but torch sees no CUDA device here")
    return device


def init_distributed(cfg: Config) -> tuple[int, int]:
    """(rank, world size): (0, 1) alone; under torchrun, the process group is joined (gloo on
    the CPU, NCCL on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        cuda = resolve_device(cfg.train.device).type == "cuda"
        dist.init_process_group("nccl" if cuda else "gloo")
    return dist.get_rank(), dist.get_world_size()


def wrap(model: torch.nn.Module, device: torch.device, world: int) -> torch.nn.Module | None:
    """The model in DistributedDataParallel (None alone); DDP broadcasts rank 0's weights to
    every process on the way, so call it again whenever the model is built or reshaped."""
    if world == 1:
        return None
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    # some parameters take no part in some objectives (the [MASK] vector under next-item)
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)


def shard(batch: Batch, rank: int, world: int) -> tuple[Batch, float]:
    """This process's rows of a batch (contiguous, nearly equal shares) and the factor that
    makes the all-reduced mean of the processes' gradients equal the whole batch's: every
    process's loss is a mean over its own predicted positions, so it is weighted by
    world * its positions / the batch's. A batch with fewer rows than processes is trained
    whole by each (factor 1)."""
    rows = batch.items.shape[0]
    if world == 1 or rows < world:
        return batch, 1.0
    mine = torch.tensor_split(torch.arange(rows), world)[rank]
    part = Batch(
        *(None if v is None else v[mine] for v in vars(batch).values()),  # type: ignore[arg-type]
    )
    n_all, n_mine = int((batch.targets > 0).sum()), int((part.targets > 0).sum())
    return part, world * n_mine / n_all
