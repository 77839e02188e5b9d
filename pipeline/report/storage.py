"""A built report (:class:`Report`) as files and as a catalog dataset of kind ``report``.

:func:`write_report` writes ``report.html``, ``report.md`` and ``figures/<name>.png`` atomically;
:func:`report_dataset` and :func:`report_from_dataset` turn a report into a dataset of kind
:data:`REPORT_KIND` (registered here with its schema) and back, exactly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from data_catalog import DatasetSchema, VariableSpec, register_schema
from pipeline.outputs import write_atomic

REPORT_KIND = "report"
DEFAULT_TITLE = "Out-of-distribution evaluation report"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass
class Report:
    """A built report: the page, its Markdown twin, the figures (PNG bytes by name) and every cited ref."""

    html: str
    markdown: str
    figures: dict[str, bytes] = field(default_factory=dict)
    refs: list[str] = field(default_factory=list)
    title: str = DEFAULT_TITLE
    created_utc: str = ""
    preset: str | None = None


def _check_report(ds: xr.Dataset) -> list[str]:
    problems = []
    offsets, counts = ds["figure_offset"].values, ds["figure_count"].values
    size = ds.sizes["byte"]
    for name, start, count in zip(ds["figure"].values, offsets, counts, strict=True):
        if start < 0 or count < 0 or start + count > size:
            problems.append(f"figure {name!r}: bytes [{start}, {start + count}) lie outside figure_bytes (0..{size})")
        elif bytes(ds["figure_bytes"].values[start : start + 8]) != PNG_SIGNATURE:
            problems.append(f"figure {name!r} is not a PNG (its first bytes are not the PNG signature)")
    return problems


register_schema(
    DatasetSchema(
        kind=REPORT_KIND,
        description="an OOD evaluation report: HTML and Markdown text, the PNG figures, the cited refs",
        variables={
            "html": VariableSpec(dims=(), dtype="str"),
            "markdown": VariableSpec(dims=(), dtype="str"),
            "figure_bytes": VariableSpec(dims=("byte",), units="1", dtype="integer"),
            "figure_offset": VariableSpec(dims=("figure",), units="1", dtype="integer"),
            "figure_count": VariableSpec(dims=("figure",), units="1", dtype="integer"),
            "cited": VariableSpec(dims=("ref",), dtype="str"),
        },
        coords={"figure": VariableSpec(dims=("figure",), dtype="str")},
        attrs=("title", "report_created_utc"),
        check=_check_report,
    )
)


def write_report(report: Report, directory: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``report.html``, ``report.md`` and ``figures/<name>.png`` under ``directory`` (created).

    Each file is written to a temporary file and renamed into place, figures first and the page
    last, so an interrupted write leaves the previous files or complete new ones, never half a page.
    Returns the paths: ``"html"``, ``"markdown"`` and, per figure, its path relative to ``directory``
    (``"figures/<name>.png"``, as the Markdown links it).
    """
    root = Path(directory)
    (root / "figures").mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name, png in report.figures.items():
        path = root / "figures" / f"{name}.png"
        write_atomic(path, png)
        written[f"figures/{name}.png"] = path
    for key, name, text in (("markdown", "report.md", report.markdown), ("html", "report.html", report.html)):
        write_atomic(root / name, text.encode("utf-8"))
        written[key] = root / name
    return written


def report_dataset(report: Report) -> xr.Dataset:
    """The report as a dataset of kind ``report`` (text as string variables, the figures as one flat
    uint8 array with per-figure offsets and counts, the cited refs), for ``catalog.write``."""
    names = list(report.figures)
    blobs = [np.frombuffer(report.figures[n], dtype=np.uint8) for n in names]
    counts = np.array([b.size for b in blobs], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64) if names else counts
    attrs = {"title": report.title, "report_created_utc": report.created_utc}
    if report.preset is not None:
        attrs["preset"] = report.preset
    return xr.Dataset(
        {
            "html": ((), np.str_(report.html)),
            "markdown": ((), np.str_(report.markdown)),
            "figure_bytes": (
                ("byte",),
                np.concatenate(blobs) if blobs else np.zeros(0, dtype=np.uint8),
                {"units": "1", "long_name": "the PNG files, one after the other"},
            ),
            "figure_offset": (("figure",), offsets, {"units": "1"}),
            "figure_count": (("figure",), counts, {"units": "1"}),
            "cited": (("ref",), np.array(report.refs, dtype=str)),
        },
        coords={"figure": ("figure", np.array(names, dtype=str))},
        attrs=attrs,
    )


def report_from_dataset(ds: xr.Dataset) -> Report:
    """The :class:`Report` stored by :func:`report_dataset` (exactly as it was)."""
    data = ds["figure_bytes"].values
    figures = {
        str(name): data[int(start) : int(start) + int(count)].tobytes()
        for name, start, count in zip(
            ds["figure"].values, ds["figure_offset"].values, ds["figure_count"].values, strict=True
        )
    }
    preset = ds.attrs.get("preset")
    return Report(
        html=str(ds["html"].values.item()),
        markdown=str(ds["markdown"].values.item()),
        figures=figures,
        refs=[str(r) for r in ds["cited"].values],
        title=str(ds.attrs.get("title", DEFAULT_TITLE)),
        created_utc=str(ds.attrs.get("report_created_utc", "")),
        preset=None if preset is None else str(preset),
    )
