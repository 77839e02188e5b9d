"""The Rietkerk vegetation model in the pipeline: statistics of its patterns on the periodic grid
(:mod:`pipeline.rietkerk.patterns`), the sweeps reduced to the emulator's inputs and targets
(:mod:`pipeline.rietkerk.features`), the regime map over rainfall (:mod:`pipeline.rietkerk.regimes`), its
summary of evaluation datasets and equation discovery (:mod:`pipeline.rietkerk.summary`), its section of
the OOD report (:mod:`pipeline.rietkerk.report`) and that section's own figures
(:mod:`pipeline.rietkerk.figures`)."""

from pipeline.rietkerk.features import (
    FEATURES_KIND,
    STATISTICS_KIND,
    TARGETS,
    emulator_features,
    parameter_pi_groups,
    statistics_dataset,
)
from pipeline.rietkerk.figures import regime_snapshots_figure, snapshot_indices
from pipeline.rietkerk.patterns import REGIMES, PatternStatistics, pattern_statistics
from pipeline.rietkerk.regimes import MAPS, REGIMES_KIND, regime_labels, regime_map, regime_map_figure
from pipeline.rietkerk.report import SECTION
from pipeline.rietkerk.summary import discovery_lines, rietkerk_summary, rietkerk_table, summary_rows

__all__ = [
    "FEATURES_KIND",
    "MAPS",
    "REGIMES",
    "REGIMES_KIND",
    "SECTION",
    "STATISTICS_KIND",
    "TARGETS",
    "PatternStatistics",
    "discovery_lines",
    "emulator_features",
    "parameter_pi_groups",
    "pattern_statistics",
    "regime_labels",
    "regime_map",
    "regime_map_figure",
    "regime_snapshots_figure",
    "rietkerk_summary",
    "rietkerk_table",
    "snapshot_indices",
    "statistics_dataset",
    "summary_rows",
]
