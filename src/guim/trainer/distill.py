"""Teacher loss terms for `guim train` (MiniLM arXiv 2002.10957, BERT2DNN arXiv 2010.10442) and
`distill`, the function behind `guim distill`: a student is an ordinary run whose config names
its teacher runs (distill.teachers, with their config hashes). The teachers run in eval mode
under no_grad on the student's own batch; `Distiller.loss` adds their terms beside the
student's next-item loss in `guim.train.step_loss`. The math is in `guim.distill`.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from guim.config import (
    Config,
    ConfigError,
    DistillConfig,
    check,
    config_from_json,
    from_dict,
    parse_override,
)
from guim.distill import (
    distribution_kl,
    last_layer_qkv,
    minilm_loss,
    relation_heads_kl,
    stack_teachers,
)
from guim.errors import UserError
from guim.io import read_json, write_json

STUDENTS = resources.files("guim") / "presets" / "students"


@dataclass
class Distiller:
    """The teachers of one training run and what their terms need."""

    cfg: DistillConfig
    teachers: list[nn.Module]  # eval mode, no gradients, on the student's device
    teacher_items: list[torch.Tensor]  # (n_items + 1, D_t) each: fixed, computed once
    allowed: torch.Tensor  # (n_items + 1,) bool: items the distributions range over
    # [Q | K | V] of the student's top layer, recorded by a hook when gradients are on
    student_qkv: list[torch.Tensor] = field(default_factory=list)

    @classmethod
    def attach(
        cls, cfg: Config, student: nn.Module, dataset_hash: str, allowed: torch.Tensor
    ) -> Distiller:
        """Load cfg.distill.teachers (checked against the recorded hashes and the dataset),
        initialise the student from the first one where asked (its frozen item table for an
        mlp student with model.mlp.tokens = "teacher"), and hook the student's top layer."""
        from guim.embed import load_run

        d = cfg.distill
        teachers = []
        for i, path in enumerate(d.teachers):
            run = load_run(path)
            if d.teacher_hashes and run.cfg.hash() != d.teacher_hashes[i]:
                raise UserError(
                    f"teacher {path} has config hash {run.cfg.hash()}, the student was started "
                    f"with {d.teacher_hashes[i]}: the teacher run changed"
                )
            info = read_json(Path(path) / "dataset.json")
            if info.get("hash") != dataset_hash:
                raise UserError(f"teacher {path} was trained on another dataset ({info['path']})")
            if not run.model.causal:
                raise UserError(f"teacher {path} is not a next-item (causal) model")
            if cfg.data.max_len > run.cfg.data.max_len:
                raise UserError(
                    f"data.max_len {cfg.data.max_len} exceeds teacher {path}'s "
                    f"{run.cfg.data.max_len}"
                )
            teachers.append(run.model.requires_grad_(False).eval())
        first = teachers[0]
        with torch.no_grad():
            if d.init_from_teacher:
                _copy_matching(first, student)
            if cfg.model.kind == "mlp" and cfg.model.mlp.tokens == "teacher":
                table = first.tokens(torch.arange(first.tokens.n_items + 1))  # (N + 1, D)
                if table.shape != student.tokens.table.shape:
                    raise UserError(
                        f"model.mlp.tokens = 'teacher': the teacher's table is "
                        f"{tuple(table.shape)}, the student's {tuple(student.tokens.table.shape)}"
                    )
                student.tokens.table.copy_(table)
            items = [t.item_vectors() for t in teachers]
        self = cls(d, teachers, items, allowed.clone())
        if d.attention_weight:
            for t in teachers:
                _check_attention(t, "teacher")
            _check_attention(student, "student")
            if not d.relation_heads:
                heads = {t.model_cfg.n_heads for t in teachers} | {student.model_cfg.n_heads}
                if len(heads) > 1:
                    raise UserError(
                        "MiniLM per-head terms need equal head counts (teachers and student: "
                        f"{sorted(heads)}); set distill.relation_heads (MiniLM v2)"
                    )
            student.layers()[-1].qkv.register_forward_hook(self._record)
        return self

    def to(self, device: torch.device) -> Distiller:
        self.teachers = [t.to(device) for t in self.teachers]
        self.teacher_items = [x.to(device) for x in self.teacher_items]
        self.allowed = self.allowed.to(device)
        return self

    def _record(self, _module: nn.Module, _inputs: object, out: torch.Tensor) -> None:
        if torch.is_grad_enabled():  # a training pass, not validation or serving
            self.student_qkv.append(out)

    def loss(self, label_loss: torch.Tensor, batch, out, student: nn.Module) -> torch.Tensor:
        """label_weight x the student's own loss + the weighted teacher terms, on `batch` (on
        the device) whose forward pass gave `out` (guim.models.guim.ModelOutput)."""
        d = self.cfg
        recorded, self.student_qkv = self.student_qkv, []
        loss = d.label_weight * label_loss if d.label_weight else label_loss.new_zeros(())
        if not (d.score_weight or d.attention_weight):
            return loss
        hit = batch.targets > 0  # (B, T): the predicted prefixes
        scores, relations = [], []
        for teacher, items in zip(self.teachers, self.teacher_items, strict=True):
            with torch.no_grad(), last_layer_qkv(teacher) as seen:
                states = teacher.encode(batch.items, batch.events, batch.timestamps)
            if d.score_weight:  # (P, n_items + 1)
                scores.append(teacher.score(teacher.output(states[hit]), items))
            if d.attention_weight:
                relations.append(seen[-1])
        if d.score_weight:
            target = stack_teachers(scores, d.temperature, self.allowed)  # (P, n_items + 1)
            n_all = self.allowed.shape[0]
            items = out.items if out.items.shape[0] == n_all else student.item_vectors()
            student_scores = student.score(out.users, items)  # (P, n_items + 1)
            kl = distribution_kl(target, student_scores, d.temperature, self.allowed)
            loss = loss + d.score_weight * kl
        if d.attention_weight:
            student_qkv, real = recorded[0], batch.items > 0  # the batch's own forward pass
            terms = []
            for teacher, teacher_qkv in zip(self.teachers, relations, strict=True):
                if d.relation_heads:
                    terms.append(
                        relation_heads_kl(
                            teacher_qkv, student_qkv, real, d.relation_heads, student.causal
                        )
                    )
                else:
                    terms.append(
                        minilm_loss(
                            teacher_qkv,
                            student_qkv,
                            real,
                            teacher.model_cfg.n_heads,
                            student.causal,
                            student.model_cfg.n_heads,
                        )
                    )
            loss = loss + d.attention_weight * torch.stack(terms).mean()
        return loss


