"""Run configuration: one tree of frozen dataclasses, TOML presets holding differences only, and
`--set section.key=value` overrides. Unknown keys and wrong types fail at start-up.

Each component receives only its own section (`TransformerEncoder(cfg.model)`). The resolved
config is printed at start and saved with every run as config.json.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_args, get_origin


@dataclass(frozen=True)
class DataConfig:
    """Which interactions the model sees and which item/position features it uses."""

    scheme: Literal["loo", "temporal", "cold"] = "loo"
    max_len: int = 50  # positions per training window / user history
    # training windows per epoch: "crop" = one per user (random crop of long histories),
    # "all" = consecutive windows covering every interaction of every user, "prefix" = one
    # window per training interaction, trained on that target alone (one example per prefix,
    # as ICSRec / BSARec; next-item objective only)
    windows: Literal["crop", "all", "prefix"] = "crop"
    # windows = "all", next-item objective: distance between the ends of consecutive windows
    # (0 = max_len: windows do not overlap). With a smaller stride the windows overlap and each
    # window is trained only on its last `window_stride` targets, so every target is predicted
    # once per epoch with at least max_len - window_stride items of context (a history shorter
    # than max_len is one window trained on all its targets; windows = "prefix" splits it too).
    window_stride: int = 0
    # windows = "all" / "prefix": train only on each user's most recent `recent_targets` training
    # interactions (0 = all of them); older ones are still read as context. Long, old histories
    # can pull a small model away from what users do now.
    recent_targets: int = 0
    use_attributes: bool = True  # add attribute-id embeddings to item tokens
    use_text: bool = False  # add a projected sentence-encoder vector of the item title
    use_events: bool = True  # add event-type embeddings at each position
    use_time: bool = True  # add time-gap bucket embeddings at each position
    text_model: str = "all-MiniLM-L6-v2"


@dataclass(frozen=True)
class MLPConfig:
    """The feed-forward student (model.kind = "mlp", guim.models.mlp; BERT2DNN): the rest --
    dim, n_interests, normalize, interest_score, dropout -- comes from ModelConfig."""

    n_recent: int = 10  # the last N items of the history
    pooling: Literal["weighted", "concat"] = "weighted"
    hidden: tuple[int, ...] = (256, 256)  # widths of the MLP's hidden layers (ReLU)
    # "own": trainable item tokens (id + attributes + title, as the teacher's); "teacher": the
    # teacher's item-token table as a frozen buffer (copied from the first teacher by distill)
    tokens: Literal["own", "teacher"] = "own"


@dataclass(frozen=True)
class ModelConfig:
    """Encoder and user-representation head."""

    # the model class (guim.models.MODELS); "guim" = item tokens -> encoder -> K interests,
    # "mlp" = the feed-forward student (last N items -> MLP, section [model.mlp])
    kind: Literal["guim", "mlp"] = "guim"
    encoder: Literal["transformer", "sru"] = "transformer"
    dim: int = 64
    n_layers: int = 2
    n_heads: int = 2
    ffn_dim: int = 256
    dropout: float = 0.5  # embedding, residual and feed-forward dropout
    attn_dropout: float = 0.5
    # how CPU dropout masks are drawn (guim.models.dropout): "pcg64" (numpy, ~3x faster) or
    # "torch" (torch's bernoulli_, as guim drew them before); attention dropout is always torch's
    dropout_masks: Literal["pcg64", "torch"] = "pcg64"
    # Mixture of Representations: K interest vectors per user (K = 1: a single vector)
    n_interests: int = 1
    interest_score: Literal["max", "softmax"] = "max"  # how K dot products become one score
    interest_temperature: float = 1.0  # softmax-weighted scores only
    normalize: bool = False  # score by cosine: L2-normalised user and item vectors
    n_time_buckets: int = 32  # log2 buckets of the gap to the previous interaction
    positions: Literal["from_end", "from_start"] = "from_end"  # position ids counted from
    # SRU++ encoder (models/sru.py): layers whose input projection is an attention sub-layer
    # (negative indices count from the top), and that sub-layer's width (0 = dim // 2)
    attention_layers: tuple[int, ...] = (-1,)
    attention_dim: int = 0
    # CoRe relaxed Transformer (models/transformer.py): feed-forward weights as low-rank products
    # W = U V of this rank (0 = full weights), and the attention kind ("linear": elu+1 kernel
    # feature maps, causal sums carried across 64-position chunks). A stage with
    # `expand = true` makes it the full model.
    ffn_rank: int = 0
    attention: Literal["softmax", "linear"] = "softmax"
    # BSARec frequency filter beside self-attention (Shin et al., AAAI 2024; transformer
    # encoder): each block mixes `freq_alpha` x filter + (1 - freq_alpha) x attention, the filter
    # keeping the `freq_low` lowest frequency bins of the window (a DFT over data.max_len
    # positions) and adding the rest scaled by a learned beta^2 per dimension. 0 = attention
    # only. The filter reads every position of a window, the later ones too: with the next-item
    # objective it needs data.windows = "prefix" (each window's only target is its last item).
    freq_alpha: float = 0.0
    freq_low: int = 3
    mlp: MLPConfig = field(default_factory=MLPConfig)


@dataclass(frozen=True)
class LossConfig:
    """Training loss over items: full softmax, or InfoNCE over shared sampled negatives."""

    kind: Literal["full", "sampled"] = "full"
    n_negatives: int = 1024  # shared across the batch (sampled loss)
    sampler: Literal["uniform", "popularity"] = "uniform"
    in_batch: bool = True  # the batch's other targets are negatives too (sampled loss)
    logq: bool = True  # subtract log of each candidate's expected inclusion count
    temperature: float = 1.0  # logits = score / temperature (use ~0.05-0.2 with model.normalize)
    # K > 1 interests under model.interest_score = "max": "nearest" reads out the interest nearest
    # to the target and ranks every candidate by it alone (ComiRec / MIND); "scored" gives every
    # candidate its max-over-K score, the score evaluation ranks by (softmax-weighted scores
    # always train that way)
    interest_readout: Literal["nearest", "scored"] = "nearest"
    # auxiliary contrastive loss (SimCSE / CL4SRec / DuoRec): two views of each sequence's user
    # vector are positives, the batch's other sequences negatives
    contrastive_weight: float = 0.0
    contrastive_temperature: float = 0.2
    # second view: "dropout" (the same inputs), "mask" / "crop" (a share of the items masked or
    # cropped away from the start), "reorder" (a contiguous span of that share shuffled, CL4SRec)
    contrastive_view: Literal["dropout", "mask", "crop", "reorder"] = "dropout"
    contrastive_rate: float = 0.2  # share of the items masked / cropped / reordered
    # retrieved hard negatives (CARDS; sampled loss only): `hard_negatives` items per batch added
    # to the shared candidates, `hard_neighbours` from each of randomly chosen targets' nearest
    # items (inner product over the current item vectors, a FAISS index rebuilt every epoch and
    # every `hard_refresh_steps` steps, 0 = once per epoch), skipping each target's
    # `hard_skip` nearest (likely false negatives); a hard negative the row's own window holds
    # is masked out of that row (false-negative masking)
    hard_negatives: int = 0
    hard_neighbours: int = 8
    hard_skip: int = 5
    hard_refresh_steps: int = 0
    # intent contrastive learning (ICLRec; PCL's ProtoNCE): at every epoch's start the users'
    # training sequences are encoded and clustered into `n_intents` intents (spherical k-means,
    # FAISS; at most one intent per 39 users, FAISS's floor); each window's user vector (and its
    # contrastive view's) is then pulled to its nearest intent against all the others,
    # InfoNCE at `intent_temperature`, weighted by `intent_weight` (0 = off)
    intent_weight: float = 0.0
    n_intents: int = 256
    intent_temperature: float = 0.2
    # SAS objective (train.objective = "sas"): weight of the replaced-item detection loss, the
    # temperature of the masked-item softmax the replacements are sampled from, and whether the
    # sample excludes the true item ("no-hit": every stored replacement really replaces)
    detection_weight: float = 1.0
    sas_temperature: float = 1.0
    sas_no_hit: bool = True


@dataclass(frozen=True)
class StageConfig:
    """One training stage (`[[train.stages]]` in TOML). Unset values (None) keep the previous
    stage's (the first stage's: model.n_layers, train.objective, loss.contrastive_weight)."""

    epochs: int = 0  # epochs of this stage (>= 1)
    n_layers: int | None = None  # encoder depth; growing adds layers on top (never shrinks)
    grow: Literal["copy", "random"] = "copy"  # new top layers: copies of the current top ones
    trainable: str = "all"  # "all", or "top:N": only the top N encoder layers (+ final norm)
    objective: Literal["next", "masked", "sas"] | None = None
    contrastive_weight: float | None = None
    # CoRe: the relaxed model's FFN rank and attention for this stage (None: the previous
    # stage's; the first stage's: model.ffn_rank / model.attention). A rank going to 0 multiplies
    # the factors out into full weights (exact); an attention change keeps the projections.
    ffn_rank: int | None = None
    attention: Literal["softmax", "linear"] | None = None
    expand: bool = False  # shorthand for ffn_rank = 0, attention = "softmax" (CoRe phase 2)


@dataclass(frozen=True)
class TrainConfig:
    """Objective, optimiser and schedule."""

    # "sas": masked-item prediction plus replaced-item detection (guim.sas)
    objective: Literal["next", "masked", "sas"] = "next"
    mask_prob: float = 0.2  # masked objective: fraction of positions masked
    last_mask_prob: float = 0.1  # masked objective: windows whose only mask is the last item
    epochs: int = 200
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    warmup_steps: int = 0
    lr_schedule: Literal["constant", "cosine"] = "constant"  # cosine: decays to 0 at `epochs`
    # validate and keep an exponential moving average of the weights (0 = off), e.g. 0.999
    ema_decay: float = 0.0
    patience: int = 10  # epochs without a better validation NDCG@10 before stopping
    eval_every: int = 1  # epochs
    max_minutes: float = 0.0  # wall-clock budget for training (0 = none)
    seed: int = 0
    threads: int = 0  # torch threads (0 = leave torch's default)
    device: str = "auto"  # "auto" (a GPU when present), "cpu", "cuda" or "cuda:N"
    # "bf16": the forward pass under bf16 autocast (the catalogue softmax stays fp32). Faster
    # only where the hardware has bf16 matmuls (GPUs; CPUs with AMX or AVX512-BF16): measured
    # 3-4x SLOWER on the development machine's CPU (benchmarks/results/engine.json)
    precision: Literal["fp32", "bf16"] = "fp32"
    # training stages in order; empty = one stage of `epochs` epochs. With stages, `epochs` is
    # not used: the run lasts the sum of the stages' epochs.
    stages: tuple[StageConfig, ...] = ()


@dataclass(frozen=True)
class DistillConfig:
    """Teacher loss terms (`guim distill`, guim.trainer.distill): the student is this run's
    model, the teachers are finished runs, computed in eval mode on the same batch."""

    teachers: tuple[str, ...] = ()  # teacher run directories (several: stacked)
    teacher_hashes: tuple[str, ...] = ()  # their config hashes, checked when the run starts
    # the student's own next-item loss (0: it learns from the teachers only)
    label_weight: float = 1.0
    # BERT2DNN / Hinton: KL to the teachers' temperature-softened scores over the catalogue at
    # every predicted prefix (several teachers: their probabilities averaged)
    score_weight: float = 0.0
    temperature: float = 1.0
    # MiniLM: KL of the last layers' attention and value relations (transformer students)
    attention_weight: float = 0.0
    # 0: MiniLM v1, per head (equal head counts; head widths may differ); R > 0: MiniLM v2's
    # Q-Q, K-K, V-V relations over R relation heads (any width and head count)
    relation_heads: int = 0
    # start from the first teacher's weights wherever a name and shape agree (item tokens,
    # position features, the bottom layers, the interest head)
    init_from_teacher: bool = False


@dataclass(frozen=True)
class Config:
    """The whole tree: one section per component."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def hash(self) -> str:
        """Short hash of the resolved configuration."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.blake2b(blob, digest_size=6).hexdigest()


class ConfigError(ValueError):
    """An unknown key or a value of the wrong type in a preset or an override."""


def from_dict(d: dict[str, Any], base: Config | None = None, source: str = "config") -> Config:
    """Apply a nested mapping of differences to `base` (defaults if None), checking every key."""
    return _apply(base or Config(), d, source, prefix="")


def _apply(obj: Any, d: dict[str, Any], source: str, prefix: str) -> Any:
    if not isinstance(d, dict):
        raise ConfigError(f"{source}: '{prefix.rstrip('.')}' must be a table of keys")
    hints = typing.get_type_hints(type(obj))
    known = {f.name for f in fields(obj)}
    changes = {}
    for key, value in d.items():
        path = f"{prefix}{key}"
        if key not in known:
            raise ConfigError(
                f"{source}: unknown key '{path}'; known keys here: {', '.join(sorted(known))}"
            )
        current = getattr(obj, key)
        if is_dataclass(current):
            changes[key] = _apply(current, value, source, prefix=f"{path}.")
        else:
            changes[key] = _coerce(value, hints[key], path, source)
    return replace(obj, **changes)


def _coerce(value: Any, tp: Any, path: str, source: str) -> Any:
    origin = get_origin(tp)
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{source}: '{path}' must be one of {list(allowed)}, got {value!r}")
        return value
    if origin in (types.UnionType, typing.Union):
        for arg in get_args(tp):
            if arg is type(None) and value is None:
                return None
            try:
                return _coerce(value, arg, path, source)
            except ConfigError:
                continue
        raise ConfigError(f"{source}: '{path}' has the wrong type: {value!r}")
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{source}: '{path}' must be a list, got {value!r}")
        item_tp = get_args(tp)[0]
        if is_dataclass(item_tp):  # e.g. [[train.stages]] tables
            return tuple(
                _apply(item_tp(), v, source, prefix=f"{path}[{i}].") for i, v in enumerate(value)
            )
        return tuple(_coerce(v, item_tp, path, source) for v in value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: '{path}' must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: '{path}' must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{source}: '{path}' must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: '{path}' must be a string, got {value!r}")
        return value
    raise ConfigError(f"{source}: '{path}' has an unsupported type {tp}")


def parse_override(text: str) -> dict[str, Any]:
    """`section.key=value` -> {"section": {"key": value}}; the value is read as TOML
    (numbers, true/false, "strings", [lists]); a bare word is taken as a string."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    key, raw = key.strip(), raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    out: dict[str, Any] = {}
    node = out
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def preset_path(name: str) -> Path:
    """A preset by name (shipped in guim/presets) or a path to a TOML file."""
    p = Path(name)
    if p.suffix == ".toml" and p.exists():
        return p
    shipped = resources.files("guim") / "presets" / f"{name}.toml"
    if shipped.is_file():
        return Path(str(shipped))
    available = sorted(
        f.name.removesuffix(".toml")
        for f in (resources.files("guim") / "presets").iterdir()
        if f.name.endswith(".toml")
    )
    raise ConfigError(f"no preset {name!r}: not a .toml file, and not one of {available}")


