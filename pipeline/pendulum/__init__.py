"""The springy double pendulum in the pipeline: its summary of evaluation datasets
(:mod:`pipeline.pendulum.summary`) and its section of the OOD report (:mod:`pipeline.pendulum.report`)."""

from pipeline.pendulum.report import SECTION
from pipeline.pendulum.summary import pendulum_summary, pendulum_table, summary_rows

__all__ = ["SECTION", "pendulum_summary", "pendulum_table", "summary_rows"]
