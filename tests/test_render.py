"""Every surface renders any value (issue 19, family 4).

User data (config values, metric names, error messages, run names, job output, paths) is
text on every terminal surface: never rich markup, never terminal control. Hostile strings
from a Hypothesis strategy are written into real runs with runlab's own writers, then every
reading command runs in a subprocess, as a user runs it:

- no command fails with an internal error (rich's ``MarkupError`` on ``[/data/train]``);
- no ESC, other control character, bidi override or lone surrogate reaches stdout or stderr;
- the value is shown, as escaped text (``runlab.cli._text.safe``), not interpreted.

One path: ``test_user_text_reaches_the_terminal_through_the_renderer`` reads the command
modules and refuses a rich console made elsewhere, a markup string that interpolates a
value without escaping it, ``markup=False`` (the old ad-hoc escape) and table cells that are
plain strings.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from runlab.cli import _text
from runlab.cli._text import output, safe
from runlab.record.files import write_record
from runlab.record.logger import RunLogger
from runlab.record.rundir import RunDir, allocate
from runlab.sweep import ops

SRC = Path(__file__).resolve().parents[1] / "src"
CLI = SRC / "runlab" / "cli"

# --------------------------------------------------------------------- strategy
MARKUP = [
    "[/data/train]",
    "[bold red]x[/bold red]",
    "[link=http://evil]click[/link]",
    "[/]",
    "[",
    "]",
    "\\[b]",
    "[b][i]nested[/b]",
    ":smile:",
    "{task.description}",
]
CONTROL = [
    "\x1b[31m",
    "\x1b]0;title\x07",
    "\x1b[2J\x1b[H",
    "\x9b31m",  # C1 CSI
    "\x85",
    "\x07",
    "\x08\x08",
    "\r",
    "\t",
    "\x7f",
    "\u202e",  # right-to-left override
    "\u2066",  # left-to-right isolate
    "\u200b",  # zero-width space
    "\u2028",  # line separator
    "\ufeff",
    "\udcff",  # an undecodable byte under surrogateescape
]


@st.composite
def hostile_text(draw: st.DrawFn) -> str:
    """A user string made of markup, control, bidi and surrogate pieces and ordinary text;
    sometimes huge."""
    pieces = st.one_of(
        st.sampled_from(MARKUP),
        st.sampled_from(CONTROL),
        st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=8),
        st.characters(categories=["Cc", "Cf", "Zl", "Zp"], exclude_characters="\x00"),
    )
    text = "".join(draw(st.lists(pieces, min_size=1, max_size=8)))
    if draw(st.integers(0, 4)) == 0:
        text = text * (200_000 // max(len(text), 1) + 1)  # huge: a few hundred kB
    return text


def _storable(text: str) -> str:
    """``text`` as a JSON/YAML record can hold it (no lone surrogates)."""
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


# ----------------------------------------------------------------------- the runs
def _hostile_run(logs: Path, value: str, other: str, task: str, failed: bool) -> int:
    """A run whose config, run name, error, traceback, job output and a metric name hold
    ``value`` (``other`` as a second config value), written with runlab's own writers."""
    stored = _storable(value)
    run = RunDir(allocate(logs)[0]).create()
    write_record(run.config_file, {"name": stored, "other": _storable(other), "lr": 0.1})
    write_record(run.env_file, {"git": {"commit": "c0ffee1", "dirty": False}, "host": stored})
    out = run.path / "job.out"
    out.write_bytes(value.encode("utf-8", "surrogatepass") + b"\n")
    info: dict[str, Any] = {"status": "FAILED" if failed else "COMPLETE", "task": task}
    info |= {"name": stored, "log_out": str(out), "start_time": "2026-11-20T10:00:00+00:00"}
    if failed:
        info["error"] = {"type": "ValueError", "message": stored}
        (run.path / "metadata" / "traceback.txt").write_bytes(
            b"Traceback (most recent call last):\n  "
            + value.encode("utf-8", "surrogatepass")
            + b"\nValueError: boom\n"
        )
    run.update_info(**info)
    run.acquire()  # held as a run session holds it: the logger only logs (see RunLogger)
    try:
        with RunLogger(run) as logger:
            logger.log_metrics({"loss": 0.5}, step=0, name="train")
            metric = stored.replace(".", "_").replace("/", "_")[:100]
            try:
                logger.log_metrics({metric: 1.0}, step=1, name="train")
            except Exception:  # a metric name with a control character is refused, rightly
                pass
    finally:
        run.release()
    return int(run.run_id)


