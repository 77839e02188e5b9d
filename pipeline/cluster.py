"""Where dask work runs: a local cluster by default, or an existing dask.distributed scheduler.

``scheduler`` spellings accepted everywhere (CLI ``--dask-address``, env ``EQS_DASK_ADDRESS``):

- ``None`` / ``"local"``: start a local cluster of worker processes for the duration of the work;
- ``"threads"`` or ``"synchronous"``: dask's in-process schedulers (no cluster; handy for tests
  and small data);
- any other string: the address of a running scheduler (``tcp://host:8786``), e.g. one started by
  dask-jobqueue on SLURM/PBS.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import dask

ENV_ADDRESS = "EQS_DASK_ADDRESS"


class SchedulerAddressError(ValueError):
    """A scheduler spelling that is neither a known name nor an address."""


class SchedulerUnreachableError(SchedulerAddressError, OSError):
    """No dask scheduler answers at the address: a bad option value (a ``SchedulerAddressError``) that
    is also an ``OSError``, as a failed connection is."""


def _not_a_scheduler(chosen: str, reason: str) -> str:
    return (
        f"dask scheduler {chosen!r} (from --dask-address or ${ENV_ADDRESS}) is not 'local', "
        f"{', '.join(repr(x) for x in IN_PROCESS)} or an address such as tcp://host:8786 ({reason})"
    )


IN_PROCESS = ("threads", "synchronous")


def resolve_scheduler(scheduler: str | None) -> str:
    """The scheduler to use: the argument, else ``$EQS_DASK_ADDRESS``, else ``local``."""
    chosen = scheduler or os.environ.get(ENV_ADDRESS) or "local"
    return chosen.strip()


@contextlib.contextmanager
def dask_scheduler(
    scheduler: str | None = None,
    *,
    n_workers: int | None = None,
    threads_per_worker: int = 1,
    connect_timeout: str = "10s",
) -> Iterator[str]:
    """Run the enclosed dask computations on the chosen scheduler; yields its description.

    A local cluster gets ``n_workers`` processes (default: up to 4, one per core) and is shut
    down on exit; an external scheduler is only connected to, never shut down.
    """
    chosen = resolve_scheduler(scheduler)
    if chosen in IN_PROCESS:
        with dask.config.set(scheduler=chosen):
            yield chosen
        return
    from distributed import Client, LocalCluster

    if chosen == "local":
        workers = n_workers or max(1, min(4, os.cpu_count() or 1))
        with (
            LocalCluster(
                n_workers=workers, threads_per_worker=threads_per_worker, processes=True, dashboard_address=":0"
            ) as cluster,
            Client(cluster) as client,
        ):
            yield f"local cluster ({workers} processes x {threads_per_worker} threads) at {client.scheduler.address}"
        return
    if ":" not in chosen:  # a misspelt 'threads', a host without its port
        raise SchedulerAddressError(_not_a_scheduler(chosen, "no port"))
    previous = dask.config.get("scheduler", None)
    try:
        client = Client(chosen, timeout=connect_timeout)
    except (ValueError, OSError, TimeoutError) as exc:
        # a Client that fails half-way can leave itself as dask's default scheduler
        if previous is None:
            dask.config.config.pop("scheduler", None)
        else:
            dask.config.set(scheduler=previous)
        if isinstance(exc, ValueError):
            raise SchedulerAddressError(_not_a_scheduler(chosen, str(exc))) from None
        raise SchedulerUnreachableError(
            f"cannot reach the dask scheduler at {chosen!r} (from --dask-address or ${ENV_ADDRESS}): {exc}"
        ) from exc
    with client:
        yield f"dask scheduler at {chosen}"
