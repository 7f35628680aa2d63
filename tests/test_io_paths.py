"""One path each (issue 19): where runlab writes files, read from its source with ``ast``.

Every call in ``src/runlab`` that writes a file (``open`` with a mode that writes,
``os.open`` with write flags, ``os.write``/``pwrite``/``ftruncate``, ``Path.write_text``/
``write_bytes``/``touch``, ``json.dump``/``pickle.dump``/``torch.save``, ``shutil.copy*``/
``copytree``/``move``, ``os.replace``/``rename``/``link``/``symlink``, ``tempfile.mkstemp``,
Polars' ``write_parquet``, ``savefig``, ``write_html``, ``truncate``) stands in a function of
:data:`ALLOWED`, keyed ``module.function: kind``, with why that function writes a file
itself instead of through :func:`runlab.record.files.write_atomic` (the atomic writer, under
:func:`~runlab.record.files.write_record` and :func:`~runlab.record.files.write_yaml`,
which also redact) and what it does about credentials: ``redacts`` (it, or the one writer it
goes through, calls :mod:`runlab.record.secrets`; checked here), or why the bytes it writes
hold no user text (a pid, a row of numbers the task logged, a copy of the task's own file).

A write that is not listed fails the test, and so does an entry that is no longer needed, as
in ``tests/test_architecture.py``: the list only shrinks.

``python tests/test_io_paths.py`` prints every write found, with where it stands.
"""

from __future__ import annotations

import ast
import errno
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import TASKS, make_project, task_env
from runlab.record import distributed, rundir
from runlab.record.files import write_record
from runlab.record.rundir import RunDir
from runlab.status import Status
from runlab.sweep import submission

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "runlab"

# ---------------------------------------------------------------- the allow-lists
# Each entry: (why this function writes a file itself, what it does about credentials).
# "redacts" is checked: the function calls runlab.record.secrets, or write_record/write_yaml.
_LOCK = "a lock file: flock needs a descriptor held open; it holds who holds it"
_WHO = "no user text: a pid, a host and a time"
_CUT = "no text of its own: it cuts, or adds a newline"
_TASK_DATA = (
    "not redacted: the task's own objects and files, stored as the task gave them (as a "
    "checkpoint must be, to load); runlab cannot read a credential out of a pickle"
)
_OUTPUT = "not redacted: the task's own output, as its terminal shows it (as SLURM's .out)"
_REPORT = (
    "outside the logs directory (--out, the study's folder); the data comes from the "
    "record, already redacted"
)
_CODE = "not redacted: the project's own code, which must run as it was (reproduce)"
_ATOMIC = "the atomic writer: a temporary file in the folder, renamed over the file"
_ATOMIC_CRED = (
    "its callers hand it bytes; each that writes user text redacts first (ATOMIC_CALLERS)"
)
_APPEND = (
    "the metrics appender: one row per line appended to metrics/<name>.jsonl (a rename per "
    "row would cost a file per row); a failed write is cut back to its last whole line"
)
_ROWS = "not redacted: the numbers and strings the task logs, as the task logged them"
_SUBMITTED = (
    "its one caller, create_runs, redacts a config that holds a credential (secrets.redact); "
    "submit refuses one in the overrides"
)
_REPLACE = (
    "checkpoints and artifacts: made under a temporary name (torch.save, a copy, savefig), "
    "fsynced, renamed: the atomic writer for what is not bytes in memory"
)

