"""A run's code, byte for byte: what is recorded beside its patch, and how it is rebuilt.

A run's code is a commit plus the patch of its uncommitted changes
(:mod:`runlab.record.environment`). A patch alone cannot prove that a rebuild is exact:
git applies attributes (line ends, filters), export rules and the user's configuration
between the files and the patch. This module records what makes a rebuild checkable:

``files``
    ``"<mode> <sha256>"`` of the raw bytes of every path the patch changes (``None``: the
    run had no such file), and of every tracked file whose work-tree bytes differ from
    what the commit stores (line ends made CRLF by ``eol``/``core.autocrlf``, files
    passed through a git ``filter`` such as LFS). The mode is git's: ``100644``,
    ``100755`` or ``120000`` (a symbolic link: the hash is of its target).
``submodules``
    each submodule's path, the commit checked out in it and whether it had changes.

:func:`rebuild` writes the commit's objects exactly as stored (``git cat-file``: no
attribute, filter or ``export-ignore``/``export-subst`` rule applies), each submodule at
its recorded commit, applies the patch with git's global and system configuration left
out (``apply.whitespace=fix`` would rewrite it) and outside any enclosing repository,
gives CRLF files their line ends back, then checks every recorded hash. Any difference
is a :class:`RebuildError` naming the file: the caller refuses to run an approximation.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from runlab.errors import UserError

GITLINK = "160000"
SYMLINK = "120000"
EXECUTABLE = "100755"
REGULAR = "100644"

# Git as every user's git: no global or system configuration, no system attributes.
NEUTRAL_GIT_ENV = {
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_ATTR_NOSYSTEM": "1",
    "GIT_OPTIONAL_LOCKS": "0",
}


class RebuildError(UserError, RuntimeError):
    """The code of a run cannot be rebuilt byte for byte; the message names the file."""


def _git(
    cwd: Path,
    *args: str,
    stdin: bytes | None = None,
    neutral: bool = False,
    extra: Mapping[str, str] | None = None,
) -> bytes:
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        env.pop(name, None)  # a caller's own repository must not leak into ours
    if neutral:
        env.update(NEUTRAL_GIT_ENV)
    env.update(extra or {})
    proc = subprocess.run(
        ["git", *args],
        cwd=cwd,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        env=env,
    )
    if proc.returncode != 0:
        why = " ".join(proc.stderr.decode("utf-8", "replace").split())
        raise RebuildError(f"git {args[0]} failed in {cwd}: {why or f'exit {proc.returncode}'}")
    return proc.stdout


# ------------------------------------------------------------------ record


def file_entry(path: Path) -> str | None:
    """``"<mode> <sha256>"`` of the file at ``path`` as it is on disk; ``None`` when absent."""
    try:
        if path.is_symlink():
            target = os.fsencode(os.readlink(path))
            return f"{SYMLINK} {hashlib.sha256(target).hexdigest()}"
        if not path.is_file():
            return None
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        mode = EXECUTABLE if os.access(path, os.X_OK) else REGULAR
        return f"{mode} {digest.hexdigest()}"
    except OSError:
        return None


# A file name that is not UTF-8 (no record format holds such text) is written with this
# prefix and its bytes in base64; :func:`name_path` reads both forms back.
RAW_NAME = "?base64:"


def record_name(raw: bytes) -> str:
    """The name of the file ``raw`` (git's bytes) as the record holds it."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return RAW_NAME + base64.b64encode(raw).decode()


def name_path(name: str) -> str:
    """The file name (as the OS takes it) of a name from the record."""
    if name.startswith(RAW_NAME):
        return os.fsdecode(base64.b64decode(name[len(RAW_NAME) :]))
    return name


def manifest(root: Path, paths: Iterable[bytes]) -> dict[str, str | None]:
    """The ``files`` record of ``paths`` (relative to ``root``, as git names them)."""
    out: dict[str, str | None] = {}
    for raw in paths:
        raw = raw.rstrip(b"/")
        name = record_name(raw)
        path = root / os.fsdecode(raw)
        if not raw or name in out or (path.is_dir() and not path.is_symlink()):
            continue  # a folder here is a submodule: recorded by its commit
        out[name] = file_entry(path)
    return dict(sorted(out.items()))


def _attribute_files(root: Path) -> bool:
    """Whether attributes or settings that change a file's bytes on checkout may apply."""
    if (root / ".gitattributes").exists():
        return True
    try:
        info = _git(root, "rev-parse", "--git-path", "info/attributes").decode().strip()
        if (root / info).exists():
            return True
        found = _git(root, "config", "-z", "--get-regexp", r"^core\.(autocrlf|eol|attributesfile)$")
    except RebuildError:  # exit 1: none set
        return False
    return bool(found.strip(b"\0"))


def converted(root: Path) -> tuple[list[bytes], list[bytes]]:
    """Tracked files whose work-tree bytes differ from the commit's by git's conversion:
    LF stored and CRLF written (``text``/``eol`` attributes, ``core.autocrlf``), and
    files passed through a ``filter`` (LFS). Costs two short git processes in a
    repository without attributes or line-end settings, and reads no file."""
    if not _attribute_files(root):
        return [], []
    out: list[bytes] = []
    filtered: list[bytes] = []
    candidates: list[tuple[bytes, str]] = []  # (path, object id) of files git may convert
    for entry in _git(root, "ls-files", "-z", "-s", "--eol").split(b"\0"):
        fields = entry.split(b"\t")
        if len(fields) != 3:
            continue
        stage, eol, path = fields
        info = eol.split()
        attrs = b" ".join(info[2:]) if len(info) > 2 else b""
        text = (b"text" in attrs and b"-text" not in attrs) or b"eol=" in attrs
        if text or (len(info) > 1 and info[1] in (b"w/crlf", b"w/mixed")):
            candidates.append((path, stage.split()[1].decode()))
    present = [(p, sha) for p, sha in candidates if (root / os.fsdecode(p)).is_file()]
    if present:  # the bytes as they are, against the object the commit stores
        ids = _git(
            root,
            "hash-object",
            "--no-filters",
            "--stdin-paths",
            stdin=b"".join(os.fsencode(root / os.fsdecode(p)) + b"\n" for p, _ in present),
        ).split()
        out += [p for (p, sha), have in zip(present, ids, strict=True) if have.decode() != sha]
    top = root / ".gitattributes"
    if top.exists() and b"filter" in top.read_bytes():
        files = _git(root, "ls-files", "-z")
        attrs = _git(root, "check-attr", "-z", "--stdin", "filter", stdin=files)
        parts = attrs.split(b"\0")
        for i in range(0, len(parts) - 2, 3):
            if parts[i + 2] not in (b"unspecified", b"unset"):
                filtered.append(parts[i])
    return out, filtered


def submodules(root: Path) -> dict[str, dict[str, Any]]:
    """Each submodule (nested ones as ``outer/inner``): the commit checked out, and
    whether its work tree had changes (which no patch of the outer repository holds)."""
    if not (root / ".gitmodules").exists():
        return {}
    out: dict[str, dict[str, Any]] = {}
    for entry in _git(root, "ls-files", "-z", "--stage").split(b"\0"):
        if not entry.startswith(GITLINK.encode()):
            continue
        name = os.fsdecode(entry.split(b"\t", 1)[1])
        path = root / name
        if not (path / ".git").exists():  # not initialised: an empty folder ran (git would
            out[name] = {"commit": None, "dirty": False}  # answer for the outer repository)
            continue
        try:
            commit = _git(path, "rev-parse", "--verify", "HEAD").decode().strip()
            dirty = bool(_git(path, "status", "--porcelain", "--untracked-files=normal").strip())
        except (RebuildError, OSError):  # not initialised: nothing of it ran
            out[name] = {"commit": None, "dirty": False}
            continue
        out[name] = {"commit": commit, "dirty": dirty}
        for inner, state in submodules(path).items():
            out[f"{name}/{inner}"] = state
    return out


# ----------------------------------------------------------------- rebuild


def export_commit(
    repo: Path, commit: str, dest: Path, modules: Mapping[str, Mapping[str, Any]] | None = None
) -> None:
    """Write the tree of ``commit`` (from the repository at ``repo``) into ``dest`` with
    every file's bytes as stored, and each submodule at its commit in ``modules`` (the
    gitlink's when not recorded), from the submodule's repository under ``repo``."""
    modules = modules or {}
    listing = _git(repo, "ls-tree", "-r", "-z", "--full-tree", commit, neutral=True)
    entries: list[tuple[str, str, str]] = []
    for entry in listing.split(b"\0"):
        if not entry:
            continue
        meta, raw = entry.split(b"\t", 1)
        mode, _kind, sha = meta.decode().split()
        entries.append((mode, sha, os.fsdecode(raw)))
    blobs = [e for e in entries if e[0] != GITLINK]
    dest.mkdir(parents=True, exist_ok=True)
    if blobs:
        proc = subprocess.Popen(
            ["git", "cat-file", "--batch"],
            cwd=repo,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, **NEUTRAL_GIT_ENV},
        )
        assert proc.stdin is not None and proc.stdout is not None
        request = b"".join(sha.encode() + b"\n" for _, sha, _ in blobs)

        def feed() -> None:  # in a thread: git answers while it is still being asked
            assert proc.stdin is not None
            proc.stdin.write(request)
            proc.stdin.close()

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        try:
            for mode, _sha, name in blobs:
                header = proc.stdout.readline().split()
                size = int(header[2])
                data = proc.stdout.read(size)
                proc.stdout.read(1)  # the newline after each object
                target = dest / name
                target.parent.mkdir(parents=True, exist_ok=True)
                if mode == SYMLINK:
                    os.symlink(os.fsdecode(data), target)
                else:
                    target.write_bytes(data)
                    if mode == EXECUTABLE:
                        target.chmod(0o755)
            feeder.join()
        finally:
            proc.stdout.close()  # on an error too: git, writing to it, then ends
            proc.wait()
    for mode, sha, name in entries:
        if mode != GITLINK:
            continue
        recorded = modules.get(name) or {}
        if name in modules and not recorded.get("commit"):
            (dest / name).mkdir(parents=True, exist_ok=True)  # not initialised when it ran
            continue
        at = str(recorded.get("commit") or sha)
        sub_repo = repo / name
        inner = {k[len(name) + 1 :]: v for k, v in modules.items() if k.startswith(f"{name}/")}
        try:
            if not (sub_repo / ".git").exists():  # else git answers for the outer repository
                raise RebuildError(f"{sub_repo} is not a repository")
            _git(sub_repo, "cat-file", "-e", f"{at}^{{commit}}", neutral=True)
        except (RebuildError, OSError):
            raise RebuildError(
                f"submodule {name} at commit {at[:12]} is not in {sub_repo}: run "
                "`git submodule update --init --recursive` (or fetch that commit there) first"
            ) from None
        export_commit(sub_repo, at, dest / name, inner)


