"""The main job behind ``eqs run`` and the README's first command.

Today it checks the catalog; the system pipelines (pendulum, Rietkerk, halos) and the OOD report
join it as they land, each as a subflow that takes and returns catalog refs.
"""

from __future__ import annotations

from prefect import flow

from .catalog_check import catalog_check


@flow(name="eqs-main")
def main_job(catalog: str | None = None) -> dict[str, str]:
    """Run every pipeline of the project against ``catalog``; returns the refs each step produced."""
    return {"catalog-check": catalog_check(catalog)}