ALLOWED: dict[str, tuple[str, str]] = {
    "runlab.record.files.write_atomic: mkstemp": (_ATOMIC, _ATOMIC_CRED),
    "runlab.record.files.write_atomic: open": (_ATOMIC, _ATOMIC_CRED),
    "runlab.record.files.write_atomic: rename": (_ATOMIC, _ATOMIC_CRED),
    **{
        f"runlab.record.files.overwrite_in_place: {kind}": (
            "the last resort for a final status on a full disk: rewrites the file in place, "
            "needing no new block",
            "its one caller, overwrite_record, redacts (as write_record)",
        )
        for kind in ("os.open", "os.write", "truncate")
    },
    "runlab.record.logger.RunLogger._write: os.write": (_APPEND, _ROWS),
    "runlab.record.logger.RunLogger._write: truncate": (_APPEND, _CUT),
    **{
        f"runlab.record.metricsfile.repair_tail: {kind}": (
            "a metrics file's (or study journal's) torn last line, repaired in place before "
            "the next append",
            _CUT,
        )
        for kind in ("os.write", "truncate")
    },
    "runlab.record.logger.RunLogger._rewind: open": (
        "a resumed run cuts the rows logged after the checkpoint it loads",
        _CUT,
    ),
    "runlab.record.logger.RunLogger._rewind: truncate": (
        "a resumed run cuts the rows logged after the checkpoint it loads",
        _CUT,
    ),
    "runlab.record.distributed.PeerLogger._cut_from: open": (
        "a resumed rank cuts its own rows logged after the checkpoint",
        _CUT,
    ),
    "runlab.record.distributed.PeerLogger._cut_from: truncate": (
        "a resumed rank cuts its own rows logged after the checkpoint",
        _CUT,
    ),
    "runlab.record.logger.RunLogger._set_aside_previous_attempt: rename": (
        "a new attempt moves the previous attempt's metrics into metrics/.previous/<k>/",
        "moves files; writes nothing",
    ),
    "runlab.record.logger._replace_with: rename": (_REPLACE, _TASK_DATA),
    "runlab.record.logger._dump: open": (_REPLACE + " (the temporary file)", _TASK_DATA),
    "runlab.record.logger._dump: dump": (_REPLACE + " (the temporary file)", _TASK_DATA),
    "runlab.record.logger._fsync: open": (
        "opens the temporary file of _replace_with to fsync it (writes nothing)",
        "writes nothing",
    ),
    "runlab.record.logger.RunLogger.log_artifact: copy": (_REPLACE, _TASK_DATA),
    "runlab.record.logger.RunLogger.log_artifact: savefig": (_REPLACE, _TASK_DATA),
    "runlab.record.logger.RunLogger.log_artifact: write_bytes": (_REPLACE, _TASK_DATA),
    "runlab.record.metricsfile.write_twin: write_parquet": (
        "the columnar twin: Polars writes a temporary file, renamed into place; a cache",
        "the rows of the .jsonl beside it",
    ),
    "runlab.record.metricsfile.write_twin: rename": (
        "the columnar twin: Polars writes a temporary file, renamed into place; a cache",
        "the rows of the .jsonl beside it",
    ),
    "runlab.record.distributed._Tee.__init__: open": (
        "a rank's stdout and stderr, appended line by line to ranks/rank<k>.out/.err",
        _OUTPUT,
    ),
    **{
        f"runlab.record.rundir.RunDir.acquire: {k}": (_LOCK, _WHO)
        for k in ("os.open", "os.write", "truncate")
    },
    **{
        f"runlab.record.rundir.RunDir.reserve_space: {kind}": (
            "metadata/.reserve: zeros that hold disk blocks for the final status",
            "zeros",
        )
        for kind in ("os.open", "os.write")
    },
    "runlab.record.rundir._rename_noreplace: rename": (
        "a new run is named: its staging folder (written by write_record) renamed to its id",
        "renames a folder; writes nothing",
    ),
    "runlab.record.environment._diff: copy": (
        "git's index copied into a temporary folder outside the logs, for `git add -N`",
        "outside the logs directory, removed at once",
    ),
    "runlab.logs.note_change: os.open": (
        "a change of a run's end: an empty file, made once ('O_EXCL') under a name that "
        "holds the run id and the time, in the reader's cache",
        "empty: its name holds a run id, a time, a pid and random hex",
    ),
    **{
        f"runlab.results.reader._index._token: {kind}": (
            "the change folder's identity: a random token, made once ('O_EXCL')",
            "a random token",
        )
        for kind in ("os.open", "os.write")
    },
    "runlab.results.reader._index._write_data: open": (
        "the index's data blocks: written once under a new name ('xb'), never replaced",
        "a cache of the record's data, already redacted",
    ),
    "runlab.results.reader._index._write_data: write_parquet": (
        "the index's data blocks: Parquet into memory (then written once, 'xb')",
        "a cache of the record's data, already redacted",
    ),
    "runlab.results.report._html.write_html: write_text": ("the report's page", _REPORT),
    "runlab.results.report._model.write_json: write_bytes": ("the report's data", _REPORT),
    "runlab.results.report._png.write_pngs: savefig": ("the report's figures", _REPORT),
    "runlab.sweep.tune.write_plots: write_html": ("tune's plots", _REPORT),
    "runlab.results.export._tensorboard.write_run: write_text": (
        "runlab export tensorboard: a run's export fingerprint, beside its event files, in "
        "the run's new directory before it is swapped in",
        "hashes, a run id and the run's path: no user text but the path",
    ),
    "runlab.results.export._tensorboard._swap_in: rename": (
        "runlab export tensorboard: a run's event files, written whole into a temporary "
        "folder, swapped in for the old ones",
        "renames folders; writes nothing (the event files come from the record, redacted)",
    ),
    "runlab.sweep.tune._history_png: savefig": ("tune's plots", _REPORT),
    "runlab.results.reproduce._rebuild: rename": (
        "a run's code rebuilt from its commit under a temporary name, renamed into place",
        _CODE,
    ),
    "runlab.results.reproduce.code_dir: rename": (
        "a damaged rebuilt tree moved aside before it is removed and made anew",
        _CODE,
    ),
    "runlab.record.codetree.export_commit: write_bytes": (
        "the files of a commit as git stores them, into a new folder that is renamed into "
        "place when whole (reproduce, snapshots)",
        _CODE,
    ),
    "runlab.record.codetree.export_commit: link": (
        "the symbolic links of a commit, into the same new folder",
        _CODE,
    ),
    "runlab.record.codetree.smudge: write_bytes": (
        "a filtered file (LFS) as its filter writes it, kept only when it hashes to the run's",
        _CODE,
    ),
    "runlab.record.codetree.check: write_bytes": (
        "a rebuilt file's CRLF line ends, written only when they hash to the run's bytes",
        _CODE,
    ),
    "runlab.sweep.snapshot.snapshot: copy": (
        "the code snapshot of a sweep: copied into a temporary folder, renamed into place",
        _CODE,
    ),
    "runlab.sweep.snapshot.snapshot: rename": (
        "the code snapshot of a sweep: copied into a temporary folder, renamed into place",
        _CODE,
    ),
    "runlab.results.verify._move_aside: rename": (
        "verify --repair moves what it takes out of the record into .aside/",
        "moves files; writes nothing",
    ),
    "runlab.doctor.check_logs: mkstemp": (
        "doctor's probe that the logs directory is writable (removed at once)",
        "writes nothing",
    ),
    "runlab.record.lifecycle._drop_closed_output: os.open": (
        "the task's stdout or stderr, a pipe whose reader exited (`task.py | head`), is "
        "pointed at os.devnull, as Python's note on SIGPIPE advises: no file is written",
        "writes nothing",
    ),
    "runlab.sweep.jobs.claim: os.open": (
        "a local worker claims a queued run: an exclusive create (O_EXCL) is the point",
        _WHO,
    ),
    "runlab.sweep.jobs.claim: os.write": (
        "a local worker claims a queued run: an exclusive create (O_EXCL) is the point",
        _WHO,
    ),
    "runlab.sweep.jobs.run_local: open": (
        "a local job's stdout and stderr, appended by the task's process",
        _OUTPUT,
    ),
    "runlab.sweep.backends.local.Backend.submit: open": ("a local worker's output file", _OUTPUT),
    "runlab.sweep.backends.slurm._link_tasks: link": (
        "submitit's job pickles, linked under each job's name instead of copied",
        "links; writes nothing",
    ),
    **{
        f"runlab.sweep.record.exclusive: {k}": (_LOCK, _WHO)
        for k in ("os.open", "os.write", "truncate")
    },
    **{
        f"runlab.sweep.tune.DriverLock.__enter__: {k}": (_LOCK, _WHO)
        for k in ("os.open", "os.write", "truncate")
    },
    "runlab.sweep.study.repair_tail: os.open": (
        "opens the study journal to repair its torn tail (metricsfile.repair_tail)",
        _CUT,
    ),
    "runlab.sweep.submission._write: os.open": (
        "the records of pre-created QUEUED runs: one exclusive write per file into a new "
        "run folder that is not a run before its info.json (thousands of runs a submit)",
        _SUBMITTED,
    ),
    "runlab.sweep.submission._write: os.write": (
        "the records of pre-created QUEUED runs: one exclusive write per file into a new "
        "run folder that is not a run before its info.json (thousands of runs a submit)",
        _SUBMITTED,
    ),
    "runlab.cli.reference.write: write_text": (
        "the docs' generated reference pages (docs/reference/*.md), by the developer's "
        "`python -m runlab.cli.reference --write`; never a run's record",
        "no record: pages generated from the code's own tables",
    ),
}