def apply_patch(dest: Path, patch: bytes) -> None:
    """Apply ``patch`` (``git diff --binary``) to the tree at ``dest``, with no enclosing
    repository (git would skip the paths outside its current folder) and no user setting."""
    if not patch:
        return
    try:
        _git(
            dest,
            *("apply", "--binary", "--whitespace=nowarn", "-p1", "-"),
            stdin=patch,
            neutral=True,
            extra={"GIT_CEILING_DIRECTORIES": str(dest.parent)},
        )
    except RebuildError as exc:
        raise RebuildError(f"the recorded patch does not apply: {exc}") from None


def check(dest: Path, files: Mapping[str, str | None], converted_paths: Iterable[str] = ()) -> None:
    """Make the CRLF files' line ends and check every recorded hash in ``dest``.

    A file recorded with CRLF line ends that git stored with LF is rebuilt with LF: its
    CRLF form is written when (and only when) it hashes to the recorded bytes."""
    filtered = set(converted_paths)
    for name, want in files.items():
        path = dest / name_path(name)
        have = file_entry(path)
        if have == want:
            continue
        if want is not None and len(want.split()) != 2:
            raise RebuildError(f"the record of {name} is not a file hash ({want!r})")
        if want is not None and have is not None and not path.is_symlink():
            crlf = _crlf_form(path.read_bytes(), want)
            if crlf is not None:
                path.write_bytes(crlf)
                continue
            if want.split()[1] == have.split()[1]:  # the same bytes, another mode
                path.chmod(0o755 if want.startswith(EXECUTABLE) else 0o644)
                continue
        why = (
            "the run had no such file"
            if want is None
            else "it is missing"
            if have is None
            else "its bytes differ from the run's"
        )
        hint = (
            " (it passes through a git filter, such as LFS, whose content is not in the commit)"
            if name in filtered
            else ""
        )
        raise RebuildError(f"the rebuilt code does not match the run's at {name}: {why}{hint}")


