"""Progress of long steps: a Prefect progress artifact (the UI's bar) and, on a terminal, a rich bar."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def _artifact_progress(total: int, description: str) -> Callable[[int], None]:
    """``update(done)`` for a new progress artifact of ``total`` units, sent to the API about 50 times."""
    from prefect.artifacts import create_progress_artifact, update_progress_artifact

    artifact = create_progress_artifact(progress=0.0, description=description)
    every = max(1, total // 50)

    def update(done: int) -> None:
        if done % every == 0 or done >= total:
            update_progress_artifact(artifact, progress=100.0 * min(done, total) / total)

    return update


@contextlib.contextmanager
def counted(total: int, description: str) -> Iterator[Callable[[int], None]]:
    """Yields ``update(done)`` for a step of ``total`` units: the progress artifact, and on a terminal
    a rich bar updated at every call."""
    from rich.progress import Progress

    to_artifact = _artifact_progress(total, description)
    with Progress(transient=True, disable=not sys.stderr.isatty()) as bar:
        job = bar.add_task(description, total=total)

        def update(done: int) -> None:
            bar.update(job, completed=done)
            to_artifact(done)

        yield update


def epoch_progress(epochs: int, description: str) -> Callable[[int, dict[str, Any]], None]:
    """An ``on_epoch`` callback that keeps a progress artifact current (the trainer draws its own bar)."""
    to_artifact = _artifact_progress(epochs, description)
    return lambda epoch, logs: to_artifact(epoch)


def tracked(items: Iterable[T], total: int, description: str) -> Iterator[T]:
    """Yield ``items`` (``total`` of them), keeping a progress artifact and a terminal bar current."""
    with counted(total, description) as update:
        for done, item in enumerate(items, start=1):
            yield item
            update(done)
