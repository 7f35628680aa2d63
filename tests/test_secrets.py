"""No credential in clear: whatever way a secret reaches a run, no file under the logs
directory, no index and no report holds it, and `runlab verify` agrees (invariant 8).

The ways in: ``${oc.env:...}`` resolved into the config under an innocent key, a token
given on the command line, a git remote URL with a password, an exception message.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from unittest import mock

import orjson
import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from conftest import TASKS, git, make_project, runlab_cli
from runlab.record import secrets

WANDB = "0123456789abcdef0123456789abcdef01234567"  # a W&B key: 40 hex, like a commit
HF = "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
URL_PASSWORD = "s3cr3t-Pa55w0rd"

_RAISES = """
import os

import runlab


@runlab.launch(config_path=".", config_name="quadratic")
def main(ctx: runlab.Context) -> None:
    ctx.logger.log_metrics({"acc": 0.5}, name="test", step=0)
    raise RuntimeError("could not log in with " + os.environ["HF_TOKEN"])


if __name__ == "__main__":
    main()
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose runs met every secret: two runs, a report, the reader's index."""
    repo = make_project(tmp_path_factory.mktemp("secrets"), TASKS / "quadratic.py")
    shutil.copy(TASKS / "quadratic.yaml", repo / "tasks")
    (repo / "tasks" / "raises.py").write_text(_RAISES)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "tasks")
    git(repo, "remote", "add", "origin", f"https://alice:{URL_PASSWORD}@git.example.org/x.git")
    env = {"WANDB_API_KEY": WANDB, "HF_TOKEN": HF}
    for script, extra in (
        ("quadratic.py", ["+wandb.key=${oc.env:WANDB_API_KEY}", f"+hub.token={HF}"]),
        ("raises.py", []),
    ):
        subprocess.run(
            [*_python(), str(repo / "tasks" / script), "steps=3", "interval=0", *extra],
            cwd=repo,
            env=_env(repo, env),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    runlab_cli(repo, "ls", **env)  # writes the index
    runlab_cli(repo, "report", "--metric", "test.acc", "--out", str(repo / "report"), **env)
    return repo


def _python() -> list[str]:
    import sys

    return [sys.executable]


def _env(repo: Path, extra: dict[str, str]) -> dict[str, str]:
    from conftest import task_env

    return task_env(RUNLAB_LOGS=str(repo / "logs"), **extra)


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_both_runs_were_recorded(project: Path) -> None:
    runs = sorted(p.name for p in (project / "logs").iterdir() if p.name.isdigit())
    assert runs == ["1", "2"]
    config = (project / "logs/1/metadata/config.yaml").read_text()
    assert "wandb:" in config and "key: '***'" in config  # kept, redacted


@pytest.mark.parametrize("secret", [WANDB, HF, URL_PASSWORD])
def test_no_file_under_logs_or_in_the_report_holds_a_secret(project: Path, secret: str) -> None:
    found = [
        str(p.relative_to(project))
        for root in (project / "logs", project / "report")
        for p in _files(root)
        if secret.encode() in p.read_bytes()
    ]
    assert found == []


def test_verify_finds_no_credential(project: Path) -> None:
    proc = runlab_cli(project, "verify", check=False)
    assert "[8]" not in proc.stdout, proc.stdout


def test_a_credential_on_submits_command_line_is_refused(project: Path) -> None:
    before = sorted((project / "logs").iterdir())
    proc = runlab_cli(
        project,
        "submit",
        "tasks/quadratic.py",
        f"+hub.token={HF}",
        "--launcher",
        "local",
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("runlab submit: error: +hub.token: this override holds")
    assert "oc.env" in proc.stderr and HF not in proc.stderr
    assert sorted((project / "logs").iterdir()) == before  # nothing pre-created


def test_reproduce_refuses_a_redacted_override(project: Path) -> None:
    proc = runlab_cli(project, "reproduce", "1", check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "credential on its command line" in proc.stderr


# ------------------------------------------------- the screen runlab verify uses
# Credential variables' values a run's environment may hold: plain ones the screen looks
# for as they are, and ones a file may spell otherwise (a space, a quote, non-ASCII).
_ENV_POOL = ("s3cr3t-value-01", "two words here", "quote'd-value", "naïve-valeur-x")
_TOKEN_SHAPES = (
    "ghp_" + "a1B2" * 9,
    "github_pat_" + "x_Y9" * 11,
    HF,
    "sk-" + "proj_Ab-9" * 3,
    "AKIA" + "ABCDEFGHIJ234567",
    "xoxb-" + "1234-abcd-56",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlLXZhbHVl",
    f"https://alice:{URL_PASSWORD}@git.example.org/x.git",
)
_KEYWORDS = (*sorted(secrets._KEY_PARTS), *secrets._KEY_PHRASES, "hub_login", "mytoken")


def _mixed_case(word: str, flips: list[bool]) -> str:
    return "".join(
        c.upper() if f else c for c, f in zip(word, flips + [False] * len(word), strict=False)
    )


_key = st.one_of(
    st.text(max_size=10),
    st.builds(
        lambda a, w, flips, b: a + _mixed_case(w, flips) + b,
        st.text(max_size=3),
        st.sampled_from(_KEYWORDS),
        st.lists(st.booleans(), max_size=12),
        st.text(max_size=3),
    ),
)
_value = st.one_of(
    st.text(max_size=24),
    st.from_regex(secrets._TOKENS),  # the module's own token forms
    st.from_regex(secrets._URL_PASSWORD),  # and its URL with a password
    st.sampled_from(_TOKEN_SHAPES + _ENV_POOL),
    st.builds(
        lambda a, s, b: a + s + b,
        st.text(max_size=6),
        st.sampled_from(_ENV_POOL + _TOKEN_SHAPES),
        st.text(max_size=6),
    ),
    st.builds(lambda k, v: f"{k}={v}", _key, st.text(min_size=8, max_size=12)),
)
_data = st.recursive(
    _value | st.integers(-(2**63), 2**63 - 1) | st.booleans() | st.none(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_key, inner, max_size=4),
    max_leaves=12,
)
_FORMS = ("json", "json-ascii", "json-escaped", "yaml", "yaml-flow", "yaml-ascii")


def _escaped(data: object) -> str:
    """JSON whose every string character is a ``\\uXXXX`` escape (valid, if unusual)."""
    if isinstance(data, str):
        units = data.encode("utf-16-be")
        return (
            '"'
            + "".join(f"\\u{units[i]:02x}{units[i + 1]:02x}" for i in range(0, len(units), 2))
            + '"'
        )
    if isinstance(data, dict):
        return "{" + ",".join(f"{_escaped(k)}:{_escaped(v)}" for k, v in data.items()) + "}"
    if isinstance(data, list):
        return "[" + ",".join(_escaped(v) for v in data) + "]"
    return json.dumps(data)


def _dump(data: object, form: str, width: int) -> str:
    """``data`` as a file could spell it: runlab's JSON, escaped JSON, YAML folded at
    ``width`` (long values split over lines), flow YAML, YAML with escapes."""
    if form == "json":
        return orjson.dumps(data).decode()
    if form == "json-ascii":
        return json.dumps(data, ensure_ascii=True)
    if form == "json-escaped":
        return _escaped(data)
    flow = form == "yaml-flow"
    return yaml.safe_dump(
        data, width=width, default_flow_style=flow, allow_unicode=form != "yaml-ascii"
    )


def _found(text: str, form: str, env: frozenset[str]) -> list[str]:
    data = json.loads(text) if form.startswith("json") else yaml.safe_load(text)
    return list(secrets.find(data, env=env))


@settings(max_examples=400, deadline=None)
@given(
    data=_data,
    env=st.sets(st.sampled_from(_ENV_POOL)).map(frozenset),
    extra=st.sampled_from(["", "hub_login,mytoken", "my token", "kéy"]),
    form=st.sampled_from(_FORMS),
    width=st.integers(5, 80),
)
@example(data={"note": HF}, env=frozenset(), extra="", form="yaml", width=5)
@example(data={"wandb": {"API_KEY": WANDB}}, env=frozenset(), extra="", form="json", width=80)
@example(data=["x", "hub.Token=" + WANDB], env=frozenset(), extra="", form="yaml", width=10)
@example(data={"hub_login": "12345678"}, env=frozenset(), extra="hub_login", form="json", width=80)
@example(
    data={"u": "see two words here"}, env=frozenset(_ENV_POOL[1:2]), extra="", form="yaml", width=5
)
@example(data={"u": _ENV_POOL[0]}, env=frozenset(_ENV_POOL[:1]), extra="", form="yaml", width=80)
def test_the_screen_never_hides_a_credential_find_finds(
    data: object, env: frozenset[str], extra: str, form: str, width: int
) -> None:
    """Whatever a record holds and however its file spells it, ``could_hold`` is True
    wherever :func:`secrets.find` finds a credential in what the file parses to."""
    text = _dump(data, form, width)
    with mock.patch.dict(os.environ, {secrets.SECRET_KEYS_ENV: extra}):
        if _found(text, form, env):
            assert secrets.could_hold(text, env), text


@pytest.mark.parametrize(
    ("text", "env"),
    [
        ('{"pass\\u0077ord": "hunter2hunter2"}', ()),  # an escaped key
        ('{"u": "https:\\/\\/alice:pw@host"}', ()),  # an escaped URL
        ('{"TO\u212aEN": "hunter2hunter2"}', ()),  # a Kelvin sign: "token" in lower case
        ('u: "hf_AbCdEfGhIjKlMnOp\\\n  QrStUvWxYz0123456789"\n', ()),  # a line continued
        ("u: >\n  two\n  words here\n", ("two words here",)),  # lines folded into one
        ("u: 'quote''d-value'\n", ("quote'd-value",)),  # a quote doubled
        ('{"u": "a \\"quoted\\" value"}', ('a "quoted" value',)),  # a quote escaped
    ],
)
def test_a_credential_spelled_otherwise_passes_the_screen(text: str, env: tuple[str, ...]) -> None:
    """The ways a JSON or YAML file spells a text other than as it is: each still
    passes the screen (these are what its escape and value rules are for)."""
    data = yaml.safe_load(text)
    assert list(secrets.find(data, env=frozenset(env)))
    assert secrets.could_hold(text, frozenset(env))


@pytest.mark.parametrize("shape", _TOKEN_SHAPES)
@pytest.mark.parametrize("form", _FORMS)
def test_every_known_credential_shape_passes_the_screen(shape: str, form: str) -> None:
    text = _dump({"run": {"note": f"see {shape} here", "args": ["a", shape]}}, form, 8)
    assert _found(text, form, frozenset())  # a shape find knows
    assert secrets.could_hold(text, frozenset())


def test_the_screen_lets_an_ordinary_record_by() -> None:
    """The point of the screen: a run's usual records need no walk at all."""
    info = {"run_id": "7", "status": "COMPLETE", "command": ["python", "train.py", "lr=0.1"]}
    config = {"method": "GD", "optimizer": {"lr": 0.01}, "max_len": 512, "seed": 3}
    for data in (info, config):
        for form in ("json", "yaml"):
            assert not secrets.could_hold(_dump(data, form, 80), frozenset(["s3cr3t-value-01"]))
