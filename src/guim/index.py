"""FAISS indexes of item vectors (inner product): exact `IndexFlatIP` for small catalogues, HNSW
or IVF above a size threshold, plus the exact top-k they are measured against.

Label `j` of an index is item row `j + 1` (row 0 of an item matrix is padding and never indexed),
so labels map back to `item_idx` by adding one. Speed is always reported with recall (faiss's
benchmarking practice): `measure` gives recall@k against exact search and per-query latency.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np

IndexKind = Literal["auto", "flat", "hnsw", "ivf"]


@dataclass(frozen=True)
class IndexConfig:
    """How to index item vectors. `auto` is exact below `flat_max` items and HNSW above."""

    kind: IndexKind = "auto"
    flat_max: int = 50_000
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 256
    nlist: int = 0  # IVF lists; 0 = 4 * sqrt(n)
    nprobe: int = 32
    threads: int = 0  # faiss OpenMP threads (0 = leave faiss's default)

    def resolved_kind(self, n_items: int) -> str:
        if self.kind == "auto":
            return "flat" if n_items <= self.flat_max else "hnsw"
        return self.kind

    def to_dict(self) -> dict:
        return asdict(self)


def _faiss():
    try:
        import faiss
    except ImportError as e:
        raise ImportError("export and serving need FAISS: pip install 'guim[serve]'") from e
    return faiss


def build_index(vectors: np.ndarray, config: IndexConfig | None = None):
    """A FAISS inner-product index of `vectors` (N, D) (item rows 1..n, padding excluded)."""
    faiss = _faiss()
    config = config or IndexConfig()
    if config.threads:
        faiss.omp_set_num_threads(config.threads)
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = x.shape
    kind = config.resolved_kind(n)
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = config.ef_construction
    elif kind == "ivf":
        nlist = config.nlist or max(1, int(4 * np.sqrt(n)))
        nlist = min(nlist, max(1, n // 39))  # faiss wants ~39 training points per list
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        sample = x[rng.choice(n, size=min(n, 256 * nlist), replace=False)]
        index.train(sample)
    else:
        raise ValueError(f"unknown index kind {config.kind!r}; expected auto, flat, hnsw or ivf")
    index.add(x)
    set_search_params(index, config)
    return index


def set_search_params(index, config: IndexConfig) -> None:
    """Apply the query-time knobs (efSearch for HNSW, nprobe for IVF)."""
    faiss = _faiss()
    if isinstance(index, faiss.IndexHNSW):
        index.hnsw.efSearch = config.ef_search
    elif isinstance(index, faiss.IndexIVF):
        index.nprobe = config.nprobe


def index_kind(index) -> str:
    faiss = _faiss()
    if isinstance(index, faiss.IndexHNSW):
        return "hnsw"
    if isinstance(index, faiss.IndexIVF):
        return "ivf"
    return "flat"


def save_index(index, path: str | Path) -> Path:
    _faiss().write_index(index, str(path))
    return Path(path)


def load_index(path: str | Path, config: IndexConfig | None = None):
    index = _faiss().read_index(str(path))
    if config is not None:
        set_search_params(index, config)
    return index


def search(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k labels (N, k) int64 (-1 where fewer were found) and scores (N, k) float32."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    k = max(1, min(int(k), index.ntotal))
    scores, labels = index.search(q, k)
    return labels, scores


def exact_search(
    vectors: np.ndarray, queries: np.ndarray, k: int, chunk: int = 65_536
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by inner product (the reference for `measure`): labels (N, k), scores (N, k);
    ties go to the lower label."""
    import torch

    q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
    v = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))
    k = min(k, v.shape[0])
    best_s = torch.full((q.shape[0], 0), float("-inf"))
    best_i = torch.zeros((q.shape[0], 0), dtype=torch.int64)
    for c0 in range(0, v.shape[0], chunk):
        s = q @ v[c0 : c0 + chunk].T  # (N, C)
        cand_s = torch.cat([best_s, s], dim=1)
        cand_i = torch.cat([best_i, torch.arange(c0, c0 + s.shape[1]).expand(q.shape[0], -1)], 1)
        order = torch.sort(cand_s, dim=1, descending=True, stable=True).indices[:, :k]
        best_s, best_i = cand_s.gather(1, order), cand_i.gather(1, order)
    return best_i.numpy(), best_s.numpy()


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean over rows of |found ∩ truth| / |truth| (labels, -1 ignored)."""
    if len(truth) == 0:
        return 1.0
    hits = [
        len(set(f[f >= 0].tolist()) & set(t[t >= 0].tolist())) / max(1, int((t >= 0).sum()))
        for f, t in zip(found, truth, strict=True)
    ]
    return float(np.mean(hits))


def measure(
    index,
    vectors: np.ndarray,
    queries: np.ndarray,
    k: int = 10,
    n_latency: int = 200,
    threads: int = 1,
) -> dict[str, float]:
    """Recall@k of `index` against exact search over `vectors` for `queries`, and the latency of
    one query at a time on `threads` FAISS threads (as a server answers one request: mean and
    p99, milliseconds, on this machine)."""
    faiss = _faiss()
    found, _ = search(index, queries, k)
    truth, _ = exact_search(vectors, queries, k)
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads)
    lat = []
    try:
        for q in queries[:n_latency]:
            t0 = time.perf_counter()
            index.search(np.ascontiguousarray(q[None], dtype=np.float32), k)
            lat.append((time.perf_counter() - t0) * 1000)
    finally:
        faiss.omp_set_num_threads(before)
    return {
        f"recall@{k}": recall_at_k(found, truth),
        "query_ms": float(np.mean(lat)) if lat else 0.0,
        "query_p99_ms": float(np.percentile(lat, 99)) if lat else 0.0,
        "n_queries": len(queries),
        "threads": threads,
    }
