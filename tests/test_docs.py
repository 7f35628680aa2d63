"""Every code block in README.md and the docs site runs, as a reader would type it.

Usable two ways: under pytest (one test per page: README.md and every page in the
``nav`` of ``mkdocs.yml``), and as a script::

    python tests/test_docs.py [--root DIR] [--pixi] [--time] [PAGE ...]

which runs the given pages (paths relative to DIR; default: the repository holding this
file, all pages) and prints one line per page: PASS/FAIL and the seconds it took. The
script imports nothing from the tree it checks: it only runs the pages' commands.

The conventions a page follows (docs/developing.md explains them for writers):

- ```` ```console ````: a shell session. ``$ `` lines are commands (a trailing ``\\``
  continues onto the next line); the whole block is ONE bash process, so ``cd`` and
  ``export`` persist within the block. The lines after a command, up to the next ``$ ``
  line, are its expected output: each non-blank one must appear, in order, among the lines
  the command printed (stdout and stderr together), whole, with ``...`` matching any text
  and runs of whitespace matching any whitespace; other lines may come in between. A
  command exiting non-zero fails the page, unless the block is marked
  ``<!-- expect-fail -->`` (then at least one command must fail, and the block goes on).
- ```` ```python ````: a script run with this environment's ``python`` from the copy's root,
  which must exit 0. ```` ```bash ```` / ```` ```sh ````: run with ``bash -e``, must exit 0.
- any other info string is only shown, unless the line before the fence is
  ``<!-- file: relative/path -->``: then the content is written to that path of the copy.
- markers on the line right before a fence: ``<!-- illustrative: REASON -->`` (not run;
  the reason is required), ``<!-- pixi -->`` (needs pixi or a GPU: run only with
  ``--pixi``), ``<!-- expect-fail -->``.
- ``<!-- needs: docs/other.md -->`` among a page's first lines: that page's blocks run
  first, in the same copy.

Each page runs in a fresh temporary copy of the repository (tracked files and untracked
ones git does not ignore, committed to a git repository of its own), with this
environment's ``bin/`` first on ``PATH``, the copy's ``src/`` first on ``PYTHONPATH`` and
``RUNLAB_LOGS`` unset. ``pytest`` (and ``python -m pytest``) inside a shell block only
checks that pytest runs (``--version``): running the suite from inside itself would
recurse, and the suite runs anyway. With ``--pixi`` only the ``<!-- pixi -->`` blocks run (and the
``file:`` blocks, which set up the copy), with pixi's own ``python``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^(?P<indent>[ >]*)(?P<ticks>`{3,})\s*(?P<lang>[A-Za-z0-9_+-]*)[^`]*$")
MARKER = re.compile(r"^\s*<!--\s*(?P<kind>[a-z-]+)\s*(?::(?P<arg>.*?))?\s*-->\s*$")
NEEDS = re.compile(r"<!--\s*needs\s*:\s*(?P<page>\S+?)\s*-->")
RUN = {"console", "python", "bash", "sh"}
MARKERS = {"illustrative", "pixi", "expect-fail", "file"}
BLOCK_TIMEOUT_S = 300
SENTINEL = "@@runlab-docs-command-done@@"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
# `pytest` in a shell block collects the copy's suite instead of running it (see above).
SHELL_PRELUDE = """\
pytest() { command python -m pytest --version >/dev/null; }
python() {
  if [ "${1-}" = "-m" ] && [ "${2-}" = "pytest" ]; then shift 2; pytest "$@"; else command python "$@"; fi
}
"""


class PageError(Exception):
    """A page's block failed or is malformed: the message says where and why."""


@dataclass
class Block:
    page: str
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    markers: dict[str, str] = field(default_factory=dict)  # kind -> argument ("" when none)

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line} ({self.lang or 'text'})"


@dataclass
class Command:
    text: str  # the command as bash reads it (continuation lines joined by their newlines)
    expected: list[str]  # the non-blank expected output lines