def _runlab(logs: Path, *args: str | bytes) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", str(SRC))}
    env |= {"RUNLAB_LOGS": str(logs), "COLUMNS": "200"}
    env.pop("RUNLAB_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "runlab", *args], capture_output=True, env=env, timeout=120
    )


def _raw_controls(text: str) -> list[str]:
    """The characters of ``text`` that a terminal would act on or hide (not newlines)."""
    return sorted(
        {
            repr(ch)
            for ch in text
            if ch not in "\n" and unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp")
        }
    )


def _check(result: subprocess.CompletedProcess[bytes], codes: tuple[int, ...] = (0,)) -> str:
    """The command's stdout; it exited with one of ``codes``, without an internal error or a
    traceback, and printed no raw control, bidi or surrogate character."""
    out = result.stdout.decode("utf-8", "surrogateescape")
    err = result.stderr.decode("utf-8", "surrogateescape")
    command = " ".join(map(str, result.args[3:]))
    assert "internal error" not in err and "Traceback" not in err, f"{command}: {err}"
    assert result.returncode in codes, f"{command}: exit {result.returncode}: {err}"
    assert not _raw_controls(out), f"{command}: raw {_raw_controls(out)} on stdout"
    assert not _raw_controls(err), f"{command}: raw {_raw_controls(err)} on stderr"
    return out


# ------------------------------------------------------------------------- tests
NAMED = [
    "[/data/train]",
    "[bold red]x[/bold red]",
    "a\x1b[31mred\x1b]0;title\x07",
    "rtl\u202eevil",
    "c0\x01\x7f c1\x85\x9b",
    "bytes \udcff\udcfe",
]


@settings(
    max_examples=1,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(values=st.lists(hostile_text(), min_size=2, max_size=3))
@example(values=NAMED)
def test_every_reading_command_shows_hostile_values_as_text(
    tmp_path_factory: pytest.TempPathFactory, values: list[str]
) -> None:
    """ls, show, status (of a sweep), logs, diff, verify and doctor over runs whose every
    user field holds a hostile string."""
    logs = tmp_path_factory.mktemp("logs")
    ids = [
        _hostile_run(logs, v, values[i - 1], task=f"task{i % 2}.py", failed=bool(i % 2))
        for i, v in enumerate(values)
    ]
    ops.save(
        logs,
        ops.SweepRecord(
            sweep_id="20261120-100000-1",
            created="2026-11-20T10:00:00+00:00",
            host="test",
            user="test",
            cwd=str(logs),
            command=["runlab", "submit"],
            task="train.py",
            overrides=[],
            logs=str(logs),
            launcher={"name": "local"},
            limits=None,
            runs=ids,
        ),
    )
    rid, value = ids[1], values[1]  # a failed run (odd index)
    shown = safe(_storable(value))

    listing = _check(_runlab(logs, "ls", "-c", "run_id,config.name,config.other"))
    for v in values:
        assert safe(_storable(v))[:8] in listing

    show = _check(_runlab(logs, "show", str(rid)))
    assert f"ValueError: {shown}"[:60] in show  # the error line, escaped

    status = _check(_runlab(logs, "status", "--no-reconcile"))
    assert safe(f"ValueError: {_storable(value)}".strip(": "))[:60] in status

    job = _check(_runlab(logs, "logs", str(rid)))
    raw = value.encode("utf-8", "surrogatepass") + b"\n"
    assert job == output(raw.decode("utf-8", "surrogateescape"))  # escaped, lines kept

    diff = _check(_runlab(logs, "diff", str(ids[0]), str(ids[1])))
    first = f"runs {ids[0]} and {ids[1]} are of different tasks: task0.py and task1.py"
    assert diff.splitlines()[0] == first

    _check(_runlab(logs, "verify"), codes=(0, 1))
    _check(_runlab(logs, "doctor", "--logs", str(logs)), codes=(0, 1))


@settings(
    max_examples=2,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],  # the path is never made
)
@given(value=hostile_text())
@example(value="[/data/train]\x1b[31m\u202e")
def test_an_error_line_shows_a_hostile_path_as_text(tmp_path: Path, value: str) -> None:
    """A user error that names a path (a logs directory that is not there) is one line,
    exit 2, with the path escaped."""
    name = value.encode("utf-8", "surrogatepass").replace(b"\x00", b"").replace(b"/", b"_")
    missing = os.fsencode(tmp_path) + b"/" + name[:200] + b"/nowhere"
    result = _runlab(tmp_path, "ls", "--logs", missing)
    _check(result, codes=(2,))
    err = result.stderr.decode("utf-8", "surrogateescape")
    assert err.startswith("runlab ls: error: ") and err.count("\n") == 1, err


