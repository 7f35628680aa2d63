"""Statuses are defined once, in ``runlab.status``, and no other status is ever written.

- An AST scan of ``src/runlab`` finds every ALL-CAPS string literal used as a status
  (passed as ``status=``, put under a ``"status"`` key, assigned to a name holding a
  status, compared with one, or listed with one) and fails on any the enum does not know.
- A second scan fails on a status set, order or colour table spelled out anywhere but
  ``status.py``: a collection holding two status literals or more, a module-level
  collection of statuses, or a dict keyed by statuses.
- Writing an unknown status through the writers raises, and writes nothing.
- The status table of ``docs/reference/statuses.md`` is ``markdown_table()``'s output,
  exactly.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import ROOT
from runlab.record.rundir import RunDir, allocate
from runlab.status import WRITTEN, Status, markdown_table, written

SRC = ROOT / "src" / "runlab"
KNOWN = {s.value for s in Status}
WORD = re.compile(r"[A-Z][A-Z_]{2,}\Z")
# Collections of scheduler words that happen to share names with statuses, each with why.
EXEMPT = {
    (
        "sweep/backends/_slurm.py",
        "ENDED",
    ): "SLURM's own job states (squeue/sacct), not runlab statuses",
}


# ------------------------------------------------------------------ the scanner
def _text(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _member(node: ast.AST) -> bool:
    """``Status.X``."""
    return (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "Status"
        and node.attr in Status.__members__
    )


def _names_status(name: str) -> bool:
    return "status" in name.lower() or name == "was"


def _status_like(node: ast.AST) -> bool:
    """An expression that holds a run's status: ``status``, ``info.get("status")``,
    ``row["info.status"]``, ``Status.X``, ``Status.of(...)``."""
    if _member(node):
        return True
    if isinstance(node, ast.Name):
        return _names_status(node.id)
    if isinstance(node, ast.Attribute):
        return _names_status(node.attr)
    if isinstance(node, ast.Subscript):
        key = _text(node.slice)
        return key is not None and "status" in key
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        if node.func.attr == "get" and node.args:
            key = _text(node.args[0])
            return key is not None and "status" in key
        return _member(node.func.value) or (
            isinstance(node.func.value, ast.Name) and node.func.value.id == "Status"
        )
    return False


def _values(node: ast.AST) -> Iterator[ast.Constant]:
    """The string literals an expression may evaluate to (``a or "X"``, ``"X" if c else "Y"``)."""
    if _text(node) is not None:
        yield node  # type: ignore[misc]
    elif isinstance(node, ast.BoolOp):
        for v in node.values:
            yield from _values(v)
    elif isinstance(node, ast.IfExp):
        yield from _values(node.body)
        yield from _values(node.orelse)


def _elements(node: ast.AST) -> list[ast.AST] | None:
    """The elements of a literal tuple/list/set (or of ``frozenset({...})`` and the like)."""
    wrapped = isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    if wrapped and node.func.id in ("frozenset", "set", "tuple", "list") and len(node.args) == 1:  # type: ignore[attr-defined]
        return _elements(node.args[0])  # type: ignore[attr-defined]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        out: list[ast.AST] = []
        for e in node.elts:
            out.extend((_elements(e.value) or []) if isinstance(e, ast.Starred) else [e])
        return out
    return None


def _statusy(nodes: list[ast.AST]) -> bool:
    """A homogeneous collection of words (no names, numbers) holding a known status."""
    words = all(_text(n) is not None or _member(n) for n in nodes)
    return words and any(_member(n) or _text(n) in KNOWN for n in nodes)


class _Scan(ast.NodeVisitor):
    def __init__(self, rel: str) -> None:
        self.rel = rel
        self.used: list[tuple[int, str]] = []  # literals used as a status
        self.tables: list[tuple[int, str]] = []  # status sets / tables spelled out
        self._function: list[ast.AST] = []

    def _use(self, nodes: Iterator[ast.Constant] | list[ast.AST]) -> None:
        for n in nodes:
            if _text(n) is not None:
                self.used.append((n.lineno, n.value))  # type: ignore[attr-defined]

    def _table(self, node: ast.AST, what: str) -> None:
        self.tables.append((node.lineno, what))  # type: ignore[attr-defined]

    # collections: a status set or table, and the words listed with a status
    def _collection(self, node: ast.AST, elts: list[ast.AST]) -> None:
        if _statusy(elts):
            self._use(elts)
        if sum(_text(e) in KNOWN for e in elts) >= 2:
            self._table(node, "literal statuses: " + ", ".join(str(_text(e)) for e in elts))

    def visit_Tuple(self, node: ast.Tuple) -> None:
        self._collection(node, node.elts)
        self.generic_visit(node)

    visit_List = visit_Tuple  # type: ignore[assignment]
    visit_Set = visit_Tuple  # type: ignore[assignment]

    def visit_Dict(self, node: ast.Dict) -> None:
        keys = [k for k in node.keys if k is not None]
        for part, name in ((keys, "keys"), (node.values, "values")):
            if _statusy(part):
                self._use(part)
            if sum(_text(e) in KNOWN for e in part) >= 2:
                self._table(node, f"a dict with statuses as {name}")
        if sum(_member(k) for k in keys) >= 2:
            self._table(node, "a dict keyed by statuses (a colour or name table)")
        for key, value in zip(node.keys, node.values, strict=True):
            if key is not None and _names_status(_text(key) or ""):
                self._use(_values(value))
        self.generic_visit(node)

    # how a status is passed, kept, compared and returned
    def visit_keyword(self, node: ast.keyword) -> None:
        if node.arg and _names_status(node.arg):
            self._use(_values(node.value))
        self.generic_visit(node)

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            self._assigned(target, node.value)
        if not self._function and (elts := _elements(node.value)) is not None:
            names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            if (self.rel, names[0] if names else "") in EXEMPT:
                return  # not visited: its words are the scheduler's
            if sum(_member(e) or _text(e) in KNOWN for e in elts) >= 2:
                self._table(node, f"a module-level set of statuses {names}")
        self.generic_visit(node)

    def _assigned(self, target: ast.AST, value: ast.AST) -> None:
        if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple):
            for t, v in zip(target.elts, value.elts, strict=False):
                self._assigned(t, v)
        elif _status_like(target):
            self._use(_values(value))

    def visit_Compare(self, node: ast.Compare) -> None:
        sides = [node.left, *node.comparators]
        if any(_status_like(s) for s in sides):
            for side in sides:
                self._use(_values(side))
                self._use(_elements(side) or [])
        self.generic_visit(node)

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        if any(_status_like(v) for v in node.values):  # `status or "UNKNOWN"`
            self._use(_values(node))
        self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self._function.append(node)
        returns = ast.unparse(node.returns) if node.returns else ""
        if "Status" in returns or "status" in node.name:
            for ret in ast.walk(node):
                if isinstance(ret, ast.Return) and ret.value is not None:
                    self._use(_values(ret.value))
        self.generic_visit(node)
        self._function.pop()

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]


def scan(source: str, rel: str = "<snippet>") -> _Scan:
    found = _Scan(rel)
    found.visit(ast.parse(source))
    return found


def _scans() -> list[tuple[str, _Scan]]:
    """Every module of ``src/runlab`` but status.py, scanned (once per session)."""
    key = str(SRC)
    if key not in _SCANNED:
        _SCANNED[key] = [
            (rel, scan(path.read_text(), rel))
            for path in sorted(SRC.rglob("*.py"))
            if (rel := path.relative_to(SRC).as_posix()) != "status.py"
        ]
    return _SCANNED[key]


_SCANNED: dict[str, list[tuple[str, _Scan]]] = {}


# ------------------------------------------------------------------- the tests
def test_no_status_is_used_that_the_enum_does_not_know() -> None:
    unknown = [
        f"src/runlab/{rel}:{line}: {word!r}"
        for rel, found in _scans()
        for line, word in found.used
        if WORD.match(word) and word not in KNOWN
    ]
    assert not unknown, "statuses runlab.status does not know:\n" + "\n".join(unknown)


def test_no_module_but_status_py_spells_out_a_status_set_or_colour_table() -> None:
    spelled = [
        f"src/runlab/{rel}:{line}: {what}" for rel, found in _scans() for line, what in found.tables
    ]
    assert not spelled, "use runlab.status's sets and colours instead:\n" + "\n".join(spelled)


@pytest.mark.parametrize(
    ("snippet", "word"),
    [
        ('run.update_info(status="CANCELED")', "CANCELED"),
        ('info = {"run_id": 1, "status": "DONE"}', "DONE"),
        ('if info.get("status") == "SUCCESS": pass', "SUCCESS"),
        ('ok = row["info.status"] in ("COMPLETE", "FINISHED")', "FINISHED"),
        ('status, kind = "ABORTED", "Cancelled"', "ABORTED"),
        ('name = status or "UNKNOWN"', "UNKNOWN"),
        ('def outcome() -> Status:\n    return "KILLED"', "KILLED"),
        ('STYLE = {"COMPLETE": "green", "ZOMBIE": "red"}', "ZOMBIE"),
        ('reconciled = {"was": "PENDING"}', "PENDING"),
    ],
)
def test_the_scan_finds_an_unknown_status_wherever_it_is_used(snippet: str, word: str) -> None:
    assert word in [w for _, w in scan(snippet).used]


@pytest.mark.parametrize(
    "snippet",
    [
        'FAILING = ("FAILED", "TIMEOUT", "LOST")',  # the old cli/ops.py, results.py, report.py
        'if s not in ("QUEUED", "RUNNING", "PREEMPTED"): pass',  # inline, the old cli/ops.py
        'STYLE = {"COMPLETE": "green", "FAILED": "red"}',  # a colour table
        "COLOURS = {Status.COMPLETE: 'green', Status.FAILED: 'red'}",  # one keyed by members
        "ACTIVE = frozenset({Status.QUEUED, Status.RUNNING})",  # a second ACTIVE
        'final = set(FINAL_STATUSES) | {"LOST", "CORRUPT"}',
    ],
)
def test_the_scan_finds_a_status_set_spelled_out(snippet: str) -> None:
    assert scan(snippet).tables


def test_the_scan_leaves_scheduler_words_and_inline_checks_alone() -> None:
    found = scan(
        'if state == "CANCELLED" or state == "NODE_FAIL": pass\n'
        'out.append((rid, run, Status.LOST, "JobLost", reason, "VANISHED"))\n'
        "def f(s):\n    return s in (Status.RUNNING, Status.QUEUED)\n"
    )
    assert not [w for _, w in found.used if w not in KNOWN] and not found.tables


# ----------------------------------------------------------------- the writers
@pytest.mark.parametrize("bad", ["DONE", "complete", "CORRUPT", "", 3, ["FAILED"]])
def test_update_info_refuses_a_status_runlab_does_not_write(tmp_path: Path, bad: object) -> None:
    run = RunDir(allocate(tmp_path, info={"status": Status.RUNNING})[0])
    before = run.info_file.read_bytes(), run.info_file.with_suffix(".json").read_bytes()
    with pytest.raises(ValueError, match=r"cannot be written to info\.yaml"):
        run.update_info(status=bad, end_time="now")
    assert (run.info_file.read_bytes(), run.info_file.with_suffix(".json").read_bytes()) == before
    assert run.read_info()["status"] == "RUNNING"


def test_allocate_refuses_an_unknown_status_and_makes_no_run(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'FINISHED' cannot be written"):
        allocate(tmp_path, info={"status": "FINISHED"})
    assert not [p for p in tmp_path.iterdir() if not p.name.startswith(".")]


@pytest.mark.parametrize("status", sorted(WRITTEN))
def test_every_written_status_is_stored_as_plain_text(tmp_path: Path, status: Status) -> None:
    run = RunDir(allocate(tmp_path, info={"status": Status.QUEUED})[0])
    run.update_info(status=status, reconciled={"was": Status.QUEUED})
    assert f"status: {status.value}\n" in run.info_file.read_text()
    assert "was: QUEUED" in run.info_file.read_text()  # a Status anywhere is plain YAML
    assert written(status.value) == status.value and type(written(status)) is str


# ------------------------------------------------------------------- the docs
STATUS_PAGE = "docs/reference/statuses.md"


def _page_table() -> str:
    text = (ROOT / STATUS_PAGE).read_text()
    match = re.search(r"<!-- status-table:start -->\n(.*?)<!-- status-table:end -->", text, re.S)
    assert match, f"{STATUS_PAGE} has no <!-- status-table:start/end --> block"
    return match.group(1)


def test_the_status_page_table_is_generated_from_the_enum() -> None:
    assert _page_table() == markdown_table(), (
        f"{STATUS_PAGE}'s status table is stale: run `python -m runlab.cli.reference --write`"
    )
    assert all(f"| `{s.value}` |" in _page_table() for s in Status)


def test_the_command_prints_the_table() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "runlab.status", "--markdown"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout == markdown_table()
