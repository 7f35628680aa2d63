"""The report page in headless Chromium: measured from the rendered DOM, screenshots kept.

One browser for the module (tests/cdp.py, over --remote-debugging-pipe). For the clean
example sweep, a heterogeneous logs directory (tests/report_data.py) and a 50-group
sweep, at 1400 px: every curve panel's plot area is at least 60 % of its figure's width;
no element overlaps a panel title; the leaderboard lists the best run first and its
link opens that run's record; the group list has every group, the best ten drawn; no
console error or exception. Screenshots go to the test's tmp dir and, when
``RUNLAB_TEST_ARTIFACTS`` is set, there as ``report-<case>.png``.
"""

from __future__ import annotations

import os
import re
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import report_data
from cdp import CHROMIUM, Browser

from runlab.cli import main
from runlab.results.reader import Reader

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)"
    ),
]

# Measured in the page: each panel's figure and plot area, what overlaps its title, the
# leaderboard's first rows, the group list, and what Plotly drew.
MEASURE = r"""
(() => {
  const meets = (a, b) => Math.min(a.right, b.right) - Math.max(a.left, b.left) > 0.5 &&
                          Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top) > 0.5;
  // Each visible element's box, clipped by the ancestors that scroll or hide overflow.
  const boxes = [...document.querySelectorAll('body *')].map(el => {
    let r = el.getBoundingClientRect();
    let box = {left: r.left, right: r.right, top: r.top, bottom: r.bottom};
    const s = getComputedStyle(el);
    if (s.visibility === 'hidden' || s.display === 'none') return null;
    for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
      const o = getComputedStyle(a);
      if (o.overflowX !== 'visible' || o.overflowY !== 'visible') {
        const c = a.getBoundingClientRect();
        box = {left: Math.max(box.left, c.left), right: Math.min(box.right, c.right),
               top: Math.max(box.top, c.top), bottom: Math.min(box.bottom, c.bottom)};
      }
    }
    return box.right - box.left > 0 && box.bottom - box.top > 0 ? [el, box] : null;
  }).filter(x => x);
  const panels = [...document.querySelectorAll('.panel')].map(panel => {
    const gd = panel.querySelector('.runlab-plot');
    const title = panel.querySelector('.panel-title');
    const t = title.getBoundingClientRect();
    const overlaps = boxes.filter(([el, box]) =>
      el !== title && !el.contains(title) && !title.contains(el) && meets(box, t))
      .map(([el]) => el.tagName + '.' + el.getAttribute('class'));
    const plot = gd.querySelector('.nsewdrag').getBoundingClientRect();
    return {title: title.textContent, figure: gd.getBoundingClientRect().width,
            plot: plot.width, share: plot.width / gd.getBoundingClientRect().width,
            overlaps: overlaps,
            visible_groups: new Set(gd.data.filter(d => d.visible !== false && d.meta.kind === 'mean')
                                    .map(d => d.meta.g)).size,
            legend: gd.querySelectorAll('.legend').length};
  });
  const board = [...document.querySelectorAll('table.leaderboard tbody tr')].slice(0, 3)
    .map(tr => Number(tr.dataset.run));
  const items = [...document.querySelectorAll('aside.groups li')];
  const aside = document.querySelector('aside.groups').getBoundingClientRect();
  return {panels: panels, leaderboard: board,
          groups: items.length,
          checked: items.filter(li => li.querySelector('input').checked).length,
          label_chars: Math.max(...items.map(li => li.querySelector('.name').textContent.length)),
          hover_titles: items.filter(li => li.querySelector('label').title.length > 0).length,
          aside_width: aside.width,
          page_overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth,
          images: document.querySelectorAll('img').length,
          selftest: JSON.parse(document.getElementById('runlab-selftest').textContent)};
})()
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with Browser() as b:
        yield b


def _artifact(shot: Path, name: str) -> None:
    folder = os.environ.get("RUNLAB_TEST_ARTIFACTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(folder) / name)


def _open(browser: Browser, out: Path, width: int = 1400) -> Any:
    page = browser.open((out / "index.html").resolve().as_uri(), width=width)
    page.wait_for("document.getElementById('runlab-selftest').textContent.length > 0")
    return page


def _best_run(logs: Path, run_ids: list[int], metric: str) -> int:
    """By hand: the COMPLETE run of ``run_ids`` with the highest last value of ``metric``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the broken run of the heterogeneous case
        table = Reader(logs).select("run_id", "info.status", f"{metric}.last").to_dicts()
    done = [
        r
        for r in table
        if r["run_id"] in run_ids
        and r["info.status"] == "COMPLETE"
        and r[f"{metric}.last"] is not None
    ]
    return max(done, key=lambda r: r[f"{metric}.last"])["run_id"]