# The callers of the atomic writer, and what each writes: "redacts" is checked as above.
ATOMIC_CALLERS: dict[str, str] = {
    "runlab.record.files.write_yaml": "redacts: secrets.redact",
    "runlab.record.files.write_record": "redacts: secrets.redact",
    "runlab.record.lifecycle._write_on_full_disk": (
        "its callers (the run's end) pass a traceback through secrets.redact_text"
    ),
    "runlab.record.lifecycle.RunSession._write_env": (
        "git.diff: not redacted, the patch must apply as it is for reproduce (the env record "
        "goes through write_record)"
    ),
    "runlab.record.logger.RunLogger._end_record": "redacts: secrets.redact_text",
    "runlab.record.distributed._write_failure": "redacts: secrets.redact",
    "runlab.record.distributed.settle": "redacts: secrets.redact_text",
    "runlab.record.distributed._write_end": "a rank's end: its number: " + _WHO,
    "runlab.record.distributed.slurm_rank_env": "rank 0's address: " + _WHO,
    "runlab.results.reader._index._write_atomic": "the index's pointers: hashes and names",
    "runlab.results.reproduce.rerun": "git.diff, copied from the run reproduced: " + _CODE,
    "runlab.results.reproduce._rebuild": "the patch and code record beside a rebuilt tree: "
    + _CODE,
    "runlab.sweep.backends.sge.Backend.submit": (
        "the Grid Engine job script: an allowlist of variables, each value passed through "
        "secrets.find (a credential is left out), and the paths of the jobs file"
    ),
    "runlab.sweep.ops._submit": "a submission's jobs: run ids, overrides (submit refuses credentials in them), paths",
    "runlab.sweep.record.save": "redacts: secrets.redact",
    "runlab.sweep.tune.Driver.create_run": "git.diff: " + _CODE,
    "runlab.sweep.snapshot.snapshot": "a dirty snapshot's patch (<key>.diff): " + _CODE,
}

