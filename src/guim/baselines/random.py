"""Random baseline: seeded Gaussian item vectors and per-history Gaussian user vectors.

Scores carry no information, so every metric sits at chance level (HR@K ~ K / n_candidates);
a model that does not beat it has learned nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from guim.data.dataset import Dataset, Scheme, Sequences


@dataclass(frozen=True)
class RandomConfig:
    """Width and seed of the random vectors."""

    dim: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        if self.dim < 1:
            raise ValueError(f"dim must be >= 1, got {self.dim}")


class RandomEmbedder:
    """Items: N(0, 1) vectors drawn from `seed`. Users: N(0, 1) vectors drawn from a seed that
    hashes `seed` and the history's item indices, so the same history always gets the same vector
    (whatever batch it comes in) and different histories get independent ones."""

    name = "random"

    def __init__(self, config: RandomConfig, n_items: int) -> None:
        self.config = config
        self.n_items = n_items
        rng = np.random.default_rng(config.seed)
        self.item_vectors = rng.standard_normal((n_items + 1, config.dim)).astype(np.float32)
        self.item_vectors[0] = 0.0

    def embed_users(self, histories: Sequences) -> np.ndarray:
        """(N, 1, dim) float32."""
        out = np.empty((len(histories), 1, self.config.dim), dtype=np.float32)
        salt = self.config.seed.to_bytes(8, "little", signed=True)
        for row in range(len(histories)):
            items = np.ascontiguousarray(histories.items_of(row), dtype=np.int64)
            digest = hashlib.blake2b(salt + items.tobytes(), digest_size=8).digest()
            rng = np.random.default_rng(int.from_bytes(digest, "little"))
            out[row, 0] = rng.standard_normal(self.config.dim)
        return out

    def embed_items(self) -> np.ndarray:
        """(n_items + 1, dim) float32; row 0 (padding) is zero."""
        return self.item_vectors

    # ---- persistence (see guim.baselines.save / load) ---------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        return {"item_vectors": self.item_vectors}

    @classmethod
    def from_arrays(cls, config: RandomConfig, arrays: dict[str, np.ndarray]) -> RandomEmbedder:
        out = cls(config, n_items=len(arrays["item_vectors"]) - 1)
        out.item_vectors = arrays["item_vectors"]
        return out


def fit(
    dataset: Dataset, scheme: Scheme = "loo", config: RandomConfig | None = None
) -> RandomEmbedder:
    """A random embedder for `dataset`'s catalogue (the data itself is not looked at)."""
    return RandomEmbedder(config or RandomConfig(), dataset.n_items)
