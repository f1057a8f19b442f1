"""Render an HTML report in headless Chromium and save a PNG screenshot of it.

Needs the `chromium` binary (Debian: apt-get install -y chromium). Chromium runs with a fresh,
empty profile and every network feature off, so the page shows only what it embeds.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

BINARIES = ("chromium", "chromium-browser", "google-chrome", "chrome")


def find_chromium() -> str:
    """The first Chromium-like binary on PATH."""
    for name in BINARIES:
        path = shutil.which(name)
        if path:
            return path
    raise FileNotFoundError(
        f"no Chromium found (tried {', '.join(BINARIES)}); apt-get install -y chromium"
    )


def screenshot(
    report: str | Path, out: str | Path, width: int = 1400, height: int = 3000, timeout: int = 120
) -> Path:
    """Save a `width` x `height` PNG of `report` (an HTML file) to `out`."""
    report, out = Path(report).resolve(), Path(out).resolve()
    if not report.exists():
        raise FileNotFoundError(report)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="guim-chromium-") as profile:
        cmd = [
            find_chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            f"--screenshot={out}",
            report.as_uri(),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if not out.exists():
        raise RuntimeError(f"chromium wrote no screenshot (exit {proc.returncode}):\n{proc.stderr}")
    return out
