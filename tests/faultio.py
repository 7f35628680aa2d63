"""Fault injection at the I/O layer (issue 19): fail the k-th open, write, fsync or rename
that a process makes under a logs directory, as SQLite's tests fail the k-th I/O call.

A wrapper, not a library: ``python tests/faultio.py SPEC_JSON SCRIPT [ARGS...]`` installs
the hooks and runs ``SCRIPT`` as ``__main__`` (as ``python SCRIPT ARGS`` would). The spec
is a JSON object:

- ``root``: the logs directory; only calls on paths under it (and on file descriptors
  opened on such paths) are counted;
- ``mode``: ``"count"`` (nothing fails), ``"once"`` (only the ``k``-th call fails: a disk
  that was full for a moment), ``"from"`` (the ``k``-th call and every later one fail:
  a disk that stays full, or becomes read-only) or ``"kill"`` (the process is killed by
  SIGKILL just before its ``k``-th call: ``kill -9``, or a machine that went down, at
  that point; the report is written first);
- ``k``: the number of the call that fails (1-based);
- ``errno``: the error raised, by name (``ENOSPC``, ``EIO``, ``EROFS``);
- ``reads``: whether opens for reading count (an ``EIO`` can fail a read; ``ENOSPC`` and
  ``EROFS`` never do);
- ``report``: a file (outside the logs) where the calls counted are written at exit, as
  JSON: ``{"calls": [[kind, function, path], ...], "failed": [k, ...]}``; the kinds are
  ``open`` (for writing, or a new folder), ``read`` (an open for reading), ``write``,
  ``fsync`` and ``rename``.

What is hooked (everything runlab's writers use, see ``tests/test_io_paths.py``):
``open``/``io.open`` (the file objects they return count their ``write``/``writelines``
calls), ``os.open``, ``os.mkdir``, ``os.write``, ``os.pwrite``, ``os.sendfile``,
``os.ftruncate``, ``os.truncate``, ``os.fsync``, ``os.fdatasync``, ``os.rename`` and
``os.replace``. Not hooked: what writes below Python (Polars' ``write_parquet`` of a
columnar twin, which runlab may skip on any error anyway, and the ``renameat2`` that
names a new run, called through ``ctypes``).

``torch`` is made unimportable in the task, so that a checkpoint is a pickle and a run
takes a fraction of a second.
"""

from __future__ import annotations

import builtins
import errno as errno_module
import faulthandler
import io
import json
import os
import runpy
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, NoReturn

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


class _Injector:
    """Counts the calls under ``root`` and raises at the ones the spec names."""

    def __init__(self, spec: dict[str, Any]) -> None:
        root = spec["root"]
        self.roots = tuple({os.path.abspath(root) + os.sep, os.path.realpath(root) + os.sep})
        self.mode = spec.get("mode", "count")
        self.k = int(spec.get("k", 0))
        self.errno = getattr(errno_module, spec.get("errno", "ENOSPC"))
        self.reads = bool(spec.get("reads", False))
        self.report = spec.get("report")
        self.calls: list[list[str]] = []
        self.failed: list[int] = []
        self.fds: set[int] = set()
        self.lock = threading.Lock()

    def under(self, path: Any) -> bool:
        if isinstance(path, int):
            return path in self.fds
        try:
            text = os.fsdecode(path)
        except TypeError:
            return False
        return (os.path.abspath(text) + os.sep).startswith(self.roots)

    def check(self, kind: str, function: str, path: Any) -> None:
        """Count one call (when it is under the root) and raise if it is one to fail."""
        if not self.under(path):
            return
        with self.lock:
            where = f"fd {path}" if isinstance(path, int) else os.fsdecode(path)
            self.calls.append([kind, function, where])
            n = len(self.calls)
            fail = (self.mode == "once" and n == self.k) or (self.mode == "from" and n >= self.k)
            if fail:
                self.failed.append(n)
            if self.mode == "kill" and n == self.k:
                self.failed.append(n)
                self.write_report()
                os.kill(os.getpid(), signal.SIGKILL)
        if fail:
            name = None if isinstance(path, int) else os.fsdecode(path)
            raise OSError(self.errno, os.strerror(self.errno), name)

    def track(self, fd: int, path: Any) -> None:
        """Note whether ``fd`` (just opened on ``path``) is a descriptor under the root."""
        with self.lock:
            if not isinstance(path, int) and self.under(path):
                self.fds.add(fd)
            elif not isinstance(path, int):
                self.fds.discard(fd)

    def write_report(self) -> None:
        if self.report:
            with _REAL["open"](self.report, "w") as fh:
                json.dump({"calls": self.calls, "failed": self.failed}, fh)


