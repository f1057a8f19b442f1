"""item2vec baseline (Barkan & Koenigstein, 2016), optionally tied to attribute ids as in "Learning
and Transferring IDs Representation in E-commerce" (Zhao et al., KDD 2018).

Skip-gram with negative sampling (gensim Word2Vec) over users' training sequences; a user is the
mean of the normalised vectors of the last N items of the history. With `attributes=True`,
attribute ids are tokens of the same space and items without training data get vectors from
their attributes through per-field linear maps (ridge regression fitted on warm items).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Literal

import numpy as np
from gensim.models import Word2Vec
from sklearn.linear_model import Ridge

from guim.data.dataset import Dataset, Scheme, Sequences

# gensim truncates longer sentences; longer histories are cut into pieces of this size
MAX_SENTENCE = 10_000
# item_source codes
UNKNOWN, TRAINED, FROM_ATTRIBUTES = 0, 1, 2


@dataclass(frozen=True)
class Item2VecConfig:
    """Skip-gram, user pooling and attribute-tying settings.

    Defaults: what won on the loo valid splits of both Beauty and LastFM (benchmarks/baselines.py):
    a wide window, the last item alone as the user, output vectors for items.

    dim, window, epochs, negative, ns_exponent, sample, alpha, min_count: gensim Word2Vec's
        vector_size, window, epochs, negative, ns_exponent, sample, alpha, min_count (sg=1).
    last_n: a user is the mean of the (normalised input) vectors of the last `last_n` items.
    attributes: tie items to their attribute ids. Every (item, attribute) pair of a warm item
        becomes a two-token sentence, `attribute_repeats` times, shuffled into the corpus, so
        skip-gram pulls each item towards its attributes and attributes live in the item space;
        items without a trained vector get one from their attributes (`ridge_alpha`).
    item_side: score items with their "input" vectors (item-item similarity, the usual item2vec)
        or their "output" (context) vectors, whose dot product with input vectors is what
        skip-gram fits to co-occurrence.
    normalize_items: unit-normalise item vectors for scoring (cosine); otherwise raw vectors.
    """

    dim: int = 64
    window: int = 10
    epochs: int = 10
    negative: int = 10
    ns_exponent: float = 0.75
    sample: float = 1e-3
    alpha: float = 0.025
    min_count: int = 1
    last_n: int = 1
    attributes: bool = False
    attribute_repeats: int = 1
    ridge_alpha: float = 1.0
    item_side: Literal["input", "output"] = "output"
    normalize_items: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        for key in ("dim", "window", "epochs", "negative", "min_count", "last_n"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.attribute_repeats < 0:
            raise ValueError(f"attribute_repeats must be >= 0, got {self.attribute_repeats}")
        if self.item_side not in ("input", "output"):
            raise ValueError(f"item_side must be 'input' or 'output', got {self.item_side!r}")


class Item2VecEmbedder:
    """Fitted item2vec vectors; see the module docstring for how users and items are embedded."""

    def __init__(
        self,
        config: Item2VecConfig,
        input_vectors: np.ndarray,
        output_vectors: np.ndarray,
        item_source: np.ndarray,
    ) -> None:
        self.config = config
        self.name = "item2vec+attributes" if config.attributes else "item2vec"
        self.input_vectors = np.asarray(input_vectors, dtype=np.float32)  # (n_items + 1, D)
        self.output_vectors = np.asarray(output_vectors, dtype=np.float32)  # (n_items + 1, D)
        # (n_items + 1,) int8: UNKNOWN (zero vector), TRAINED, FROM_ATTRIBUTES
        self.item_source = np.asarray(item_source, dtype=np.int8)
        self._history_vectors = _normalise(self.input_vectors)

    def embed_users(self, histories: Sequences) -> np.ndarray:
        """(N, 1, D) float32: mean of the normalised input vectors of the last `last_n` items
        (items without a vector are skipped; an empty history gives the zero vector)."""
        last = histories.padded(self.config.last_n)["item_idx"]  # (N, last_n), 0 = padding
        vecs = self._history_vectors[last]  # (N, last_n, D)
        has_vec = (np.abs(vecs).sum(axis=2) > 0).astype(np.float32)  # (N, last_n)
        total = (vecs * has_vec[:, :, None]).sum(axis=1)  # (N, D)
        users = total / np.maximum(has_vec.sum(axis=1, keepdims=True), 1.0)
        return users[:, None, :].astype(np.float32)

    def embed_items(self) -> np.ndarray:
        """(n_items + 1, D) float32; row 0 (padding) and items without a vector are zero."""
        vecs = self.input_vectors if self.config.item_side == "input" else self.output_vectors
        return _normalise(vecs) if self.config.normalize_items else vecs

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "input_vectors": self.input_vectors,
            "output_vectors": self.output_vectors,
            "item_source": self.item_source,
        }

    @classmethod
    def from_arrays(cls, config: Item2VecConfig, arrays: dict[str, np.ndarray]) -> Item2VecEmbedder:
        return cls(config, arrays["input_vectors"], arrays["output_vectors"], arrays["item_source"])


def fit(
    dataset: Dataset, scheme: Scheme = "loo", config: Item2VecConfig | None = None
) -> Item2VecEmbedder:
    """Train skip-gram on `scheme`'s training sequences of `dataset` (deterministic given seed)."""
    config = config or Item2VecConfig()
    corpus = _corpus(dataset, scheme, config)
    model = Word2Vec(
        sentences=corpus,
        vector_size=config.dim,
        window=config.window,
        min_count=config.min_count,
        sg=1,
        hs=0,
        negative=config.negative,
        ns_exponent=config.ns_exponent,
        sample=config.sample,
        alpha=config.alpha,
        epochs=config.epochs,
        seed=config.seed,
        workers=1,  # more workers make the result depend on thread scheduling
        hashfxn=_stable_hash,
    )
    n_rows = dataset.n_items + 1
    item_in = np.zeros((n_rows, config.dim), dtype=np.float32)
    item_out = np.zeros((n_rows, config.dim), dtype=np.float32)
    attr_in = np.zeros((dataset.n_attributes + 1, config.dim), dtype=np.float32)
    source = np.zeros(n_rows, dtype=np.int8)
    for row, token in enumerate(model.wv.index_to_key):
        kind, idx = token[0], int(token[1:])
        if kind == "i":
            item_in[idx], item_out[idx] = model.wv.vectors[row], model.syn1neg[row]
            source[idx] = TRAINED
        else:
            attr_in[idx] = model.wv.vectors[row]
    if config.attributes:
        _vectors_from_attributes(dataset, attr_in, item_in, item_out, source, config.ridge_alpha)
    return Item2VecEmbedder(config, item_in, item_out, source)