def test_the_renderer_escapes_what_a_terminal_would_act_on() -> None:
    """The renderer itself: markup kept as text, controls and bidi visible, huge values cut,
    undecodable bytes shown."""
    assert safe("[/data/train]") == "[/data/train]"
    assert safe("a\x1b[31mb\x1b]0;t\x07") == "a\\x1b[31mb\\x1b]0;t\\x07"
    assert safe("rtl\u202eevil\u2066") == "rtl\\u202eevil\\u2066"
    assert safe("c1\x85\x9b del\x7f") == "c1\\x85\\x9b del\\x7f"
    assert safe("a\nb\tc\rd") == "a\\nb\\tc\\rd"  # as Python writes them, not \x0a
    assert safe(b"caf\xe9") == "caf\\udce9"
    assert safe("x" * 5000) == "x" * 2000 + "... (3000 more characters)"
    assert safe("déjà vu 学习 🙂") == "déjà vu 学习 🙂"
    assert output("a\r\nb\rc\td\x1b[0m") == "a\nb\nc\td\\x1b[0m"


def _escaped_one_by_one(text: str, keep: str) -> str:
    """The renderer's rule, a character at a time: what :func:`safe` must equal."""
    out = []
    for ch in text:
        if ch in keep or unicodedata.category(ch) not in {"Cc", "Cf", "Cs", "Co", "Zl", "Zp"}:
            out.append(ch)
        elif ch in "\t\n\r":
            out.append({"\t": "\\t", "\n": "\\n", "\r": "\\r"}[ch])
        else:
            code = ord(ch)
            width = 2 if code < 0x100 else 4 if code < 0x10000 else 8
            out.append(f"\\{'x' if width == 2 else 'u' if width == 4 else 'U'}{code:0{width}x}")
    return "".join(out)


@given(
    text=st.text(st.characters(exclude_categories=()), max_size=60),
    keep=st.sampled_from(["", "\n\t"]),
)
@settings(max_examples=400, deadline=None)
@example(text="\U000e0001\U0010fffd\u13438\u13439\ufffe\ud800", keep="")
def test_the_one_expression_escapes_exactly_the_hidden_categories(text: str, keep: str) -> None:
    """:func:`safe` finds hidden characters with one regular expression built from a table of
    code point ranges (fast over gigabytes of job output): any text comes out as the
    character-by-character rule of ``unicodedata`` says, keeping ``keep``."""
    assert safe(text, limit=None, keep=keep) == _escaped_one_by_one(text, keep)


def test_the_table_of_hidden_characters_is_this_pythons_unicodedata() -> None:
    """The table kept for this Python's Unicode version is what ``unicodedata`` says."""
    version = unicodedata.unidata_version
    assert version in _text.HIDDEN_RANGES, f"add Unicode {version}'s ranges to HIDDEN_RANGES"
    assert _text.HIDDEN_RANGES[version] == _text.hidden_ranges_of_unicodedata()


# ----------------------------------------------------------------------- one path
_RENDERERS = {"m", "safe", "cell", "len", "colour"}
# Names that hold markup built from escaped pieces (rich styles, an escaped listing).
_MARKUP_NAMES = {"style", "color", "listing"}


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call)
        and (
            (isinstance(n.func, ast.Attribute) and n.func.attr == name)
            or (isinstance(n.func, ast.Name) and n.func.id == name)
        )
    ]


