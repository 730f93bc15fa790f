#!/usr/bin/env python
"""Render an evaluation report in headless Chromium, save a screenshot, check every plot decoded.

Usage: python scripts/screenshot_report.py PREFIX.html [--png OUT.png] [--height 12000]

Exit status 0 when the page rendered and every ``<img>`` decoded (the report's inline script
writes the count of decoded images into ``data-images-rendered`` on ``<body>``), 1 otherwise,
2 when no Chromium is installed (``apt-get install -y chromium``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


def find_browser() -> str | None:
    for name in BROWSERS:
        exe = shutil.which(name)
        if exe:
            return exe
    return None


def _flags(exe: str) -> list[str]:
    return [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
            "--disable-dev-shm-usage", "--virtual-time-budget=5000"]


def render(html_path: str, png_path: str, *, width: int = 1280, height: int = 12000, timeout: int = 120) -> dict:
    """Screenshot ``html_path`` into ``png_path``; return counts of images expected and rendered."""
    exe = find_browser()
    if exe is None:
        raise FileNotFoundError("no headless Chromium found; apt-get install -y chromium")
    url = "file://" + os.path.abspath(html_path)
    with open(html_path, encoding="utf-8") as fh:
        text = fh.read()
    expected = len(re.findall(r"<img\b", text))
    external = re.findall(r"""(?:src|href)\s*=\s*["'](?:https?:)?//""", text)
    subprocess.run([*_flags(exe), f"--window-size={width},{height}", f"--screenshot={os.path.abspath(png_path)}",
                    url], check=True, timeout=timeout, capture_output=True)
    dom = subprocess.run([*_flags(exe), "--dump-dom", url], check=True, timeout=timeout, capture_output=True,
                         text=True).stdout
    m = re.search(r'data-images-rendered="(\d+)"', dom)
    return {"expected_images": expected, "rendered_images": int(m.group(1)) if m else 0,
            "external_references": len(external), "png": png_path,
            "png_bytes": os.path.getsize(png_path) if os.path.exists(png_path) else 0}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html")
    parser.add_argument("--png", default=None, help="screenshot path (default: HTML path with .png)")
    parser.add_argument("--height", type=int, default=12000)
    args = parser.parse_args(argv)
    png = args.png or os.path.splitext(args.html)[0] + ".png"
    try:
        out = render(args.html, png, height=args.height)
    except FileNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(out)
    ok = out["rendered_images"] == out["expected_images"] > 0 and out["external_references"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
