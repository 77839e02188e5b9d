"""The halos in the pipeline: their summary of evaluation datasets and feature rankings
(:mod:`pipeline.halos.summary`), their section of the OOD report (:mod:`pipeline.halos.report`) and that
section's own figure (:mod:`pipeline.halos.figures`)."""

from pipeline.halos.figures import stellar_to_halo_figure
from pipeline.halos.report import SECTION
from pipeline.halos.summary import halos_summary, halos_table, summary_rows

__all__ = ["SECTION", "halos_summary", "halos_table", "stellar_to_halo_figure", "summary_rows"]
