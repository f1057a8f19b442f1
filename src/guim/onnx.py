"""ONNX export of a run's user encoder, and an ONNX Runtime embedder that serves users from it.

The exported graph is the model's own `user_vectors` (no second code path) with its item tokens
replaced by a constant table: every item's token (id + attributes + title projection) is
computed once at export, so the graph only gathers rows. Inputs are histories left-padded to the
run's max_len (item_idx, event, timestamp: int64 (B, max_len)); the output is the user vectors
(B, K, D). Every shape is static except the batch dimension.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from guim.data.dataset import Sequences
from guim.embed import recommend
from guim.scoring import Scorer

ONNX_FILE = "user_encoder.onnx"  # in the run directory
INPUTS = ("item_idx", "event", "timestamp")


class TokenTable(nn.Module):
    """Item tokens read from a precomputed (n_items + 1, D) table: a gather, nothing else."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("table", table)
        self.n_items = table.shape[0] - 1
        self.dim = table.shape[1]

    def forward(self, item_idx: torch.Tensor) -> torch.Tensor:
        """(...) item indices -> (..., D) item tokens."""
        return self.table[item_idx]

    def all_items(self) -> torch.Tensor:
        """(n_items + 1, D); row 0 zero, as ItemTokens.all_items."""
        return torch.cat([torch.zeros_like(self.table[:1]), self.table[1:]])


class UserEncoder(nn.Module):
    """A frozen CPU copy of `model` whose `tokens` module (if it has one) is a TokenTable:
    (item_idx, event, timestamp) (B, T) -> user vectors (B, K, D) through `model.user_vectors`."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        model = copy.deepcopy(model).cpu().eval()
        tokens = getattr(model, "tokens", None)
        if isinstance(tokens, nn.Module) and not isinstance(tokens, TokenTable):
            with torch.inference_mode():
                # tokens(i) for every i, row 0 included, exactly as the encoder reads them
                table = tokens(torch.arange(tokens.n_items + 1)).clone()  # (N + 1, D)
            model.tokens = TokenTable(table)
        model.requires_grad_(False)
        self.model = model

    def forward(
        self, item_idx: torch.Tensor, event: torch.Tensor, timestamp: torch.Tensor
    ) -> torch.Tensor:
        return self.model.user_vectors(item_idx, event, timestamp)  # (B, K, D)


def random_histories(
    n: int, max_len: int, n_items: int, seed: int = 0, min_len: int = 1
) -> Sequences:
    """`n` random histories of 1..2*max_len events (item ids, event codes 1..2, increasing
    timestamps with gaps from seconds to weeks): inputs for tracing, parity tests and timing."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(min_len, 2 * max_len + 1, size=n)
    items = [rng.integers(1, n_items + 1, size=k).tolist() for k in lengths]
    events = [rng.integers(1, 3, size=k).tolist() for k in lengths]
    times = [
        (1_600_000_000 + np.cumsum(rng.integers(0, 2_000_000, size=k) * rng.random(k) ** 3))
        .astype(np.int64)
        .tolist()
        for k in lengths
    ]
    return Sequences.from_lists(items, events, times)


