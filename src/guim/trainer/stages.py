"""The stage plan of a run (`[[train.stages]]`): every stage with all its fields set, and which
stage an epoch (counted over the whole run) belongs to."""

from __future__ import annotations

from dataclasses import replace

from guim.config import Config, StageConfig


def resolve_stages(cfg: Config) -> tuple[StageConfig, ...]:
    """The stage plan with every field set (no stages: one stage of train.epochs epochs)."""
    m, tr, loss = cfg.model, cfg.train, cfg.loss
    if not tr.stages:
        return (
            StageConfig(
                tr.epochs,
                m.n_layers,
                "copy",
                "all",
                tr.objective,
                loss.contrastive_weight,
                ffn_rank=m.ffn_rank,
                attention=m.attention,
            ),
        )
    out, depth, objective = [], m.n_layers, tr.objective
    weight, rank, attention = loss.contrastive_weight, m.ffn_rank, m.attention
    for s in tr.stages:
        depth, objective = s.n_layers or depth, s.objective or objective
        weight = weight if s.contrastive_weight is None else s.contrastive_weight
        rank = rank if s.ffn_rank is None else s.ffn_rank
        attention = s.attention or attention
        if s.expand:  # CoRe phase 2: the full model
            rank, attention = 0, "softmax"
        out.append(
            replace(
                s,
                n_layers=depth,
                objective=objective,
                contrastive_weight=weight,
                ffn_rank=rank,
                attention=attention,
            )
        )
    return tuple(out)


def stage_of(stages: list[StageConfig], epoch: int) -> int:
    """Index of the stage that `epoch` (0-based, counted over the whole run) belongs to."""
    end = 0
    for i, s in enumerate(stages):
        end += s.epochs
        if epoch < end:
            return i
    return len(stages) - 1


def stage_start(stages: list[StageConfig], index: int) -> int:
    """The first epoch of stage `index` (the run's end for index = len(stages))."""
    return sum(s.epochs for s in stages[:index])
