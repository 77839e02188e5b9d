"""One Prefect test server for all flow tests, with a throwaway PREFECT_HOME."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

# before Prefect is imported anywhere in the session
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="eqs-prefect-home-")
atexit.register(shutil.rmtree, os.environ["PREFECT_HOME"], ignore_errors=True)
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
# the flows' log lines still reach the console; sending each to the test server too cost the smoke main
# job about a tenth of its time (client and server), and no test reads them back from the API
os.environ["PREFECT_LOGGING_TO_API_ENABLED"] = "false"
# the test server's event services (storing events, recording task runs from them, automations) took half
# of its CPU in the smoke main job; no test reads events, task runs or automations back
for _service in ("EVENT_PERSISTER", "TASK_RUN_RECORDER", "TRIGGERS"):
    os.environ[f"PREFECT_SERVER_SERVICES_{_service}_ENABLED"] = "false"

import pytest  # noqa: E402
from prefect.testing.utilities import prefect_test_harness  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def prefect_server():
    with prefect_test_harness(server_startup_timeout=120):
        yield
