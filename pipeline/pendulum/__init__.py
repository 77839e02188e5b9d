"""The springy double pendulum in the pipeline: its summary of evaluation datasets
(:mod:`pipeline.pendulum.summary`), its section of the OOD report (:mod:`pipeline.pendulum.report`) and the
published numbers both are compared with (:mod:`pipeline.pendulum.published`)."""

from pipeline.pendulum.published import PUBLISHED
from pipeline.pendulum.report import SECTION
from pipeline.pendulum.summary import pendulum_summary, pendulum_table, summary_rows

__all__ = ["PUBLISHED", "SECTION", "pendulum_summary", "pendulum_table", "summary_rows"]
