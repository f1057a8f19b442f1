"""Rich progress display shared by every long-running step (prepare, synth, training, bench)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")

console = Console(stderr=True)


def make_progress(transient: bool = False) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=transient,
    )


def track(
    iterable: Iterable[T], description: str, total: int | None = None, enabled: bool = True
) -> Iterator[T]:
    """Iterate with a progress bar (elapsed time and ETA)."""
    if not enabled:
        yield from iterable
        return
    with make_progress(transient=True) as progress:
        task = progress.add_task(description, total=total, info="")
        for x in iterable:
            yield x
            progress.advance(task)


class Steps:
    """Named sequential steps of one job, each shown with a spinner and its elapsed time.

    with Steps("prepare") as steps:
        steps.start("reading")   # finishes the previous step, if any
        ...
    """

    def __init__(self, title: str, enabled: bool = True) -> None:
        self.title = title
        self.enabled = enabled
        self.timings: dict[str, float] = {}
        self._progress: Progress | None = None
        self._task = None
        self._name: str | None = None
        self._t0 = 0.0

    def __enter__(self) -> Steps:
        if self.enabled:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn(f"[bold]{self.title}[/]: " + "{task.description}"),
                TimeElapsedColumn(),
                console=console,
                transient=True,
            )
            self._progress.__enter__()
        return self

    def start(self, name: str) -> None:
        self._finish()
        self._name, self._t0 = name, time.perf_counter()
        if self._progress is not None:
            self._task = self._progress.add_task(name, total=None)

    def _finish(self) -> None:
        if self._name is None:
            return
        elapsed = time.perf_counter() - self._t0
        self.timings[self._name] = elapsed
        if self._progress is not None and self._task is not None:
            self._progress.remove_task(self._task)
            console.print(f"  [green]✓[/] {self.title}: {self._name} [dim]({elapsed:.1f}s)[/]")
        self._name = None

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self._finish()
        if self._progress is not None:
            self._progress.__exit__(*exc)
