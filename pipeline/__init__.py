"""The mathematics of symmetry and units, feature extraction over datasets, OOD splits, metrics, reports.

May import ``data_catalog`` and ``sims`` (plus dask, xarray, pint, torch).

- ``pipeline.units``: the project's pint registry and dimension vectors of declared quantities;
- ``pipeline.dimensions``: exact dimensional analysis (Pi groups, scaling monomials);
- ``pipeline.invariants``: invariant and equivariant building blocks (numpy, dask, torch);
- ``pipeline.symmetry``: random group elements and the shared invariance/equivariance checks;
- ``pipeline.features``: ``extract(dataset, declaration)`` and writing features to the catalog;
- ``pipeline.cluster``: the dask scheduler to run on (local cluster or an address);
- ``pipeline.normalize``: multiplicative-only feature scaling;
- ``pipeline.results``: the typed result of a system's flow (``SystemResult``, ``SummaryRow``);
- ``pipeline.summaries``: what every system's summary shares (the spread over seeds);
- ``pipeline.report``: the OOD evaluation report engine (HTML and Markdown, figures in ``pipeline.report_figures``);
- ``pipeline.pendulum``, ``pipeline.rietkerk``, ``pipeline.halos``: one package per built-in system, with
  its own features and datasets (Rietkerk patterns and regimes, halo scalars), its summary of its
  evaluations (``summary_rows``), its report section (``SECTION``) and its published numbers.
- ``pipeline.outputs``: files written for people (reports, summaries, predictions), atomically.
"""

from sims.declaration import DeclarationError, Kind, Quantity, Role, SystemDeclaration

__all__ = ["DeclarationError", "Kind", "Quantity", "Role", "SystemDeclaration"]
