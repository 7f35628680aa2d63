"""The docs' report screenshots show the current report (tests/docs_screenshots.py).

Each docs/images/<name>.png has a sidecar <name>.png.json with the sha256 of the page it
was drawn from; the report is rendered again from the same data and its digest must
match, so a change to the report's template, styles, script or data fails here until the
screenshots are regenerated. The PNGs must be real PNGs of the recorded viewport with more
than one colour, and every image the docs link to must exist. The digest check needs no
browser and runs everywhere; drawing the page again needs Chromium (marked ``browser``).
"""

from __future__ import annotations

import json
import re
import struct
import zlib
from pathlib import Path

import docs_screenshots as shots
import pytest
from cdp import CHROMIUM, Browser

ROOT = shots.ROOT
MESSAGE = f"the report changed: regenerate the screenshots with `{shots.REGENERATE}`"


def png_size_and_colours(path: Path) -> tuple[int, int, int]:
    """Width, height and the number of distinct pixels (up to 2) of an 8-bit RGB(A) PNG,
    read with zlib alone; raises AssertionError if ``path`` is not such a PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    pos, chunks, idat = 8, [], b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        chunks.append(kind)
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND", f"{path}: truncated PNG"
    assert depth == 8 and colour in (2, 6), f"{path}: not 8-bit RGB(A)"
    channels = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * channels
    assert len(raw) == height * (stride + 1), f"{path}: pixel data of the wrong size"
    # Undo each row's filter (PNG spec, section 9.2); stop once two colours are seen.
    prev = bytearray(stride)
    seen: set[bytes] = set()
    for y in range(height):
        ftype = raw[y * (stride + 1)]
        row = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for x in range(stride):
            a = row[x - channels] if x >= channels else 0
            b = prev[x]
            c = prev[x - channels] if x >= channels else 0
            if ftype == 1:
                row[x] = (row[x] + a) & 0xFF
            elif ftype == 2:
                row[x] = (row[x] + b) & 0xFF
            elif ftype == 3:
                row[x] = (row[x] + (a + b) // 2) & 0xFF
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                row[x] = (row[x] + pred) & 0xFF
        seen.update(bytes(row[i : i + channels]) for i in range(0, stride, channels * 7))
        prev = row
        if len(seen) > 1 and y > 0:
            break
    return width, height, len(seen)


@pytest.mark.parametrize("name", list(shots.SHOTS))
def test_screenshot_matches_the_report(name: str, tmp_path: Path) -> None:
    record = json.loads(shots.sidecar(name).read_text())
    report = shots.render(name, tmp_path)
    assert shots.digest(report, tmp_path) == record["sha256"], MESSAGE


@pytest.mark.parametrize("name", list(shots.SHOTS))
def test_screenshot_is_a_png_of_the_viewport_and_not_blank(name: str) -> None:
    record = json.loads(shots.sidecar(name).read_text())
    shot = shots.SHOTS[name]
    assert record["viewport"] == [shot.width, shot.height], MESSAGE
    width, height, colours = png_size_and_colours(shots.IMAGES / f"{name}.png")
    assert (width, height) == (shot.width, shot.height)
    assert colours > 1, f"{name}.png is blank"


@pytest.mark.parametrize("name", list(shots.SERVE_SHOTS))
def test_serve_screenshot_matches_the_dashboard(name: str, tmp_path: Path) -> None:
    record = json.loads(shots.sidecar(name).read_text())
    with shots.serving(name, tmp_path) as server:
        assert shots.serve_digest(name, server, tmp_path) == record["sha256"], MESSAGE
    shot = shots.SERVE_SHOTS[name]
    assert record["viewport"] == [shot.width, shot.height], MESSAGE
    width, height, colours = png_size_and_colours(shots.IMAGES / f"{name}.png")
    assert (width, height) == (shot.width, shot.height) and colours > 1


def test_every_image_in_docs_images_is_made_or_declared_hand_made() -> None:
    pngs = {p.name for p in shots.IMAGES.glob("*.png")}
    made = {f"{name}.png" for name in [*shots.SHOTS, *shots.SERVE_SHOTS]}
    assert pngs == made | shots.HAND_MADE
    assert {p.name for p in shots.IMAGES.glob("*.json")} == {f"{p}.json" for p in made}


IMAGE_LINK = re.compile(r"!\[[^\]]*\]\(([^)\s]+)[^)]*\)|<img[^>]*\bsrc=[\"']([^\"']+)")


def test_every_image_linked_from_the_docs_exists() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    links = []
    for page in pages:
        for m in IMAGE_LINK.finditer(page.read_text(encoding="utf-8")):
            target = m.group(1) or m.group(2)
            if re.match(r"[a-z]+:", target):  # http(s), data: not ours
                continue
            links.append((page.relative_to(ROOT), target, (page.parent / target).is_file()))
    assert any("images/report-test-acc.png" in t for _, t, _ in links)  # the scan finds them
    assert [(str(p), t) for p, t, ok in links if not ok] == []


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_screenshots_draw_at_the_viewport(tmp_path: Path) -> None:
    """What ``--write`` does, into tmp_path: each page draws without errors at its size."""
    with Browser() as browser:
        for name, shot in shots.SHOTS.items():
            work = tmp_path / name
            report = shots.render(name, work)
            png = shots.screenshot(browser, name, report, tmp_path / f"{name}.png")
            width, height, colours = png_size_and_colours(png)
            assert (width, height) == (shot.width, shot.height) and colours > 1
        for name, served in shots.SERVE_SHOTS.items():
            with shots.serving(name, tmp_path / name) as server:
                png = shots.serve_screenshot(browser, name, server, tmp_path / f"{name}.png")
            width, height, colours = png_size_and_colours(png)
            assert (width, height) == (served.width, served.height) and colours > 1
