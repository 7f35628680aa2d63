"""The sweep record typed (runlab.sweep.record): round trips, its schema, one line for every
damaged field, old records still loading, and the commands on a damaged record."""

from __future__ import annotations

import copy
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runlab.errors import UserError
from runlab.sweep import record as rec
from runlab.sweep.study import StudyRecordError, check_journal, repair_tail

SRC = str(Path(rec.__file__).resolve().parents[2])

# What runlab before the typed record (format 1, main 57ff017) wrote for a local sweep.
OLD = {
    "format": 1,
    "sweep_id": "20261201-120000-1",
    "created": "2026-12-01T12:00:00.000+00:00",
    "host": "node1",
    "user": "ada",
    "cwd": "/project",
    "command": ["runlab", "submit", "train.py", "lr=0.1,0.2"],
    "task": "/project/train.py",
    "overrides": ["lr=0.1,0.2"],
    "logs": "/project/logs",
    "launcher": {"name": "local", "max_parallel": 2, "timeout_min": 60},
    "limits": None,
    "runs": [1, 2],
    "submissions": [
        {
            "n": 1,
            "kind": "submit",
            "time": "2026-12-01T12:00:01.000+00:00",
            "code": [{"commit": "abc", "branch": "main", "dirty": False, "snapshot": "/s/abc"}],
            "codes": [{"script": "/s/abc/train.py", "env": {"RUNLAB_LOGS": "/project/logs"}}],
            "jobs_file": "/project/logs/.sweeps/20261201-120000-1/jobs-1.json",
            "log_dir": "/project/logs/.sweeps/20261201-120000-1/logs",
            "workers": [{"pid": 4242}],
        },
        {
            "n": 2,
            "kind": "retry",
            "time": "2026-12-01T13:00:00.000+00:00",
            "runs": [2],
            "code": [{"commit": "def", "branch": None, "dirty": True, "snapshot": "/s/def"}],
            "codes": [{"script": "/s/def/train.py", "env": {}}],
            "jobs_file": "/project/logs/.sweeps/20261201-120000-1/jobs-2.json",
            "log_dir": "/project/logs/.sweeps/20261201-120000-1/logs",
            "arrays": [{"job_id": "77", "first": 0, "count": 1}],
        },
    ],
    "cancelled": [{"time": "2026-12-01T12:30:00.000+00:00", "runs": [1]}],
}


def write(logs: Path, data: object, sweep_id: str = OLD["sweep_id"]) -> Path:
    path = logs / ".sweeps" / f"{sweep_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def current() -> dict:
    """OLD as the new code saves it (the current format; no path in a logs directory)."""
    return rec.parse(copy.deepcopy(OLD), Path("x")).to_json()


# ------------------------------------------------------------------- old files
def test_a_record_written_by_the_old_code_loads_with_one_code_list(tmp_path: Path) -> None:
    write(tmp_path, OLD)
    loaded = rec.load(tmp_path, OLD["sweep_id"])
    first, retry = loaded.submissions
    # Submitted into /project/logs, found in tmp_path: the jobs' RUNLAB_LOGS follows it.
    assert first.code == [
        rec.Code("abc", "main", False, "/s/abc", "/s/abc/train.py", {"RUNLAB_LOGS": str(tmp_path)})
    ]
    assert retry.code[0].commit == "def" and retry.code[0].script == "/s/def/train.py"
    assert first.runs is None and retry.runs == [2]
    assert first.workers == [rec.Worker(4242)] and retry.arrays == [rec.Array("77", 0, 1)]
    rec.save(tmp_path, loaded)  # and saved again in the current format, valid by the schema
    saved = json.loads((tmp_path / ".sweeps" / f"{OLD['sweep_id']}.json").read_text())
    jsonschema.validate(saved, rec.SCHEMA)
    assert saved["format"] == rec.FORMAT and "codes" not in saved["submissions"][0]


