"""User profile prediction: a linear probe from the frozen user vector -- the embedding of the
user's history up to the split's target -- to who the user is: age, gender and occupation
(MovieLens), or the interests and style planted in the synthetic shop (its `truth/`).

Why you care: audiences, personalisation without a login form and fairness audits all need user
vectors that know who the user is; a linear probe shows what they know (and what they leak).

Probes (user-disjoint 5-fold CV, out-of-fold scores; `_probe.head()`, standardised in the fold):
    age          4 buckets (<25, 25-34, 35-44, 45+), multi-class: accuracy, macro one-vs-rest AUC
    gender       binary: AUC, accuracy
    occupation   multi-class (occupations of at least 5 users): accuracy, macro AUC
    interests    synthetic shop: the top categories (c0) of the planted leaf interests,
                 multi-label, one binary head per category: macro AUC
    style        synthetic shop: the planted style preference, multi-class: accuracy, macro AUC
Primary metric "AUC": the mean of the probes' AUCs (threshold-free, 0.5 = chance for each).
A user with K interest vectors is represented by their mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from guim.bench.tasks._probe import (
    N_FOLDS,
    binary_auc,
    common_classes,
    folds,
    macro_auc,
    one_hot,
    out_of_fold,
    out_of_fold_multilabel,
    user_matrix,
)
from guim.data.dataset import Dataset
from guim.embed import Embedder

PROFILE_COLUMNS = ("age", "gender", "occupation")
AGE_EDGES = (25, 35, 45)  # buckets <25, 25-34, 35-44, 45+
AGE_NAMES = np.array(["<25", "25-34", "35-44", "45+"])


@dataclass(frozen=True)
class UserProfile:
    name: str = "user_profile"
    primary_metric: str = "AUC"
    scheme: str = "loo"

    def supports(self, dataset: Dataset) -> bool | str:
        if any(c in dataset.users.columns for c in PROFILE_COLUMNS):
            return True
        if (dataset.path / "truth" / "users.parquet").exists():
            return True
        return f"no user attributes ({', '.join(PROFILE_COLUMNS)}) and no planted truth"

    def run(self, embedder: Embedder, dataset: Dataset, split: str = "test") -> dict[str, float]:
        cases = dataset.eval_cases("loo", split)  # type: ignore[arg-type]
        users = cases.user_idx
        x = user_matrix(embedder.embed_users(cases.history))
        out: dict[str, float] = {}
        aucs = []
        for name, y in user_labels(dataset, users).items():
            result = _multilabel(x, y, users) if y.ndim == 2 else _multiclass(x, y, users)
            if result is None:
                continue
            out.update({f"{name}/{k}": v for k, v in result.items()})
            aucs.append(result["AUC"])
        if not aucs:
            raise ValueError(f"{dataset.name}: no user attribute has enough labelled users")
        out["AUC"] = float(np.mean(aucs))
        out["n_users"] = float(len(users))
        return out


def user_labels(dataset: Dataset, user_idx: np.ndarray) -> dict[str, np.ndarray]:
    """Labels of the given users per probe: (N,) object array (None = unknown) for single-label
    probes, (N, L) bool for multi-label ones."""
    table = pl.DataFrame({"user_idx": np.asarray(user_idx, dtype=np.int32)}).join(
        dataset.users, on="user_idx", how="left"
    )
    out: dict[str, np.ndarray] = {}
    if "age" in table.columns:
        age = table["age"].cast(pl.Float64, strict=False).to_numpy()
        bucket = AGE_NAMES[np.digitize(np.nan_to_num(age), AGE_EDGES)].astype(object)
        bucket[np.isnan(age)] = None
        out["age"] = bucket
    for column in ("gender", "occupation"):
        if column in table.columns:
            out[column] = table[column].cast(pl.String).to_numpy().astype(object)
    truth = dataset.path / "truth"
    if (truth / "users.parquet").exists():
        out.update(_planted(table, truth))
    return out


def _planted(table: pl.DataFrame, truth) -> dict[str, np.ndarray]:
    """The synthetic shop's planted interests (as top categories) and style of each user."""
    planted = pl.read_parquet(truth / "users.parquet").with_columns(pl.col("user_id").cast(str))
    users = table.select(pl.col("user_id").cast(str)).join(planted, on="user_id", how="left")
    out: dict[str, np.ndarray] = {}
    categories = truth / "categories.parquet"
    if "interests" in users.columns and categories.exists():
        leaves = pl.read_parquet(categories)
        top_of_leaf = dict(zip(leaves["c2_id"].to_list(), leaves["c0_id"].to_list(), strict=True))
        c0 = np.unique(leaves["c0_id"].to_numpy())
        interests = users["interests"].to_list()
        out["interests"] = np.stack(
            [np.isin(c0, [top_of_leaf[leaf] for leaf in (row or [])]) for row in interests]
        )
    if "style" in users.columns:
        out["style"] = users["style"].cast(pl.String).to_numpy().astype(object)
    return out


def _multiclass(x: np.ndarray, y: np.ndarray, users: np.ndarray) -> dict[str, float] | None:
    """Multinomial probe (binary when two classes) on the users whose class has >= N_FOLDS users."""
    known = np.flatnonzero([v is not None for v in y])
    rows = known[common_classes(y[known].astype(str))]
    labels = y[rows].astype(str)
    classes = np.unique(labels)
    if len(classes) < 2:
        return None
    proba = out_of_fold(x[rows], labels, folds(labels, users[rows]))
    accuracy = float((classes[proba.argmax(axis=1)] == labels).mean())
    if len(classes) == 2:
        auc = binary_auc(labels == classes[1], proba[:, 1])
    else:
        auc = macro_auc(one_hot(labels, classes), proba)
    return {"AUC": auc, "accuracy": accuracy, "n_classes": float(len(classes))}


def _multilabel(x: np.ndarray, y: np.ndarray, users: np.ndarray) -> dict[str, float] | None:
    """One binary probe per label with at least N_FOLDS positive and negative users."""
    positives = y.sum(axis=0)
    y = y[:, (positives >= N_FOLDS) & (len(y) - positives >= N_FOLDS)]
    if y.shape[1] == 0:
        return None
    # stratify by each user's rarest label, so that rare labels are spread over the folds
    rarest = np.where(y, np.argsort(np.argsort(y.sum(axis=0)))[None, :], y.shape[1]).min(axis=1)
    scores = out_of_fold_multilabel(x, y, folds(rarest, users))
    return {"AUC": macro_auc(y, scores), "n_labels": float(y.shape[1])}


TASK = UserProfile()
