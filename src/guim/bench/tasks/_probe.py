"""Shared pieces of the probe tasks: one fixed linear head, disjoint folds, threshold-free metrics.

The head is scikit-learn's LogisticRegression with fixed settings (C = 1, L2, lbfgs, at most
MAX_ITER iterations, random_state 0) after a StandardScaler fitted on the training fold only, so
two embeddings are compared under the same head. Predictions are out-of-fold: every row is scored
by a head that never saw it, and folds split rows by the given unit (item or user).

The heads of the folds (and of the labels of a multi-label field) are independent fits: they run
side by side in `probe_jobs()` worker processes (joblib), one BLAS thread each. Every fit is
deterministic, so the scores do not depend on the number of workers.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from joblib import Parallel, delayed
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from guim.data.dataset import Dataset
from guim.metrics import Scorer

N_FOLDS = 5
SEED = 0
C = 1.0
MAX_ITER = 1000

# Attribute fields that describe what an item IS (category-like), in order of preference: the
# synthetic shop / MerRec leaf and top categories and brand, MovieLens genres ("genres" from the
# GroupLens files, "class" from RecBole's), the S3-Rec anonymous attributes (Beauty, LastFM).
CATEGORY_FIELDS = ("c0", "c2", "brand", "genres", "class", "attr")
# The single field a user's interest is read in, first present wins (leaf category first).
INTEREST_FIELDS = ("c2", "genres", "class", "attr")


def head() -> LogisticRegression:
    """The fixed probe: L2 logistic regression, C = 1, lbfgs, MAX_ITER iterations, seed 0."""
    return LogisticRegression(C=C, max_iter=MAX_ITER, random_state=SEED)


def user_matrix(users: np.ndarray) -> np.ndarray:
    """(N, K, D) or (N, D) user vectors -> (N, D) float64: the mean over the K interests."""
    users = np.asarray(users, dtype=np.float64)
    return users.mean(axis=1) if users.ndim == 3 else users


def fields_present(dataset: Dataset, wanted: tuple[str, ...]) -> list[str]:
    """The fields of `wanted` that have at least one attribute id in `dataset`, in that order."""
    have = set(dataset.attribute_field[1:].tolist())
    return [f for f in wanted if f in have]


def field_labels(dataset: Dataset, field: str) -> list[np.ndarray]:
    """Per item_idx (0..n_items), the sorted attribute ids of `field` it carries."""
    offsets, flat = dataset.item_attributes
    keep = dataset.attribute_field[flat] == field
    owner = np.repeat(np.arange(dataset.n_items + 1), np.diff(offsets))
    ids, owners = flat[keep], owner[keep]
    bounds = np.searchsorted(owners, np.arange(dataset.n_items + 2))
    return [np.sort(ids[bounds[i] : bounds[i + 1]]) for i in range(dataset.n_items + 1)]


def folds(labels: np.ndarray, groups: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train rows, test rows) of N_FOLDS folds, disjoint in `groups` (items or users) and
    stratified by `labels` (a key per row; a group is stratified by its first row's key).

    Groups are shuffled (seed SEED), ordered by key, and dealt to the folds in turn, so each key
    is spread evenly over the folds and the folds differ in size by at most one group.
    """
    groups, labels = np.asarray(groups), np.asarray(labels)
    _, first, group_of_row = np.unique(groups, return_index=True, return_inverse=True)
    _, key = np.unique(labels[first], return_inverse=True)
    shuffle = np.random.default_rng(SEED).permutation(len(first))
    order = np.lexsort((shuffle, key))
    fold_of_group = np.empty(len(first), dtype=np.int64)
    fold_of_group[order] = np.arange(len(first)) % N_FOLDS
    fold = fold_of_group[group_of_row.ravel()]
    return [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(N_FOLDS)]


def _fit(x: np.ndarray, y: np.ndarray) -> tuple[StandardScaler, LogisticRegression]:
    scaler = StandardScaler().fit(x)
    with warnings.catch_warnings():
        # a fixed iteration budget is part of the fixed head; not converging is not an error
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = head().fit(scaler.transform(x), y)
    return scaler, model


def class_scores(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, classes: np.ndarray
) -> np.ndarray:
    """(len(x_test), len(classes)) probabilities of the head fitted on the training rows; classes
    absent from the training rows get 0, and a single training class gets probability 1."""
    out = np.zeros((len(x_test), len(classes)))
    col = np.searchsorted(classes, np.unique(y_train))
    if len(col) == 1:
        out[:, col[0]] = 1.0
        return out
    # the heads are small: threaded BLAS only adds overhead (8x on 2 busy cores)
    with threadpool_limits(limits=1):
        scaler, model = _fit(x_train, y_train)
        proba = model.predict_proba(scaler.transform(x_test))
    out[:, np.searchsorted(classes, model.classes_)] = proba
    return out