def _format_2(logs: str, paths_in: str) -> dict:
    """A record as runlab wrote format 2: ``logs`` the submit's place, its paths absolute
    into ``paths_in`` (another place where a save after a move had written it)."""
    data = current()
    data["format"] = 2
    data["logs"] = logs
    sweep = f"{paths_in}/.sweeps/{OLD['sweep_id']}"
    for n, sub in enumerate(data["submissions"], start=1):
        sub["jobs_file"], sub["log_dir"] = f"{sweep}/jobs-{n}.json", f"{sweep}/logs"
        for code in sub["code"]:
            code["snapshot"] = f"{paths_in}/.snapshots/abc"
            code["script"] = f"{paths_in}/.snapshots/abc/train.py"
            code["env"] = {"RUNLAB_LOGS": paths_in, "PYTHONPATH": f"/opt/x:{paths_in}/.snapshots"}
    return data


def _paths_of(record: rec.SweepRecord) -> list[str]:
    out = []
    for sub in record.submissions:
        out += [sub.jobs_file, sub.log_dir]
        for code in sub.code:
            out += [code.snapshot, code.script, *code.env.values()]
    return out


def _in(logs: Path, record: rec.SweepRecord) -> None:
    """Every path of ``record`` that named the logs directory names ``logs``."""
    sweep = logs / ".sweeps" / OLD["sweep_id"]
    for n, sub in enumerate(record.submissions, start=1):
        assert (sub.jobs_file, sub.log_dir) == (f"{sweep}/jobs-{n}.json", f"{sweep}/logs")
        for code in sub.code:
            assert code.script == f"{logs}/.snapshots/abc/train.py"
            assert code.env == {"RUNLAB_LOGS": str(logs), "PYTHONPATH": f"/opt/x:{logs}/.snapshots"}


@pytest.mark.parametrize(
    ("submitted", "paths_in"),
    [
        ("/project/logs", "/project/logs"),  # moved since the submit
        ("/project/logs", "/moved/once/logs"),  # saved after a move, then moved again
        ("{tmp}", "{tmp}"),  # moved into a folder of the place it was submitted in
        ("{tmp}", "{tmp}/logs"),  # saved there, not moved since
        ("{tmp}/logs/old/logs", "{tmp}/logs/old/logs"),  # moved out of itself
    ],
)
def test_a_format_2_record_loads_after_a_move_and_is_saved_as_format_3(
    tmp_path: Path, submitted: str, paths_in: str
) -> None:
    """Format 2 held absolute paths and the submit's place in ``logs``; a save after a move
    (by runlab of format 2) left its paths in the second place. Each loads in a third,
    each path moved once, even where one place lies inside another."""
    submitted, paths_in = (x.format(tmp=tmp_path) for x in (submitted, paths_in))
    here = tmp_path / "logs"
    write(here, _format_2(submitted, paths_in))
    loaded = rec.load(here, OLD["sweep_id"])
    _in(here, loaded)
    assert loaded.logs == submitted and loaded.submissions[0].code[0].commit == "abc"
    rec.save(here, loaded)
    saved = json.loads(rec.record_path(here, OLD["sweep_id"]).read_text())
    jsonschema.validate(saved, rec.SCHEMA)
    assert saved["format"] == 3 and str(here) not in json.dumps(saved["submissions"])
    assert saved["submissions"][0]["log_dir"] == f"<logs>/.sweeps/{OLD['sweep_id']}/logs"
    moved = tmp_path / "again" / "logs"
    moved.parent.mkdir()
    os.rename(here, moved)
    _in(moved, rec.load(moved, OLD["sweep_id"]))


