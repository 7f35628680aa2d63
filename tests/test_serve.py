"""``runlab serve``: the live dashboard, over runs made by real task processes.

HTTP level (a :class:`Server` in a thread, requests by ``http.client`` with the headers a
browser or an attacker sends): the token (401 without it, the cookie after it), the Host
check against DNS rebinding (403; an ``ssh -L`` tunnel's port is fine), GET only (405),
the security headers, every run value escaped in HTML and intact in JSON, a bad query as
one line (400), the run page, the incremental curves endpoint (only the rows after the
offset sent), and nothing written under the logs directory but the reader's index. The
command itself: its URL, and Ctrl-C (exit 130, one line, no token). In headless
Chromium: a curve grows and a new run appears without a reload.
"""

from __future__ import annotations

import html
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import orjson
import pytest
from cdp import CHROMIUM, Browser
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import ROOT, make_project, run_task, runlab_cli, serving, start_task, task_env
from runlab.logs import INDEX
from runlab.record.metricsfile import Tail
from runlab.results.serve import (
    Meter,
    RunTable,
    Server,
    host_name,
    is_loopback,
    new_rows,
    runs_json,
)
from runlab.results.serve._pages import run_page
from runlab.status import Status

TASK = """
import time

import runlab


@runlab.launch(config_path=".", config_name="live")
def main(ctx):
    cfg = ctx.config
    for step in range(cfg.steps):
        ctx.logger.log_metrics({"loss": 1.0 / (step + 1), "<b>": step * 2.0}, name="train", step=step)
        print(f"step {step}", flush=True)
        time.sleep(cfg.interval)
    if cfg.fail:
        ctx.logger.log_artifact(b"notes", name="notes<i>.txt")
        raise ValueError("<img src=x onerror=alert(1)> failed")


if __name__ == "__main__":
    main()
"""
CONFIG = (
    "steps: 5\ninterval: 0.0\nfail: false\nnote: plain\nrunlab:\n  logs: null\n  run_id: null\n"
)
SCRIPT = "<script>alert(1)</script>"


def write_task(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "live.py").write_text(TASK)
    (folder / "live.yaml").write_text(CONFIG)
    return folder / "live.py", folder / "live.yaml"


