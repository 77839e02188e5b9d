"""The mathematics of symmetry and units, feature extraction over datasets, OOD splits, metrics, reports.

May import ``data_catalog`` and ``sims`` (plus dask, xarray, pint, torch).
"""
