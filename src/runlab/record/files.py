"""Small, safe file primitives shared by the writers: atomic YAML with JSON twins, ISO times.

Every metadata file a reader needs (``config``, ``info``, ``env``) is written twice,
as ``<name>.json`` for machines and ``<name>.yaml`` for people, from the same data:
readers parse the JSON (fast, no YAML on their hot path, no alias bombs) and fall
back to the YAML only for records made by hand or by older versions.

Non-finite floats are stored as metrics files store them
(:func:`runlab.record.metricsfile.encode_float`) so that a strict JSON parser reads
every file.
"""

from __future__ import annotations

import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import yaml

from runlab.errors import UserError
from runlab.record import secrets
from runlab.record.metricsfile import encode_float

try:  # the C emitter/loader is ~10x faster; fall back quietly where libyaml is absent
    from yaml import CSafeDumper as _Dumper
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover
    from yaml import SafeDumper as _Dumper
    from yaml import SafeLoader as _Loader

from runlab.status import Status


class _RecordDumper(_Dumper):  # type: ignore[misc]  # PyYAML ships no type hints: its classes are Any
    """The safe dumper, writing a :class:`Status` as its plain text (files stay plain YAML)."""


_RecordDumper.add_representer(Status, lambda dumper, s: dumper.represent_str(s.value))


def now_iso() -> str:
    """The current local time in ISO 8601 with its UTC offset (millisecond precision)."""
    return datetime.now().astimezone().isoformat(timespec="milliseconds")


def _read_umask() -> int:
    """This process's umask, read without changing it where the system allows.

    ``os.umask`` can only be read by setting it, which for a moment changes the mode
    of files other threads create; Linux shows it in ``/proc/self/status`` instead.
    """
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK: int | None = None


def umask() -> int:
    """The process's umask, read once (the first time runlab creates a file)."""
    global _UMASK
    if _UMASK is None:
        _UMASK = _read_umask()
    return _UMASK


def file_mode() -> int:
    """The mode of files runlab creates: ``0o666`` less the umask, as ``open()`` would give."""
    return 0o666 & ~umask()


def dir_mode() -> int:
    """The mode of directories runlab creates: ``0o777`` less the umask, as ``mkdir`` would give."""
    return 0o777 & ~umask()


def open_dir(path: str | os.PathLike[str]) -> None:
    """Give a directory made private (``mkdtemp``'s ``0700``) the mode ``mkdir`` would
    have given it, ``0o777`` less the umask, keeping its setgid bit: inside a logs
    directory a group shares (setgid), what is made inside keeps the group."""
    setgid = os.stat(path).st_mode & 0o2000
    os.chmod(path, dir_mode() | setgid)


TEMP_SUFFIX = ".tmp"


def flock_held(path: Path) -> bool:
    """Whether some open file of ``path`` holds an ``flock`` on it now (``False`` when
    there is no such file). Read-write first: NFS emulates ``flock`` with ``fcntl``
    locks, which an exclusive probe needs a writable descriptor for."""
    import fcntl

    fd = -1
    for flags in (os.O_RDWR, os.O_RDONLY):
        try:
            fd = os.open(path, flags | os.O_CLOEXEC)
            break
        except OSError:
            continue
    if fd < 0:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # and with it a lock taken here
    return False


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new file, never half.

    The file gets the mode any other file of the run gets (``0o666`` less the umask),
    not ``mkstemp``'s private ``0600``. A temporary ``.<name>.*.tmp`` left by a killed
    process is removed by :func:`remove_temporaries` at the run's next start.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), file_mode())
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_temporaries(folder: Path) -> list[Path]:
    """Delete the ``.*.tmp`` files that killed atomic writes left in ``folder``; return them.

    Only call this while no other process writes into ``folder``.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if entry.name.startswith(".") and entry.name.endswith(TEMP_SUFFIX) and entry.is_file():
            try:
                os.unlink(entry.path)
            except OSError:
                continue
            removed.append(Path(entry.path))
    return removed


def overwrite_in_place(path: Path, data: bytes) -> None:
    """Rewrite ``path`` with ``data`` in place: the last resort on a full disk.

    Not atomic, but it needs no new block when ``data`` fits the file's blocks
    (a few KiB of status in a file that held a few KiB).
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, file_mode())
    try:
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


def dump_yaml(data: Any) -> str:
    # PyYAML ships no type hints: dump() is Any, a str when no stream is given
    text: str = yaml.dump(data, Dumper=_RecordDumper, sort_keys=False, default_flow_style=False)
    return text


def write_yaml(path: Path, data: Any) -> None:
    """Write ``data`` as YAML atomically, credentials redacted."""
    write_atomic(path, dump_yaml(_text_safe(secrets.redact(data))).encode())


class DamagedFile(UserError):
    """A record file that exists but does not parse (edited by hand, cut short, overwritten)."""


