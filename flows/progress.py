"""Progress of long steps: a Prefect progress artifact (the UI's bar) and, on a terminal, a rich bar."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


@contextlib.contextmanager
def counted(total: int, description: str, *, terminal: bool = True) -> Iterator[Callable[[int], None]]:
    """Yields ``update(done)`` for a step of ``total`` units: the progress artifact is updated about 50
    times, the terminal bar (only on a terminal, and not with ``terminal=False``) at every call."""
    from prefect.artifacts import create_progress_artifact, update_progress_artifact
    from rich.progress import Progress

    artifact = create_progress_artifact(progress=0.0, description=description)
    every = max(1, total // 50)
    with Progress(transient=True, disable=not (terminal and sys.stderr.isatty())) as bar:
        job = bar.add_task(description, total=total)

        def update(done: int) -> None:
            bar.update(job, completed=done)
            if done % every == 0 or done >= total:
                update_progress_artifact(artifact, progress=100.0 * min(done, total) / total)

        yield update


def epoch_progress(epochs: int, description: str) -> Callable[[int, dict[str, Any]], None]:
    """An ``on_epoch`` callback that keeps a progress artifact current (the trainer draws its own bar)."""
    with counted(epochs, description, terminal=False) as update:
        return lambda epoch, logs: update(epoch)


def tracked(items: Iterable[T], total: int, description: str) -> Iterator[T]:
    """Yield ``items`` (``total`` of them), keeping a progress artifact and a terminal bar current."""
    with counted(total, description) as update:
        for done, item in enumerate(items, start=1):
            yield item
            update(done)
