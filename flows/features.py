"""The features step: a raw dataset in the catalog -> its invariant, dimensionless features.

The task takes and returns refs; its cache key is the input's content hash and the declaration,
so an unchanged dataset is not recomputed. Where the dask work runs (a local
cluster, or the scheduler at ``dask_address`` / ``$EQS_DASK_ADDRESS``) does not change the result
and is not part of the key.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from data_catalog import Catalog

from .conventions import catalog_task, in_catalog
from .feature_steps import declaration_for, run_features


@catalog_task
def extract_features(catalog: str, ref: str, declaration_json: str) -> str:
    """Prefect task around :func:`run_features` (scheduler from ``$EQS_DASK_ADDRESS`` or local;
    automatic chunking, which never changes the result)."""
    return run_features(catalog, ref, declaration_json)


@flow(name="features")
def features_flow(ref: str, catalog: str | None = None, declaration_json: str | None = None) -> str:
    """Compute the features of dataset ``ref`` (its declaration found from its kind unless given)."""
    root = str(Catalog(catalog).root)
    cat = Catalog(root)
    concrete = cat.resolve(ref)
    declaration_json = declaration_json or declaration_for(cat, concrete).to_json()
    out = in_catalog(extract_features, root)(root, concrete, declaration_json)
    get_run_logger().info("features of %s: %s", concrete, out)
    return out
