"""Collaborative Metric Learning baseline (Hsieh et al., "Collaborative Metric Learning", WWW 2017).

Users and items are points of one unit ball; the loss is the hinge [m + d(u, i)^2 - d(u, j)^2]_+
against the closest of U sampled negatives j, weighted by the WARP-style rank weight
log(1 + floor(N * violators / U)); rows are clipped back to the unit ball after every step.
A user is a function of the history (see `CMLEmbedder`); scores are -d^2 as augmented dot products.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from sklearn.linear_model import Ridge

from guim.data.dataset import Dataset, Scheme, Sequences

# item_source codes (as in item2vec)
UNKNOWN, TRAINED, FROM_ATTRIBUTES = 0, 1, 2
# squared distance of an item without a vector: beyond 4, the largest squared distance of two
# points of the unit ball, so such items rank below every item with a vector
FAR = 5.0
# stands in for the distance of a sampled negative that is the positive itself (never chosen)
_EXCLUDED = 1e4
# attribute columns up to which the cold-item ridge map is solved in closed form
MAX_DENSE_RIDGE = 4096


@dataclass(frozen=True)
class CMLConfig:
    """Metric-learning, history-pooling and optimisation settings.

    Defaults: the best of a small search on the loo VALID split of Beauty (full ranking, history
    masked; valid NDCG@10 / HR@10 per trial, one change at a time from margin 0.5, lr 3e-3,
    dim 64, 20 epochs, last_n 1, untied context): start .0411/.0685; margin 1.0 .0507, 1.5
    .0514/.0821 (chosen), 2.0 .0508; then epochs 10 .0501, dim 32 .0474, dim 128 .0502,
    lr 1e-3 .0516 (= 3e-3 within noise, ~.0013 sd), last_n 2 .0420 (3: .0281 at margin 0.5),
    tie_context .0396 (at margin 0.5), covariance_weight 1 .0511, lr 1e-2 .0311 (at margin
    0.5). For comparison, tuned item2vec: valid .0418 (benchmarks/baselines.py).

    dim: width of the metric space.
    margin: m of the hinge; squared distances in the unit ball are at most 4.
    n_negatives: U, negatives sampled uniformly from the items with training data, per pair.
    last_n: a user is the mean of the context vectors of the last `last_n` items of the history.
    tie_context: use the item vectors themselves as context vectors (one table instead of two).
    rank_weight: weight each pair by log(1 + floor(N * violators / U)) (N = items that can be
        sampled); otherwise every pair weighs 1.
    covariance_weight: weight of the covariance loss on the batch's user and positive vectors.
    epochs, batch_size, lr, optimizer: the training loop (Adam or Adagrad on whole tables).
    ridge_alpha: penalty of the attribute -> vector ridge map for items without training data.
    threads: torch threads during `fit` (fixed, so results do not depend on the machine).
    """

    dim: int = 64
    margin: float = 1.5
    n_negatives: int = 20
    last_n: int = 1
    tie_context: bool = False
    rank_weight: bool = True
    covariance_weight: float = 0.0
    epochs: int = 20
    batch_size: int = 512
    lr: float = 3e-3
    optimizer: Literal["adam", "adagrad"] = "adam"
    ridge_alpha: float = 1.0
    threads: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        for key in ("dim", "n_negatives", "last_n", "epochs", "batch_size", "threads"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        for key in ("margin", "lr"):
            if getattr(self, key) <= 0:
                raise ValueError(f"{key} must be > 0, got {getattr(self, key)}")
        if self.covariance_weight < 0:
            raise ValueError(f"covariance_weight must be >= 0, got {self.covariance_weight}")
        if self.ridge_alpha <= 0:
            raise ValueError(f"ridge_alpha must be > 0, got {self.ridge_alpha}")
        if self.optimizer not in ("adam", "adagrad"):
            raise ValueError(f"optimizer must be 'adam' or 'adagrad', got {self.optimizer!r}")


class CMLEmbedder:
    """Fitted CML item and context vectors.

    Users. The benchmark embeds users from histories, and a test history ends with items that
    came after training (the valid item of leave-one-out; every item of a new user), so CML's
    free user-id vector cannot serve it: it does not exist for new users and would miss the
    most recent, most predictive items. Here a user IS a function of the history: the mean of
    learned "context" vectors of its last `last_n` items. Training uses exactly that function,
    with every prefix of a training sequence as the user and the next item as the positive, so
    one path embeds training, test and new users, and a mean of points of the unit ball stays
    in the ball (CML's norm constraint holds for users for free). A user-id vector plus an
    encoder pulled towards it would add a second objective whose target is itself only a
    summary of the same history. Context vectors are a second table (unless `tie_context`), so
    "what comes after i" need not sit where i sits. With the tuned `last_n` = 1 the user is the
    context vector of the last item: metric learning of the next item, which beat longer
    pooling on Beauty, as it did for item2vec.

    Scores. -|u - v|^2 as a dot product of augmented vectors: user u -> [2u, -|u|^2, 1], item
    v -> [v, 1, -|v|^2], so <user, item> = 2<u, v> - |u|^2 - |v|^2 = -|u - v|^2 exactly, and the
    dot-product ranking of `guim.embed` / `guim.metrics` is the distance ranking.

    Items without training data get vectors from their attribute ids (ridge regression from
    per-field attribute indicators onto the vectors of warm items, as item2vec does); items with
    neither are put at squared distance |u|^2 + FAR from every user u, below every known item.
    """

    name = "cml"

    def __init__(
        self,
        config: CMLConfig,
        item_vectors: np.ndarray,
        context_vectors: np.ndarray,
        item_source: np.ndarray,
    ) -> None:
        self.config = config
        self.item_vectors = np.asarray(item_vectors, dtype=np.float32)  # (n_items + 1, D)
        self.context_vectors = np.asarray(context_vectors, dtype=np.float32)  # (n_items + 1, D)
        # (n_items + 1,) int8: UNKNOWN, TRAINED, FROM_ATTRIBUTES
        self.item_source = np.asarray(item_source, dtype=np.int8)

    def user_vectors(self, histories: Sequences) -> np.ndarray:
        """(N, D) float32 points of the metric space: mean context vector of the last `last_n`
        items that have a vector (the origin for an empty history)."""
        last = histories.padded(self.config.last_n)["item_idx"]  # (N, last_n), 0 = padding
        has_vec = (self.item_source[last] != UNKNOWN).astype(np.float32)  # (N, last_n)
        total = (self.context_vectors[last] * has_vec[:, :, None]).sum(axis=1)  # (N, D)
        return (total / np.maximum(has_vec.sum(axis=1, keepdims=True), 1.0)).astype(np.float32)

    def embed_users(self, histories: Sequences) -> np.ndarray:
        """(N, 1, D + 2) float32 augmented user vectors [2u, -|u|^2, 1]."""
        return augment_users(self.user_vectors(histories))[:, None, :]

    def embed_items(self) -> np.ndarray:
        """(n_items + 1, D + 2) float32 augmented item vectors [v, 1, -|v|^2]; items without a
        vector are [0, 1, -FAR]; row 0 (padding) is zero."""
        out = augment_items(self.item_vectors, known=self.item_source != UNKNOWN)
        out[0] = 0.0
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "item_vectors": self.item_vectors,
            "context_vectors": self.context_vectors,
            "item_source": self.item_source,
        }

    @classmethod
    def from_arrays(cls, config: CMLConfig, arrays: dict[str, np.ndarray]) -> CMLEmbedder:
        return cls(config, arrays["item_vectors"], arrays["context_vectors"], arrays["item_source"])


def augment_users(users: np.ndarray) -> np.ndarray:
    """(N, D) points -> (N, D + 2) float32 [2u, -|u|^2, 1]."""
    users = np.asarray(users, dtype=np.float64)
    sq = (users**2).sum(axis=1, keepdims=True)
    return np.hstack([2.0 * users, -sq, np.ones_like(sq)]).astype(np.float32)


def augment_items(items: np.ndarray, known: np.ndarray | None = None) -> np.ndarray:
    """(M, D) points -> (M, D + 2) float32 [v, 1, -|v|^2], so that
    <augment_users(u), augment_items(v)> = -|u - v|^2; rows where `known` is False become
    [0, 1, -FAR] (squared distance |u|^2 + FAR from every user u)."""
    items = np.asarray(items, dtype=np.float64)
    sq = (items**2).sum(axis=1, keepdims=True)
    out = np.hstack([items, np.ones_like(sq), -sq])
    if known is not None:
        out[~np.asarray(known, dtype=bool)] = [0.0] * items.shape[1] + [1.0, -FAR]
    return out.astype(np.float32)


# ---- losses (pure functions of tensors) ------------------------------------------------------


def cml_loss(
    users: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor,
    margin: float,
    n_items: int | None,
    excluded: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean rank-weighted hinge loss of CML.

    Args:
        users (B, D), positives (B, D), negatives (B, U, D): points of the metric space.
        n_items: N of the rank weight log(1 + floor(N * violators / U)); None = no weighting.
        excluded: (B, U) bool, sampled negatives to ignore (the positive itself).
    """
    d_pos = ((users - positives) ** 2).sum(dim=-1)  # (B,)
    d_neg = ((users[:, None, :] - negatives) ** 2).sum(dim=-1)  # (B, U)
    if excluded is not None:
        d_neg = d_neg.masked_fill(excluded, _EXCLUDED)
    hinge = F.relu(margin + d_pos - d_neg.min(dim=1).values)  # (B,) against the closest negative
    if n_items is None:
        return hinge.mean()
    with torch.no_grad():
        violators = (margin + d_pos[:, None] - d_neg > 0).sum(dim=1)  # (B,)
        weight = torch.log1p(torch.floor(n_items * violators / negatives.shape[1]))
    return (weight * hinge).mean()


def covariance_loss(points: torch.Tensor) -> torch.Tensor:
    """Squared off-diagonal entries of the (D, D) covariance of `points` (B, D), summed and
    divided by D: pushes the dimensions apart so the space is used (CML's L_c)."""
    centred = points - points.mean(dim=0, keepdim=True)
    cov = centred.T @ centred / points.shape[0]  # (D, D)
    return ((cov**2).sum() - (torch.diagonal(cov) ** 2).sum()) / points.shape[1]


# ---- fitting ---------------------------------------------------------------------------------


def fit(dataset: Dataset, scheme: Scheme = "loo", config: CMLConfig | None = None) -> CMLEmbedder:
    """Train CML on `scheme`'s training sequences of `dataset` (deterministic given the seed)."""
    config = config or CMLConfig()
    train = dataset.train_sequences(scheme)
    contexts, targets = training_pairs(train, config.last_n)
    n_rows = dataset.n_items + 1
    source = np.zeros(n_rows, dtype=np.int8)
    source[np.unique(train.item_idx)] = TRAINED
    source[0] = UNKNOWN
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        item_vecs, context_vecs = _train(
            config, n_rows, np.flatnonzero(source == TRAINED), contexts, targets
        )
    finally:
        torch.set_num_threads(threads)
    _vectors_from_attributes(dataset, item_vecs, context_vecs, source, config.ridge_alpha)
    return CMLEmbedder(config, item_vecs, context_vecs, source)


def training_pairs(train: Sequences, last_n: int) -> tuple[np.ndarray, np.ndarray]:
    """Every (prefix, next item) pair of the training sequences.

    Returns:
        contexts (P, last_n) int64: the last `last_n` items before the target, left-padded with
        0; targets (P,) int64. The first item of each sequence has no prefix and is no target.
    """
    lengths = train.lengths
    starts = np.repeat(train.offsets[:-1], lengths)  # (E,) start of each event's row
    pos = np.arange(len(train.item_idx))
    rows = pos[pos > starts]
    items = train.item_idx.astype(np.int64)
    contexts = np.zeros((len(rows), last_n), dtype=np.int64)
    for k in range(1, last_n + 1):
        src = rows - k
        contexts[:, last_n - k] = np.where(src >= starts[rows], items[np.maximum(src, 0)], 0)
    return contexts, items[rows]


def _train(
    config: CMLConfig,
    n_rows: int,
    warm: np.ndarray,
    contexts: np.ndarray,
    targets: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The training loop; returns the item and context tables (n_rows, D) as float32 arrays."""
    gen = torch.Generator().manual_seed(config.seed)  # all randomness; the global RNG is untouched
    std = 1.0 / math.sqrt(config.dim)  # rows start with norm about 1, then are clipped
    items = torch.nn.Parameter(torch.randn(n_rows, config.dim, generator=gen) * std)
    params = [items]
    if config.tie_context:
        context = items
    else:
        context = torch.nn.Parameter(torch.randn(n_rows, config.dim, generator=gen) * std)
        params.append(context)
    with torch.no_grad():
        for p in params:
            p[0] = 0.0
            _clip_to_unit_ball(p)
    # fused: one kernel over the whole tables (the unfused dense Adam step costs more than the
    # forward and backward passes together); every row is touched by some sampled negative anyway
    if config.optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(params, lr=config.lr, fused=True)
    else:
        opt = torch.optim.Adagrad(params, lr=config.lr, fused=True)
    contexts_t, targets_t = torch.from_numpy(contexts), torch.from_numpy(targets)
    warm_t = torch.from_numpy(warm.astype(np.int64))
    n_weight = len(warm) if config.rank_weight else None
    n_pairs = len(targets)
    for _ in range(config.epochs):
        order = torch.randperm(n_pairs, generator=gen)
        for b0 in range(0, n_pairs, config.batch_size):
            batch = order[b0 : b0 + config.batch_size]
            ctx = contexts_t[batch]  # (B, last_n)
            present = (ctx > 0).float()  # (B, last_n)
            users = (F.embedding(ctx, context) * present[:, :, None]).sum(dim=1)  # (B, D)
            users = users / present.sum(dim=1, keepdim=True).clamp_min(1.0)
            pos_idx = targets_t[batch]  # (B,)
            neg_idx = warm_t[
                torch.randint(len(warm_t), (len(batch), config.n_negatives), generator=gen)
            ]
            positives = F.embedding(pos_idx, items)  # (B, D)
            negatives = F.embedding(neg_idx, items)  # (B, U, D)
            loss = cml_loss(
                users, positives, negatives, config.margin, n_weight, neg_idx == pos_idx[:, None]
            )
            if config.covariance_weight > 0:
                loss = loss + config.covariance_weight * covariance_loss(
                    torch.cat([users, positives])
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                for p in params:
                    _clip_to_unit_ball(p)
    item_vecs = items.detach().numpy().astype(np.float32)
    context_vecs = context.detach().numpy().astype(np.float32)
    untrained = np.ones(n_rows, dtype=bool)
    untrained[warm] = False
    item_vecs[untrained] = 0.0
    context_vecs[untrained] = 0.0
    return item_vecs, context_vecs


def _clip_to_unit_ball(table: torch.Tensor) -> None:
    """Scale (in place) every row with norm > 1 back onto the unit sphere."""
    norms = table.norm(dim=1, keepdim=True)
    table.div_(norms.clamp_min(1.0))


def _vectors_from_attributes(
    dataset: Dataset,
    item_vecs: np.ndarray,
    context_vecs: np.ndarray,
    source: np.ndarray,
    ridge_alpha: float,
) -> None:
    """Fill in (in place) the vectors of items without training data from their attributes.

    Features of an item: per attribute field, its attributes' indicators divided by their number
    in that field (a mean of one-hots); a ridge regression fitted on warm items maps them to the
    (item, context) vectors. Only attributes carried by some warm item count, so an item whose
    attributes are all unknown stays UNKNOWN. Predictions are clipped to the unit ball.
    """
    offsets, flat = dataset.item_attributes
    n_rows = dataset.n_items + 1
    if len(flat) == 0:
        return
    owner = np.repeat(np.arange(n_rows), np.diff(offsets))  # item of each (item, attr) entry
    warm = source == TRAINED
    known_attr = np.zeros(dataset.n_attributes + 1, dtype=bool)
    known_attr[flat[warm[owner]]] = True
    keep = known_attr[flat]
    owner, flat = owner[keep], flat[keep]
    _, field_code = np.unique(dataset.attribute_field[flat].astype(str), return_inverse=True)
    key = owner * (field_code.max() + 1) + field_code  # one key per (item, field)
    count = np.bincount(key)[key].astype(np.float64)  # attributes of the item in that field
    features = sp.csr_matrix(
        (1.0 / np.maximum(count, 1.0), (owner, flat)), shape=(n_rows, dataset.n_attributes + 1)
    )
    has_attr = np.bincount(owner, minlength=n_rows) > 0
    fit_rows = np.flatnonzero(warm & has_attr)
    cold_rows = np.flatnonzero((source == UNKNOWN) & has_attr)
    cold_rows = cold_rows[cold_rows > 0]
    if len(fit_rows) == 0 or len(cold_rows) == 0:
        return
    dim = item_vecs.shape[1]
    targets = np.hstack([item_vecs[fit_rows], context_vecs[fit_rows]]).astype(np.float64)
    predicted = _ridge(features[fit_rows], targets, features[cold_rows], ridge_alpha)
    for part, table in ((predicted[:, :dim], item_vecs), (predicted[:, dim:], context_vecs)):
        norms = np.linalg.norm(part, axis=1, keepdims=True)
        table[cold_rows] = (part / np.maximum(norms, 1.0)).astype(np.float32)
    source[cold_rows] = FROM_ATTRIBUTES


def _ridge(x: sp.csr_matrix, y: np.ndarray, x_new: sp.csr_matrix, alpha: float) -> np.ndarray:
    """Predictions at `x_new` of the ridge regression (with intercept) of `y` on `x`.

    Closed form on the normal equations of the attribute columns in use (a few hundred on the
    S3-Rec datasets; sklearn's sparse solver takes ~30 s there); sklearn beyond MAX_DENSE_RIDGE.
    """
    used = np.unique(x.indices)
    if len(used) > MAX_DENSE_RIDGE:
        return Ridge(alpha=alpha).fit(x, y).predict(x_new)
    xs = x[:, used].tocsc()  # (n, A)
    n = xs.shape[0]
    x_mean = np.asarray(xs.mean(axis=0)).ravel()  # (A,)
    y_mean = y.mean(axis=0)
    # centred Gram matrix and cross products, without densifying x
    gram = (xs.T @ xs).toarray() - n * np.outer(x_mean, x_mean) + alpha * np.eye(len(used))
    coef = np.linalg.solve(gram, xs.T @ (y - y_mean))  # (A, n_targets)
    return (x_new[:, used] @ coef) - x_mean @ coef + y_mean