# ---------------------------------------------------------------------- reading pages
def _markers_before(lines: list[str], fence: int) -> dict[str, str]:
    """The markers on the lines right before line ``fence`` (a stack of comments)."""
    found: dict[str, str] = {}
    j = fence - 1
    while j >= 0 and (match := MARKER.match(lines[j])) and match.group("kind") in MARKERS:
        found[match.group("kind")] = (match.group("arg") or "").strip()
        j -= 1
    return found


def blocks(text: str, page: str = "page.md") -> list[Block]:
    """The fenced code blocks of a Markdown text, each with the markers right before it."""
    lines = text.splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, ticks = match.group("indent"), match.group("ticks")
        close = re.compile(rf"^[ >]*{ticks}`*\s*$")
        end = i + 1
        while end < len(lines) and not close.match(lines[end]):
            end += 1
        body = [
            line[len(indent) :] if line.startswith(indent) else line.lstrip(" >")
            for line in lines[i + 1 : end]
        ]
        code = "\n".join(body) + "\n" if body else ""
        found.append(Block(page, i + 1, match.group("lang"), code, _markers_before(lines, i)))
        i = end + 1
    return found


def needs(text: str) -> list[str]:
    """The pages named by ``<!-- needs: PAGE -->`` among a page's first ten lines."""
    head = "\n".join(text.splitlines()[:10])
    return [m.group("page") for m in NEEDS.finditer(head)]


def commands(code: str) -> list[Command]:
    """A console block's commands (``$ `` lines, ``\\`` continuing) and expected outputs."""
    found: list[Command] = []
    lines = code.splitlines()
    i = 0
    while i < len(lines):
        if not lines[i].startswith("$ "):
            if not found and lines[i].strip():
                raise PageError(f"console text before the first `$ ` command: {lines[i]!r}")
            i += 1
            continue
        parts = [lines[i][2:]]
        while parts[-1].endswith("\\") and i + 1 < len(lines):
            i += 1
            parts.append(lines[i])
        found.append(Command("\n".join(parts), []))
        i += 1
        while i < len(lines) and not lines[i].startswith("$ "):
            if lines[i].strip():
                found[-1].expected.append(lines[i])
            i += 1
    return found


def _pattern(expected: str) -> re.Pattern[str]:
    """One expected line as a pattern: ``...`` is any text, whitespace runs any whitespace."""
    pieces = [r"\s+".join(map(re.escape, part.split())) for part in expected.strip().split("...")]
    glue = []
    for k, piece in enumerate(pieces):
        glue.append(piece)
        if k < len(pieces) - 1:
            glue.append(".*")
    return re.compile("".join(glue))


def missing_lines(expected: list[str], actual: str) -> list[str]:
    """The expected lines not found, in order, among the actual output's lines."""
    lines = [line.strip() for line in ANSI.sub("", actual).splitlines()]
    position = 0
    for k, want in enumerate(expected):
        pattern = _pattern(want)
        while position < len(lines) and not pattern.fullmatch(lines[position]):
            position += 1
        if position == len(lines):
            return expected[k:]
        position += 1
    return []


def nav_pages(root: Path) -> list[str]:
    """README.md and every page named in mkdocs.yml's nav, as paths from ``root``."""
    pages = ["README.md"]
    config = root / "mkdocs.yml"
    if config.is_file():
        in_nav = False
        for line in config.read_text().splitlines():
            if re.match(r"^\S", line):
                in_nav = line.startswith("nav:")
            elif in_nav and (match := re.search(r"([\w./-]+\.md)\s*$", line)):
                pages.append(f"docs/{match.group(1)}")
    return pages


