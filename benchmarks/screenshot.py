"""Render an HTML report in headless Chromium and save a PNG screenshot of it.

    python benchmarks/screenshot.py REPORT.html OUT.png [--width 1400] [--height 3000]

Needs the `chromium` binary (Debian: apt-get install -y chromium); see guim.bench.screenshot.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from guim.bench.screenshot import screenshot


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="HTML report to render")
    parser.add_argument("out", type=Path, help="PNG to write")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=3000)
    args = parser.parse_args(argv)
    path = screenshot(args.report, args.out, args.width, args.height)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