def _crlf_form(data: bytes, want: str) -> bytes | None:
    """The bytes of ``data`` with CRLF line ends that hash to ``want``, if any. Git's
    conversion is not one rule: a stored CR before a line end (``\\r\\r\\n`` written
    with CRLF) is kept, so each way of turning LF into CRLF is tried, and only bytes
    with the recorded hash are ever written."""
    forms = (
        data.replace(b"\n", b"\r\n"),  # every LF (a stored CR before it kept)
        data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"),  # CRLF or LF alike
        re.sub(rb"(?<!\r)\n", b"\r\n", data),  # the lone LFs only
    )
    for form in forms:
        if f"{want.split()[0]} {hashlib.sha256(form).hexdigest()}" == want:
            return form
    return None


def rebuild(
    repo: Path,
    commit: str,
    dest: Path,
    patch: bytes,
    record: Mapping[str, Any],
) -> None:
    """Write the run's code into the new folder ``dest``: the commit's tree, its
    submodules, the patch, then :func:`check` against ``record`` (the ``git`` part of
    ``env.yaml``). Raises :class:`RebuildError` (and removes ``dest``) on any difference."""
    try:
        export_commit(repo, commit, dest, record.get("submodules") or {})
        apply_patch(dest, patch)
        smudge(repo, commit, dest, record)
        check(dest, record.get("files") or {}, record.get("filtered") or ())
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise


