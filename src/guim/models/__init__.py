"""Sequence encoders behind one interface, chosen by the `model.encoder` config string, and the
model kinds, chosen by `model.kind`: each maps a config string to a class in one dict."""

from __future__ import annotations

from torch import nn

from guim.config import DataConfig, ModelConfig
from guim.models.sru import SRUEncoder
from guim.models.transformer import TransformerEncoder

ENCODERS: dict[str, type[nn.Module]] = {"transformer": TransformerEncoder, "sru": SRUEncoder}


def build_encoder(cfg: ModelConfig, seq_len: int = 0) -> nn.Module:
    """The encoder named by cfg.encoder: (x (B, T, D), real (B, T), causal) -> (B, T, D).
    `seq_len`: the window length (data.max_len), read by the transformer's frequency filter."""
    try:
        return ENCODERS[cfg.encoder](cfg, seq_len)
    except KeyError:
        raise ValueError(f"unknown encoder {cfg.encoder!r}; known: {sorted(ENCODERS)}") from None


# imported after build_encoder, which the model modules use
from guim.models.guim import GUIM  # noqa: E402
from guim.models.mlp import MLPStudent  # noqa: E402
from guim.models.tokens import ItemTables  # noqa: E402

# Every model kind takes (model config, data config, ItemTables, causal, sparse) and has
# forward(batch, candidates, view) -> ModelOutput, user_vectors, item_vectors, grow,
# set_trainable (see guim.models.guim.GUIM). "mlp" is the feed-forward (BERT2DNN) student.
MODELS: dict[str, type[nn.Module]] = {"guim": GUIM, "mlp": MLPStudent}


def build_model(
    model: ModelConfig, data: DataConfig, tables: ItemTables, causal: bool, sparse: bool = False
) -> nn.Module:
    """A fresh model of kind `model.kind` for a catalogue described by `tables`."""
    try:
        kind = MODELS[model.kind]
    except KeyError:
        raise ValueError(f"unknown model.kind {model.kind!r}; known: {sorted(MODELS)}") from None
    return kind(model, data, tables, causal, sparse)