# ---------------------------------------------------------------------- running them
def make_copy(root: Path, copy: Path) -> Path:
    """The repository's files (tracked, and untracked not ignored) at ``copy``, committed."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in sorted({f for f in listed if f and (root / f).is_file()}):
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, copy / name)
    git = ["git", "-c", "user.name=docs", "-c", "user.email=docs@example.org"]
    git += ["-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q"], cwd=copy, check=True)
    subprocess.run([*git, "add", "-A"], cwd=copy, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "clone"], cwd=copy, check=True)
    return copy


def environment(copy: Path) -> dict[str, str]:
    """The variables a block runs with: this environment first, RUNLAB_LOGS unset."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNLAB_", "PYTEST_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(copy / "src"), *filter(None, [env.get("PYTHONPATH")])])
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(PYTHONUNBUFFERED="1", COLUMNS="120", NO_COLOR="1", TERM="dumb")
    env.update(GIT_AUTHOR_NAME="docs", GIT_AUTHOR_EMAIL="docs@example.org")
    env.update(GIT_COMMITTER_NAME="docs", GIT_COMMITTER_EMAIL="docs@example.org")
    return env


def _execute(argv: list[str], copy: Path, block: Block) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            argv,
            cwd=copy,
            env=environment(copy),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            timeout=BLOCK_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise PageError(f"{block.where}: still running after {BLOCK_TIMEOUT_S} s") from exc


def console_script(cmds: list[Command], expect_fail: bool) -> str:
    """One bash script for a console block: each command followed by a sentinel line."""
    out = ["exec 2>&1", SHELL_PRELUDE]
    for k, cmd in enumerate(cmds):
        out.append(cmd.text)
        out.append(f'__rc=$?; echo; echo "{SENTINEL} {k} $__rc"')
        if not expect_fail:
            out.append('[ "$__rc" = 0 ] || exit "$__rc"')
    return "\n".join(out) + "\n"


def run_console(block: Block, copy: Path) -> None:
    cmds = commands(block.code)
    expect_fail = "expect-fail" in block.markers
    proc = _execute(["bash", "-c", console_script(cmds, expect_fail)], copy, block)
    outputs = re.split(rf"^{re.escape(SENTINEL)} (\d+) (\d+)\n?", proc.stdout, flags=re.M)
    codes = [int(c) for c in outputs[2::3]]
    for k, (cmd, code) in enumerate(zip(cmds, codes, strict=False)):
        shown = outputs[3 * k]
        if code and not expect_fail:
            raise PageError(f"{block.where}: `$ {cmd.text}` exited {code}:\n{shown[-3000:]}")
        if lost := missing_lines(cmd.expected, shown):
            raise PageError(
                f"{block.where}: did not print {lost[0]!r} (or not in this order): "
                f"`$ {cmd.text}` printed:\n{shown[-3000:]}"
            )
    if len(codes) < len(cmds):
        raise PageError(
            f"{block.where}: the shell stopped (exit {proc.returncode}) at "
            f"`$ {cmds[len(codes)].text}`:\n{outputs[-1][-3000:]}"
        )
    if expect_fail and not any(codes):
        raise PageError(f"{block.where}: marked expect-fail, but every command succeeded")


