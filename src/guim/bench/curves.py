"""Learning curves of finished runs, read from their train_log.jsonl: the time a run needed to
reach a validation score (frozen runs only; nothing here trains)."""

from __future__ import annotations

import math
from pathlib import Path

from guim.checkpoint import read_log

# the key of a run's validation NDCG@10 in its train_log.jsonl records and in bench curves
CURVE_KEY = "valid_NDCG@10"


def seconds_to_reach(run_dir: str | Path, target: float, metric: str = "NDCG@10") -> float | None:
    """Cumulative training seconds until validation `metric` first reached `target` (None if
    it never did)."""
    seconds = 0.0
    for record in read_log(Path(run_dir)):
        seconds += record["train_seconds"]
        if record.get(f"valid_{metric}", -math.inf) >= target:
            return seconds
    return None