@pytest.mark.parametrize(
    ("case", "groups", "drawn"),
    [("clean_sweep", 3, 3), ("heterogeneous", 7, 7), ("fifty_groups", 50, 10)],
)
def test_page_in_chromium(
    browser: Browser, tmp_path: Path, case: str, groups: int, drawn: int
) -> None:
    logs = tmp_path / "logs"
    ids = getattr(report_data, case)(logs)
    out = tmp_path / "rep"
    assert main(["report", str(logs), "--metric", "train.loss,test.acc", "--out", str(out)]) == 0
    rep = orjson.loads((out / "report.json").read_bytes())
    page_text = (out / "index.html").read_text()
    # Self-contained: every script inline, nothing fetched.
    tags = re.findall(r"<script([^>]*)>", page_text)
    assert len(tags) == 3 and not any("src" in t for t in tags)
    outside = re.sub(r"<script[^>]*>.*?</script>", "", page_text, flags=re.S)
    assert not re.search(r"\bsrc\s*=|<link|@import|url\(", outside)

    page = _open(browser, out)
    m = page.evaluate(MEASURE)
    shot = page.screenshot(tmp_path / f"report-{case}.png")
    _artifact(shot, f"report-{case}.png")

    assert page.errors == [] and m["selftest"]["errors"] == []
    assert len(m["panels"]) == 2
    for panel in m["panels"]:
        assert panel["share"] >= 0.6, panel
        assert panel["overlaps"] == [], panel
        assert panel["legend"] == 0  # the list beside the plots is the legend
        assert panel["visible_groups"] == drawn
    assert m["page_overflow"] <= 0  # nothing makes the page scroll sideways
    assert m["groups"] == groups and m["checked"] == drawn
    assert m["hover_titles"] == groups and m["label_chars"] <= 72
    assert m["aside_width"] == 300
    assert m["images"] == 0
    # The best run first, as computed by hand from the runs of the scope.
    best = _best_run(logs, ids, "test.acc")
    assert m["leaderboard"][0] == best == rep["leaderboard"][0]["run_id"]
    # Its link opens its record (what `runlab show` prints), config included.
    opened = page.evaluate(
        "(() => { document.querySelector('table.leaderboard tbody tr a').click();"
        f" const d = document.getElementById('run-{best}');"
        " return [d.open, d.textContent]; })()"
    )
    assert opened[0] is True and "config" in opened[1] and "lr:" in opened[1]
    if case == "fifty_groups":
        # The other 40 are one click away.
        page.evaluate("document.querySelector('aside.groups button[data-pick=all]').click()")
        shown = page.evaluate(
            "new Set(document.querySelector('.runlab-plot').data"
            ".filter(d => d.visible !== false).map(d => d.meta.g)).size"
        )
        assert shown == 50
    if case == "heterogeneous":
        assert [r["run_id"] for r in rep["left_out"]] == [ids[8], ids[11]]
        assert f'href="#run-{ids[8]}"' in page_text  # the failed run's record is linked
    assert page.errors == []


def test_narrow_window_stacks_the_list_under_the_plots(browser: Browser, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    report_data.heterogeneous(logs)
    out = tmp_path / "rep"
    assert main(["report", str(logs), "--metric", "test.acc", "--out", str(out)]) == 0
    page = _open(browser, out, width=800)
    m = page.evaluate(MEASURE)
    assert page.errors == [] and m["selftest"]["errors"] == []
    assert all(p["share"] >= 0.6 and p["overlaps"] == [] for p in m["panels"]), m["panels"]
    assert m["page_overflow"] <= 0


def test_hostile_names_render_as_text(browser: Browser, tmp_path: Path) -> None:
    """A config value that is HTML and a metric name with quotes show as text; nothing
    runs; NaN and inf final values do not break the plots or the tables."""
    from report_data import HOSTILE, QUOTED

    logs = tmp_path / "logs"
    report_data.hostile(logs)
    out = tmp_path / "rep"
    assert (
        main(["report", str(logs), "--metric", f"test.{QUOTED},test.loss", "--out", str(out)]) == 0
    )
    page = _open(browser, out)
    page.evaluate("window.alert = () => { window.__alerted = true; }")
    m = page.evaluate(MEASURE)
    assert page.errors == [] and m["selftest"]["errors"] == []
    assert m["images"] == 0 and page.evaluate("window.__alerted === undefined")
    assert all(p["overlaps"] == [] and p["share"] >= 0.6 for p in m["panels"])
    texts = page.evaluate("document.body.innerText")
    assert HOSTILE in texts and QUOTED in texts and "NaN" in texts and "inf" in texts
    # Plotly's own text (axis titles) shows the characters, not their entities.
    titles = page.evaluate("[...document.querySelectorAll('.ytitle')].map(e => e.textContent)")
    assert f"test.{QUOTED}" in titles, titles
    _artifact(page.screenshot(tmp_path / "report-hostile.png"), "report-hostile.png")


TABLES = """
[...document.querySelectorAll('.tablewrap')].map(w => {
  const label = w.querySelector('td.label');
  return {overflow: w.scrollWidth - w.clientWidth,
          label: label ? label.getBoundingClientRect().width : null};
})
"""


def test_tables_of_many_metrics_keep_readable_labels_and_fit(
    browser: Browser, tmp_path: Path
) -> None:
    """Seven metrics with long names: the final-values table used to scroll sideways
    with its group column squeezed to 58 px, a label wrapped every few characters."""
    names = ["train.loss", "train.acc", "val.loss", "val.balanced_accuracy"]
    names += ["test.acc_top1", "test.acc_top5", "test.loss"]
    logs = tmp_path / "logs"
    for i in range(12):
        config = report_data.example_config(lr=round(0.001 * 1.8**i, 6), seed=0, epochs=5)
        curves = {m: [0.1 * (i + 1) + 0.01 * s for s in range(5)] for m in names}
        report_data.make_run(logs, config, curves)
    out = tmp_path / "rep"
    assert main(["report", str(logs), "--all", "--metric", ",".join(names), "--out", str(out)]) == 0
    page = _open(browser, out)
    tables = page.evaluate(TABLES)
    _artifact(page.screenshot(tmp_path / "report-many-metrics.png"), "report-many-metrics.png")
    assert page.errors == []
    assert len(tables) >= 2
    for table in tables:
        assert table["overflow"] <= 0, tables
        assert table["label"] is None or table["label"] >= 200, tables