def _check_attention(model: nn.Module, who: str) -> None:
    m = getattr(model, "model_cfg", None)
    if m is None or m.kind != "guim" or m.encoder != "transformer" or m.attention != "softmax":
        raise UserError(f"MiniLM terms need a softmax-attention transformer {who}")


def _copy_matching(teacher: nn.Module, student: nn.Module) -> list[str]:
    """Copy every teacher tensor whose name and shape the student shares (embeddings, position
    features, the bottom layers, final norm, interest head); returns the names copied."""
    theirs = teacher.state_dict()
    copied = []
    for name, value in student.state_dict().items():
        if name in theirs and theirs[name].shape == value.shape:
            value.copy_(theirs[name])
            copied.append(name)
    return copied


# ---- guim distill: a student run from teacher runs --------------------------------------------


def student_path(name: str) -> Path:
    """A student preset by name (guim/presets/students) or a path to a TOML file."""
    p = Path(name)
    if p.suffix == ".toml" and p.exists():
        return p
    shipped = STUDENTS / f"{name}.toml"
    if shipped.is_file():
        return Path(str(shipped))
    known = sorted(f.name.removesuffix(".toml") for f in STUDENTS.iterdir())
    raise ConfigError(f"no student preset {name!r}: not a .toml file, and not one of {known}")


def student_config(
    teachers: list[Path], student: str, overrides: list[str] | tuple[str, ...] = ()
) -> Config:
    """The first teacher's config (its data settings above all), without its stages, then the
    student preset's differences, then `--set` overrides; the teachers and their config hashes
    recorded in the distill section."""
    base = config_from_json(teachers[0] / "config.json")
    base = replace(base, train=replace(base.train, stages=()), distill=DistillConfig())
    path = student_path(student)
    with open(path, "rb") as f:
        cfg = from_dict(tomllib.load(f), base, source=str(path))
    for text in overrides:
        cfg = from_dict(parse_override(text), cfg, source=f"--set {text}")
    hashes = tuple(config_from_json(t / "config.json").hash() for t in teachers)
    paths = tuple(str(t.resolve()) for t in teachers)
    return check(replace(cfg, distill=replace(cfg.distill, teachers=paths, teacher_hashes=hashes)))


def distill(
    teachers: list[Path],
    student: str,
    out: Path,
    overrides: list[str] | tuple[str, ...] = (),
    dataset: Path | None = None,
    assistant: str | None = None,
    assistant_overrides: list[str] | tuple[str, ...] = (),
    show_progress: bool = True,
) -> Path:
    """Train a student run from teacher runs; with `assistant` (a student preset) first train
    the teacher assistant (MiniLM) into `<out>-assistant` from the teachers, then the student
    from the assistant alone. Writes teachers.json (each teacher's run, hashes and test
    metrics) beside the run. Returns the student's run directory."""
    from guim.train import train

    if not teachers:
        raise UserError("give at least one --teacher RUN")
    for t in teachers:
        if not (t / "config.json").exists() or not (t / "model.safetensors").exists():
            raise UserError(f"teacher {t} is not a finished run (config.json, model.safetensors)")
    if assistant is not None:
        helper = out.parent / f"{out.name}-assistant"
        distill(teachers, assistant, helper, assistant_overrides, dataset, None, (), show_progress)
        teachers = [helper]
    cfg = student_config(teachers, student, overrides)
    if dataset is None:
        dataset = Path(read_json(teachers[0] / "dataset.json")["path"])
    train(cfg, dataset, out, show_progress=show_progress)
    write_json(out / "teachers.json", [_teacher_record(t) for t in teachers])
    return out


def _teacher_record(run_dir: Path) -> dict:
    metrics = read_json(run_dir / "metrics.json") if (run_dir / "metrics.json").exists() else {}
    return {
        "run": str(run_dir.resolve()),
        "config_hash": config_from_json(run_dir / "config.json").hash(),
        "dataset_hash": metrics.get("dataset_hash"),
        "test": metrics.get("test"),
    }