def check(cfg: Config, source: str = "config") -> Config:
    """Every value in range and the values consistent with each other; run on every fully
    resolved config (presets, overrides, config.json, and by `train` before it writes)."""
    problems = _range_problems(cfg) + _combination_problems(cfg)
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))
    return cfg


# (section, key, lowest, highest, lowest allowed?, highest allowed?) for numeric settings
_RANGES: tuple[tuple[str, str, float, float, bool, bool], ...] = (
    ("data", "max_len", 1, float("inf"), True, True),
    ("model", "dim", 1, float("inf"), True, True),
    ("model", "n_layers", 1, float("inf"), True, True),
    ("model", "n_heads", 1, float("inf"), True, True),
    ("model", "ffn_dim", 1, float("inf"), True, True),
    ("model", "dropout", 0, 1, True, False),
    ("model", "attn_dropout", 0, 1, True, False),
    ("model", "n_interests", 1, float("inf"), True, True),
    ("model", "interest_temperature", 0, float("inf"), False, True),
    ("model", "n_time_buckets", 1, float("inf"), True, True),
    ("model", "attention_dim", 0, float("inf"), True, True),
    ("model", "ffn_rank", 0, float("inf"), True, True),
    ("model", "freq_alpha", 0, 1, True, True),
    ("model", "freq_low", 1, float("inf"), True, True),
    ("loss", "n_negatives", 1, float("inf"), True, True),
    ("loss", "temperature", 0, float("inf"), False, True),
    ("loss", "contrastive_weight", 0, float("inf"), True, True),
    ("loss", "contrastive_temperature", 0, float("inf"), False, True),
    ("loss", "contrastive_rate", 0, 1, True, True),
    ("loss", "detection_weight", 0, float("inf"), True, True),
    ("loss", "hard_negatives", 0, float("inf"), True, True),
    ("loss", "hard_neighbours", 1, float("inf"), True, True),
    ("loss", "hard_skip", 0, float("inf"), True, True),
    ("loss", "hard_refresh_steps", 0, float("inf"), True, True),
    ("loss", "sas_temperature", 0, float("inf"), False, True),
    ("loss", "intent_weight", 0, float("inf"), True, True),
    ("loss", "n_intents", 2, float("inf"), True, True),
    ("loss", "intent_temperature", 0, float("inf"), False, True),
    ("train", "mask_prob", 0, 1, False, True),
    ("train", "last_mask_prob", 0, 1, True, True),
    ("train", "epochs", 1, float("inf"), True, True),
    ("train", "batch_size", 1, float("inf"), True, True),
    ("train", "lr", 0, float("inf"), False, True),
    ("train", "weight_decay", 0, float("inf"), True, True),
    ("train", "grad_clip", 0, float("inf"), True, True),
    ("train", "warmup_steps", 0, float("inf"), True, True),
    ("train", "ema_decay", 0, 1, True, False),
    ("train", "patience", 1, float("inf"), True, True),
    ("train", "eval_every", 1, float("inf"), True, True),
    ("train", "max_minutes", 0, float("inf"), True, True),
    ("train", "threads", 0, float("inf"), True, True),
    ("distill", "label_weight", 0, float("inf"), True, True),
    ("distill", "score_weight", 0, float("inf"), True, True),
    ("distill", "temperature", 0, float("inf"), False, True),
    ("distill", "attention_weight", 0, float("inf"), True, True),
    ("distill", "relation_heads", 0, float("inf"), True, True),
)


