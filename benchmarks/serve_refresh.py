"""``runlab serve`` over many runs: the latency of a refresh, and the server's CPU use.

    python benchmarks/serve_refresh.py [--runs 1000] [--rows 1000] [--repeat 10] [--seconds 20]

Writes ``--runs`` RUNNING run directories in the record's format (``metadata/info.json``,
``metadata/config.json`` and ``--rows`` rows of ``metrics/train.jsonl`` each) into a
temporary directory, starts ``runlab serve`` on it (a real process, on a free port) and
times, from this process over HTTP, with the token:

- **runs page** (``/api/runs``, what the runs table fetches each second): cold (the
  first), warm with nothing changed, warm with 10 % of the runs having logged a row;
- **curves** (``/api/curves``, with the offsets of the previous answer: only new rows),
  over the runs the page draws (the latest :data:`runlab.results.serve.MAX_CURVE_RUNS`):
  the same three cases;
- **CPU**: the server's CPU time (``/proc/<pid>/stat``) while a client polls both
  endpoints once a second for ``--seconds`` and 100 runs log a row a second.

Wall time per request (median of ``--repeat``; cold: one) and the bytes of the answer.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import orjson

ROW = b'{"step":%d,"time":1700000000.5,"loss":%f,"acc":0.5}\n'


def make_runs(logs: Path, n: int, rows: int) -> None:
    beat = datetime.now(UTC).isoformat()  # a live heartbeat: not LOST
    body = b"".join(ROW % (i, 1.0 / (i + 1)) for i in range(rows))
    for rid in range(1, n + 1):
        run = logs / str(rid)
        (run / "metadata").mkdir(parents=True)
        (run / "metrics").mkdir()
        info = {
            "run_id": rid,
            "status": "RUNNING",
            "start_time": "2026-12-07T03:00:00+00:00",
            "host": "node1",
            "pid": 1000 + rid,
            "heartbeat": beat,
            "heartbeat_interval_s": 3600,
        }
        config = {"lr": [0.1, 0.01, 0.001][rid % 3], "seed": rid % 5, "model": "mlp"}
        (run / "metadata" / "info.json").write_bytes(orjson.dumps(info))
        (run / "metadata" / "config.json").write_bytes(orjson.dumps(config))
        (run / "metrics" / "train.jsonl").write_bytes(body)


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Client:
    """Requests to the server, as the page makes them (the curves' offsets kept)."""

    def __init__(self, port: int, token: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        self.token = token
        self.since: dict[str, dict[str, list[int]]] = {}

    def get(self, path: str) -> bytes:
        self.conn.request("GET", f"{path}{'&' if '?' in path else '?'}token={self.token}")
        reply = self.conn.getresponse()
        body = reply.read()
        if reply.status != 200:
            raise RuntimeError(f"{path}: {reply.status} {body[:200]!r}")
        return body

    def runs(self) -> int:
        return len(self.get("/api/runs"))

    def curves(self) -> int:
        body = self.get("/api/curves?since=" + quote(orjson.dumps(self.since).decode()))
        for rid, run in orjson.loads(body)["runs"].items():
            for name, got in run["files"].items():
                self.since.setdefault(rid, {})[name] = [got["offset"], got["ino"]]
        return len(body)


def log_rows(logs: Path, ids: list[int], step: int) -> None:
    for rid in ids:
        with open(logs / str(rid) / "metrics" / "train.jsonl", "ab") as fh:
            fh.write(ROW % (step, 0.5))


def timed(fn) -> tuple[float, int]:
    start = time.perf_counter()
    got = fn()
    return time.perf_counter() - start, got


def measure(name, fn, repeat, before=None) -> list[tuple[str, float, int]]:
    out = [(f"{name}: cold", *timed(fn))]
    runs = [timed(fn) for _ in range(repeat)]
    out.append((f"{name}: warm, nothing changed", statistics.median(r[0] for r in runs),
                int(statistics.median(r[1] for r in runs))))  # fmt: skip
    runs = []
    for i in range(repeat):
        before(i)
        runs.append(timed(fn))
    out.append((f"{name}: warm, 10 % logged a row", statistics.median(r[0] for r in runs),
                int(statistics.median(r[1] for r in runs))))  # fmt: skip
    return out


def start_server(logs: Path) -> tuple[subprocess.Popen, int, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "runlab", "serve", str(logs)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    for _ in range(5):
        match = re.search(r":(\d+)/\?token=([\w-]+)", proc.stdout.readline())
        if match:
            return proc, int(match[1]), match[2]
    raise RuntimeError("runlab serve printed no URL")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--rows", type=int, default=1000)
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--seconds", type=float, default=20)
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        logs = Path(tmp)
        make_runs(logs, a.runs, a.rows)
        ids = list(range(1, a.runs + 1))
        proc, port, token = start_server(logs)
        try:
            client = Client(port, token)
            step = [a.rows]

            def tenth(i: int) -> None:
                log_rows(logs, ids[i % 10 :: 10], step[0])
                step[0] += 1

            results = measure("runs page", client.runs, a.repeat, tenth)
            results += measure("curves", client.curves, a.repeat, tenth)
            start_cpu, start = cpu_s(proc.pid), time.monotonic()
            while time.monotonic() - start < a.seconds:
                tick = time.monotonic()
                log_rows(logs, ids[step[0] % 10 :: 10][:100], step[0])
                step[0] += 1
                client.runs()
                client.curves()
                time.sleep(max(0.0, 1 - (time.monotonic() - tick)))
            used, span = cpu_s(proc.pid) - start_cpu, time.monotonic() - start
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
    print(f"{a.runs} RUNNING runs x {a.rows} rows, median of {a.repeat} (cold: one)")
    print(f"{'request':<42} {'wall ms':>9} {'bytes':>12}")
    for name, wall, got in results:
        print(f"{name:<42} {wall * 1e3:>9.1f} {got:>12,}")
    print(
        f"server: {used:.2f} CPU s in {span:.1f} s, {100 * used / span:.1f} % of a core "
        "(both endpoints polled once a second, 100 runs logging a row a second)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