def _corpus(dataset: Dataset, scheme: Scheme, config: Item2VecConfig) -> list[list[str]]:
    """Token sentences: "i<item_idx>" per training sequence, plus ["i<item>", "a<attr>"] pairs."""
    train = dataset.train_sequences(scheme)
    corpus = []
    for row in range(len(train)):
        tokens = [f"i{i}" for i in train.items_of(row)]
        corpus.extend(tokens[s : s + MAX_SENTENCE] for s in range(0, len(tokens), MAX_SENTENCE))
    if config.attributes and config.attribute_repeats:
        offsets, flat = dataset.item_attributes
        warm = np.flatnonzero(np.bincount(train.item_idx, minlength=dataset.n_items + 1))
        pairs = [[f"i{i}", f"a{a}"] for i in warm for a in flat[offsets[i] : offsets[i + 1]]]
        corpus.extend(pairs * config.attribute_repeats)
        order = np.random.default_rng(config.seed).permutation(len(corpus))
        corpus = [corpus[k] for k in order]
    return corpus


def _vectors_from_attributes(
    dataset: Dataset,
    attr_vectors: np.ndarray,
    item_in: np.ndarray,
    item_out: np.ndarray,
    source: np.ndarray,
    ridge_alpha: float,
) -> None:
    """Fill in (in place) the vectors of items without a trained vector from their attributes.

    Features of an item: for each attribute field, the mean of the normalised vectors of its
    attributes in that field (zeros if none), concatenated, so the ridge regression onto the
    item's (input, output) vectors is a sum of one linear map per field plus a bias.
    """
    features, has_attr = attribute_features(dataset, attr_vectors)
    warm = (source == TRAINED) & has_attr
    cold = (source == UNKNOWN) & has_attr
    cold[0] = False
    if not warm.any() or not cold.any():
        return
    dim = item_in.shape[1]
    ridge = Ridge(alpha=ridge_alpha)
    ridge.fit(features[warm], np.hstack([item_in[warm], item_out[warm]]))
    predicted = ridge.predict(features[cold]).astype(np.float32)
    item_in[cold], item_out[cold] = predicted[:, :dim], predicted[:, dim:]
    source[cold] = FROM_ATTRIBUTES


def attribute_features(dataset: Dataset, attr_vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-field mean attribute vectors of every item.

    Returns:
        features (n_items + 1, n_fields * D) float64, and has_attr (n_items + 1,) bool: whether
        the item has at least one attribute with a (non-zero) vector.
    """
    offsets, flat = dataset.item_attributes
    n_rows, dim = dataset.n_items + 1, attr_vectors.shape[1]
    owner = np.repeat(np.arange(n_rows), np.diff(offsets))  # item of each (item, attr) entry
    unit = _normalise(attr_vectors).astype(np.float64)
    known = np.abs(attr_vectors[flat]).sum(axis=1) > 0
    field_of = dataset.attribute_field[flat]
    fields = sorted(set(dataset.attribute_field[1:].tolist()))
    features = np.zeros((n_rows, len(fields) * dim))
    for f, field in enumerate(fields):
        sel = known & (field_of == field)
        total = np.zeros((n_rows, dim))
        np.add.at(total, owner[sel], unit[flat[sel]])
        count = np.bincount(owner[sel], minlength=n_rows)[:, None]
        features[:, f * dim : (f + 1) * dim] = total / np.maximum(count, 1)
    has_attr = np.bincount(owner[known], minlength=n_rows) > 0
    return features, has_attr


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def _stable_hash(text: str) -> int:
    """A hash that does not change with PYTHONHASHSEED (gensim's default is the built-in hash)."""
    return zlib.crc32(text.encode())
