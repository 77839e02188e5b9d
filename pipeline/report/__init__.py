"""The out-of-distribution evaluation report: one self-contained HTML page and its Markdown twin.

An engine that names no system: :func:`build_report` takes each system's
:class:`~pipeline.results.SystemResult` and the registered :class:`ReportSection` s (in report order;
each system's own in ``pipeline.<system>.report``) and lays out the summary list, one section per
system (its tables in the shape of the published ones, its plots, "How to read this"), the generic
parts of any result without a section, and a closing Provenance section with every catalog version
cited. In the HTML every number links to the versions it came from; in the Markdown every table row
names them through a numbered source.

- :mod:`pipeline.report.document`: the document model (:class:`Document`, :class:`Cell`) and number formats;
- :mod:`pipeline.report.section`: :class:`ReportSection`, what a system adds;
- :mod:`pipeline.report.build`: :func:`build_report`, the generic parts and the provenance;
- :mod:`pipeline.report.storage`: :class:`Report` as files and as a catalog dataset of kind ``report``.

The page has no scripts and no external resources: figures are embedded as base64 PNG data URIs and
the style sheet is inline.
"""

from pipeline.report.build import (
    build_report,
    default_headline,
    generic_parts,
    ood_bars,
    published_source,
    results_table,
)
from pipeline.report.document import Cell, Document, Fragment, f3, figure_name, fmt, g4, pm, rows_by, seeds_text
from pipeline.report.section import ReportSection
from pipeline.report.storage import (
    DEFAULT_TITLE,
    PNG_SIGNATURE,
    REPORT_KIND,
    Report,
    report_dataset,
    report_from_dataset,
    write_report,
)

__all__ = [
    "DEFAULT_TITLE",
    "PNG_SIGNATURE",
    "REPORT_KIND",
    "Cell",
    "Document",
    "Fragment",
    "Report",
    "ReportSection",
    "build_report",
    "default_headline",
    "f3",
    "figure_name",
    "fmt",
    "g4",
    "generic_parts",
    "ood_bars",
    "pm",
    "published_source",
    "report_dataset",
    "report_from_dataset",
    "results_table",
    "rows_by",
    "seeds_text",
    "write_report",
]