_REAL: dict[str, Any] = {}


class _File:
    """A file object under the root: its writes are counted (and may fail)."""

    def __init__(self, fh: Any, injector: _Injector, fd: int) -> None:
        self._fh, self._inj, self._fd = fh, injector, fd

    def write(self, data: Any) -> int:
        self._inj.check("write", "file.write", self._fd)
        return self._fh.write(data)

    def writelines(self, lines: Any) -> None:
        self._inj.check("write", "file.writelines", self._fd)
        self._fh.writelines(lines)

    def close(self) -> None:
        with self._inj.lock:
            self._inj.fds.discard(self._fd)
        self._fh.close()

    def __enter__(self) -> _File:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __iter__(self) -> Any:
        return iter(self._fh)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)


def _writes(mode: str) -> bool:
    return any(c in mode for c in "wax+")


def install(spec: dict[str, Any]) -> _Injector:
    """Replace the I/O functions of ``builtins``, ``io`` and ``os`` with counting ones."""
    inj = _Injector(spec)
    real = _REAL
    real.update(
        open=io.open,
        open_os=os.open,
        **{
            n: getattr(os, n)
            for n in (
                "close",
                "mkdir",
                "write",
                "pwrite",
                "sendfile",
                "ftruncate",
                "truncate",
                "fsync",
                "fdatasync",
                "rename",
                "replace",
            )
        },
    )

    def hooked_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if not isinstance(file, int) and (_writes(mode) or inj.reads):
            inj.check("open" if _writes(mode) else "read", "open", file)
        fh = real["open"](file, mode, *args, **kwargs)
        if isinstance(file, int):
            fd = file
        else:
            try:
                fd = fh.fileno()
            except (OSError, ValueError, AttributeError):
                return fh
            inj.track(fd, file)
        if fd in inj.fds and _writes(mode):
            return _File(fh, inj, fd)
        return fh

    def hooked_os_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & _WRITE_FLAGS or inj.reads:
            inj.check("open" if flags & _WRITE_FLAGS else "read", "os.open", path)
        fd = real["open_os"](path, flags, *args, **kwargs)
        inj.track(fd, path)
        return fd

    def hooked_close(fd: int) -> None:
        with inj.lock:
            inj.fds.discard(fd)
        real["close"](fd)

    def on_path(kind: str, name: str) -> Any:
        def hooked(path: Any, *args: Any, **kwargs: Any) -> Any:
            inj.check(kind, f"os.{name}", path)
            return real[name](path, *args, **kwargs)

        return hooked

    def on_rename(name: str) -> Any:
        def hooked(src: Any, dst: Any, *args: Any, **kwargs: Any) -> Any:
            inj.check("rename", f"os.{name}", dst if inj.under(dst) else src)
            return real[name](src, dst, *args, **kwargs)

        return hooked

    def hooked_sendfile(out_fd: int, in_fd: int, *args: Any, **kwargs: Any) -> int:
        inj.check("write", "os.sendfile", out_fd)
        return real["sendfile"](out_fd, in_fd, *args, **kwargs)

    builtins.open = io.open = hooked_open  # type: ignore[assignment]
    os.open = hooked_os_open  # type: ignore[assignment]
    os.close = hooked_close  # type: ignore[assignment]

    def hooked_mkdir(path: Any, *args: Any, **kwargs: Any) -> None:
        if not os.path.lexists(path):  # an existing folder fails with EEXIST, whatever the disk
            inj.check("open", "os.mkdir", path)
        real["mkdir"](path, *args, **kwargs)

    os.mkdir = hooked_mkdir  # type: ignore[assignment]
    for name in ("write", "pwrite", "ftruncate", "truncate"):
        setattr(os, name, on_path("write", name))
    os.sendfile = hooked_sendfile  # type: ignore[assignment]
    for name in ("fsync", "fdatasync"):
        setattr(os, name, on_path("fsync", name))
    for name in ("rename", "replace"):
        setattr(os, name, on_rename(name))
    return inj


