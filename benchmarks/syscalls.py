"""The system calls of a query, cold and warm, and what they would cost on a shared file system.

    python benchmarks/syscalls.py [--workdir DIR] [--shapes paper,many-short] [--ms 1.0]

On NFS or Lustre every metadata operation (open, stat, directory listing, ...) is a
round trip to a server; reading a cached file's bytes mostly is not. So the time a
query takes there is about its number of metadata operations times the round trip.
This script counts them: each shape of ``benchmarks/reader_shapes.py`` (written
there, reused) is queried in a fresh process under ``strace -f -c`` (every thread and
child counted), as that script queries it (``Reader(logs)``, ``filter``,
``group_by(...).curves(...)``):

- **cold**: the reader's index (``<logs>/.runlab-index``) removed first, so every run's
  files are read and the index is written;
- **warm**: right after, with that index: what a second look costs (every run's files
  are checked against the index with a ``stat``);
- **changes**: ``Reader(logs, refresh="changes")`` after one such read has stamped the
  index: only the runs not ended, new, or whose end changed are looked at;
- **changes, N% ended again**: the same after ``--changed`` percent of the runs had a
  new ending written through runlab's writer (``RunDir.update_info``).

The metadata calls counted are ``open``/``openat``, the ``stat`` family (``stat``,
``lstat``, ``newfstatat``, ``statx``, ``access``), ``getdents64`` (listing a folder),
``readlink``, ``mkdir``, ``rename``, ``unlink`` and ``fsync``; ``fstat``, ``read`` and
``write`` on an open file are counted apart. The model: ``--ms`` milliseconds per
metadata call (1 ms: a file server on the same network). The import of Python and
Polars is in both counts alike (it reads the installed packages, which on a cluster
usually sit on the shared file system too).

Needs ``strace`` (``apt-get install strace``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import reader_shapes  # noqa: E402  (the benchmarks' shared generator)

METADATA = {
    "open",
    "openat",
    "stat",
    "lstat",
    "newfstatat",
    "statx",
    "access",
    "faccessat",
    "faccessat2",
    "getdents64",
    "readlink",
    "readlinkat",
    "mkdir",
    "mkdirat",
    "rename",
    "renameat",
    "renameat2",
    "unlink",
    "unlinkat",
    "fsync",
    "fdatasync",
}
DATA_CALLS = {"read", "pread64", "write", "pwrite64", "fstat", "lseek", "mmap"}

QUERY = """
import sys
import runlab.results.reader as r
spec = {spec!r}
runs = r.Reader(sys.argv[1], refresh={refresh!r})
grouped = runs.filter(spec["query"]).group_by(*spec["group"])
for metric in spec["metrics"]:
    grouped.curves(metric)
r.wait_for_index()
"""


IMPORT_ONLY = "import polars, runlab.results.reader\n"


def count(logs: Path, shape: str | None, refresh: bool | str = True) -> dict[str, int]:
    """Calls by name of one query of ``shape`` over ``logs`` in a fresh, traced process
    (no ``shape``: the imports alone)."""
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "query.py"
        if shape is None:
            script.write_text(IMPORT_ONLY)
        else:
            spec = {k: reader_shapes.SHAPES[shape][k] for k in ("query", "group", "metrics")}
            script.write_text(QUERY.format(spec=spec, refresh=refresh))
        summary = Path(tmp) / "strace.txt"
        subprocess.run(
            ["strace", "-f", "-c", "-o", str(summary), sys.executable, str(script), str(logs)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        calls: dict[str, int] = {}
        for line in summary.read_text().splitlines():
            parts = line.split()
            # % time, seconds, usecs/call, calls, [errors], syscall
            if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
                calls[parts[-1]] = int(parts[3])
        return calls


def end_again(logs: Path, percent: float) -> None:
    """Write a new ending into ``percent`` % of the runs, as a retry that ran again would."""
    from runlab.record.rundir import RunDir

    ids = sorted(int(p.name) for p in logs.iterdir() if p.name.isdigit())
    step = max(1, round(100 / percent)) if percent > 0 else len(ids) + 1
    for rid in ids[::step]:
        run = RunDir(logs / str(rid))
        run.update_info(status="RUNNING")
        run.update_info(status="COMPLETE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "rl-bench")
    parser.add_argument("--shapes", default="paper,many-short")
    parser.add_argument("--ms", type=float, default=1.0, help="ms per metadata call")
    parser.add_argument("--procs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--changed", type=float, default=1.0, help="percent of runs ended again")
    args = parser.parse_args()
    if shutil.which("strace") is None:
        sys.exit("strace is not installed: apt-get install strace")
    print(f"`python benchmarks/syscalls.py --shapes {args.shapes} --ms {args.ms:g}`\n")
    base = sum(n for name, n in count(Path("."), None).items() if name in METADATA)
    print(
        "| shape | runs | query | metadata calls | per run, imports left out "
        f"| read/write/fstat calls | at {args.ms:g} ms per metadata call |"
    )
    print("|---|---:|---|---:|---:|---:|---:|")
    print(f"| (the imports alone) | | | {base:,} | | | {base * args.ms / 1000:,.1f} s |")
    for shape in args.shapes.split(","):
        logs, _ = reader_shapes.ensure(
            args.workdir, reader_shapes.SHAPES[shape]["data"], args.procs
        )
        runs = sum(1 for p in logs.iterdir() if p.name.isdigit())
        again = f"changes, {args.changed:g}% ended again"
        for label in ("cold", "warm", "changes", again):
            if label == "cold":
                shutil.rmtree(logs / ".runlab-index", ignore_errors=True)
            if label == "changes":
                count(logs, shape, "changes")  # the first read in this mode stamps the index
            if label == again:
                end_again(logs, args.changed)
            calls = count(logs, shape, "changes" if label != "cold" and label != "warm" else True)
            meta = sum(n for name, n in calls.items() if name in METADATA)
            data = sum(n for name, n in calls.items() if name in DATA_CALLS)
            print(
                f"| {shape} | {runs:,} | {label} | {meta:,} | {(meta - base) / runs:.1f} | {data:,} "
                f"| {meta * args.ms / 1000:,.1f} s |"
            )


if __name__ == "__main__":
    main()
