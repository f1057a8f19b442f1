"""Peers: other libraries' models run side by side on exactly our datasets and splits, each wrapped
as an `Embedder` so every benchmark task scores them like our own runs (RecBole's SASRec and
BERT4Rec in `guim.peers.recbole`; needs the optional extra `pip install -e '.[peers]'`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from guim.peers.recbole import PeerRun, RecBoleEmbedder, load_peer, run_peer

__all__ = ["PEERS", "PeerRun", "RecBoleEmbedder", "load_peer", "run_peer"]

PEERS: tuple[str, ...] = ("sasrec", "bert4rec")


def __getattr__(name: str) -> Any:
    # lazy, so that `import guim.peers` works without RecBole (or torch) being imported
    if name in ("PeerRun", "RecBoleEmbedder", "load_peer", "run_peer"):
        from guim.peers import recbole

        return getattr(recbole, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
