"""Intents for intent contrastive learning (ICLRec, Chen et al. 2022; `loss.intent_weight`).

The E-step of ICLRec's EM view: at the start of every epoch the users' training sequences are
encoded by the current model and their user vectors clustered into intents by spherical k-means
(FAISS). The M-step is the training epoch, where `guim.losses.intent_info_nce` pulls each
window's user vector to its nearest intent against all the others.
"""

from __future__ import annotations

import numpy as np
import torch

# FAISS's own floor: it warns below 39 training points per centroid
MIN_POINTS_PER_INTENT = 39


def n_intents_for(n_points: int, n_intents: int) -> int:
    """The intents actually fitted: `n_intents`, at most one per MIN_POINTS_PER_INTENT points
    (at least one)."""
    return max(1, min(n_intents, n_points // MIN_POINTS_PER_INTENT))


def sequence_vectors(user_vecs: np.ndarray) -> np.ndarray:
    """(N, K, D) user vectors -> (N, D): the mean of the K interests, L2-normalised (what
    `intent_info_nce` contrasts)."""
    z = np.asarray(user_vecs, dtype=np.float32).mean(axis=1)
    norms = np.linalg.norm(z, axis=1, keepdims=True)
    return np.ascontiguousarray(z / np.maximum(norms, 1e-12), dtype=np.float32)


def fit_intents(vectors: np.ndarray, n_intents: int, seed: int, niter: int = 20) -> np.ndarray:
    """(I, D) unit-norm centroids of spherical k-means over the rows of `vectors` (N, D), with
    I = n_intents_for(N, n_intents); deterministic for a seed."""
    import faiss

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"intents need (N, D) vectors with N >= 1, got shape {x.shape}")
    k = n_intents_for(len(x), n_intents)
    if k == 1:  # one intent: the normalised mean direction
        c = x.mean(axis=0, keepdims=True)
        return (c / max(float(np.linalg.norm(c)), 1e-12)).astype(np.float32)
    km = faiss.Kmeans(
        x.shape[1],
        k,
        niter=niter,
        seed=int(seed),
        spherical=True,
        verbose=False,
        min_points_per_centroid=1,
        max_points_per_centroid=1_000_000,  # cluster every point, no subsample
    )
    km.train(x)
    c = np.asarray(km.centroids, dtype=np.float32).reshape(k, -1)
    return c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)


def intent_centroids(model: torch.nn.Module, cfg, seqs, seed: int) -> torch.Tensor:
    """Encode the training sequences `seqs` with `model` (eval mode: no dropout, no random
    numbers drawn; the model's mode is restored) and fit the intents: (I, D) on the model's
    device."""
    from guim.embed import GuimRun

    users = GuimRun(model, cfg).embed_users(seqs)  # (N, K, D)
    centroids = fit_intents(sequence_vectors(users), cfg.loss.n_intents, seed)
    device = next(model.parameters()).device
    return torch.from_numpy(centroids).to(device)