def smudge(repo: Path, commit: str, dest: Path, record: Mapping[str, Any]) -> None:
    """Give the files a git ``filter`` writes (LFS) the bytes a checkout writes: the
    commit's object through the repository's own filter (``git cat-file --filters``,
    with the user's configuration, where such filters are set up), kept only where
    they hash to the recorded bytes. A filtered file the run had changed stays as the
    patch left it, and :func:`check` refuses it."""
    files = record.get("files") or {}
    for name in record.get("filtered") or ():
        want = files.get(name)
        path = dest / name_path(name)
        if want is None or file_entry(path) == want:
            continue
        proc = subprocess.run(
            ["git", "cat-file", "--filters", f"{commit}:{name_path(name)}"],
            cwd=repo,
            capture_output=True,
        )
        if proc.returncode == 0 and want.endswith(hashlib.sha256(proc.stdout).hexdigest()):
            path.write_bytes(proc.stdout)


def refusals(record: Mapping[str, Any]) -> list[str]:
    """What in a ``git`` record makes its code impossible to rebuild, one line each."""
    out = []
    for name, state in (record.get("submodules") or {}).items():
        if isinstance(state, Mapping) and state.get("dirty"):
            out.append(
                f"submodule {name} had uncommitted changes, which no patch records: "
                "commit them in the submodule and run again"
            )
    return out


