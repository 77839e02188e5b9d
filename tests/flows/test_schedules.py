"""Schedule configs for ``eqs serve``: validation, and (slow) a real server running a deployment."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from flows.cli import main as cli
from flows.schedules import ScheduleConfigError, load_schedule_config

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "schedules.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_the_example_config_is_valid():
    specs = load_schedule_config(ROOT / "docs" / "schedules.example.toml")
    assert [(s.flow, s.name, s.schedule) for s in specs] == [
        ("catalog-check", "nightly", "cron 0 3 * * * (UTC)"),
        ("eqs-main", "nightly-report", "cron 30 3 * * * (UTC)"),
        ("eqs-main", "weekly", "cron 0 4 * * 1 (UTC)"),
        ("halo-watch", "incoming", "every 3600 s"),
    ]


def test_every_problem_is_reported_with_its_deployment(tmp_path):
    path = write(
        tmp_path,
        """
        colour = "blue"
        [[deployment]]
        name = "a"
        flow = "catalog-check"
        cron = "61 * * * *"
        [deployment.parameters]
        catalgo = "/x"

        [[deployment]]
        name = "a"
        flow = "no-such-flow"
        interval_seconds = -5

        [[deployment]]
        name = "f"
        flow = "features"
        interval_seconds = 60
        timezone = "UTC"
        """,
    )
    with pytest.raises(ScheduleConfigError) as info:
        load_schedule_config(path)
    text = str(info.value)
    for expected in (
        str(path),
        "unknown top-level keys ['colour']",
        "deployment name 'a' is used more than once",
        "deployment[0] ('a'): cron '61 * * * *'",
        "has no parameters ['catalgo']",
        "deployment[1] ('a'): 'flow' 'no-such-flow' is not one of",
        "'interval_seconds' must be a positive number",
        "deployment[2] ('f'): 'timezone' applies to 'cron' schedules only",
        "flow 'features' needs parameters ['ref']",
    ):
        assert expected in text, expected


def test_a_fit_of_a_declared_system_can_be_scheduled(tmp_path):
    good = write(
        tmp_path,
        """
        [[deployment]]
        name = "particles"
        flow = "fit"
        cron = "0 2 * * *"
        [deployment.parameters]
        data = "/data/particles.nc"
        declaration = "/data/particles.json"
        preset = "quick"
        """,
    )
    (spec,) = load_schedule_config(good)
    assert (spec.flow, spec.parameters["preset"]) == ("fit", "quick")
    bad = write(tmp_path, '[[deployment]]\nname = "p"\nflow = "fit"\ncron = "0 2 * * *"\n')
    with pytest.raises(ScheduleConfigError, match=r"flow 'fit' needs parameters \['data', 'declaration'\]"):
        load_schedule_config(bad)


def test_unreadable_configs(tmp_path):
    with pytest.raises(ScheduleConfigError, match="no such schedule config"):
        load_schedule_config(tmp_path / "missing.toml")
    with pytest.raises(ScheduleConfigError, match="not valid TOML"):
        load_schedule_config(write(tmp_path, "[[deployment]\n"))
    with pytest.raises(ScheduleConfigError, match="no \\[\\[deployment\\]\\] tables"):
        load_schedule_config(write(tmp_path, "# nothing\n"))


def test_cli_check_and_refusal_without_a_server(tmp_path, monkeypatch):
    example = str(ROOT / "docs" / "schedules.example.toml")
    result = CliRunner().invoke(cli, ["serve", "--config", example, "--check"])
    assert result.exit_code == 0 and "catalog-check/nightly" in result.output
    bad = write(tmp_path, "[[deployment]]\nname = 'x'\nflow = 'catalog-check'\n")
    result = CliRunner().invoke(cli, ["serve", "--config", str(bad)])
    assert result.exit_code == 2 and "exactly one of 'cron' and 'interval_seconds'" in result.output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_a_real_server_runs_a_served_deployment(tmp_path):
    """`prefect server start`, `eqs serve`, then a triggered run of the deployment completes."""
    port = _free_port()
    env = dict(os.environ)
    env.update(
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        EQS_CATALOG=str(tmp_path / "catalog"),
    )
    env.pop("PREFECT_API_KEY", None)
    config = write(
        tmp_path,
        f"""
        [[deployment]]
        name = "hourly"
        flow = "catalog-check"
        cron = "0 * * * *"
        [deployment.parameters]
        catalog = "{tmp_path / "catalog"}"
        """,
    )
    bin_dir = Path(sys.executable).parent
    server = subprocess.Popen(
        [str(bin_dir / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    served = None
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2)
                break
            except OSError:
                if time.time() > deadline:
                    pytest.fail("the Prefect server did not start within 120 s")
                time.sleep(1)
        served = subprocess.Popen(
            [str(bin_dir / "eqs"), "serve", "--config", str(config)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        trigger = (
            "from prefect.deployments import run_deployment\n"
            "run = run_deployment('catalog-check/hourly', timeout=180)\n"
            "print(run.state.type.value)\n"
        )
        deadline = time.time() + 60
        while True:  # the deployment exists once `eqs serve` has registered it
            result = subprocess.run(
                [sys.executable, "-c", trigger], env=env, capture_output=True, text=True, timeout=240
            )
            if result.returncode == 0 or time.time() > deadline:
                break
            time.sleep(2)
        assert result.stdout.strip().endswith("COMPLETED"), result.stdout + result.stderr
        assert (tmp_path / "catalog" / "catalog-verification" / "v1.h5").exists()
    finally:
        for process in (served, server):
            if process is not None:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
