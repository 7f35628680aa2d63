"""What ``runlab tune`` keeps about a study, typed: :class:`StudyRecord`, and the check of
its journal (``<logs>/.studies/<name>.journal``, Optuna's append-only JSON lines).

The study's user attribute ``runlab`` in the journal holds its definition (task, metric,
direction, objective, search space, fixed overrides, sampler, pruner), its seed, the
sweep id of its runs, the pinned code and where and when it was made. A journal
hand-edited to a wrong type or a missing field is one :class:`StudyRecordError`
naming the journal and the field.

**A torn line** (a crash mid-write) follows the metrics files' rule: the last line
without its newline is ignored until it is completed (Optuna's reader does the same);
a line that is not JSON anywhere else is one error naming the file and the line.
Before a driver appends, :func:`repair_tail` ends a complete last line with its
newline or cuts a torn one, so a new entry is never spliced onto a torn one.
(``record/logger.py``'s ``_repair_tail`` has the same rule for the metrics files; it
is private there until the metrics-file module owns it.)
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import orjson

from runlab.record import metricsfile
from runlab.sweep.record import (
    LOGS_MARK,
    Code,
    FieldReader,
    SweepRecordError,
    each_code_path,
    read_code,
    rebased,
)

TODO = "fix the journal, or start a new --study"


class StudyRecordError(SweepRecordError):
    """A study's journal, or its ``runlab`` attribute, that cannot be read."""

    def __init__(self, path: Path | str, field_: str, problem: str, todo: str = TODO) -> None:
        super().__init__(path, field_, problem, todo)


class _StudyReader(FieldReader):
    def fail(self, where: str, problem: str) -> SweepRecordError:
        return StudyRecordError(self.path, f"study attribute {where}", problem)


@dataclass
class StudyRecord:
    """The study's ``runlab`` user attribute."""

    task: str
    metric: str
    direction: str
    objective: str
    space: dict[str, str]
    overrides: list[str]
    sampler: str
    pruner: str
    seed: int
    sweep_id: str
    code: Code
    logs: str
    created: str
    command: list[str]
    launcher: str

    def definition(self) -> dict[str, Any]:
        """The fields that define the study (a resume must give the same)."""
        return {k: getattr(self, k) for k in DEFINING}

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def found_in(self, logs: Path | str) -> StudyRecord:
        """The record as the study is found in ``logs``: the pinned code's paths into the
        logs directory the study was made in (its ``logs``, kept as written: the journal's
        attribute is written once) name the same files in ``logs``, so that a study
        resumes after its logs directory was moved or renamed, running the snapshot that
        moved with it. A path written ``<logs>/...`` (as sweep records are) is resolved
        against ``logs`` too."""
        here = os.path.abspath(logs)
        made = os.path.abspath(self.logs) if self.logs else None
        code = replace(self.code, env=dict(self.code.env))

        def moved(text: str) -> str:
            text = rebased(text, LOGS_MARK, here)
            return rebased(text, made, here) if made and made != here else text

        each_code_path(code, moved)
        return replace(self, code=code)

    @classmethod
    def parse(cls, attrs: Any, journal: Path) -> StudyRecord:
        """``attrs`` (the ``runlab`` attribute read from ``journal``), checked field by field."""
        r = _StudyReader(journal)
        if not isinstance(attrs, dict):
            raise r.fail("", "is missing or not an object")
        space = r.get(attrs, "space", dict, "")
        for key, value in space.items():
            if not isinstance(value, str):
                raise r.fail(f"space.{key}", f"is {type(value).__name__}, not a string")
        return cls(
            task=r.get(attrs, "task", str, ""),
            metric=r.get(attrs, "metric", str, ""),
            direction=r.get(attrs, "direction", str, ""),
            objective=r.get(attrs, "objective", str, ""),
            space=dict(space),
            overrides=[v for _, v in r.items(attrs, "overrides", str, "")],
            sampler=r.get(attrs, "sampler", str, ""),
            pruner=r.get(attrs, "pruner", str, ""),
            seed=r.get(attrs, "seed", int, ""),
            sweep_id=r.get(attrs, "sweep_id", str, ""),
            code=read_code(r, r.get(attrs, "code", dict, ""), "code"),
            logs=r.get(attrs, "logs", str, ""),
            created=r.get(attrs, "created", str, ""),
            command=[v for _, v in r.items(attrs, "command", str, "")],
            launcher=r.get(attrs, "launcher", str, ""),
        )


DEFINING = ("task", "metric", "direction", "objective", "space", "overrides", "sampler", "pruner")


def check_journal(path: Path) -> None:
    """Raise a :class:`StudyRecordError` naming the first whole line of ``path`` that is not
    a JSON object; a last line without its newline (a write under way, or torn by a
    crash) is left alone, as the metrics files' is."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return
    lines = data.split(b"\n")
    for number, line in enumerate(lines[:-1], start=1):  # lines[-1]: after the last newline
        try:
            ok = isinstance(orjson.loads(line), dict)
        except orjson.JSONDecodeError:
            ok = False
        if not ok:
            raise StudyRecordError(path, f"line {number}", "is not a JSON object (a torn write?)")


def repair_tail(path: Path) -> None:
    """End a complete last line of the journal with its newline, or cut a torn one, so the
    next append starts a line of its own (the metrics file's rule). Call it holding the
    journal's lock."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND)
    except FileNotFoundError:
        return
    try:
        metricsfile.repair_tail(fd)
    finally:
        os.close(fd)