def test_a_format_1_record_loads_after_a_move_and_is_saved_as_format_3(tmp_path: Path) -> None:
    data = copy.deepcopy(OLD)
    sweep = f"/project/logs/.sweeps/{OLD['sweep_id']}"
    assert data["submissions"][0]["log_dir"] == f"{sweep}/logs"
    here = tmp_path / "logs"
    write(here, data)
    loaded = rec.load(here, OLD["sweep_id"])
    first = loaded.submissions[0]
    assert first.jobs_file == f"{here}/.sweeps/{OLD['sweep_id']}/jobs-1.json"
    assert first.code[0].env == {"RUNLAB_LOGS": str(here)} and first.code[0].snapshot == "/s/abc"
    rec.save(here, loaded)
    assert json.loads(rec.record_path(here, OLD["sweep_id"]).read_text())["format"] == 3
    moved = tmp_path / "again" / "logs"
    moved.parent.mkdir()
    os.rename(here, moved)
    again = rec.load(moved, OLD["sweep_id"])
    assert again.submissions[0].log_dir == f"{moved}/.sweeps/{OLD['sweep_id']}/logs"
    assert again.submissions[0].code[0].env == {"RUNLAB_LOGS": str(moved)}


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(saves=st.lists(st.booleans(), min_size=1, max_size=8))
def test_a_format_3_record_follows_any_moves_whatever_saved_it_between(saves: list[bool]) -> None:
    """Moves of the logs directory, each followed or not by a load-change-save (a retry, a
    status): every load names files in the place the record is read from, and the file
    holds no absolute path into the logs directory."""
    with tempfile.TemporaryDirectory() as tmp:
        here = Path(tmp) / "0" / "logs"
        here.parent.mkdir()
        write(here, _format_2(str(here), str(here)))
        rec.save(here, rec.load(here, OLD["sweep_id"]))  # now format 3
        for n, save in enumerate(saves, start=1):
            moved = Path(tmp) / str(n) / "logs"
            moved.parent.mkdir()
            os.rename(here, moved)
            here = moved
            loaded = rec.load(here, OLD["sweep_id"])
            _in(here, loaded)
            if save:
                loaded.cancelled.append(rec.Cancel(f"move {n}", [1]))
                rec.save(here, loaded)
                raw = rec.record_path(here, OLD["sweep_id"]).read_text()
                assert json.loads(raw)["format"] == 3 and str(here) not in raw
                assert rec.load(here, OLD["sweep_id"]) == loaded  # the round trip
        assert rec.load(here, OLD["sweep_id"]).cancelled[-1:] == (
            [rec.Cancel(f"move {len(saves)}", [1])] if saves[-1] else loaded.cancelled[-1:]
        )


# --------------------------------------------------------------- round trips
# Generated records (Hypothesis is not a dependency of the project: a seeded generator
# with the odd strings that break hand-written JSON: quotes, backslashes, newlines, NUL,
# non-ASCII, lone surrogates left out as JSON cannot hold them).
ODD = ["", " ", '"', "\\", "\n", "\x00", "é", "日本", "\u2028", "a" * 300, "-1", "null", "{}"]


def _text(rnd: random.Random) -> str:
    return "".join(rnd.choice(ODD) for _ in range(rnd.randint(0, 3)))


def _ids(rnd: random.Random) -> list[int]:
    return [rnd.randint(1, 10**18 - 1) for _ in range(rnd.randint(0, 4))]


def _random_record(rnd: random.Random) -> rec.SweepRecord:
    def code() -> rec.Code:
        return rec.Code(
            rnd.choice([None, _text(rnd)]),
            rnd.choice([None, _text(rnd)]),
            rnd.random() < 0.5,
            _text(rnd),
            _text(rnd),
            {_text(rnd): _text(rnd) for _ in range(rnd.randint(0, 3))},
        )

    def sub(n: int) -> rec.Submission:
        return rec.Submission(
            n,
            rnd.choice(["submit", "retry", "tune"]),
            _text(rnd),
            rnd.choice([None, _ids(rnd)]),
            [code() for _ in range(rnd.randint(0, 2))],
            _text(rnd),
            _text(rnd),
            [rec.Array(_text(rnd), rnd.randint(0, 9), rnd.randint(0, 9)) for _ in range(2)],
            [rec.Worker(rnd.randint(1, 2**31)) for _ in range(rnd.randint(0, 2))],
        )

    return rec.SweepRecord(
        sweep_id=str(rec.SweepId.new(first_run=rnd.randint(1, 10**6))),
        created=_text(rnd),
        host=_text(rnd),
        user=_text(rnd),
        cwd=_text(rnd),
        command=[_text(rnd) for _ in range(3)],
        task=_text(rnd),
        overrides=[_text(rnd) for _ in range(rnd.randint(0, 3))],
        logs=_text(rnd),
        launcher={"name": rnd.choice(["local", "slurm"]), _text(rnd): _ids(rnd)},
        limits=rnd.choice([None, {"MaxArraySize": rnd.randint(1, 10**6)}]),
        runs=_ids(rnd),
        submissions=[sub(n + 1) for n in range(rnd.randint(0, 3))],
        cancelled=[rec.Cancel(_text(rnd), _ids(rnd)) for _ in range(rnd.randint(0, 2))],
        tune=rnd.choice([None, _text(rnd)]),
    )


