"""What exactness costs `runlab reproduce`: rebuilding and checking a run's code.

    python benchmarks/rebuild.py [--files 2000 10000] [--runs 3]

For each size, builds in a temporary folder a git repository of ``--files`` small
files (in folders of 50, a tenth of them CRLF text under ``*.txt text eol=crlf``),
commits it, then edits 20 tracked files, deletes 5, adds 5 untracked ones, and times
(median of ``--runs``, after one untimed warm-up):

* ``git_record``: what each run records of its code at start (status, patch, the
  hashes of the changed and converted files, submodules);
* ``rebuild``: the commit's objects written as stored, the patch applied, every
  recorded hash checked (``codetree.rebuild``: a first ``runlab reproduce``);
* ``verify_tree``: a kept tree checked file by file against the commit
  (``codetree.verify_tree``: every later ``runlab reproduce`` of the same code).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from runlab.record import codetree, environment


def git(repo: Path, *args: str) -> None:
    cmd = ["git", "-c", "user.name=b", "-c", "user.email=b@b", *args]
    subprocess.run(cmd, cwd=repo, check=True, capture_output=True)


def make_repo(root: Path, files: int) -> Path:
    repo = root / f"repo-{files}"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / ".gitattributes").write_text("*.txt text eol=crlf\n")
    for i in range(files):
        folder = repo / f"pkg{i // 50}"
        folder.mkdir(exist_ok=True)
        if i % 10 == 0:
            (folder / f"notes{i}.txt").write_text(f"line {i}\nanother line\n")
        else:
            (folder / f"mod{i}.py").write_text(f"X_{i} = {i}\n\ndef f():\n    return X_{i}\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "start")
    for i in range(files):  # a checkout as git writes it: CRLF where the attributes say
        if i % 10 == 0:
            path = repo / f"pkg{i // 50}" / f"notes{i}.txt"
            path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    modules = [i for i in range(1, 40) if i % 10]
    for i in modules[:20]:
        path = repo / f"pkg{i // 50}" / f"mod{i}.py"
        path.write_text(path.read_text() + "# edited\n")
    for i in modules[20:25]:
        (repo / f"pkg{i // 50}" / f"mod{i}.py").unlink()
    for i in range(5):
        (repo / f"new{i}.py").write_text(f"NEW = {i}\n")
    return repo


def median_time(fn, runs: int) -> float:
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(repo: Path, out: Path, runs: int) -> tuple[float, float, float]:
    """Median seconds of recording, rebuilding and verifying the code of ``repo``."""
    state, patch, _ = environment.git_record(repo)

    def rebuild() -> None:
        shutil.rmtree(out, ignore_errors=True)
        codetree.rebuild(repo, state["commit"], out, patch or b"", state)

    record = median_time(lambda: environment.git_record(repo), runs)
    built = median_time(rebuild, runs)
    verify = median_time(lambda: codetree.verify_tree(repo, state["commit"], out, state), runs)
    return record, built, verify


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, nargs="+", default=[2000, 10000])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"# {platform.node()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    print("| files | git_record | rebuild | verify_tree |")
    print("|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for files in args.files:
            repo = make_repo(Path(tmp), files)
            record, built, verify = measure(repo, Path(tmp) / f"out-{files}", args.runs)
            print(f"| {files:,} | {record:.2f} s | {built:.2f} s | {verify:.2f} s |")


if __name__ == "__main__":
    main()