def _run_script(spec: dict[str, Any], script: str, args: list[str]) -> int:
    """Run ``script`` as ``__main__`` under the hooks; its exit status."""
    inj = install(spec)
    sys.argv = [script, *args]
    sys.path[0] = os.path.dirname(os.path.abspath(script))
    code = 0
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        inj.write_report()
    return code


def _child(job: dict[str, Any]) -> NoReturn:
    """In a child forked from the server: run one job and exit with its status."""
    code = 1
    try:
        os.chdir(job["cwd"])
        os.environ.update(job.get("env", {}))
        fd = os.open(job["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        # A hang shows where: every thread's stack, just before the server kills the child.
        faulthandler.dump_traceback_later(max(1.0, float(job.get("timeout", 60)) - 2), exit=False)
        code = _run_script(job["spec"], job["script"], job.get("args", []))
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


def _wait(pid: int, timeout: float) -> dict[str, Any]:
    """Wait for ``pid`` at most ``timeout`` seconds (then kill it: a hang)."""
    start = time.monotonic()
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return {"rc": os.waitstatus_to_exitcode(status), "seconds": time.monotonic() - start}
        if time.monotonic() - start > timeout:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return {"rc": None, "hung": True, "seconds": time.monotonic() - start}
        time.sleep(0.005)


# Not Polars: it starts threads (jemalloc's, its own) at import, and a fork beside running
# threads can leave a child stuck on a lock one of them held (one child in 200 hung so).
PRELOAD = (
    "hydra",
    "hydra.main",
    "hydra.core.plugins",
    "hydra._internal.utils",
    "hydra._internal.hydra",
    "hydra._internal.config_loader_impl",
    "omegaconf",
    "yaml",
    "runlab",
    "runlab.record.launch",
    "runlab.record.lifecycle",
)


def serve(warm: str | None = None) -> None:
    """The fork server: import what a task needs once, then run each job (a JSON line on
    stdin) in a child forked from this process; answer each with a JSON line on stdout.

    A forked child starts in a few milliseconds instead of a second of imports, so that
    every k of a run's calls can be failed in turn. ``warm``: the task's config file, composed
    once here so that Hydra's parsers are warm in every child."""
    sys.modules["torch"] = None  # type: ignore[assignment]  # checkpoints as pickles: fast
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    from hydra.core.plugins import Plugins

    Plugins.instance()  # Hydra's plugin scan, done once
    if warm is not None:  # compose the task's config once: Hydra's parsers warm up
        from hydra import compose, initialize_config_dir
        from hydra.core.global_hydra import GlobalHydra

        with initialize_config_dir(config_dir=str(Path(warm).parent), version_base="1.3"):
            compose(config_name=Path(warm).stem, overrides=["hydra.run.dir=."])
        GlobalHydra.instance().clear()
    threads = os.listdir("/proc/self/task") if os.path.isdir("/proc/self/task") else ["1"]
    if len(threads) > 1:  # see PRELOAD
        raise SystemExit(f"faultio: the server must fork from one thread, it has {len(threads)}")
    out = sys.stdout
    for line in sys.stdin:
        job = json.loads(line)
        out.flush()
        pid = os.fork()
        if pid == 0:
            _child(job)
        out.write(json.dumps(_wait(pid, float(job.get("timeout", 60)))) + "\n")
        out.flush()


def main(argv: list[str]) -> None:
    if argv[1:2] == ["serve"]:
        serve(argv[2] if len(argv) > 2 else None)
        return
    sys.modules["torch"] = None  # type: ignore[assignment]
    raise SystemExit(_run_script(json.loads(argv[1]), argv[2], argv[3:]))


if __name__ == "__main__":
    main(sys.argv)