# Calls that write, by the name they are called by: ``module.function`` or ``.method``.
_WRITERS = {
    "os.write": "os.write",
    "os.pwrite": "os.write",
    "os.ftruncate": "truncate",
    "os.truncate": "truncate",
    ".truncate": "truncate",
    "os.replace": "rename",
    "os.rename": "rename",
    ".rename": "rename",
    "os.link": "link",
    "os.symlink": "link",
    ".symlink_to": "link",
    ".hardlink_to": "link",
    "shutil.copy": "copy",
    "shutil.copy2": "copy",
    "shutil.copyfile": "copy",
    "shutil.copyfileobj": "copy",
    "shutil.copytree": "copy",
    "shutil.move": "rename",
    ".write_text": "write_text",
    ".write_bytes": "write_bytes",
    ".touch": "touch",
    "json.dump": "dump",
    "pickle.dump": "dump",
    "torch.save": "dump",
    "yaml.dump_to_file": "dump",
    "tempfile.mkstemp": "mkstemp",
    ".write_parquet": "write_parquet",
    ".write_csv": "write_csv",
    ".write_ipc": "write_ipc",
    ".savefig": "savefig",
    ".write_html": "write_html",
    ".write_image": "write_image",
}
_OPENERS = {"open", "io.open", "os.fdopen", ".open"}
_WRITE_FLAGS = {"O_WRONLY", "O_RDWR", "O_CREAT", "O_APPEND", "O_TRUNC"}