@pytest.mark.parametrize("seed", range(40))
def test_a_saved_record_loads_back_equal_and_matches_the_schema(tmp_path: Path, seed: int) -> None:
    record = _random_record(random.Random(seed))
    rec.save(tmp_path, record)
    data = json.loads(rec.record_path(tmp_path, record.sweep_id).read_text())
    jsonschema.validate(data, rec.SCHEMA)
    assert rec.load(tmp_path, record.sweep_id) == record


# ---------------------------------------------------------------- damaged ones
def _paths(schema: dict, data: object, prefix: str = "") -> list[tuple[str, list]]:
    """Every (dotted name, key path) of the schema's properties present in ``data``."""
    out = []
    props = schema.get("properties", {})
    for key, sub in props.items():
        if not isinstance(data, dict) or key not in data:
            continue
        name = f"{prefix}.{key}" if prefix else key
        out.append((name, [key]))
        value = data[key]
        item = sub.get("items")
        if isinstance(value, list) and value and isinstance(item, dict):
            for n, p in _paths(item, value[0], f"{name}[0]"):
                out.append((n, [key, 0, *p]))
        elif isinstance(value, dict) and sub.get("properties"):
            for n, p in _paths(sub, value, name):
                out.append((n, [key, *p]))
    return out


FIELDS = _paths(rec.SCHEMA, current())
REQUIRED = [
    (name, path)
    for name, path in FIELDS
    if name.rsplit(".", 1)[-1].split("[")[0] not in ("arrays", "workers", "tune", "runs")
    or name in ("runs", "cancelled[0].runs")
]


def _edit(path: list, value: object, delete: bool = False) -> dict:
    data = current()
    target = data
    for key in path[:-1]:
        target = target[key]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


def _nullable(name: str) -> bool:
    return name in ("limits", "submissions[0].runs") or name.endswith((".commit", ".branch"))


@pytest.mark.parametrize(("name", "path"), REQUIRED, ids=[n for n, _ in REQUIRED])
def test_every_field_missing_is_one_line_naming_it_and_the_file(
    tmp_path: Path, name: str, path: list
) -> None:
    file = write(tmp_path, _edit(path, None, delete=True))
    with pytest.raises(rec.SweepRecordError) as err:
        rec.load(tmp_path, OLD["sweep_id"])
    line = err.value.line()
    assert isinstance(err.value, UserError) and "\n" not in line
    assert name in line and str(file) in line and "fix or delete it" in line


@pytest.mark.parametrize(("name", "path"), FIELDS, ids=[n for n, _ in FIELDS])
def test_every_field_null_or_of_a_wrong_type_is_one_line_naming_it(
    tmp_path: Path, name: str, path: list
) -> None:
    wrong = [[1.5], {"x": [1]}] if not _nullable(name) else [[1.5]]
    if not _nullable(name):
        wrong.append(None)
    for value in wrong:
        file = write(tmp_path, _edit(path, value))
        with pytest.raises(rec.SweepRecordError) as err:
            rec.load(tmp_path, OLD["sweep_id"])
        assert name in err.value.line() and str(file) in err.value.line()