def probe_jobs() -> int:
    """Worker processes for the probe heads: $GUIM_PROBE_JOBS, else every CPU this process may
    run on."""
    env = os.environ.get("GUIM_PROBE_JOBS", "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ValueError(f"GUIM_PROBE_JOBS must be a positive integer, got {env!r}")
        return int(env)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def run_side_by_side(fn: Callable[..., Any], calls: list[tuple]) -> list[Any]:
    """[fn(*args) for args in calls], in up to probe_jobs() worker processes. Large arrays
    passed again and again (the same x) are shared with the workers, not copied per call."""
    jobs = min(probe_jobs(), len(calls))
    if jobs <= 1:
        return [fn(*args) for args in calls]
    return Parallel(n_jobs=jobs, backend="loky")(delayed(fn)(*args) for args in calls)


def fold_scores(
    x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, classes: np.ndarray
) -> np.ndarray:
    """class_scores of the head fitted on rows `train` of (x, y), for rows `test` of x (the
    unit of work of run_side_by_side: x is passed whole, so it is shared, not copied)."""
    return class_scores(x[train], y[train], x[test], classes)


def out_of_fold(
    x: np.ndarray, y: np.ndarray, splits: list[tuple[np.ndarray, np.ndarray]]
) -> np.ndarray:
    """Out-of-fold class probabilities (N, C) for class labels y (N,), C = len(np.unique(y))."""
    classes = np.unique(y)
    out = np.zeros((len(y), len(classes)))
    scores = run_side_by_side(fold_scores, [(x, y, tr, te, classes) for tr, te in splits])
    for (_, test), s in zip(splits, scores, strict=True):
        out[test] = s
    return out


def out_of_fold_multilabel(
    x: np.ndarray, y: np.ndarray, splits: list[tuple[np.ndarray, np.ndarray]]
) -> np.ndarray:
    """Out-of-fold scores (N, L) of one binary head per label (one-vs-rest) for y (N, L) bool."""
    out = np.zeros(y.shape)
    pairs = [(f, j) for f in range(len(splits)) for j in range(y.shape[1])]
    calls = [(x, y[:, j], *splits[f], np.array([0, 1])) for f, j in pairs]
    for (f, j), s in zip(pairs, run_side_by_side(fold_scores, calls), strict=True):
        out[splits[f][1], j] = s[:, 1]
    return out


def binary_auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC, or NaN when y holds a single class."""
    y = np.asarray(y, dtype=bool)
    if y.all() or not y.any():
        return float("nan")
    return float(roc_auc_score(y, score))


def macro_auc(y: np.ndarray, scores: np.ndarray) -> float:
    """Mean one-vs-rest AUC over the columns of y (N, L) bool that hold both classes."""
    aucs = [binary_auc(y[:, j], scores[:, j]) for j in range(y.shape[1])]
    aucs = [a for a in aucs if not np.isnan(a)]
    return float(np.mean(aucs)) if aucs else float("nan")


def mean_average_precision(y: np.ndarray, scores: np.ndarray) -> float:
    """mAP: mean over the columns of y (N, L) bool with a positive of their average precision."""
    aps = [
        float(average_precision_score(y[:, j], scores[:, j]))
        for j in range(y.shape[1])
        if y[:, j].any()
    ]
    return float(np.mean(aps)) if aps else float("nan")


def f1s(y: np.ndarray, predicted: np.ndarray) -> tuple[float, float]:
    """(micro-F1, macro-F1) of single-label predictions; micro-F1 equals accuracy here."""
    micro = f1_score(y, predicted, average="micro")
    macro = f1_score(y, predicted, average="macro", zero_division=0.0)
    return float(micro), float(macro)


def one_hot(y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """(N,) labels -> (N, len(classes)) bool."""
    return np.asarray(y)[:, None] == np.asarray(classes)[None, :]


def common_classes(y: np.ndarray, min_count: int = N_FOLDS) -> np.ndarray:
    """Rows whose class has at least `min_count` members (so that every fold can train on it)."""
    _, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    return counts[inverse] >= min_count


def interest_weights(scorer: Scorer, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """(P, K) weights of each user's K interests when scoring its paired item, as the scorer does:
    one-hot on the best interest ("max") or the softmax of the dot products ("softmax")."""
    users = np.asarray(users, dtype=np.float64)
    if users.ndim == 2:
        return np.ones((len(users), 1))
    dots = np.einsum("pkd,pd->pk", users, np.asarray(items, dtype=np.float64))
    mode = getattr(scorer, "mode", "max")
    if mode == "softmax":
        z = dots / float(getattr(scorer, "temperature", 1.0))
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)
    out = np.zeros_like(dots)
    out[np.arange(len(dots)), dots.argmax(axis=1)] = 1.0
    return out