def _unescaped(node: ast.AST, inside: bool = False) -> list[ast.expr]:
    """The values interpolated into f-strings under ``node`` outside a renderer call."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        inside = inside or node.func.id in _RENDERERS
    found: list[ast.expr] = []
    if isinstance(node, ast.FormattedValue) and not inside:
        v = node.value
        renderer = isinstance(v, ast.Call) and getattr(v.func, "id", None) in _RENDERERS
        number = node.format_spec is not None  # `{pct:.0f}`: a number runlab formats
        if not (renderer or number or (isinstance(v, ast.Name) and v.id in _MARKUP_NAMES)):
            found.append(v)
    for child in ast.iter_child_nodes(node):
        found += _unescaped(child, inside)
    return found


def test_user_text_reaches_the_terminal_through_the_renderer() -> None:
    """In every command module: rich consoles come from ``_text.console``; every value in a
    string that a console prints is escaped by ``m`` (or is a cell); no ``markup=False``; every
    table cell and header is built by ``cell``."""
    problems = []
    for path in sorted(CLI.glob("*.py")):
        if path.name == "_text.py":
            continue
        tree = ast.parse(path.read_text())
        where = f"{path.relative_to(SRC)}"
        for call in _calls(tree, "Console"):
            problems.append(f"{where}:{call.lineno}: a Console of its own (use _text.console)")
        for call in _calls(tree, "print"):
            if not isinstance(call.func, ast.Attribute):
                continue  # print(): plain text, escaped with safe() where it holds user data
            for kw in call.keywords:
                if kw.arg == "markup" and getattr(kw.value, "value", True) is False:
                    problems.append(f"{where}:{call.lineno}: markup=False (use cell)")
            for arg in call.args:
                for v in _unescaped(arg):
                    problems.append(f"{where}:{v.lineno}: {{{ast.unparse(v)}}} not escaped (m)")
        # Table cells: each built by cell(), or a `*cells` list whose items are.
        appended = [c for c in _calls(tree, "append") if getattr(c.func.value, "id", "") == "cells"]
        for call in [*_calls(tree, "add_row"), *appended]:
            for arg in call.args:
                starred = isinstance(arg, ast.Starred) and getattr(arg.value, "id", "") == "cells"
                built = isinstance(arg, ast.Call) and getattr(arg.func, "id", "") == "cell"
                if not (starred or built):
                    problems.append(f"{where}:{call.lineno}: a table cell not built by cell()")
        # Column headers: runlab's own words (a literal), or built by cell().
        for call in _calls(tree, "add_column"):
            for arg in [*call.args[:1], *(k.value for k in call.keywords if k.arg == "header")]:
                literal = isinstance(arg, ast.Constant) and isinstance(arg.value, str)
                built = isinstance(arg, ast.Call) and getattr(arg.func, "id", "") == "cell"
                if not (literal or built):
                    problems.append(f"{where}:{call.lineno}: a column header not built by cell()")
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------------ report
def test_report_draws_what_it_can_and_says_what_it_skipped(tmp_path: Path) -> None:
    """String and boolean metrics and a list-valued config key: the report draws the
    numbers, groups by what it can, and says in one line what it skipped; a report of
    strings alone is one user error. Never an internal error."""
    logs = tmp_path / "logs"
    for i in range(4):
        run = RunDir(allocate(logs)[0]).create()
        config = {"lr": [0.1, 0.2][i % 2], "layers": [1, i], "opt": ["adam", "sgd"][i % 2]}
        write_record(run.config_file, config)
        run.update_info(status="COMPLETE", start_time="2026-11-20T10:00:00+00:00")
        run.acquire()  # held as a run session holds it: the logger only logs
        with RunLogger(run) as logger:
            for step in range(3):
                row = {"loss": 1 / (step + 1), "phase": ["cold", "warm"][step > 0], "ok": step > 0}
                logger.log_metrics(row, step=step, name="train")
        run.release()
    out = tmp_path / "report"
    args = ["report", "--all", "--out", str(out), "--metric", "train.loss,train.phase,train.ok"]
    result = _runlab(logs, *args, "--by", "config.layers,config.opt")
    _check(result)
    err = result.stderr.decode()
    assert (
        "runlab: note: skipped: --by config.layers: its values are lists or mappings, not "
        "grouped by; train.phase: logged as strings, not numbers: not drawn; train.ok: logged "
        "as booleans, not numbers: not drawn\n"
    ) in err
    assert "2 group(s) by config.opt" in result.stdout.decode()
    assert (out / "index.html").is_file() and (out / "train.loss.png").is_file()

    alone = _runlab(logs, "report", "--all", "--out", str(out), "--metric", "train.phase")
    _check(alone, codes=(1,))
    assert alone.stderr.decode().startswith(
        "runlab report: error: nothing to draw: train.phase: logged as strings, not numbers"
    )
