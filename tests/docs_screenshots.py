"""The report screenshots in the docs, made from the real report so they show the product.

    python tests/docs_screenshots.py --write     # regenerate docs/images/<name>.png (+ .json)

For each screenshot in :data:`SHOTS`: the logs directory is made the same way every
time (tests/report_data.py, fixed values), ``runlab report`` renders it, and headless
Chromium (tests/cdp.py) draws the page at a fixed viewport into ``docs/images/<name>.png``.
Beside it, ``<name>.png.json`` holds the sha256 of the page that was drawn (its
self-contained ``index.html``: template, styles, scripts, Plotly and data inline) with the
temporary directory's path replaced; tests/test_docs_screenshots.py renders it again and
fails if the digest differs, so a change to the report cannot leave the docs behind.

``SERVE_SHOTS``: ``runlab serve``'s pages over the same kind of data, drawn the same way;
their digest covers what the browser receives (the page, its script and style, and the
JSON it fetches, inodes, byte offsets and paths left out).

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

import http.client  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402

import orjson  # noqa: E402
import report_data  # noqa: E402
from cdp import Browser  # noqa: E402

import conftest  # noqa: E402
from runlab.cli import main  # noqa: E402
from runlab.results.serve import Server  # noqa: E402

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


@dataclass(frozen=True)
class ServeShot:
    data: Callable[[Path], list[int]]  # writes the logs directory
    page: str  # the dashboard's page: "/" or "/curves"
    ready: str  # a JavaScript expression, true once the page has drawn its data
    width: int
    height: int


SERVE_SHOTS: dict[str, ServeShot] = {
    # The example sweep's curves, live: one panel per metric, one line per run by group.
    "serve": ServeShot(
        report_data.clean_sweep,
        "/curves",
        "document.querySelectorAll('.runlab-plot').length >= 2 && window.runlab.polls >= 2",
        1200,
        580,
    ),
}


@contextmanager
def serving(name: str, work: Path) -> Iterator[Server]:
    """The data of serve screenshot ``name`` under ``work``, and a server over it."""
    SERVE_SHOTS[name].data(work / "logs")
    with conftest.serving(work / "logs") as server:
        yield server


def _fetch(server: Server, path: str) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    conn.request("GET", f"{path}{'&' if '?' in path else '?'}token={server.token}")
    body = conn.getresponse().read()
    conn.close()
    return body


def serve_digest(name: str, server: Server, work: Path) -> str:
    """sha256 of what the browser gets for ``name``: the page, its script and style, and
    the JSON of both endpoints (inodes and offsets dropped: the rows' logging times make
    the files' sizes vary; ``work``'s path as ``<work>``)."""
    curves = orjson.loads(_fetch(server, "/api/curves"))
    for run in curves["runs"].values():
        for got in run["files"].values():
            got.pop("ino"), got.pop("offset")  # where the files are, and their byte sizes
    parts = [
        _fetch(server, SERVE_SHOTS[name].page),
        _fetch(server, "/static/serve.js"),
        _fetch(server, "/static/serve.css"),
        _fetch(server, "/api/runs"),
        orjson.dumps(curves, option=orjson.OPT_SORT_KEYS),
    ]
    text = b"\0".join(parts).decode("utf-8")
    text = text.replace(str(work.resolve()), "<work>").replace(str(work), "<work>")
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def serve_screenshot(browser: Browser, name: str, server: Server, png: Path) -> Path:
    """The dashboard's page at ``name``'s viewport, once drawn, as a PNG at ``png``."""
    shot = SERVE_SHOTS[name]
    url = f"http://127.0.0.1:{server.port}{shot.page}?token={server.token}"
    page = browser.open(url, width=shot.width, height=shot.height)
    page.wait_for(shot.ready, timeout=60)
    page.evaluate("document.getElementById('live').textContent = 'live'")  # not the time
    page.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    if page.errors:
        raise RuntimeError(f"{name}: the page reported errors: {page.errors}")
    data = page.send("Page.captureScreenshot", {"format": "png"})["data"]
    png.write_bytes(base64.b64decode(data))
    return png


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


def write_serve(browser: Browser, name: str) -> None:
    work = Path(tempfile.gettempdir()) / "runlab-docs"
    shutil.rmtree(work, ignore_errors=True)
    try:
        with serving(name, work) as server:
            png = serve_screenshot(browser, name, server, IMAGES / f"{name}.png")
            shot = SERVE_SHOTS[name]
            record = {
                "sha256": serve_digest(name, server, work),
                "viewport": [shot.width, shot.height],
                "made_by": REGENERATE,
            }
        sidecar(name).write_text(json.dumps(record, indent=2) + "\n")
        print(f"{png.relative_to(ROOT)}  {record['sha256'][:12]}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def write_all(names: list[str]) -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    with Browser() as browser:
        for name in [n for n in names if n in SERVE_SHOTS]:
            write_serve(browser, name)
        for name in [n for n in names if n in SHOTS]:
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
    parser.add_argument(
        "names", nargs="*", help=f"some of {', '.join([*SHOTS, *SERVE_SHOTS])} (default: all)"
    )
    args = parser.parse_args(argv)
    if not args.write:
        parser.error("nothing to do: pass --write to regenerate the screenshots")
    known = [*SHOTS, *SERVE_SHOTS]
    unknown = sorted(set(args.names) - set(known))
    if unknown:
        parser.error(f"no screenshot named {', '.join(unknown)}; known: {', '.join(known)}")
    write_all(args.names or known)
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