def _name(func: ast.expr) -> str:
    """``os.write`` for ``os.write(...)``, ``.write_text`` for ``x.write_text(...)``,
    ``open`` for ``open(...)``."""
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        if isinstance(func.value, ast.Name) and func.value.id in {
            "os",
            "shutil",
            "json",
            "pickle",
            "torch",
            "yaml",
            "tempfile",
            "io",
        }:
            return f"{func.value.id}.{func.attr}"
        return f".{func.attr}"
    return ""


def _mode(call: ast.Call, name: str) -> ast.expr | None:
    for kw in call.keywords:
        if kw.arg == "mode":
            return kw.value
    index = 0 if name == ".open" else 1
    return call.args[index] if len(call.args) > index else None


def _kind(call: ast.Call) -> str | None:
    """What kind of write ``call`` is, or ``None`` when it writes no file."""
    name = _name(call.func)
    if name in _OPENERS:
        mode = _mode(call, name)
        if mode is None:
            return None  # "r"
        if isinstance(mode, ast.Constant) and isinstance(mode.value, str):
            return "open" if set(mode.value) & set("wax+") else None
        return "open"  # a mode computed at run time: counted as a write
    if name == "os.open":
        flags = {n.attr for n in ast.walk(call.args[1]) if isinstance(n, ast.Attribute)}
        return "os.open" if flags & _WRITE_FLAGS or len(call.args) < 2 else None
    kind = _WRITERS.get(name)
    if kind is None:
        return None
    if name in {".rename", ".truncate"} and (
        not call.args or call.keywords or isinstance(call.args[0], ast.Dict)
    ):
        return None  # a DataFrame's .rename({...}); .truncate() of a text
    if kind in {"write_csv", "write_html"} and not call.args:
        return None  # polars' write_csv() with no file returns the text
    return kind


def writes(package: Path) -> Iterator[tuple[str, str, str]]:
    """``(module.function, kind, where)`` for every write call in ``package``; a call at a
    module's top level has the function ``<module>``; one in a lambda, the function around
    it."""
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        module = ".".join(parts)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        yield from _walk(tree, module, [], path.relative_to(package.parent.parent))