def damaged(path: Path, exc: BaseException) -> DamagedFile:
    """The one-line error for a record file at ``path`` that ``exc`` could not parse."""
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DamagedFile(
        f"damaged file ({type(exc).__name__}: {reason})",
        where=path,
        todo="fix or remove it; `runlab verify` lists damaged runs",
    )


def read_capped(path: Path, limit: int) -> bytes:
    """The bytes of the file at ``path``; :class:`DamagedFile` where it holds more than
    ``limit`` (a record that size was damaged, and reading it whole could take all of
    the memory; a link to ``/dev/zero`` has no end)."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        # Not read(limit + 1): that would allocate the whole limit for every small file.
        data = b"" if size > limit else fh.read(size + 65536)
    if size > limit or len(data) > limit:
        reason = ValueError(f"over the {limit >> 20} MiB limit of a record: not read")
        raise damaged(path, reason)
    return data


def read_yaml(path: Path, limit: int | None = None) -> Any:
    """Parse a YAML file (``None`` for an empty one), of at most ``limit`` bytes if given.

    A file that does not parse (invalid YAML, bytes that are not UTF-8), or is over the
    limit, raises :class:`DamagedFile`, a :class:`UserError` naming it: such a file was
    edited by hand or damaged, which the user can fix, not a fault of runlab's.
    """
    try:
        if limit is not None:
            return yaml.load(read_capped(path, limit), Loader=_Loader)
        with open(path, "rb") as fh:
            return yaml.load(fh, Loader=_Loader)
    except (yaml.YAMLError, UnicodeDecodeError, ValueError) as exc:
        raise damaged(path, exc) from None


def loads_yaml(text: str | bytes) -> Any:
    """Parse YAML already read (``None`` for an empty text): a caller that read the bytes
    for another reason (a screen, a digest) parses them without a second read."""
    return yaml.load(text, Loader=_Loader)


def valid_text(text: str) -> str:
    """``text`` as valid Unicode: a lone surrogate (a non-UTF-8 file name decoded with
    ``surrogateescape``) becomes its visible escape, ``\\udcff``; other text is unchanged."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _text_safe(data: Any) -> Any:
    """``data`` with every string (keys too) made :func:`valid_text`: JSON and YAML hold it."""
    if isinstance(data, str):
        return valid_text(data)
    if isinstance(data, dict):
        return {_text_safe(k): _text_safe(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_text_safe(v) for v in data]
    return data


def _json_safe(data: Any) -> Any:
    if isinstance(data, float):
        return encode_float(data)
    if isinstance(data, str):
        return valid_text(data)
    if isinstance(data, dict):
        return {
            valid_text(k) if isinstance(k, str) else str(k): _json_safe(v) for k, v in data.items()
        }
    if isinstance(data, (list, tuple)):
        return [_json_safe(v) for v in data]
    if isinstance(data, int) and not isinstance(data, bool) and not -(2**63) <= data < 2**64:
        return str(data)  # orjson stores 64-bit integers; a larger one survives as text
    return data


def dumps_json(data: Any) -> bytes:
    """``data`` as strict JSON (non-finite floats as strings, keys as text), newline-terminated."""
    return orjson.dumps(_json_safe(data), option=orjson.OPT_APPEND_NEWLINE)


def record_form(data: Any) -> Any:
    """``data`` as the JSON twin of its record holds it, read back: credentials redacted,
    text made valid, non-finite floats as their strings. Compare a config with a
    recorded one in this form, else ``inf`` and ``"Infinity"`` differ."""
    return orjson.loads(dumps_json(_text_safe(secrets.redact(data))))


def write_record(path: Path, data: Any) -> None:
    """Write ``data`` to ``path`` (a ``.yaml`` file) and its JSON twin ``path.with_suffix('.json')``.

    The JSON goes first: a reader that finds it has the newest state even if the
    YAML for people is not replaced yet. When the YAML cannot be written, the old one is
    removed (the error is raised still): the twins never say two things. Credentials are
    redacted first
    (:func:`runlab.record.secrets.redact`): no record holds one in clear.
    """
    path = Path(path)
    data = _text_safe(secrets.redact(data))
    write_atomic(path.with_suffix(".json"), dumps_json(data))
    try:
        write_atomic(path, dump_yaml(data).encode())
    except BaseException:
        # The JSON holds the new state: a YAML left as it was would say otherwise (a
        # RUNNING under a COMPLETE). Without it the record is the JSON alone, and true.
        try:
            path.unlink()
        except OSError:
            pass
        raise


def overwrite_record(path: Path, data: Any) -> None:
    """:func:`write_record` in place (:func:`overwrite_in_place`): the last resort for a
    run's final status on a full disk. Credentials are redacted as by :func:`write_record`."""
    path = Path(path)
    data = _text_safe(secrets.redact(data))
    overwrite_in_place(path.with_suffix(".json"), dumps_json(data))
    overwrite_in_place(path, dump_yaml(data).encode())


def tail(path: Path, lines: int) -> list[str]:
    """The last ``lines`` non-blank lines of a text file (none if it cannot be read)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    return [line for line in text.rstrip("\n").splitlines() if line.strip()][-lines:]
