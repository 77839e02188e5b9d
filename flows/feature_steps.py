"""The features step without Prefect: find a dataset's declaration, extract and store features.

Shared by ``eqs features`` (which must start fast) and the ``features`` flow.
"""

from __future__ import annotations

from data_catalog import Catalog
from pipeline.cluster import dask_scheduler
from pipeline.features import declaration_of, write_features
from sims.declaration import (
    DeclarationError,
    SystemDeclaration,
    load_builtin_systems,
    system_for_kind,
)


def declaration_for(catalog: Catalog, ref: str) -> SystemDeclaration:
    """The declaration of a stored dataset: the registered system of its kind, else the
    declaration the dataset records in its ``declaration`` attribute."""
    load_builtin_systems()
    info = catalog.info(ref)
    found = system_for_kind(info.kind)
    if found is not None:
        return found
    if "declaration" in info.attrs:
        return declaration_of(catalog.open(ref), source=f"dataset {info.ref}")
    raise DeclarationError(
        f"dataset {info.ref} has kind {info.kind!r}, which no registered system produces, and records no "
        "'declaration' attribute; pass a declaration (eqs features --declaration FILE.json or --system NAME)"
    )


def run_features(
    catalog: str,
    ref: str,
    declaration: SystemDeclaration | str,
    chunk_size: int | None = None,
    dask_address: str | None = None,
    name: str | None = None,
) -> str:
    """Extract and store the features of ``ref``; returns the features' ref.

    ``declaration`` is a parsed declaration (``eqs features`` has one already: it is not parsed
    again) or its JSON text (the flow's task, whose cache key needs the text)."""
    if isinstance(declaration, str):
        declaration = SystemDeclaration.from_json(declaration, source="flow parameter declaration_json")
    with dask_scheduler(dask_address):
        return write_features(Catalog(catalog), ref, declaration, chunk_size=chunk_size, name=name)
