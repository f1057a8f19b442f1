"""guim: General User & Item eMbeddings.

Learn one embedding per user and item of a shop from its behaviour logs, benchmark it on a
GLUE-like suite of downstream tasks, compress it and serve it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Dataset", "GuimRun", "Sequences", "__version__", "load_dataset", "load_run"]

if TYPE_CHECKING:
    from guim.data.dataset import Dataset, Sequences, load_dataset
    from guim.embed import GuimRun, load_run

_LAZY = {
    "Dataset": "guim.data.dataset",
    "Sequences": "guim.data.dataset",
    "load_dataset": "guim.data.dataset",
    "GuimRun": "guim.embed",
    "load_run": "guim.embed",
}


def __getattr__(name: str) -> Any:
    """Import on first use, so `import guim` (and the CLI) does not load torch up front."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'guim' has no attribute {name!r}")