def export_user_encoder(
    model: nn.Module, max_len: int, path: str | Path, metadata: dict[str, Any] | None = None
) -> Path:
    """Write `model`'s user encoder to `path` (ONNX, torch.onnx's dynamo exporter): inputs
    item_idx, event, timestamp int64 (batch, max_len), output users float32 (batch, K, D).
    `metadata` (str values) is stored in the file next to max_len, K and D. Returns `path`."""
    path = Path(path)
    encoder = UserEncoder(model)
    n_items = int(encoder.model.tokens.table.shape[0] - 1)
    example = random_histories(3, max_len, max(n_items, 1)).padded(max_len)
    args = tuple(torch.from_numpy(example[name]) for name in INPUTS)
    with torch.inference_mode():
        users = encoder(*args)  # (3, K, D)
    batch = torch.export.Dim("batch", min=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        registry = logging.getLogger("torch.onnx._internal.exporter._registration")
        level = registry.level
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's notes on axis names and opsets
            registry.setLevel(logging.ERROR)  # "torchvision is not installed" notes
            program = torch.onnx.export(
                encoder,
                args,
                input_names=list(INPUTS),
                output_names=["users"],
                dynamic_shapes={name: {0: batch} for name in INPUTS},
                dynamo=True,
                external_data=False,
                verbose=False,
            )
        registry.setLevel(level)
        assert program is not None
        props = {
            "guim.max_len": str(max_len),
            "guim.n_interests": str(users.shape[1]),
            "guim.dim": str(users.shape[2]),
            **{f"guim.{k}": str(v) for k, v in (metadata or {}).items()},
        }
        program.model.metadata_props.update(props)  # onnx_ir model
        program.save(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def export_run(run: Any, path: str | Path | None = None) -> Path:
    """Export a loaded run's (`guim.embed.GuimRun`) user encoder; `path` defaults to
    run_dir/user_encoder.onnx. The run's config hash and a digest of its weights are recorded
    in the file."""
    if path is None:
        if run.run_dir is None:
            raise ValueError("export_run needs a path for a run without a run directory")
        path = Path(run.run_dir) / ONNX_FILE
    meta = {
        "config_hash": run.cfg.hash(),
        "weights_digest": weights_digest(run.model),
        "model_kind": getattr(run.cfg.model, "kind", "guim"),
    }
    return export_user_encoder(run.model, run.cfg.data.max_len, path, meta)


class OnnxUserEncoder:
    """Histories -> user vectors through ONNX Runtime (CPU), like `GuimRun.embed_users`.

    `max_len` defaults to the one recorded in the file; `threads` sets ONNX Runtime's intra-op
    threads (0 = its default: one per physical core).
    """

    def __init__(
        self,
        path: str | Path,
        max_len: int | None = None,
        threads: int = 0,
        batch_size: int = 512,
    ) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(
            str(self.path), options, providers=["CPUExecutionProvider"]
        )
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        recorded = int(self.metadata.get("guim.max_len", 0))
        if max_len is not None and recorded and max_len != recorded:
            raise ValueError(f"{self.path} was exported for max_len {recorded}, not {max_len}")
        self.max_len = max_len or recorded
        if not self.max_len:
            raise ValueError(f"{self.path} records no max_len; pass max_len")
        self.batch_size = batch_size

    def run_padded(
        self, item_idx: np.ndarray, event: np.ndarray, timestamp: np.ndarray
    ) -> np.ndarray:
        """Left-padded int64 arrays (B, max_len) -> (B, K, D) float32 user vectors."""
        feeds = {"item_idx": item_idx, "event": event, "timestamp": timestamp}
        return self.session.run(None, {k: np.ascontiguousarray(v) for k, v in feeds.items()})[0]

    def embed_users(self, histories: Sequences) -> np.ndarray:
        """(N, K, D) float32 user vectors: the last max_len events of each history."""
        parts = []
        for b0 in range(0, len(histories), self.batch_size):
            rows = np.arange(b0, min(b0 + self.batch_size, len(histories)))
            p = histories.take(rows).padded(self.max_len)  # full width: the graph is static
            parts.append(self.run_padded(p["item_idx"], p["event"], p["timestamp"]))
        if not parts:
            k, d = int(self.metadata["guim.n_interests"]), int(self.metadata["guim.dim"])
            return np.zeros((0, k, d), dtype=np.float32)
        return np.concatenate(parts)


class OnnxRun:
    """A loaded run (`guim.embed.GuimRun`) whose users are embedded by ONNX Runtime: the
    Embedder protocol plus `recommend`; items, the scorer and raw ids come from the run.

    The export is made (run_dir/user_encoder.onnx) when missing, or when it records other
    weights than the run's (a resumed or retrained run).
    """

    def __init__(self, run: Any, path: str | Path | None = None, threads: int = 0) -> None:
        self.run = run
        self.cfg = run.cfg
        self.run_dir = run.run_dir
        self.name = f"{run.name}-onnx"
        if path is None:
            if run.run_dir is None:
                raise ValueError("OnnxRun needs a path for a run without a run directory")
            path = Path(run.run_dir) / ONNX_FILE
        path = Path(path)
        if not path.exists() or _recorded(path, "weights_digest") != weights_digest(run.model):
            export_run(run, path)
        self.encoder = OnnxUserEncoder(path, run.cfg.data.max_len, threads)
        self._items: np.ndarray | None = None

    def embed_users(
        self,
        histories: Sequences | list[list[int]],
        events: list[list[int]] | None = None,
        timestamps: list[list[int]] | None = None,
    ) -> np.ndarray:
        """(N, K, D) float32; arguments as `GuimRun.embed_users`."""
        return self.encoder.embed_users(self.run.as_sequences(histories, events, timestamps))

    def embed_items(self) -> np.ndarray:
        """(n_items + 1, D) float32, from the PyTorch model (computed once)."""
        if self._items is None:
            self._items = self.run.embed_items()
        return self._items

    @property
    def scorer(self) -> Scorer:
        return self.run.scorer

    def item_index(self, item_ids: list[str]) -> np.ndarray:
        """Raw item ids -> item_idx (as `GuimRun.item_index`)."""
        return self.run.item_index(item_ids)

    def item_ids(self, item_idx: np.ndarray) -> np.ndarray:
        """item_idx -> raw item ids (as `GuimRun.item_ids`)."""
        return self.run.item_ids(item_idx)

    def recommend(
        self,
        histories: Sequences | list[list[int]],
        k: int = 10,
        mask_history: bool = True,
        events: list[list[int]] | None = None,
        timestamps: list[list[int]] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k item_idx and scores for each history (see `guim.embed.recommend`)."""
        histories = self.run.as_sequences(histories, events, timestamps)
        return recommend(self, histories, k, mask_history=mask_history)


def weights_digest(model: nn.Module) -> str:
    """Short digest of a model's state (parameters and buffers, names and bytes)."""
    h = hashlib.blake2b(digest_size=8)
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _recorded(path: Path, key: str) -> str | None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}.get(f"guim.{key}")


def load_onnx_run(run_dir: str | Path, threads: int = 0) -> OnnxRun:
    """`guim.load_run(run_dir)` with its users embedded by ONNX Runtime (exporting when needed)."""
    from guim.embed import load_run

    return OnnxRun(load_run(run_dir), threads=threads)
