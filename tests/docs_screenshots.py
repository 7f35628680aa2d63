"""The report screenshots in the docs, made from the real report so they show the product.

    python tests/docs_screenshots.py --write     # regenerate docs/images/<name>.png (+ .json)

For each screenshot in :data:`SHOTS`: the logs directory is made the same way every
time (tests/report_data.py, fixed values), ``runlab report`` renders it, and headless
Chromium (tests/cdp.py) draws the page at a fixed viewport into ``docs/images/<name>.png``.
Beside it, ``<name>.png.json`` holds the sha256 of the page that was drawn (its
self-contained ``index.html``: template, styles, scripts, Plotly and data inline) with the
temporary directory's path replaced; tests/test_docs_screenshots.py renders it again and
fails if the digest differs, so a change to the report cannot leave the docs behind.

docs/images/tune-history.png is hand-made (Optuna's plot of a real study; a study of the
example task takes minutes), so it has no sidecar.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
IMAGES = ROOT / "docs" / "images"
if str(TESTS) not in sys.path:  # run as a script: report_data and cdp sit beside it
    sys.path.insert(0, str(TESTS))

import report_data  # noqa: E402
from cdp import Browser  # noqa: E402

from runlab.cli import main  # noqa: E402

REGENERATE = "python tests/docs_screenshots.py --write"
HAND_MADE = {"tune-history.png"}


@dataclass(frozen=True)
class Shot:
    data: Callable[[Path], list[int]]  # writes the logs directory
    metrics: str  # runlab report --metric
    width: int  # the viewport, CSS pixels (device scale 1: the PNG's size)
    height: int
    scroll_to: str | None = None  # a CSS selector put at the top of the viewport


SHOTS: dict[str, Shot] = {
    # The example sweep (+sweep=lr_seed: 3 learning rates x 3 seeds): the test.acc panel.
    "report-test-acc": Shot(report_data.clean_sweep, "test.acc", 1200, 630, ".curves"),
    # Three weeks of mixed runs: header, leaderboard and the first curves.
    "report-heterogeneous": Shot(report_data.heterogeneous, "train.loss,test.acc", 1400, 1180),
}


def render(name: str, work: Path) -> Path:
    """Make the data of screenshot ``name`` under ``work`` and render its report; the
    report's folder."""
    shot = SHOTS[name]
    logs, out = work / "logs", work / "report"
    shot.data(logs)
    code = main(["report", str(logs), "--metric", shot.metrics, "--out", str(out)])
    if code != 0:
        raise RuntimeError(f"runlab report exited {code} for {name}")
    return out


def digest(report: Path, work: Path) -> str:
    """sha256 of the page as drawn, the same on every run: ``work``'s path (the logs
    directory's, shown in the header and the run records) becomes ``<work>``."""
    page = (report / "index.html").read_text(encoding="utf-8")
    page = page.replace(str(work.resolve()), "<work>").replace(str(work), "<work>")
    # A version string of runlab, if the page ever shows one.
    page = re.sub(r"\brunlab(\s+v?)\d+\.\d+\.\d+\S*", r"runlab\1<version>", page)
    return hashlib.sha256(page.encode("utf-8")).hexdigest()


def screenshot(browser: Browser, name: str, report: Path, png: Path) -> Path:
    """The report's page at ``name``'s viewport, as a PNG at ``png``."""
    shot = SHOTS[name]
    page = browser.open(
        (report / "index.html").resolve().as_uri(), width=shot.width, height=shot.height
    )
    page.wait_for("document.getElementById('runlab-selftest').textContent.length > 0")
    if page.errors:
        raise RuntimeError(f"{name}: the page reported errors: {page.errors}")
    if shot.scroll_to:
        page.evaluate(
            f"(() => {{ const r = document.querySelector({shot.scroll_to!r})"
            ".getBoundingClientRect(); window.scrollTo(0, r.top + window.scrollY - 8); })()"
        )
    # Let Plotly settle (it redraws on resize), then two frames for the paint.
    page.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    data = page.send("Page.captureScreenshot", {"format": "png"})["data"]
    png.write_bytes(base64.b64decode(data))
    return png


def sidecar(name: str) -> Path:
    return IMAGES / f"{name}.png.json"


def write_all(names: list[str]) -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    with Browser() as browser:
        for name in names:
            # One fixed folder, so the path in the header is the same on every run and an
            # unchanged page gives the same PNG.
            work = Path(tempfile.gettempdir()) / "runlab-docs"
            shutil.rmtree(work, ignore_errors=True)
            try:
                report = render(name, work)
                png = screenshot(browser, name, report, IMAGES / f"{name}.png")
                shot = SHOTS[name]
                record = {
                    "sha256": digest(report, work),
                    "viewport": [shot.width, shot.height],
                    "made_by": REGENERATE,
                }
                sidecar(name).write_text(json.dumps(record, indent=2) + "\n")
                print(f"{png.relative_to(ROOT)}  {record['sha256'][:12]}")
            finally:
                shutil.rmtree(work, ignore_errors=True)


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="regenerate docs/images/*.png")
    parser.add_argument("names", nargs="*", help=f"some of {', '.join(SHOTS)} (default: all)")
    args = parser.parse_args(argv)
    if not args.write:
        parser.error("nothing to do: pass --write to regenerate the screenshots")
    unknown = sorted(set(args.names) - set(SHOTS))
    if unknown:
        parser.error(f"no screenshot named {', '.join(unknown)}; known: {', '.join(SHOTS)}")
    write_all(args.names or list(SHOTS))
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