def test_extra_fields_are_fine(tmp_path: Path) -> None:
    write(tmp_path, {**current(), "note": "mine", "launcher": {"name": "local", "x": 1}})
    assert rec.load(tmp_path, OLD["sweep_id"]).launcher["x"] == 1


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (json.dumps(OLD)[:200], "not valid JSON"),
        ("", "empty"),
        ("hello", "not valid JSON"),
        ("[1, 2]", "JSON list"),
        (json.dumps({**OLD, "format": 99}), "format is 99"),
    ],
    ids=["truncated", "empty", "not-json", "a-list", "newer-format"],
)
def test_a_damaged_file_is_one_user_error(tmp_path: Path, content: str, said: str) -> None:
    path = write(tmp_path, OLD)
    path.write_text(content)
    with pytest.raises(rec.SweepRecordError) as err:
        rec.load(tmp_path, OLD["sweep_id"])
    assert said in err.value.line() and str(path) in err.value.line()


# ------------------------------------------------------------------------- ids
@pytest.mark.parametrize(
    ("text", "first", "study"),
    [("20261201-120000-17", 17, None), ("20261201-120000-tune-my-study", None, "my-study")],
)
def test_a_sweep_id_parses_both_formats_runlab_wrote(text: str, first, study) -> None:
    sid = rec.SweepId.parse(text)
    assert str(sid) == text and sid.first_run == first and sid.study == study


@pytest.mark.parametrize("first", [1, 9, 10, 123456, 10**18 - 1])
def test_a_made_sweep_id_parses_back(first: int) -> None:
    made = rec.SweepId.new(first_run=first)
    assert rec.SweepId.parse(str(made)) == made and made.first_run == first
    study = rec.SweepId.new(study="s1")
    assert rec.SweepId.parse(str(study)).study == "s1"


@pytest.mark.parametrize("bad", ["", "latest", "2026-1", "20261201-120000-", "../x"])
def test_a_sweep_id_that_is_none_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        rec.SweepId.parse(bad)


def test_sweeps_sort_by_time_then_first_run(tmp_path: Path) -> None:
    for sid in ("20261201-120000-100", "20261201-120000-9", "20261130-000000-tune-a"):
        write(tmp_path, {**current(), "sweep_id": sid}, sid)
    assert rec.sweep_ids(tmp_path) == [
        "20261130-000000-tune-a",
        "20261201-120000-9",
        "20261201-120000-100",
    ]


def test_update_changes_the_record_under_its_lock(tmp_path: Path) -> None:
    write(tmp_path, current())
    rec.update(tmp_path, OLD["sweep_id"], lambda r: r.cancelled.append(rec.Cancel("t", [2])))
    assert rec.load(tmp_path, OLD["sweep_id"]).cancelled[-1] == rec.Cancel("t", [2])
    assert (tmp_path / ".sweeps" / f"{OLD['sweep_id']}.lock").exists()