def _walk(
    node: ast.AST, module: str, scope: list[str], path: Path
) -> Iterator[tuple[str, str, str]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            yield from _walk(child, module, [*scope, child.name], path)
            continue
        if isinstance(child, ast.Call):
            kind = _kind(child)
            if kind is not None:
                qualname = ".".join([module, *scope]) if scope else f"{module}.<module>"
                yield qualname, kind, f"{path}:{child.lineno}"
        yield from _walk(child, module, scope, path)


def found(package: Path = PACKAGE) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for qualname, kind, where in writes(package):
        out.setdefault(f"{qualname}: {kind}", []).append(where)
    return out


def _functions(package: Path) -> dict[str, ast.AST]:
    """``module.function`` -> its node, for every function (methods as ``module.Class.f``)."""
    out: dict[str, ast.AST] = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        stack: list[tuple[ast.AST, list[str]]] = [(tree, parts)]
        while stack:
            node, scope = stack.pop()
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    inner = [*scope, child.name]
                    if not isinstance(child, ast.ClassDef):
                        out[".".join(inner)] = child
                    stack.append((child, inner))
    return out


def _called(node: ast.AST) -> set[str]:
    """The names of the calls in ``node``: ``secrets.redact``, ``write_atomic``..."""
    names = set()
    for call in (n for n in ast.walk(node) if isinstance(n, ast.Call)):
        func = call.func
        if isinstance(func, ast.Name):
            names.add(func.id)
        elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            names.add(f"{func.value.id}.{func.attr}")
    return names


_REDACTORS = {"secrets.redact", "secrets.redact_text", "write_record", "write_yaml"}


def _check(found: dict[str, list[str]], allowed: dict[str, object], what: str, fix: str) -> None:
    problems = [
        f"{key} ({', '.join(where)}): {what}: {fix}"
        for key, where in sorted(found.items())
        if key not in allowed
    ]
    problems += [
        f"{key!r} is allowed, but {what} no longer: remove the entry"
        for key in sorted(allowed)
        if key not in found
    ]
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def test_the_scanner_sees_every_kind_of_write(tmp_path: Path) -> None:
    """The rule itself: each way of writing a file is found, reads are not."""
    pkg = tmp_path / "runlab"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "m.py").write_text(
        "import os, shutil, json\n"
        "def reads(p, df):\n"
        "    open(p).read(); open(p, 'rb'); p.open(); os.open(p, os.O_RDONLY)\n"
        "    df.rename({'a': 'b'}); df.write_csv(); 'x'.replace('a', 'b')\n"
        "class K:\n"
        "    def writes(self, p, mode, df, fig):\n"
        "        open(p, 'w'); open(p, mode=mode); p.open('ab'); os.open(p, os.O_WRONLY)\n"
        "        p.write_text('x'); p.write_bytes(b''); json.dump({}, p); shutil.copy2(p, p)\n"
        "        os.replace(p, p); df.write_parquet(p); fig.savefig(p); os.write(3, b'')\n"
        "        f = lambda t: t.write_bytes(b'')\n"
    )
    kinds = sorted(kind for _, kind, _ in writes(pkg))
    assert all(q == "runlab.m.K.writes" for q, _, _ in writes(pkg))
    expected = ["open", "open", "open", "os.open", "write_text", "write_bytes", "dump", "copy"]
    expected += ["rename", "write_parquet", "savefig", "os.write", "write_bytes"]
    assert kinds == sorted(expected)


def test_files_are_written_only_where_allowed() -> None:
    """Every write in runlab is one the allow-list names, with its reason; none is stale."""
    _check(
        found(),
        ALLOWED,
        "writes a file",
        "write through runlab.record.files (write_record, write_yaml, write_atomic), or add "
        "the function to ALLOWED in tests/test_io_paths.py with why it must write itself",
    )


def test_the_atomic_writer_is_called_only_where_allowed() -> None:
    """Every caller of ``write_atomic`` says what it writes and how credentials are kept out."""
    calls = {
        name: [f"{name}"]
        for name, node in _functions(PACKAGE).items()
        if "write_atomic" in _called(node)
    }
    _check(
        calls,
        ATOMIC_CALLERS,
        "calls write_atomic",
        "add it to ATOMIC_CALLERS with what it writes (redact user text: runlab.record.secrets)",
    )


def test_writers_that_say_they_redact_do() -> None:
    """An entry whose note says ``redacts`` calls runlab.record.secrets (or write_record/
    write_yaml, which do); every entry gives a reason and a word on credentials."""
    functions = _functions(PACKAGE)
    problems = []
    notes = {key.split(": ")[0]: note for key, (_, note) in ALLOWED.items()}
    notes.update(ATOMIC_CALLERS)
    for name, note in sorted(notes.items()):
        if not note.strip():
            problems.append(f"{name}: says nothing about credentials")
        if note.startswith("redacts") and not _called(functions[name]) & _REDACTORS:
            problems.append(f"{name}: says it redacts, but calls none of {sorted(_REDACTORS)}")
    for key, (why, _) in ALLOWED.items():
        if not why.strip():
            problems.append(f"{key}: gives no reason")
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------- found through this list
HF = "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"


