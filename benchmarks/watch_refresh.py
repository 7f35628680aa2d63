"""``runlab status --watch`` over many runs: the latency and CPU time of one refresh.

    python benchmarks/watch_refresh.py [--runs 1000] [--rows 1000] [--repeat 20]

Writes ``--runs`` run directories in the record's format (``metadata/info.json``, and
``--rows`` rows of ``metrics/train.jsonl`` each, all RUNNING) into a temporary
directory, then times the watch model (:class:`runlab.cli._watch.Watch`):

- **cold**: the first refresh of a fresh model (every info.json read, and the last
  64 KB of every metrics file at most);
- **warm, nothing changed**: a refresh where no file changed (the median of ``--repeat``);
- **warm, 10 % logged**: a tenth of the runs appended one row since the last refresh;
- **draw**: the view drawn to a 120 x 50 terminal (rich, written to a buffer);
- with ``--process SECONDS``, the whole command too: ``runlab status --watch`` on a sweep
  record of those runs, in a pseudo-terminal of 120 x 50, while 100 runs log one row a
  second; its CPU time (``/proc/<pid>/stat``, after a 5 s start) over that many seconds.
  The record has no submission, so the reconcile every 5 s reads the active runs'
  records and asks no scheduler.

Wall time (``time.perf_counter``) and CPU time (``time.process_time``) per refresh, and
the bytes the model read. At one refresh a second, CPU seconds per refresh is the share
of a core used. The reconcile with the scheduler (every 5 s, only while runs are active)
is not in these figures.
"""

from __future__ import annotations

import argparse
import io
import os
import pty
import select
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from runlab.cli import _watch
from runlab.sweep import ops
from runlab.sweep.record import SweepId

ROW = b'{"step":%d,"time":1700000000.5,"loss":%f,"acc":0.5}\n'


def make_runs(logs: Path, n: int, rows: int) -> None:
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
            "heartbeat": "2026-12-07T03:00:15+00:00",
            "code_commit": "0" * 40,
        }
        (run / "metadata" / "info.json").write_bytes(orjson.dumps(info))
        (run / "metrics" / "train.jsonl").write_bytes(body)


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process(logs: Path, ids: list[int], seconds: float, rows: int) -> tuple[float, float]:
    """CPU seconds of ``runlab status --watch`` over ``seconds`` (after its start), and
    the wall seconds measured."""
    record = ops.new_record(SweepId.new(1), "train.py", [], logs, {"name": "local"}, ids)
    ops.save(logs, record)
    master, slave = pty.openpty()
    import fcntl
    import termios

    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 120, 0, 0))
    env = dict(os.environ, RUNLAB_LOGS=str(logs), TERM="xterm-256color")
    proc = subprocess.Popen(
        [sys.executable, "-m", "runlab", "status", "--watch"],
        stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True,
    )  # fmt: skip
    os.close(slave)

    def drain(until: float) -> None:
        while (left := until - time.monotonic()) > 0:
            if select.select([master], [], [], min(left, 0.1))[0]:
                os.read(master, 1 << 16)

    step = rows
    drain(time.monotonic() + 5)
    start_cpu, start = cpu_s(proc.pid), time.monotonic()
    while time.monotonic() - start < seconds:
        for rid in ids[step % 10 :: 10]:
            with open(logs / str(rid) / "metrics" / "train.jsonl", "ab") as fh:
                fh.write(ROW % (step, 0.5))
        step += 1
        drain(time.monotonic() + 1)
    used, wall = cpu_s(proc.pid) - start_cpu, time.monotonic() - start
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)
    os.close(master)
    return used, wall


def timed(fn) -> tuple[float, float, int]:
    wall, cpu = time.perf_counter(), time.process_time()
    got = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, got


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--rows", type=int, default=1000)
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--process", type=float, default=0, metavar="SECONDS")
    a = p.parse_args(argv)
    from rich.console import Console

    with tempfile.TemporaryDirectory() as tmp:
        logs = Path(tmp)
        make_runs(logs, a.runs, a.rows)
        ids = list(range(1, a.runs + 1))
        results: list[tuple[str, float, float, int]] = []

        watch = _watch.Watch(logs, ids, None)
        results.append(("cold (first refresh)", *timed(watch.refresh)))

        def median(name: str, before=None) -> None:
            runs = []
            for i in range(a.repeat):
                if before:
                    before(i)
                runs.append(timed(watch.refresh))
            results.append(
                (
                    name,
                    statistics.median(r[0] for r in runs),
                    statistics.median(r[1] for r in runs),
                    int(statistics.median(r[2] for r in runs)),
                )
            )

        median("warm, nothing changed")

        def log_a_tenth(i: int) -> None:
            for rid in ids[i % 10 :: 10]:
                with open(logs / str(rid) / "metrics" / "train.jsonl", "ab") as fh:
                    fh.write(ROW % (a.rows + i, 0.5))

        median("warm, 10 % of runs logged a row", log_a_tenth)

        console = Console(
            file=io.StringIO(), width=120, height=50, force_terminal=True, color_system="truecolor"
        )

        def draw() -> int:
            console.print(_watch.view(watch, "[bold]sweep bench[/]", height=50))
            return 0

        draws = [timed(draw) for _ in range(a.repeat)]
        results.append(
            (
                "draw the view (120 x 50)",
                statistics.median(d[0] for d in draws),
                statistics.median(d[1] for d in draws),
                0,
            )
        )

        if a.process:
            used, span = process(logs, ids, a.process, a.rows)

    print(f"{a.runs} runs x {a.rows} rows, median of {a.repeat} (cold: one)")
    print(f"{'refresh':<36} {'wall ms':>9} {'CPU ms':>9} {'bytes read':>12}")
    for name, wall, cpu, got in results:
        print(f"{name:<36} {wall * 1e3:>9.1f} {cpu * 1e3:>9.1f} {got:>12,}")
    if a.process:
        print(
            f"runlab status --watch: {used:.2f} CPU s in {span:.1f} s, "
            f"{100 * used / span:.1f} % of a core (100 runs logging a row a second)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