# -------------------------------------------------------------------- commands
def runlab(logs: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": SRC, "RUNLAB_LOGS": str(logs)}
    env.pop("RUNLAB_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "runlab", *args],
        cwd=logs.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _good(logs: Path, sid: str, first: int) -> None:
    data = {**current(), "sweep_id": sid, "runs": [first], "submissions": [], "cancelled": []}
    write(logs, data, sid)
    run = logs / str(first) / "metadata"
    run.mkdir(parents=True)
    (run / "info.json").write_text(json.dumps({"run_id": str(first), "status": "COMPLETE"}))


def test_status_all_shows_the_good_sweeps_beside_a_damaged_latest_one(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    _good(logs, "20261201-120000-1", 1)
    _good(logs, "20261201-130000-2", 2)
    bad = {**current(), "sweep_id": "20261201-140000-3", "runs": None}
    write(logs, bad, "20261201-140000-3")
    out = runlab(logs, "status", "--all", "--no-reconcile")
    assert out.returncode == 0, out.stderr
    assert "sweep 20261201-120000-1" in out.stdout and "sweep 20261201-130000-2" in out.stdout
    (line,) = [ln for ln in out.stdout.splitlines() if "20261201-140000-3" in ln]
    assert "damaged" in line and "runs is null" in line
    data = json.loads(runlab(logs, "status", "--all", "--json", "--no-reconcile").stdout)
    assert [s["sweep_id"] for s in data["sweeps"]][:2] == ["20261201-120000-1", "20261201-130000-2"]
    assert "runs is null" in data["sweeps"][2]["damaged"]


@pytest.mark.parametrize(
    "command",
    [["status"], ["cancel"], ["retry"], ["logs", "1"]],
    ids=["status", "cancel", "retry", "logs"],
)
def test_a_command_on_a_record_with_a_null_field_is_one_line(
    tmp_path: Path, command: list[str]
) -> None:
    logs = tmp_path / "logs"
    _good(logs, OLD["sweep_id"], 1)
    info = logs / "1" / "metadata" / "info.json"
    info.write_text(json.dumps({"run_id": "1", "status": "FAILED", "sweep_id": OLD["sweep_id"]}))
    path = write(logs, {**current(), "launcher": None})
    out = runlab(logs, *command)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith(f"runlab {command[0]}: error: "), out.stderr
    assert "internal error" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert "launcher is null" in out.stderr and str(path) in out.stderr


# ------------------------------------------------------------------- journal
def test_a_torn_last_journal_line_waits_and_a_torn_middle_line_is_one_line(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "s.journal"
    journal.write_bytes(b'{"op_code": 0}\n{"op_code": 1, "x"')
    check_journal(journal)  # a write under way (or torn by a crash): left alone
    repair_tail(journal)  # before a driver appends: cut
    assert journal.read_bytes() == b'{"op_code": 0}\n'
    journal.write_bytes(b'{"op_code": 0}\n{"op_code": 1}')
    repair_tail(journal)  # a whole entry that only lacks its newline: ended
    assert journal.read_bytes() == b'{"op_code": 0}\n{"op_code": 1}\n'
    journal.write_bytes(b'{"op_code": 0}\n{"op_co\n{"op_code": 2}\n')
    with pytest.raises(StudyRecordError) as err:
        check_journal(journal)
    assert "line 2" in err.value.line() and str(journal) in err.value.line()


def test_the_documented_schema_is_the_code_s() -> None:
    doc = Path(__file__).resolve().parents[1] / "docs" / "sweep-record.schema.json"
    assert json.loads(doc.read_text()) == rec.SCHEMA, "regenerate docs/sweep-record.schema.json"


def _study(logs: Path, attrs: dict) -> Path:
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    from runlab.sweep import tune

    path = tune.journal_path(logs, "s")
    path.parent.mkdir(parents=True)
    store = JournalStorage(JournalFileBackend(str(path)))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="s", storage=store, direction="maximize")
    study.set_user_attr(tune.ATTR, attrs)
    study.enqueue_trial({"x": 1.0})
    return path


ATTRS = {
    "task": "train.py",
    "metric": "test.acc",
    "direction": "maximize",
    "objective": "last",
    "space": {"lr": "interval(0.1, 1)"},
    "overrides": [],
    "sampler": "tpe",
    "pruner": "none",
    "seed": 3,
    "sweep_id": "20261201-120000-tune-s",
    "code": dict(current()["submissions"][0]["code"][0].items()),
    "logs": "/logs",
    "created": "2026-12-01T12:00:00+00:00",
    "command": ["runlab", "tune"],
    "launcher": "local",
}


def test_a_study_with_a_damaged_attribute_or_journal_line_is_one_line(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    path = _study(logs, {**ATTRS, "metric": None})
    out = runlab(logs, "tune", "--show", "--study", "s")
    assert out.returncode == 2 and "internal error" not in out.stderr, out.stderr
    assert "study attribute metric is null" in out.stderr and str(path) in out.stderr
    lines = path.read_bytes().split(b"\n")
    lines[0] = lines[0][:10]  # a torn line before the others
    path.write_bytes(b"\n".join(lines))
    out = runlab(logs, "tune", "--show", "--study", "s")
    assert out.returncode == 2 and "line 1 is not a JSON object" in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_a_good_study_shows_and_a_torn_last_line_is_ignored(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    path = _study(logs, ATTRS)
    with open(path, "ab") as fh:
        fh.write(b'{"op_code": 5, "worker_id"')  # a crash in the middle of a write
    out = runlab(logs, "tune", "--show", "--study", "s", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["metric"] == "test.acc"
