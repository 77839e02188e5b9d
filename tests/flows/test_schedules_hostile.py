"""Hostile schedule configs: every flow parameter is checked against the flow's own signature, and
no config gives a traceback, a RecursionError or minutes of parsing."""

from __future__ import annotations

import textwrap
import time
from typing import Annotated, Any

import pytest
from annotated_types import Ge
from click.testing import CliRunner

from flows.cli import main as cli
from flows.schedules import (
    MAX_CONFIG_BYTES,
    MAX_NESTING,
    Choices,
    ScheduleConfigError,
    _value_problem,
    flows_by_name,
    load_schedule_config,
)


def write(tmp_path, text: str, name: str = "schedules.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def entry(schedule: str, flow: str = "rietkerk", parameters: str = "") -> str:
    return f'[[deployment]]\nname = "d"\nflow = "{flow}"\n{schedule}\n[deployment.parameters]\n{parameters}\n'


def problems_of(tmp_path, text: str) -> str:
    with pytest.raises(ScheduleConfigError) as info:
        load_schedule_config(write(tmp_path, text))
    return str(info.value)


@pytest.mark.parametrize("interval", ["nan", "inf", "-inf", "0", "-5", "0.5", "1e300", "true", '"60"'])
def test_intervals_must_be_finite_positive_seconds(tmp_path, interval):
    text = problems_of(tmp_path, entry(f"interval_seconds = {interval}"))
    assert "'interval_seconds' must be a positive number of seconds" in text


@pytest.mark.parametrize(
    "flow, parameters, expected",
    [
        ("rietkerk", "preset = 5", "parameter 'preset' of flow 'rietkerk': expected one of 'smoke', 'quick', 'paper'"),
        ("rietkerk", 'preset = "gigantic"', "got 'gigantic'"),
        ("rietkerk", "seeds = 0", "parameter 'seeds' of flow 'rietkerk': expected an integer >= 1, got 0"),
        ("rietkerk", 'seeds = "3"', "expected an integer >= 1, got '3'"),
        ("rietkerk", "regime_maps = 1", "expected true or false, got 1"),
        ("rietkerk", 'emulators = ["pi", "nope"]', "item 1: expected one of 'pi', 'dimensional', got 'nope'"),
        ("rietkerk", "colour = 1", "flow 'rietkerk' has no parameters ['colour']"),
        ("eqs-main", 'systems = "halos"', "expected a list, each item one of"),
        ("pendulum", 'activation = "swish"', "expected one of 'relu'"),
        ("pendulum", 'models = ["nope"]', "got 'nope'"),
        ("halo-watch", 'directory = "/d"\nformat = "fits"', "expected one of 'tng', 'rockstar', 'ctrees', 'hdf5'"),
        ("halo-watch", 'directory = "/d"\npreset = "gigantic"', "parameter 'preset' of flow 'halo-watch'"),
        ("halos", "snapshot = -1", "expected an integer >= 0, got -1"),
        ("catalog-check", "catalog = 1979-05-27", "expected a string"),
    ],
)
def test_flow_parameters_are_checked_against_the_flows_signature(tmp_path, flow, parameters, expected):
    text = problems_of(tmp_path, entry('cron = "0 3 * * *"', flow, parameters))
    assert expected in text, text


def test_valid_parameters_pass(tmp_path):
    pendulum = 'preset = "quick"\nseeds = 2\nmodels = ["mlp-hnn"]\nactivation = "relu"'
    halos = 'format = "tng"\nsnapshot = 99\nsource = "/x"'
    text = entry('cron = "0 3 * * *"', "pendulum", pendulum) + entry("interval_seconds = 3600.5", "halos", halos)
    specs = load_schedule_config(write(tmp_path, text.replace('name = "d"', 'name = "e"', 1)))
    assert [s.flow for s in specs] == ["pendulum", "halos"]


def test_one_validator_for_every_flow_signature():
    """Every registered flow's parameters have hints the validator understands (no per-flow code)."""
    for flow in flows_by_name().values():
        for name, hint in __import__("typing").get_type_hints(flow.fn, include_extras=True).items():
            if name != "return":
                _value_problem(object(), hint)  # describes any hint without raising
    hint = Annotated[int, Ge(2)] | list[Annotated[str, Choices(ref="flows.halos.flow:MODELS")]] | None
    assert _value_problem(3, hint) is None and _value_problem(["global"], hint) is None
    assert "expected an integer >= 2" in _value_problem(1, hint)
    assert "item 0: expected one of 'mass-only'" in _value_problem(["x"], hint)
    assert _value_problem(True, Any) is None


@pytest.mark.parametrize(
    "schedule, expected",
    [
        ('cron = "0 0 31 2 *"', "never comes due"),
        ('cron = "* * * * * *"', "expected 5 fields"),
        ('cron = "@reboot"', "expected 5 fields"),
        ('cron = "*/0 * * * *"', "is not valid"),
        ('cron = "0 3 * * *"\ntimezone = "Mars/Olympus"', "Invalid timezone"),
        ('cron = "0 3 * * *"\ntimezone = ""', "give an IANA timezone"),
    ],
)
def test_cron_strings_and_timezones(tmp_path, schedule, expected):
    assert expected in problems_of(tmp_path, entry(schedule))


def test_a_config_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(entry('cron = "0 3 * * *"', parameters='catalog = "caf\xe9"').encode("latin-1"))
    with pytest.raises(ScheduleConfigError, match="latin1.toml: not a UTF-8 text file"):
        load_schedule_config(path)
    result = CliRunner().invoke(cli, ["serve", "--config", str(path), "--check"])
    assert result.exit_code == 2 and "not a UTF-8 text file" in result.output


@pytest.mark.parametrize(
    "text",
    [
        "x = " + "[" * 100_000 + "]" * 100_000,
        "x = " + "{a = " * 2_000 + "1" + "}" * 2_000,
        "a." * 100_000 + "b = 1",  # tomllib is quadratic in the parts of a dotted key
        "[" + "a." * 50_000 + "b]",
        entry('cron = "0 3 * * *"', parameters="catalog = " + "[" * (MAX_NESTING + 5) + "]" * (MAX_NESTING + 5)),
    ],
)
def test_deep_configs_are_refused_at_once_with_the_limit(tmp_path, text):
    start = time.perf_counter()
    message = problems_of(tmp_path, text)
    assert "schedules.toml: nested more than" in message and str(MAX_NESTING) in message
    assert time.perf_counter() - start < 10  # a guard against quadratic parsing, not a benchmark


def test_size_limit_and_many_deployments(tmp_path):
    path = tmp_path / "big.toml"
    path.write_text("# padding\n" * (MAX_CONFIG_BYTES // 10 + 1))
    with pytest.raises(ScheduleConfigError, match=f"big.toml: larger than the limit of {MAX_CONFIG_BYTES} bytes"):
        load_schedule_config(path)
    # every deployment named alike: found in one pass, and the listing is bounded
    same = "".join(entry("interval_seconds = 60") for _ in range(2_000))
    start = time.perf_counter()
    message = problems_of(tmp_path, same)
    assert time.perf_counter() - start < 10
    assert "deployment name 'd' is used more than once" in message and len(message) < 20_000


def test_cli_check_refuses_bad_parameters(tmp_path):
    path = write(tmp_path, entry("interval_seconds = nan", parameters='preset = "gigantic"'))
    result = CliRunner().invoke(cli, ["serve", "--config", str(path), "--check"])
    assert result.exit_code == 2
    assert "'interval_seconds'" in result.output and "got 'gigantic'" in result.output
