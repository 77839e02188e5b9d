"""The typed result contract between flows and the report: checked fields and an exact JSON round trip."""

from __future__ import annotations

import json
import math

import pytest

from pipeline.results import ResultFormatError, SummaryRow, SystemResult


def _result() -> SystemResult:
    rows = (
        SummaryRow("a", "test", "error", 0.1, 0.01, 3, ("e@v1", "e@v2", "e@v3"), in_distribution=True, published=0.2),
        SummaryRow("a", "ood", "error", 0.5, 0.02, 3, ("f@v1",), extra={"bins": [1, 2], "note": None}),
        SummaryRow("b", "test", "error", float("nan"), 0.0, 1, ("g@v1",), group="x", in_distribution=True),
    )
    return SystemResult(
        system="demo",
        data={"raw": "raw@v1", "splits": {"train": "t@v1"}},
        models={"a": ["m@v1"]},
        evaluations={"a": {"test": ["e@v1"]}},
        rows=rows,
        details={"rows": [{"k": 1.5}]},
        artifacts={"map": None},
    )


def test_json_round_trip_is_exact():
    result = _result()
    again = SystemResult.from_json(json.loads(json.dumps(result.to_json())))
    assert again.rows[:2] == result.rows[:2] and math.isnan(again.rows[2].mean)
    assert again.data == result.data and again.details == result.details and again.artifacts == result.artifacts
    assert isinstance(again.rows[0].refs, tuple)


def test_what_the_generic_report_asks():
    result = _result()
    assert result.groups() == ["", "x"]
    assert result.best("").model == "a" and result.best("x") is None  # NaN is not a best
    assert result.best("", in_distribution=False).split == "ood"
    assert result.refs()[:3] == ["e@v1", "e@v2", "e@v3"]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"format": 99}, "format"),
        ({"unknown": 1}, "unknown fields"),
        ({"rows": [{"model": "a"}]}, "missing|required"),
        ({"rows": [{"nonsense": 1}]}, "not a summary row"),
        ({"system": ""}, "system"),
    ],
)
def test_malformed_results_are_refused(change, message):
    data = {**_result().to_dict(), **change}
    with pytest.raises((ResultFormatError, TypeError), match=message):
        SystemResult.from_dict(data)


def test_rows_check_their_fields():
    with pytest.raises(ResultFormatError, match="seeds"):
        SummaryRow("a", "test", "error", 0.1, 0.0, 0, ())
    with pytest.raises(ResultFormatError, match="mean must be a number"):
        SummaryRow("a", "test", "error", "0.1", 0.0, 1, ())
