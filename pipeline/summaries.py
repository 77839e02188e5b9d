"""What every system's summary shares: the spread over seeds.

Each system summarises its evaluation datasets in ``pipeline.<system>.summary`` (per model and split,
mean and std over seeds beside the published numbers, with the catalog refs every number came from;
their Markdown tables; and ``summary_rows``, the summary as :class:`pipeline.results.SummaryRow` s).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def sample_std(values: Sequence[float]) -> float:
    """Standard deviation over seeds with Bessel's correction (ddof = 1); 0 for a single seed."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def spread_text(values: Sequence[float]) -> str:
    """The mean ± the sample std over seeds (3 and 2 significant digits), the mean alone for one seed:
    the benchmarks' tables."""
    mean = float(np.mean(values))
    return f"{mean:.3g} ± {sample_std(values):.2g}" if len(values) > 1 else f"{mean:.3g}"