def run_block(block: Block, copy: Path, pixi: bool) -> bool:
    """Run (or write, or skip) one block; True when it ran."""
    marks = block.markers
    if "file" in marks:
        if not marks["file"]:
            raise PageError(f"{block.where}: <!-- file: --> needs a path")
        target = copy / marks["file"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(block.code)
        return True
    if block.lang not in RUN:
        return False
    if "illustrative" in marks:
        if not marks["illustrative"]:
            raise PageError(f"{block.where}: <!-- illustrative: REASON --> needs a reason")
        return False
    if ("pixi" in marks) != pixi:
        return False
    if block.lang == "console":
        run_console(block, copy)
        return True
    if block.lang == "python":
        script = copy.parent / f"block-{block.line}.py"
        script.write_text(block.code)
        argv = [sys.executable if not pixi else "python", str(script)]
    else:
        argv = ["bash", "-e", "-c", SHELL_PRELUDE + block.code]
    proc = _execute(argv, copy, block)
    if proc.returncode != 0:
        raise PageError(
            f"{block.where} exited {proc.returncode}:\n{block.code}--- output (end)\n"
            f"{proc.stdout[-4000:]}"
        )
    return True


def run_page(root: Path, page: str, copy: Path, pixi: bool = False, seen: tuple = ()) -> int:
    """Run a page's blocks (after those of the pages it needs) in ``copy``: how many ran."""
    path = root / page
    if not path.is_file():
        raise PageError(f"{page}: no such page under {root}")
    if page in seen:
        raise PageError(f"{page}: needs itself (through {' -> '.join(seen)})")
    text = path.read_text()
    ran = sum(run_page(root, need, copy, pixi, (*seen, page)) for need in needs(text))
    for block in blocks(text, page):
        ran += run_block(block, copy, pixi)
    return ran


def check_page(root: Path, page: str, pixi: bool = False) -> int:
    """Run one page in a fresh copy of ``root``; the number of blocks that ran."""
    tmp = Path(tempfile.mkdtemp(prefix="runlab-docs-"))
    try:
        copy = make_copy(root, tmp / "project")
        return run_page(root, page, copy, pixi)
    finally:
        _remove(tmp)


def _remove(folder: Path, patience: float = 60.0) -> None:
    """Remove a page's folder. A process its blocks started may still be making its last
    writes: a local sweep's task writes its end status to ``info.json``, which a block's
    ``runlab status --watch`` reads, then the ``info.yaml`` twin. So removal is tried
    again while something still writes into the folder."""
    deadline = time.monotonic() + patience
    while True:
        try:
            shutil.rmtree(folder)
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pages", nargs="*", help="pages to run (default: README.md and the nav)")
    parser.add_argument(
        "--root", type=Path, default=HERE, help="the repository (default: %(default)s)"
    )
    parser.add_argument("--pixi", action="store_true", help="run the <!-- pixi --> blocks instead")
    parser.add_argument("--time", action="store_true", help="also print the total time")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    pages = args.pages or nav_pages(root)
    failed, start, total_blocks = 0, time.monotonic(), 0
    for page in pages:
        began = time.monotonic()
        try:
            ran = check_page(root, page, args.pixi)
            total_blocks += ran
            print(f"PASS {page} ({ran} blocks, {time.monotonic() - began:.1f} s)", flush=True)
        except (PageError, subprocess.CalledProcessError) as exc:
            failed += 1
            print(f"FAIL {page} ({time.monotonic() - began:.1f} s)\n{exc}", flush=True)
    if args.time:
        print(f"total: {len(pages)} pages, {total_blocks} blocks, {time.monotonic() - start:.1f} s")
    return 1 if failed else 0


# ---------------------------------------------------------------------- under pytest
if "pytest" in sys.modules:  # collected as a test module (the script needs no pytest)
    import pytest

    # Pages written before this runner whose blocks do not run yet: each fails until its
    # owner marks or fixes them (strict: one that starts passing must leave this list).
    NOT_YET_RUNNABLE: dict[str, str] = {}

    def _page_param(page: str) -> object:
        if page in NOT_YET_RUNNABLE:
            return pytest.param(
                page, marks=pytest.mark.xfail(strict=True, reason=NOT_YET_RUNNABLE[page])
            )
        return page

    @pytest.mark.parametrize("page", [_page_param(p) for p in nav_pages(HERE)])
    def test_page_runs(page: str) -> None:
        try:
            check_page(HERE, page)
        except PageError as exc:
            pytest.fail(str(exc), pytrace=False)

    def test_blocks_are_found_with_their_markers() -> None:
        text = (
            "intro\n\n<!-- illustrative: needs a cluster -->\n```console\n$ sbatch x\n```\n\n"
            '```python title="a.py"\nprint(1)\n```\n> ```toml\n> a = 1\n> ```\n'
            "<!-- pixi -->\n<!-- expect-fail -->\n```bash\nx\n```\n"
            "<!-- file: configs/x.yaml -->\n    ```yaml\n    a: 1\n    ```\n"
        )
        found = blocks(text)
        assert [(b.lang, b.markers) for b in found] == [
            ("console", {"illustrative": "needs a cluster"}),
            ("python", {}),
            ("toml", {}),
            ("bash", {"pixi": "", "expect-fail": ""}),
            ("yaml", {"file": "configs/x.yaml"}),
        ]
        assert found[2].code == "a = 1\n" and found[4].code == "a: 1\n"

    def test_console_commands_and_expected_lines() -> None:
        code = "$ echo a \\\n  b\nx ... y\n\n$ true\n$ ls\nREADME.md\n"
        cmds = commands(code)
        assert [c.text for c in cmds] == ["echo a \\\n  b", "true", "ls"]
        assert [c.expected for c in cmds] == [["x ... y"], [], ["README.md"]]

    @pytest.mark.parametrize(
        ("expected", "actual", "found"),
        [
            (["run 1 ... done"], "start\n  run 1 took 3 s, done  \n", True),
            (["a", "b"], "b\na\n", False),  # order matters
            (["a   b"], "a b\n", True),  # whitespace runs are any whitespace
            (["abc"], "xabcx\n", False),  # whole lines only
            (["[1.5]"], "[1.5]\n", True),  # regex characters are literal
            (["x"], "\x1b[1mx\x1b[0m\n", True),  # colours are ignored
        ],
    )
    def test_expected_lines_match(expected: list[str], actual: str, found: bool) -> None:
        assert (missing_lines(expected, actual) == []) is found

    def test_a_failing_command_fails_unless_expected(tmp_path: Path) -> None:
        page = tmp_path / "p.md"
        (tmp_path / "x").mkdir()
        block = "```console\n$ cd x && pwd\n.../x\n$ false\n$ echo after\nafter\n```\n"
        page.write_text(block)
        with pytest.raises(PageError, match="`\\$ false` exited 1"):
            run_page(tmp_path, "p.md", tmp_path)
        page.write_text("<!-- expect-fail -->\n" + block)
        assert run_page(tmp_path, "p.md", tmp_path) == 1
        page.write_text("```console\n$ echo hello\nbye\n```\n")
        with pytest.raises(PageError, match="did not print 'bye'"):
            run_page(tmp_path, "p.md", tmp_path)

    def test_file_blocks_needs_and_markers(tmp_path: Path) -> None:
        (tmp_path / "a.md").write_text("<!-- file: out/v.txt -->\n```text\nseven\n```\n")
        (tmp_path / "b.md").write_text(
            "<!-- needs: a.md -->\n\n```bash\ngrep -q seven out/v.txt\n```\n"
            "<!-- pixi -->\n```bash\nexit 1\n```\n<!-- illustrative: a sketch -->\n"
            "```python\nraise SystemExit(1)\n```\n"
        )
        assert run_page(tmp_path, "b.md", tmp_path) == 2
        (tmp_path / "c.md").write_text("<!-- illustrative: -->\n```bash\ntrue\n```\n")
        with pytest.raises(PageError, match="needs a reason"):
            run_page(tmp_path, "c.md", tmp_path)

    def test_the_readme_opens_with_the_two_commands_for_pixi_and_for_pip() -> None:
        """Before the first section: train and test, with pixi and with pip (and install)."""
        head = (HERE / "README.md").read_text().split("\n## ", 1)[0]
        found = blocks(head)
        pixi = [b for b in found if "pixi run train" in b.code]
        pip = [b for b in found if not b.markers and "python tasks/train.py" in b.code]
        assert pixi and "pixi run test" in pixi[0].code
        assert {"pixi", "illustrative"} & set(pixi[0].markers), "the pixi block is not run here"
        assert pip and "python -m pytest" in pip[0].code
        assert "pip install" in head and ".venv" in head

    def test_the_readme_links_to_files_that_exist() -> None:
        text = (HERE / "README.md").read_text()
        links = re.findall(r"\]\((?!https?:|#|mailto:)([^)#\s]+)", text)
        assert links and not [link for link in links if not (HERE / link).exists()]


if __name__ == "__main__":
    sys.exit(main())
