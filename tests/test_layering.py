"""Layering, read from the source with ast: the benchmark scores frozen runs and the model code
is the model only, so neither imports the trainer, directly or through another guim module."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
# the trainer, its building blocks and the chains that call it
TRAINER = ("guim.train", "guim.trainer", "guim.quickstart")


def is_trainer(name: str) -> bool:
    return any(name == t or name.startswith(f"{t}.") for t in TRAINER)


def module_file(name: str) -> Path | None:
    base = SRC.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.exists():
            return path
    return None


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def direct_imports(name: str) -> set[str]:
    """guim modules that `name` imports anywhere in its body (functions included), plus the
    packages above each of them (importing a.b.c runs a/__init__ and a/b/__init__)."""
    path = module_file(name)
    assert path is not None, name
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            # `from a import b` may import the submodule a.b
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for target in targets:
            if target.split(".")[0] == "guim" and module_file(target) is not None:
                parts = target.split(".")
                found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    found.discard(name)
    return {m for m in found if module_file(m) is not None}


@cache
def closure(name: str) -> frozenset[str]:
    seen, todo = set(), [name]
    while todo:
        current = todo.pop()
        for m in direct_imports(current) - seen:
            seen.add(m)
            todo.append(m)
    return frozenset(seen)


def modules_under(package: str) -> list[str]:
    root = SRC.joinpath(*package.split("."))
    return sorted(module_name(p) for p in root.rglob("*.py"))


@pytest.mark.parametrize("name", modules_under("guim.bench") + modules_under("guim.models"))
def test_bench_and_models_never_import_the_trainer(name):
    reached = {m for m in closure(name) if is_trainer(m)}
    assert not reached, f"{name} imports {sorted(reached)} (directly or through guim modules)"


def test_the_check_sees_imports():
    """The checker itself: quickstart reaches the trainer, and bench/run reaches bench/curves."""
    assert "guim.train" in closure("guim.quickstart")
    assert "guim.bench.curves" in closure("guim.bench.run")
    assert "guim.models.guim" in closure("guim.models")
