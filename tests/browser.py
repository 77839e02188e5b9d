"""Headless Chromium for the tests that open a report as a reader would (marked slow; skipped
without Chromium at $EQS_CHROMIUM, default /usr/bin/chromium)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

CHROMIUM = os.environ.get("EQS_CHROMIUM", "/usr/bin/chromium")

COUNT_IMAGES = """<script>
window.addEventListener("load", function () {
  var images = Array.from(document.images);
  var ok = images.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.title = "images " + ok + "/" + images.length;
});
</script>"""


def chromium(*args: str, user_data: Path) -> subprocess.CompletedProcess:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={user_data}",
    ]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)