def test_a_final_status_written_in_place_on_a_full_disk_holds_no_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last resort of a final status on a full disk (rewriting info in place) redacts,
    as every other write of info does. Before: the token was in info.json and info.yaml."""
    run = RunDir(tmp_path / "1").create()
    write_record(run.info_file, {"status": "RUNNING"})

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(rundir, "write_record", full)
    error = {"type": "RuntimeError", "message": f"could not log in with {HF}"}
    run.update_info(final=True, status=Status.FAILED, error=error)
    for name in ("info.json", "info.yaml"):
        text = (run.metadata / name).read_text()
        assert HF not in text and "***" in text, text
    assert run.read_info()["status"] == Status.FAILED


def test_a_rank_failure_record_holds_no_credential(tmp_path: Path) -> None:
    """``ranks/rank<k>.failed.json`` (a rank's error, for rank 0) is redacted, as the
    traceback.txt made of it is. Before: the token was in it, in the message and traceback."""
    run = RunDir(tmp_path / "1").create()
    write_record(run.info_file, {"status": "RUNNING"})
    try:
        raise RuntimeError(f"could not log in with {HF}")
    except RuntimeError as exc:
        distributed._write_failure(
            run, distributed.Dist(rank=1, world_size=2), exc, exc.__traceback__
        )
    text = (run.path / distributed.RANKS / "rank1.failed.json").read_text()
    assert HF not in text and '"message":"***"' in text, text


QUADRATIC = TASKS / "quadratic.py"


def test_submitted_runs_hold_no_credential_and_still_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``runlab submit`` resolves ``${oc.env:HF_TOKEN}`` into each pre-made run's config: it
    is redacted there, as in a run started by hand, and the job still starts (its config is
    compared redacted); a run started by hand resumes with the same overrides.
    Before: the token was in clear in every QUEUED run's config.json and config.yaml; and
    resuming a run whose config held a credential was refused as 'a different config'."""
    config = tmp_path / "quadratic.yaml"
    config.write_text(
        (TASKS / "quadratic.yaml").read_text() + "hub:\n  token: ${oc.env:HF_TOKEN}\n"
    )
    project = make_project(tmp_path, QUADRATIC, config) / "tasks"
    logs = project / "logs"
    env = {"HF_TOKEN": HF, "RUNLAB_LOGS": str(logs), "RUNLAB_HEARTBEAT_S": "3600"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    sweep = submission.prepare(
        project / "quadratic.py",
        ["x=1", "steps=1"],
        launcher_name="local",
        logs=logs,
        allow_dirty=True,
    )
    (run,) = submission.create_runs(sweep).runs
    leaks = [p for p in run.path.rglob("*") if p.is_file() and HF.encode() in p.read_bytes()]
    assert not leaks, leaks
    job = subprocess.run(
        [sys.executable, str(project / "quadratic.py"), "x=1", "steps=1"],
        cwd=project,
        env=task_env(**env, RUNLAB_RUN_DIR=str(run.path)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert job.returncode == 0, job.stderr
    assert run.read_info()["status"] == Status.COMPLETE
    again = subprocess.run(
        [
            sys.executable,
            str(project / "quadratic.py"),
            "x=1",
            "steps=1",
            f"runlab.run_id={run.run_id}",
        ],
        cwd=project,
        env=task_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0, again.stderr
    assert run.read_info()["attempts"] == 2


if __name__ == "__main__":
    for key, where in sorted(found(Path(sys.argv[1]) if len(sys.argv) > 1 else PACKAGE).items()):
        print(f"{key}  ({', '.join(where)})")