def _range_problems(cfg: Config) -> list[str]:
    out = []
    for section, key, low, high, low_ok, high_ok in _RANGES:
        value = getattr(getattr(cfg, section), key)
        above = value >= low if low_ok else value > low
        below = value <= high if high_ok else value < high
        if not (above and below and value == value):  # value == value: not NaN
            lo = f"{'>=' if low_ok else '>'} {low:g}"
            hi = "" if high == float("inf") else f" and {'<=' if high_ok else '<'} {high:g}"
            out.append(f"'{section}.{key}' must be {lo}{hi}, got {value!r}")
    return out


def _combination_problems(cfg: Config) -> list[str]:
    d, m, t = cfg.data, cfg.model, cfg.train
    out = []
    if m.encoder == "transformer" and m.n_heads >= 1 and m.dim % m.n_heads:
        out.append(f"'model.dim' ({m.dim}) must be divisible by 'model.n_heads' ({m.n_heads})")
    if not 0 <= d.window_stride <= d.max_len:
        out.append(
            f"'data.window_stride' must be between 0 and data.max_len ({d.max_len}), "
            f"got {d.window_stride}"
        )
    if d.recent_targets < 0:
        out.append(f"'data.recent_targets' must be >= 0, got {d.recent_targets}")
    objectives = {t.objective, *(s.objective for s in t.stages if s.objective)}
    overlapping = d.window_stride not in (0, d.max_len)
    if overlapping and (d.windows != "all" or objectives != {"next"}):
        out.append(
            "'data.window_stride' applies to data.windows='all' with the next-item objective only"
        )
    if d.recent_targets and (d.windows == "crop" or objectives != {"next"}):
        out.append(
            "'data.recent_targets' applies to data.windows='all' or 'prefix' with the next-item "
            "objective only"
        )
    if d.windows == "prefix" and objectives != {"next"}:
        out.append(
            "data.windows='prefix' (the default recipe's) needs the next-item objective, one "
            "target a window: set data.windows to 'crop' or 'all' for another objective"
        )
    if cfg.loss.hard_negatives and cfg.loss.kind != "sampled":
        out.append(
            "'loss.hard_negatives' needs loss.kind='sampled' (the full softmax scores every item)"
        )
    if not (t.device in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", t.device)):
        out.append(f"'train.device' must be auto, cpu, cuda or cuda:N, got {t.device!r}")
    depth, rank = m.n_layers, m.ffn_rank
    for i, stage in enumerate(t.stages):
        where = f"'train.stages[{i}]"
        if stage.epochs < 1:
            out.append(f"{where}.epochs' must be >= 1, got {stage.epochs}")
        if stage.n_layers is not None:
            if i == 0:  # the first stage sets the starting depth (model.n_layers: the current)
                depth = stage.n_layers
            if stage.n_layers < 1 or stage.n_layers < depth:
                out.append(
                    f"{where}.n_layers' ({stage.n_layers}) is below the depth before it "
                    f"({depth}); stages may only grow the encoder"
                )
            depth = max(depth, stage.n_layers)
        if stage.contrastive_weight is not None and stage.contrastive_weight < 0:
            out.append(f"{where}.contrastive_weight' must be >= 0")
        top = re.fullmatch(r"top:(\d+)", stage.trainable)
        if stage.trainable != "all" and not (top and 1 <= int(top.group(1)) <= depth):
            out.append(
                f"{where}.trainable' must be 'all' or 'top:N' with 1 <= N <= {depth}, "
                f"got {stage.trainable!r}"
            )
        if m.encoder == "sru" and stage.n_layers not in (None, m.n_layers):
            out.append(f"{where}.n_layers': the sru encoder cannot grow by stages")
        if stage.ffn_rank is not None and stage.ffn_rank < 0:
            out.append(f"{where}.ffn_rank' must be >= 0, got {stage.ffn_rank}")
        if stage.expand or stage.ffn_rank == 0:
            rank = 0
        elif stage.ffn_rank is not None:
            if i > 0 and stage.ffn_rank != rank:
                out.append(
                    f"{where}.ffn_rank' ({stage.ffn_rank}): stages may keep the FFN rank or "
                    f"expand it to full weights (0), not change it from {rank}"
                )
            rank = stage.ffn_rank
    relaxed = (
        m.ffn_rank
        or m.attention != "softmax"
        or any(s.ffn_rank or s.attention not in (None, "softmax") for s in t.stages)
    )
    if relaxed and m.encoder != "transformer":
        out.append("'model.ffn_rank' and 'model.attention' (CoRe) apply to the transformer encoder")
    if m.freq_alpha and m.encoder != "transformer":
        out.append("'model.freq_alpha' (the BSARec filter) applies to the transformer encoder")
    if m.freq_alpha and "next" in objectives and cfg.data.windows != "prefix":
        out.append(
            "'model.freq_alpha' with the next-item objective needs data.windows = 'prefix': the "
            "filter mixes every position of a window, so earlier positions would read their targets"
        )
    if m.kind == "mlp":
        if m.mlp.n_recent < 1:
            out.append(f"'model.mlp.n_recent' must be >= 1, got {m.mlp.n_recent}")
        if objectives != {"next"}:
            out.append("model.kind 'mlp' reads histories left to right: objective 'next' only")
        if t.stages:
            out.append("model.kind 'mlp' has no layers to grow or freeze: no train.stages")
        if m.mlp.tokens == "teacher" and not cfg.distill.teachers:
            out.append("'model.mlp.tokens' = 'teacher' needs distill.teachers")
    dist = cfg.distill
    if dist.teacher_hashes and len(dist.teacher_hashes) != len(dist.teachers):
        out.append("'distill.teacher_hashes' must name one hash per teacher")
    if not dist.teachers and (dist.score_weight or dist.attention_weight or dist.label_weight != 1):
        out.append("'distill' weights need distill.teachers (guim distill --teacher RUN)")
    if dist.teachers and not (dist.label_weight or dist.score_weight or dist.attention_weight):
        out.append("distill: label_weight, score_weight and attention_weight are all 0")
    if dist.teachers and objectives != {"next"}:
        out.append("distillation trains next-item students: train.objective 'next' only")
    if dist.attention_weight and m.kind != "guim":
        out.append("'distill.attention_weight' (MiniLM) needs a transformer student")
    if m.encoder == "sru":
        bad = [a for a in m.attention_layers if not -depth <= a < depth]
        if bad:
            out.append(f"'model.attention_layers' {bad} out of range for {depth} layers")
    return out


def load_config(
    preset: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    dataset: str | Path | None = None,
) -> Config:
    """Defaults, then the preset's differences, then each `--set` override, in that order.
    Preset "auto" is the default recipe, derived from the prepared `dataset` (guim.recipe);
    "none" (or None) is the defaults alone."""

    def overridden(cfg: Config) -> Config:
        for text in overrides:
            cfg = from_dict(parse_override(text), cfg, source=f"--set {text}")
        return cfg

    cfg = Config()
    if preset == "none":
        preset = None
    if preset == "auto":
        if dataset is None:
            raise ConfigError("preset 'auto' is derived from the dataset: give its directory")
        from guim.recipe import auto_preset_for

        # the rules size the windows by the run's max_len, so a --set data.max_len counts
        auto = auto_preset_for(dataset, overridden(cfg).data.max_len)
        cfg = from_dict(auto, cfg, source="preset auto (guim.recipe)")
    elif preset:
        path = preset_path(preset)
        with open(path, "rb") as f:
            cfg = from_dict(tomllib.load(f), cfg, source=str(path))
    return check(overridden(cfg), source=f"preset {preset}" if preset else "config")


def config_from_json(path: str | Path) -> Config:
    """Rebuild the Config saved in a run directory (config.json)."""
    with open(path, encoding="utf-8") as f:
        try:
            doc = json.load(f)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConfigError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a JSON object of config sections")
    return check(from_dict(doc, source=str(path)), source=str(path))