def snapshot(logs: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``logs`` but the reader's index: its size and mtime."""
    out = {}
    for folder, dirs, files in os.walk(logs):
        dirs[:] = [d for d in dirs if d != INDEX]
        for name in files:
            st = os.stat(os.path.join(folder, name))
            out[os.path.join(folder, name)] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Run 1: submitted (it has job output); 2: failed, hostile config, error and artifact
    names; 3: plain. A server over them, in a thread."""
    root = tmp_path_factory.mktemp("serve")
    task, config = write_task(root / "src")
    project = make_project(root, task, config)
    logs = project / "logs"
    runlab_cli(project, "submit", "tasks/live.py", "steps=4", "--launcher", "local", "--wait")
    env = {"RUNLAB_LOGS": str(logs)}
    run_task(project / "tasks" / "live.py", f"note='{SCRIPT}'", "fail=true", check=False, **env)
    run_task(project / "tasks" / "live.py", "steps=6", **env)
    before = snapshot(logs)
    with serving(logs) as server:
        yield {"server": server, "logs": logs, "before": before, "project": project}


def get(
    server: Server,
    path: str,
    *,
    token: str | None = "",
    host: str | None = "",
    method: str = "GET",
    cookie: str | None = None,
) -> tuple[int, http.client.HTTPResponse, bytes]:
    """``method path`` to ``server``: with its token (``token=""``), another one, or none
    (``None``); the Host header ``host`` (``""``: 127.0.0.1:PORT; ``None``: none)."""
    token = server.token if token == "" else token
    if token is not None:
        path += ("&" if "?" in path else "?") + "token=" + token
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    headers = {} if cookie is None else {"Cookie": cookie}
    if host is not None:
        headers["Host"] = host or f"127.0.0.1:{server.port}"
    conn.putrequest(method, path, skip_host=True)
    for name, value in headers.items():
        conn.putheader(name, value)
    conn.endheaders()
    reply = conn.getresponse()
    body = reply.read()
    conn.close()
    return reply.status, reply, body


# ------------------------------------------------------------------ the guards
def test_the_token_is_needed_then_a_cookie_carries_it(site: dict[str, Any]) -> None:
    server = site["server"]
    status, reply, body = get(server, "/", token=None)
    assert status == 401 and body.count(b"\n") == 1 and len(body) < 100
    assert reply.getheader("Set-Cookie") is None
    assert get(server, "/api/runs", token="x" * 43)[0] == 401
    assert get(server, "/", token=server.token[:-1])[0] == 401
    status, reply, body = get(server, "/")
    assert status == 200 and b"<table id=runs>" in body
    cookie = reply.getheader("Set-Cookie")
    assert cookie is not None and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    pair = cookie.split(";")[0]
    assert get(server, "/api/runs", token=None, cookie=pair)[0] == 200
    assert get(server, "/api/runs", token=None, cookie=pair + "x")[0] == 401
    assert get(server, "/api/runs", token=None, cookie="other=1; " + pair)[0] == 200


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("evil.example:{port}", 403),
        ("evil.example", 403),
        ("127.0.0.1.evil.example:{port}", 403),
        ("localhost.evil.example", 403),
        ("127.0.0.1:{port}", 200),
        ("localhost:{port}", 200),
        ("LOCALHOST:8765", 200),  # an ssh -L tunnel: the browser's port, not the server's
        ("127.0.0.1:8765", 200),
        ("[::1]:8765", 200),
        ("127.0.0.1", 200),
        ("[::1]x", 403),
        (None, 403),  # HTTP/1.0 without a Host: refused
    ],
)
def test_the_host_header_must_name_this_machine(
    site: dict[str, Any], host: str | None, status: int
) -> None:
    server = site["server"]
    sent = host.format(port=server.port) if host else None
    got, _, body = get(server, "/api/runs", host=sent)
    assert got == status, body
    if status == 403:
        assert b"Host" in body and body.count(b"\n") == 1


def test_only_get_and_head(site: dict[str, Any]) -> None:
    server = site["server"]
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS", "BREW"):
        status, reply, _ = get(server, "/api/runs", method=method)
        assert status == 405, method
        assert reply.getheader("Allow") == "GET, HEAD"
    assert get(server, "/", method="POST", token=None)[0] == 401  # the token first
    status, reply, body = get(server, "/api/runs", method="HEAD")
    assert status == 200 and body == b"" and int(reply.getheader("Content-Length") or 0) > 0


def test_security_headers_on_every_answer(site: dict[str, Any]) -> None:
    server = site["server"]
    for path, token in (("/", ""), ("/api/runs", ""), ("/run/1", ""), ("/", None), ("/x", "")):
        _, reply, _ = get(server, path, token=token)
        csp = reply.getheader("Content-Security-Policy") or ""
        assert "default-src 'self'" in csp and "script-src 'self'" in csp, path
        assert "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
        assert reply.getheader("X-Content-Type-Options") == "nosniff"
        assert reply.getheader("Referrer-Policy") == "no-referrer"
    _, reply, _ = get(server, "/api/runs")
    assert reply.getheader("Content-Type", "").startswith("application/json")


def test_static_files_and_plotly_come_from_the_server(site: dict[str, Any]) -> None:
    server = site["server"]
    status, reply, body = get(server, "/static/plotly.min.js")
    assert status == 200 and len(body) > 1_000_000 and b"plotly" in body[:2000].lower()
    assert reply.getheader("Content-Type", "").startswith("text/javascript")
    status, _, body = get(server, "/static/serve.js")
    assert status == 200 and b"textContent" in body and b"innerHTML" not in body
    assert get(server, "/static/../_app.py")[0] == 404
    assert get(server, "/static/nothing.js")[0] == 404
    _, _, page = get(server, "/curves")
    assert b'<script src="/static/plotly.min.js">' in page and b"<script>" not in page
    assert b"http" not in re.sub(rb'content="[^"]*"', b"", page.split(b"<main>")[0])


# ------------------------------------------------------------------ the data
def test_run_values_are_escaped_in_html_and_intact_in_json(site: dict[str, Any]) -> None:
    server = site["server"]
    status, _, body = get(server, "/api/runs")
    data = orjson.loads(body)
    assert status == 200 and [r["run_id"] for r in data["runs"]] == [3, 2, 1]
    hostile = data["runs"][1]
    assert hostile["status"] == "FAILED" and hostile["config"]["note"] == SCRIPT
    assert hostile["error"] == "ValueError: <img src=x onerror=alert(1)> failed"
    assert "train.<b>" in data["metrics"] and "note" in data["keys"]
    status, _, body = get(server, "/api/curves")
    curves = orjson.loads(body)
    assert curves["runs"]["2"]["files"]["train"]["values"]["<b>"][:3] == [0.0, 2.0, 4.0]
    status, _, page = get(server, "/run/2")
    text = page.decode()
    assert status == 200
    for raw in (SCRIPT, "<img src=x", "notes<i>.txt", "<b>"):
        assert raw not in text, raw
    assert html.escape(SCRIPT) in text and "&lt;img src=x onerror=alert(1)&gt;" in text
    assert "notes&lt;i&gt;.txt" in text


def test_a_bad_query_is_one_line_not_a_500(site: dict[str, Any]) -> None:
    server = site["server"]
    for path in ("/", "/curves"):
        status, _, body = get(server, path + "?where=config.steps+%3C")
        assert status == 400, body
        errors = re.findall(rb"<p id=error[^>]*>([^<]*)</p>", body)
        assert len(errors) == 1 and errors[0].startswith(b"invalid query: ")
        assert b"\n" not in errors[0]
    status, _, body = get(server, "/api/runs?where=config.nope+%3D%3D+1+%26")
    assert status == 400 and orjson.loads(body)["error"].startswith("invalid query: ")
    status, _, body = get(server, "/api/runs?where=config.steps+%3D%3D+6")
    assert status == 200 and [r["run_id"] for r in orjson.loads(body)["runs"]] == [3]


def test_the_run_page(site: dict[str, Any]) -> None:
    server = site["server"]
    status, _, body = get(server, "/run/1")
    text = body.decode()
    assert status == 200 and "COMPLETE" in text and "job output" in text
    assert "step 3" in text  # the end of the job's stdout
    assert "&quot;steps&quot;: 4" in text  # its config
    status, _, body = get(server, "/run/2")
    text = body.decode()
    assert "<h2>error</h2>" in text and "ValueError" in text and "no job output" in text
    assert "<h2>artifacts</h2>" in text
    assert get(server, "/run/99")[0] == 404
    assert get(server, "/run/01")[0] == 404


def test_curves_send_only_the_rows_after_the_offset(site: dict[str, Any]) -> None:
    server, logs = site["server"], site["logs"]
    table = server.table
    first = new_rows(table, None, {})["runs"]["3"]["files"]["train"]
    assert first["step"] == [0, 1, 2, 3, 4, 5] and first["reset"]
    raw = (logs / "3" / "metrics" / "train.jsonl").read_bytes()
    assert first["offset"] == len(raw)
    third = len(b"".join(raw.splitlines(keepends=True)[:3]))
    since = {"3": {"train": [third, first["ino"]]}}
    before = table.meter.bytes_read
    got = new_rows(table, "config.steps == 6", since)["runs"]["3"]["files"]["train"]
    assert got["step"] == [3, 4, 5] and not got["reset"] and got["offset"] == len(raw)
    assert got["values"]["loss"] == pytest.approx([1 / 4, 1 / 5, 1 / 6])
    assert table.meter.bytes_read - before == len(raw) - third
    caught_up = {"3": {"train": [len(raw), first["ino"]]}}
    assert new_rows(table, "config.steps == 6", caught_up)["runs"] == {}  # nothing new
    for damaged in ([None, "x"], ["1", 2, 3], [{}, []]):  # from the start, never a 500
        got = new_rows(table, None, {"3": {"train": damaged}})["runs"]["3"]["files"]["train"]
        assert got["step"] == [0, 1, 2, 3, 4, 5]
    status, _, body = get(
        server, "/api/curves?since=%7B%223%22%3A%7B%22train%22%3A%5B%22x%22%5D%7D%7D"
    )
    assert status == 200 and orjson.loads(body)["runs"]["3"]["files"]["train"]["reset"]
    other_file = {"3": {"train": [third, first["ino"] + 1]}}  # replaced: from its start
    again = new_rows(table, "config.steps == 6", other_file)["runs"]["3"]["files"]["train"]
    assert again["reset"] and again["step"] == [0, 1, 2, 3, 4, 5]


def test_groups_are_the_reports(site: dict[str, Any]) -> None:
    runs = new_rows(site["server"].table, None, {})["runs"]
    labels = {rid: run["label"] for rid, run in runs.items()}
    assert len(set(labels.values())) == 3, labels  # steps and note differ
    assert all("=" in label for label in labels.values())


def test_a_refresh_of_ended_runs_reads_nothing_new(site: dict[str, Any]) -> None:
    table = site["server"].table
    get(site["server"], "/api/runs")
    before = table.meter.bytes_read
    get(site["server"], "/api/runs")
    assert table.meter.bytes_read == before


def test_a_running_run_whose_writer_is_gone_is_lost(site: dict[str, Any], tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    shutil.copytree(site["logs"] / "3", logs / "3")
    path = logs / "3" / "metadata" / "info.json"
    info = orjson.loads(path.read_bytes())
    info.update(status=Status.RUNNING.value, end_time=None)  # its process has ended
    path.write_bytes(orjson.dumps(info))
    assert runs_json(RunTable(logs), None, None)["runs"][0]["status"] == Status.LOST


def test_hand_edited_values_json_cannot_hold_are_no_500(
    site: dict[str, Any], tmp_path: Path
) -> None:
    # An integer beyond 64 bits, bare NaN, YAML's !!binary and !!set: the pages still answer.
    logs = tmp_path / "logs"
    shutil.copytree(site["logs"] / "3", logs / "3")
    with open(logs / "3" / "metrics" / "train.jsonl", "ab") as fh:
        fh.write(b'{"step":9,"loss":NaN,"big":123456789012345678901234567890}\n')
    meta = logs / "3" / "metadata"
    (meta / "config.json").unlink()
    (meta / "config.yaml").write_text("bin: !!binary aGVsbG8=\nbag: !!set {x, y}\nn: 1" + "0" * 30)
    with serving(logs) as server:
        for path in ("/api/runs", "/api/runs?metric=train.big", "/api/curves", "/run/3", "/"):
            status, _, body = get(server, path)
            assert status == 200, (path, body[:300])
        curves = orjson.loads(get(server, "/api/curves")[2])
        big = curves["runs"]["3"]["files"]["train"]["values"]["big"]
        assert big[-1] == pytest.approx(1.2345678901234568e29)


def test_a_metric_whose_first_row_came_late_is_listed(tmp_path: Path) -> None:
    # The runs page lists the metrics of each file's first row; a file that held only
    # half a row when first scanned gets its keys at a later refresh.
    run = tmp_path / "logs" / "1"
    (run / "metadata").mkdir(parents=True)
    (run / "metrics").mkdir()
    info = {"run_id": 1, "status": "RUNNING", "start_time": "2026-12-07T03:00:00+00:00"}
    (run / "metadata" / "info.json").write_bytes(orjson.dumps(info))
    metrics = run / "metrics" / "val.jsonl"
    metrics.write_bytes(b'{"step":0,"acc"')
    table = RunTable(tmp_path / "logs")
    assert "val.acc" not in runs_json(table, None, None)["metrics"]
    with open(metrics, "ab") as fh:
        fh.write(b':0.5}\n{"step":1,"acc":0.7}\n')
    assert "val.acc" in runs_json(table, None, None)["metrics"]


def test_a_silent_client_is_let_go_and_a_broken_one_leaves_no_traceback(
    site: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    import socket

    from runlab.results.serve import _app

    monkeypatch.setattr(_app.Handler, "timeout", 0.5)
    with serving(site["logs"]) as server:
        silent = socket.create_connection(("127.0.0.1", server.port))
        silent.sendall(b"GET / HTTP/1.1\r\n")  # half a request, then nothing
        silent.settimeout(10)
        assert silent.recv(1024) == b""  # the server closed it
        silent.close()
        for _ in range(5):  # ask for plotly (large) and reset the connection at once
            rude = socket.create_connection(("127.0.0.1", server.port))
            rude.sendall(f"GET /static/plotly.min.js?token={server.token} HTTP/1.1\r\n"
                         f"Host: 127.0.0.1:{server.port}\r\n\r\n".encode())  # fmt: skip
            rude.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            rude.close()
        assert get(server, "/api/runs")[0] == 200
    err = capfd.readouterr().err
    assert "Traceback" not in err, err


def test_zz_nothing_is_written_under_the_logs_but_the_index(site: dict[str, Any]) -> None:
    # the module's last test: every request above has been made
    assert snapshot(site["logs"]) == site["before"]


# ------------------------------------------------------------------ invariants
class _Tags(HTMLParser):
    """The start tags of a page, in order, and its text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, tuple[str, ...]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, tuple(name for name, _ in attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parsed(text: str, name: str) -> _Tags:
    record = {
        "run_id": 7,
        "path": text,
        "status": text,
        "config": {name: text},
        "info": {"status": text, "error": {"type": name, "message": text}},
        "metrics": {name: {"rows": 1}},
        "artifacts": [name],
        "traceback": [text],
        "problems": [text],
        "log": text,
        "log_path": name,
    }
    parser = _Tags()
    parser.feed(run_page(record))
    parser.close()
    return parser


@settings(max_examples=150, deadline=None)
@given(text=st.text(min_size=1), name=st.text(min_size=1))
def test_any_text_is_shown_as_text(text: str, name: str) -> None:
    page = _parsed(text, name)
    assert page.tags == _parsed("x", "y").tags  # the data made no tag nor attribute
    shown = "".join(page.text)
    assert text.replace("\r", "\n") in shown.replace("\r", "\n")  # as text, whole


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_no_other_name_passes_the_host_check(part: str) -> None:
    for header in (f"{part}.evil.example", f"{part}.evil.example:8765", f"127.0.0.1.{part}x",
                   f"evil.example:{part}", f"localhost.{part}x:1"):  # fmt: skip
        name = host_name(header)
        assert name is None or not is_loopback(name), header


def test_tail_from_the_start_and_after_a_replacement(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_bytes(b'{"step":0}\n{"step":1}\n{"st')
    meter = Meter()
    tail = Tail()
    assert tail.read(str(path), meter, window=None) == [b'{"step":0}', b'{"step":1}']
    assert tail.restarted and tail.offset == 22 and meter.bytes_read == 26
    assert tail.read(str(path), meter, window=None) == [] and not tail.restarted
    with open(path, "ab") as fh:
        fh.write(b'ep":2}\n')
    assert tail.read(str(path), meter, window=None) == [b'{"step":2}']
    path.unlink()
    path.write_bytes(b'{"step":9}\n')
    assert tail.read(str(path), meter, window=None) == [b'{"step":9}'] and tail.restarted


def test_tail_skips_a_line_longer_than_one_read(tmp_path: Path) -> None:
    # One row over READ_CAP (a hand-written one, a huge string value) is skipped as a
    # damaged line; the rows after it still arrive, from the start or a window.
    from runlab.record.metricsfile import READ_CAP

    path = tmp_path / "m.jsonl"
    long = b'{"step":0,"s":"' + b"x" * (READ_CAP + 10) + b'"}\n'
    path.write_bytes(long + b"".join(b'{"step":%d}\n' % i for i in range(1, 50)))
    tail, meter = Tail(), Meter()
    got: list[bytes] = []
    for _ in range(3):
        got += tail.read(str(path), meter, window=None)
    assert got == [b'{"step":%d}' % i for i in range(1, 50)]
    assert tail.offset == path.stat().st_size
    with open(path, "ab") as fh:  # a long line still being written: waited for
        fh.write(b'{"step":50,"s":"' + b"y" * (READ_CAP + 10))
    assert tail.read(str(path), meter, window=None) == []
    with open(path, "ab") as fh:
        fh.write(b'"}\n{"step":51}\n')
    assert tail.read(str(path), meter, window=None) == []  # the long one, skipped
    assert tail.read(str(path), meter, window=None) == [b'{"step":51}']


# ------------------------------------------------------------------ the command
def test_the_command_prints_its_url_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "runlab", "serve", str(logs)],
        cwd=ROOT,
        env=task_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = proc.stdout.readline() + proc.stdout.readline() if proc.stdout else ""
        match = re.search(r"http://127\.0\.0\.1:(\d+)/\?token=([\w-]+)", first)
        assert match, first
        conn = http.client.HTTPConnection("127.0.0.1", int(match[1]), timeout=30)
        conn.request("GET", f"/api/runs?token={match[2]}")
        reply = conn.getresponse()
        assert reply.status == 200 and orjson.loads(reply.read())["runs"] == []
        conn.close()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert err.strip() == "runlab serve: stopped"
    assert match[2] not in err + out
    assert not (logs / INDEX).exists() or list(logs.iterdir()) == [logs / INDEX]


def test_another_host_is_said_with_a_warning(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "runlab", "serve", str(tmp_path), "--host", "0.0.0.0"],
        cwd=ROOT,
        env=task_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = [proc.stdout.readline() for _ in range(3)] if proc.stdout else []
        assert lines[0].startswith("warning: listening on 0.0.0.0, not only this machine")
        match = re.search(r"http://\S+:(\d+)/\?token=([\w-]+)", "".join(lines))
        assert match, lines
        conn = http.client.HTTPConnection("127.0.0.1", int(match[1]), timeout=30)
        conn.request("GET", f"/api/runs?token={match[2]}", headers={"Host": socket.gethostname()})
        assert conn.getresponse().status == 200  # this machine's own name, with --host
        conn.close()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert proc.returncode == 130


def test_the_command_refuses_a_missing_logs_directory(tmp_path: Path) -> None:
    proc = runlab_cli(tmp_path, "serve", str(tmp_path / "nowhere"), check=False, timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "no logs directory" in proc.stderr


# ------------------------------------------------------------------ in Chromium
GROWN = "(() => { const p = document.querySelector('.runlab-plot[data-metric=\"train.loss\"]');"
POINTS = GROWN + " return p && p.data && p.data.length ? p.data[0].x.length : 0; })()"


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_in_chromium_a_curve_grows_and_a_new_run_appears(tmp_path: Path) -> None:
    task, _ = write_task(tmp_path / "task")
    logs = tmp_path / "logs"
    logs.mkdir()
    env = {"RUNLAB_LOGS": str(logs)}
    start_task(task, "steps=200", "interval=0.3", **env)
    with serving(logs) as server, Browser() as browser:
        url = f"http://127.0.0.1:{server.port}"
        page = browser.open(f"{url}/curves?token={server.token}", width=1200, height=800)
        page.evaluate("window.notReloaded = true")
        page.wait_for(f"{POINTS} >= 2", timeout=30)
        seen = page.evaluate(POINTS)
        page.wait_for(f"{POINTS} >= {seen + 3}", timeout=30)
        assert page.evaluate("window.notReloaded === true")
        assert server.token not in page.evaluate("location.href")  # the cookie has it
        runs = browser.open(f"{url}/", width=1200, height=800)  # the cookie: no token
        runs.evaluate("window.notReloaded = true")
        rows = "document.querySelectorAll('#runs tbody tr').length"
        runs.wait_for(f"{rows} === 1", timeout=30)
        start_task(task, "steps=3", "interval=0.1", **env)
        runs.wait_for(
            "document.querySelector('#runs tbody tr[data-run=\"2\"]') !== null", timeout=30
        )
        assert runs.evaluate("window.notReloaded === true")
        status = runs.evaluate(
            "document.querySelector('#runs tbody tr[data-run=\"1\"] .status').textContent"
        )
        assert status == "RUNNING"
        shot = page.screenshot(tmp_path / "serve-curves.png")
        assert shot.stat().st_size > 10_000
        assert page.errors == [] and runs.errors == [], page.errors + runs.errors
