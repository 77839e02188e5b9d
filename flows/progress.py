"""Progress of long steps: a Prefect progress artifact (the UI's bar) and, on a terminal, a rich bar."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def epoch_progress(epochs: int, description: str):
    """An ``on_epoch`` callback that keeps a Prefect progress artifact (the UI's progress bar) current."""
    from prefect.artifacts import create_progress_artifact, update_progress_artifact

    artifact = create_progress_artifact(progress=0.0, description=description)
    every = max(1, epochs // 50)

    def update(epoch: int, logs: dict[str, Any]) -> None:
        if epoch % every == 0 or epoch == epochs:
            update_progress_artifact(artifact, progress=100.0 * epoch / epochs)

    return update


def tracked(items: Iterable[T], total: int, description: str) -> Iterator[T]:
    """Yield ``items`` (``total`` of them), keeping a progress artifact and a terminal bar current."""
    from prefect.artifacts import create_progress_artifact, update_progress_artifact
    from rich.progress import Progress

    artifact = create_progress_artifact(progress=0.0, description=description)
    every = max(1, total // 50)
    with Progress(transient=True, disable=not sys.stderr.isatty()) as bar:
        job = bar.add_task(description, total=total)
        for done, item in enumerate(items, start=1):
            yield item
            bar.update(job, completed=done)
            if done % every == 0 or done == total:
                update_progress_artifact(artifact, progress=100.0 * min(done, total) / total)
