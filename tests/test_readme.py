"""The README's commands work: every ```bash and ```python block runs, in order, in a copy.

A block is either run or marked, on the line just before its fence, as
``<!-- illustrative: REASON -->`` (pixi commands, installs, sketches with placeholders):
a marker without a reason fails, and so does any unmarked block that fails. New blocks
are picked up without touching this file.

How the blocks run, as a reader would type them one after the other in a fresh clone:

- in a copy of the repository's files (tracked, and untracked ones git does not ignore),
  committed to a git repository of its own, with ``RUNLAB_LOGS`` pointing into it; the
  copy's ``src/`` comes first on ``PYTHONPATH`` and this environment's ``bin/`` on ``PATH``;
- the only change to the copy: ``epochs`` in ``configs/train.yaml`` becomes 2, so that the
  example trains in seconds (the commands are the README's, unchanged);
- ``bash`` blocks with ``set -euo pipefail`` (every command must succeed); ``python`` blocks
  each in a fresh interpreter, so each must stand on its own, as one pasted alone would;
- ``pytest`` inside a block collects the copy's suite instead of running it: running the
  suite from inside itself would recurse, and the suite is run anyway.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import ROOT, repository_files

README = ROOT / "README.md"
FENCE = re.compile(r"^(?P<indent>[ >]*)```(?P<lang>[A-Za-z0-9_+-]*)\s*$")
MARKER = re.compile(r"^[ >]*<!--\s*illustrative\s*:?(?P<reason>.*?)-->\s*$")
RUN = ("bash", "python")
EPOCHS = 2
BLOCK_TIMEOUT_S = 300

BASH_PRELUDE = """\
set -euo pipefail
pytest() { command python -m pytest --collect-only -q -p no:cacheprovider "$@" >/dev/null; }
"""


@dataclass
class Block:
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    marker: str | None  # the marker line before the fence, if any
    reason: str  # its reason ("" when none)

    @property
    def where(self) -> str:
        return f"README.md:{self.line} ({self.lang})"


def blocks(text: str) -> list[Block]:
    """The fenced code blocks of a Markdown text, with the marker line before each."""
    lines = text.splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, lang = match.group("indent"), match.group("lang")
        end = i + 1
        while end < len(lines) and not FENCE.match(lines[end]):
            end += 1
        body = [
            line[len(indent) :] if line.startswith(indent) else line for line in lines[i + 1 : end]
        ]
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        marker = MARKER.match(before)
        found.append(
            Block(
                line=i + 1,
                lang=lang,
                code="\n".join(body) + "\n",
                marker=before if marker else None,
                reason=marker.group("reason").strip() if marker else "",
            )
        )
        i = end + 1
    return found


def test_blocks_are_found_with_their_markers() -> None:
    text = (
        "intro\n\n<!-- illustrative: needs pixi -->\n```bash\npixi run train\n```\n\n"
        "```python\nprint(1)\n```\n> ```toml\n> a = 1\n> ```\n<!-- illustrative -->\n```bash\nx\n```\n"
    )
    found = blocks(text)
    assert [(b.lang, b.reason, b.marker is not None) for b in found] == [
        ("bash", "needs pixi", True),
        ("python", "", False),
        ("toml", "", False),
        ("bash", "", True),
    ]
    assert found[0].code == "pixi run train\n" and found[2].code == "a = 1\n"


def test_every_marker_gives_a_reason() -> None:
    missing = [
        b.where for b in blocks(README.read_text()) if b.marker is not None and len(b.reason) < 8
    ]
    assert not missing, f"illustrative blocks without a reason: {missing}"


def test_pixi_commands_are_only_in_marked_blocks_with_pip_ones_runnable() -> None:
    """pixi cannot run where the tests run: a block using it is marked, and the README also
    has runnable blocks (the pip way)."""
    found = blocks(README.read_text())

    def calls_pixi(block: Block) -> bool:  # in a command, not in a comment
        return any(
            re.search(r"\bpixi\b", line.split("#", 1)[0]) for line in block.code.splitlines()
        )

    unmarked = [b.where for b in found if b.lang in RUN and b.marker is None and calls_pixi(b)]
    assert not unmarked, f"pixi commands in blocks the test would run: {unmarked}"
    assert sum(b.lang in RUN and b.marker is None for b in found) >= 10


def test_the_readme_opens_with_the_two_commands_for_pixi_and_for_pip() -> None:
    """Before the first section: train and test, with pixi and with pip (plus the install)."""
    head = README.read_text().split("\n## ", 1)[0]
    found = [b for b in blocks(head) if b.lang == "bash"]
    pixi = [b for b in found if "pixi run train" in b.code]
    pip = [b for b in found if b.marker is None and "python tasks/train.py" in b.code]
    assert pixi and "pixi run test" in pixi[0].code
    assert pip and re.search(r"^pytest\b", pip[0].code, re.MULTILINE)
    assert "pip install" in head and ".venv" in head


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lowercase, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_section_links_point_to_headings() -> None:
    text = README.read_text()
    outside_code = re.sub(r"(?ms)^[ >]*```.*?^[ >]*```", "", text)
    anchors = {_slug(h) for h in re.findall(r"(?m)^#{1,6} (.+)$", outside_code)}
    links = re.findall(r"\]\(#([^)]+)\)", text)
    assert links and not [link for link in links if link not in anchors]


# ---------------------------------------------------------------------- running them
@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.fail("the README test needs git and the repository's .git")
    return make_clone(tmp_path_factory.mktemp("readme") / "project")


def make_clone(copy: Path) -> Path:
    """The repository's files at ``copy``, the example shortened, committed."""
    for name in repository_files():
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, copy / name)
    config = copy / "configs" / "train.yaml"
    text, count = re.subn(r"(?m)^epochs: *\d+", f"epochs: {EPOCHS}", config.read_text())
    assert count == 1, "configs/train.yaml has no top-level `epochs:`"
    config.write_text(text)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "init", "-q"], cwd=copy, check=True)
    subprocess.run([*git, "add", "-A"], cwd=copy, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "clone"], cwd=copy, check=True)
    return copy


def _env(copy: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("RUNLAB_DEBUG", None)
    env["RUNLAB_LOGS"] = str(copy / "logs")
    env["PYTHONPATH"] = os.pathsep.join([str(copy / "src"), *filter(None, [env.get("PYTHONPATH")])])
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    env["COLUMNS"] = "120"
    return env


def _run(block: Block, copy: Path) -> subprocess.CompletedProcess:
    if block.lang == "bash":
        command = ["bash", "-c", BASH_PRELUDE + block.code]
    else:
        command = [sys.executable, "-c", block.code]
    return subprocess.run(
        command,
        cwd=copy,
        env=_env(copy),
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )


def test_every_runnable_block_runs(clone: Path) -> None:
    runnable = [b for b in blocks(README.read_text()) if b.lang in RUN and b.marker is None]
    assert runnable
    failures = []
    for block in runnable:
        proc = _run(block, clone)
        if proc.returncode != 0:
            failures.append(
                f"{block.where} exited {proc.returncode}:\n{block.code}"
                f"--- stdout (end)\n{proc.stdout[-2000:]}\n--- stderr (end)\n{proc.stderr[-3000:]}"
            )
    assert not failures, "\n\n".join(failures)
