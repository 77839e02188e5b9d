"""The halos in the pipeline: their invariant, dimensionless scalars (:mod:`pipeline.halos.scalars`), the
models' inputs, targets and splits (:mod:`pipeline.halos.features`), the evaluation and feature-ranking
datasets (:mod:`pipeline.halos.evaluation`), their summary of evaluation datasets and feature rankings
(:mod:`pipeline.halos.summary`) beside the published numbers (:mod:`pipeline.halos.published`), their
section of the OOD report (:mod:`pipeline.halos.report`) and that section's own figure
(:mod:`pipeline.halos.figures`).

``python -m pipeline.halos.benchmark`` (:mod:`pipeline.halos.benchmark`, not imported here) measures the
scalars' throughput and the workers' peak memory."""

from pipeline.halos.evaluation import EVALUATION_KIND, IMPORTANCE_KIND, evaluation_dataset, importance_dataset
from pipeline.halos.features import (
    CATALOG_MODEL_FIELDS,
    FEATURES_KIND,
    catalog_inputs_valid,
    feature_targets,
    halo_features,
    random_split,
    split_indices,
)
from pipeline.halos.figures import stellar_to_halo_figure
from pipeline.halos.published import PUBLISHED
from pipeline.halos.report import SECTION
from pipeline.halos.scalars import SCALAR_NAMES, HaloScalarsError, halo_scalar_array, halo_scalars
from pipeline.halos.summary import halos_summary, halos_table, summary_rows

__all__ = [
    "CATALOG_MODEL_FIELDS",
    "EVALUATION_KIND",
    "FEATURES_KIND",
    "IMPORTANCE_KIND",
    "PUBLISHED",
    "SCALAR_NAMES",
    "SECTION",
    "HaloScalarsError",
    "catalog_inputs_valid",
    "evaluation_dataset",
    "feature_targets",
    "halo_features",
    "halo_scalar_array",
    "halo_scalars",
    "halos_summary",
    "halos_table",
    "importance_dataset",
    "random_split",
    "split_indices",
    "stellar_to_halo_figure",
    "summary_rows",
]
