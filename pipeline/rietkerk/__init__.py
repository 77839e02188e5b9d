"""The Rietkerk vegetation model in the pipeline: its summary of evaluation datasets and equation discovery
(:mod:`pipeline.rietkerk.summary`), its section of the OOD report (:mod:`pipeline.rietkerk.report`) and
that section's own figures (:mod:`pipeline.rietkerk.figures`)."""

from pipeline.rietkerk.figures import regime_snapshots_figure, snapshot_indices
from pipeline.rietkerk.report import SECTION
from pipeline.rietkerk.summary import discovery_lines, rietkerk_summary, rietkerk_table, summary_rows

__all__ = [
    "SECTION",
    "discovery_lines",
    "regime_snapshots_figure",
    "rietkerk_summary",
    "rietkerk_table",
    "snapshot_indices",
    "summary_rows",
]