def _tree(repo: Path, commit: str) -> dict[str, tuple[str, str]]:
    """``{path: (mode, object id)}`` of every entry of ``commit``'s tree."""
    out = {}
    listing = _git(repo, "ls-tree", "-r", "-z", "--full-tree", commit, neutral=True)
    for entry in listing.split(b"\0"):
        if entry:
            meta, name = entry.split(b"\t", 1)
            mode, _kind, sha = meta.decode().split()
            out[os.fsdecode(name)] = (mode, sha)
    return out


def verify_tree(repo: Path, commit: str, dest: Path, record: Mapping[str, Any]) -> None:
    """Check that the folder ``dest`` holds exactly the run's code: every file of
    ``commit`` that the run did not change with the committed bytes and mode, every
    recorded file with its recorded hash, each submodule likewise, and nothing else.

    This is how a code snapshot or a rebuilt tree kept from an earlier reproduce is
    trusted again: a file edited or added there since is a :class:`RebuildError`."""
    files = {name_path(k): v for k, v in (record.get("files") or {}).items()}
    modules = record.get("submodules") or {}
    check(dest, record.get("files") or {}, record.get("filtered") or ())
    tree = _tree(repo, commit)
    unchanged = [(n, m, sha) for n, (m, sha) in tree.items() if n not in files and m != GITLINK]
    plain = [n for n, m, _ in unchanged if m != SYMLINK]
    hashed = (
        _git(
            dest,
            "hash-object",
            "--no-filters",
            "--stdin-paths",
            stdin=b"".join(os.fsencode(dest / n) + b"\n" for n in plain),  # absolute: git
            # would take a relative path from the top of a repository that holds `dest`
            neutral=True,
        ).split()
        if plain
        else []
    )
    ids = dict(zip(plain, (h.decode() for h in hashed), strict=True))
    for name, mode, sha in unchanged:
        path = dest / name
        if mode == SYMLINK:
            link = _git(repo, "cat-file", "blob", sha, neutral=True)
            same = path.is_symlink() and os.fsencode(os.readlink(path)) == link
        else:
            same = ids.get(name) == sha and (mode == EXECUTABLE) == os.access(path, os.X_OK)
        if not same:
            raise RebuildError(f"the code at {dest} differs from the run's at {name}")
    for name, (mode, sha) in tree.items():
        if mode != GITLINK:
            continue
        if name in modules and not (modules.get(name) or {}).get("commit"):
            if (dest / name).is_dir() and any((dest / name).iterdir()):  # ran empty
                raise RebuildError(f"the code at {dest} holds files in {name}, which ran empty")
            continue
        if not (repo / name / ".git").exists():  # else git answers for the outer repository
            raise RebuildError(f"submodule {name} is not in {repo / name}: cannot check it")
        at = str((modules.get(name) or {}).get("commit") or sha)
        inner = {k[len(name) + 1 :]: v for k, v in modules.items() if k.startswith(f"{name}/")}
        verify_tree(repo / name, at, dest / name, {"submodules": inner})
    expected = {n for n, (m, _) in tree.items() if m != GITLINK}
    expected = (expected - {n for n, v in files.items() if v is None}) | {
        n for n, v in files.items() if v is not None
    }
    prefixes = tuple(f"{n}/" for n, (m, _) in tree.items() if m == GITLINK)
    for path in dest.rglob("*"):
        if (path.is_dir() and not path.is_symlink()) or "__pycache__" in path.parts:
            continue  # Python's caches of the code it ran from here: made, not code
        name = path.relative_to(dest).as_posix()
        if name not in expected and not name.startswith(prefixes):
            raise RebuildError(f"the code at {dest} holds {name}, which the run did not have")
