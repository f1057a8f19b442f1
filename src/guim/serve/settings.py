"""Server settings: one pydantic-settings class, read from arguments or GUIM_SERVE_* variables
(so `uvicorn --workers N` processes, which import the app factory, see the same settings)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServeSettings(BaseSettings):
    """What `guim serve` runs: which model, which store, the caps and the swap gate."""

    model_config = SettingsConfigDict(env_prefix="GUIM_SERVE_", frozen=True, extra="forbid")

    source: Path = Field(description="Export directory (guim export) or run directory.")
    store: str = Field(
        "", description="sqlite:///path or redis://host:port/db; default: SOURCE/events.db"
    )
    admin_token: str | None = Field(None, description="Bearer token of the /admin routes.")
    max_body_bytes: int = Field(1 << 20, ge=1)
    max_batch: int = Field(1000, ge=1, description="Events per POST /events.")
    max_history: int = Field(1000, ge=1, description="Events per explicit history / read back.")
    max_k: int = Field(1000, ge=1)
    max_attributes: int = Field(64, ge=1)
    gate_tolerance: float = Field(0.0, ge=0.0, description="Allowed drop of the gate NDCG@10.")
    gate_cases: int = Field(1000, ge=1, description="Most recent store users in the gate set.")
    gate_min_cases: int = Field(50, ge=1, description="Below this, the export's valid split.")
    ef_search: int | None = Field(None, ge=1)
    nprobe: int | None = Field(None, ge=1)
    torch_threads: int = Field(1, ge=0, description="0 = torch's default.")
    backend: Literal["torch", "onnx"] = Field(
        "torch", description="What embeds histories: PyTorch, or the ONNX user encoder."
    )
    batch_users: int = Field(
        64, ge=0, description="Concurrent histories embedded in one forward pass (0 = off)."
    )
    model_pointer: Path | None = Field(
        None,
        description="File naming the live model, written on a swap and watched by every worker "
        "(default with --workers N > 1: one per server in the temp directory; none in one "
        "process). Set it to keep a swap across restarts.",
    )
    model_poll_seconds: float = Field(
        0.5, gt=0, description="How often each worker checks the model pointer."
    )

    def store_url(self) -> str:
        if self.store:
            return self.store
        base = self.source if self.source.is_dir() else self.source.parent
        return f"sqlite:///{(base / 'events.db').resolve()}"
