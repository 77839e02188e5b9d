"""A study's own page: its Markdown tables read back cell for cell (the best in bold), its figures
embedded, its command named; an unusable folder refused before the study starts."""

from __future__ import annotations

import pytest

from pipeline.report.document import Cell
from pipeline.report.storage import write_report
from pipeline.report.study import (
    StudyFigure,
    StudyTable,
    check_report_folder,
    markdown_table,
    study_report,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 16
TABLE = "\n".join(
    [
        "| model | train | error | note |",
        "|---|---|---|---|",
        "| scalars | 50 | **0.0145 ± 0.0004** | a \\| b |",
        "| raw | 50 | 0.073 ± 0.013 | <script> |",
    ]
)


def test_a_markdown_table_is_read_cell_for_cell():
    header, rows = markdown_table(TABLE)
    assert header == ["model", "train", "error", "note"]
    assert rows[0] == ["scalars", "50", Cell("0.0145 ± 0.0004", strong=True), "a | b"]
    assert rows[1] == ["raw", "50", "0.073 ± 0.013", "<script>"]
    with pytest.raises(ValueError, match="row 1 of the table"):
        markdown_table("| a | b |\n|---|---|\n| 1 |")
    with pytest.raises(ValueError, match="not a Markdown pipe table"):
        markdown_table("no table here")


def test_the_page_holds_the_tables_the_figures_and_the_command(tmp_path):
    report = study_report(
        "A study", "What it measures.", [StudyTable(TABLE, "Errors", labels=2)], [StudyFigure(PNG, "Error against size")],
        command=["eqs", "bench", "relaxed", "--out", "a b.json"],
    )  # fmt: skip
    assert report.refs == [] and report.figures == {"figure-1": PNG}
    assert "<strong>0.0145 ± 0.0004</strong>" in report.html and "&lt;script&gt;" in report.html
    assert "<script>" not in report.html.split("</style>")[1]
    assert "eqs bench relaxed --out &#x27;a b.json&#x27;" in report.html  # quoted as a shell would need it
    assert '<td class="label">scalars</td><td class="label">50</td>' in report.html
    assert "| scalars | 50 | **0.0145 ± 0.0004** | a \\| b |" in report.markdown  # no sources column
    assert "![Error against size](figures/figure-1.png)" in report.markdown
    page = write_report(report, tmp_path / "new" / "folder")["html"]
    assert page.read_text() == report.html
    assert (tmp_path / "new" / "folder" / "figures" / "figure-1.png").read_bytes() == PNG


def test_a_folder_that_cannot_take_the_page_is_named(tmp_path):
    assert check_report_folder(tmp_path / "not" / "yet") is None
    (tmp_path / "file").write_text("")
    assert check_report_folder(tmp_path / "file") == f"{tmp_path / 'file'} is a file, not a folder"
