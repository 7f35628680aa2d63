"""``pixi run init NAME`` (without pixi: ``bash scripts/init NAME``): make a fresh clone of the runlab template your own project.

- ``pixi.toml``: ``name`` in ``[workspace]`` becomes NAME, its ``description`` a
  neutral one (line edits: comments and layout stay as they are);
- ``README.md``: the first heading becomes ``# NAME``, the rest stays;
- ``CITATION.cff``: title NAME, the template's authors replaced by a placeholder
  for yours, a neutral abstract (how to cite *your* project, not the template);
- ``LICENSE``: the copyright line names this year and "The NAME authors" (the
  license itself, MIT as pyproject declares, stays: change both if you relicense);
- ``logs/`` and ``reports/`` are deleted (the template's runs are not yours);
- ``runlab`` stays a dependency (``[pypi-dependencies]``, editable from ``src/``).

Running it twice is harmless. Nothing is committed unless ``--commit`` is given.
Only the standard library is used, so it runs before any environment is installed.
"""

from __future__ import annotations

import argparse
import datetime
import re
import shutil
import subprocess
import sys
from pathlib import Path

NAME_RE = re.compile(r"[a-z][a-z0-9_-]*")
ROOT = Path(__file__).resolve().parents[1]
TABLE_RE = re.compile(r"^\s*\[")  # any table header: [x], [[x]], [x.y]
RUNLAB_DEP_RE = re.compile(r'^\s*runlab\s*=\s*\{[^}]*path\s*=\s*"\."', re.MULTILINE)


# The files init rewrites (and commits with --commit).
OWNED_FILES = ("pixi.toml", "README.md", "CITATION.cff", "LICENSE")


class InitError(Exception):
    """A clear reason to stop without changing anything."""


def description_for(name: str) -> str:
    return f"{name}: machine-learning experiments with replicable runs (from the runlab template)."


def check_name(name: str) -> None:
    if not NAME_RE.fullmatch(name):
        raise InitError(
            f"{name!r} is not a valid project name: use lowercase letters, digits, '-' and '_', "
            "starting with a letter (e.g. my-project)"
        )


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def rename_manifest(text: str, name: str) -> str:
    """``text`` (pixi.toml) with ``[workspace]``'s name and description set; all else kept."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.strip() == "[workspace]"), None)
    if start is None:
        raise InitError("pixi.toml has no [workspace] table")
    end = next((i for i in range(start + 1, len(lines)) if TABLE_RE.match(lines[i])), len(lines))
    values = {"name": name, "description": description_for(name)}
    found: dict[str, int] = {}
    for i in range(start + 1, end):
        match = re.match(r'^(\s*)(name|description)(\s*=\s*)"(?:[^"\\]|\\.)*"(.*)$', lines[i])
        if match and match.group(2) not in found:
            indent, key, eq, rest = match.groups()
            newline = "\n" if lines[i].endswith("\n") else ""
            rest = rest.rstrip("\r\n")
            lines[i] = f"{indent}{key}{eq}{_toml_string(values[key])}{rest}{newline}"
            found[key] = i
    if "name" not in found:
        raise InitError('pixi.toml: no `name = "..."` line in [workspace]')
    if "description" not in found:
        lines.insert(found["name"] + 1, f"description = {_toml_string(values['description'])}\n")
    return "".join(lines)


def retitle_readme(text: str, name: str) -> str:
    """``text`` (README.md) with its first ``# `` heading replaced by ``# NAME``."""
    heading = re.compile(r"^# .*$", re.MULTILINE)
    if heading.search(text):
        return heading.sub(f"# {name}", text, count=1)
    return f"# {name}\n\n{text}"


CFF_TOP_KEY = re.compile(r"^[A-Za-z][\w-]*:")


def _replace_cff_key(lines: list[str], key: str, block: list[str]) -> list[str]:
    """``lines`` with the top-level ``key`` (its value lines included) replaced by ``block``."""
    start = next((i for i, line in enumerate(lines) if line.startswith(f"{key}:")), None)
    if start is None:
        return [*lines, *block]
    end = next((i for i in range(start + 1, len(lines)) if CFF_TOP_KEY.match(lines[i])), len(lines))
    return [*lines[:start], *block, *lines[end:]]


def recite(text: str, name: str) -> str:
    """``text`` (CITATION.cff) made the project ``name``'s: title, authors, abstract."""
    lines = text.splitlines()
    lines = _replace_cff_key(lines, "title", [f'title: "{name}"'])
    lines = _replace_cff_key(
        lines,
        "authors",
        [
            "authors:",
            "  # Replace with your names: given-names, family-names, orcid, affiliation.",
            f'  - name: "The {name} authors"',
        ],
    )
    lines = _replace_cff_key(
        lines,
        "abstract",
        [f'abstract: "{name}: machine-learning experiments with replicable runs."'],
    )
    return "\n".join(lines) + "\n"


def relicense(text: str, name: str, year: int) -> str:
    """``text`` (LICENSE) with its copyright line naming ``year`` and the project's authors."""
    line = re.compile(r"^Copyright \(c\) .*$", re.MULTILINE)
    return line.sub(f"Copyright (c) {year} The {name} authors", text, count=1)


def _write_if_changed(path: Path, new: str, dry_run: bool) -> bool:
    if path.read_text() == new:
        return False
    if not dry_run:
        path.write_text(new)
    return True


def init(root: Path, name: str, commit: bool = False, dry_run: bool = False) -> list[str]:
    """Make the clone at ``root`` the project ``name``; returns what was (or would be) done."""
    check_name(name)
    manifest, readme = root / "pixi.toml", root / "README.md"
    if not manifest.is_file():
        raise InitError(f"no pixi.toml in {root}: run this from the clone of the template")
    manifest_text = manifest.read_text()
    new_manifest = rename_manifest(manifest_text, name)
    if not RUNLAB_DEP_RE.search(new_manifest):
        print('note: pixi.toml does not list runlab (path = ".") as a dependency', file=sys.stderr)

    done: list[str] = []
    if _write_if_changed(manifest, new_manifest, dry_run):
        done.append(f"pixi.toml: workspace name {name!r}, new description")
    if readme.is_file() and _write_if_changed(
        readme, retitle_readme(readme.read_text(), name), dry_run
    ):
        done.append(f"README.md: title '# {name}'")
    citation, license_ = root / "CITATION.cff", root / "LICENSE"
    if citation.is_file() and _write_if_changed(
        citation, recite(citation.read_text(), name), dry_run
    ):
        done.append("CITATION.cff: title, authors (a placeholder for yours), abstract")
    year = datetime.date.today().year
    if license_.is_file() and _write_if_changed(
        license_, relicense(license_.read_text(), name, year), dry_run
    ):
        done.append(f"LICENSE: Copyright (c) {year} The {name} authors")
    for directory in ("logs", "reports"):
        path = root / directory
        if path.is_symlink() or path.is_file():
            done.append(f"deleted {directory}")
            if not dry_run:
                path.unlink()
        elif path.is_dir():
            done.append(f"deleted {directory}/")
            if not dry_run:
                shutil.rmtree(path)
    if commit and not dry_run:
        done += _commit(root, name)
    return done


def _commit(root: Path, name: str) -> list[str]:
    files = [f for f in OWNED_FILES if (root / f).exists()]
    git = ["git", "-C", str(root)]
    if subprocess.run([*git, "rev-parse", "--git-dir"], capture_output=True).returncode != 0:
        raise InitError(f"--commit: {root} is not a git repository")
    changed = subprocess.run(
        [*git, "status", "--porcelain", "--", *files], capture_output=True, text=True
    )
    if not changed.stdout.strip():
        return []
    subprocess.run([*git, "add", "--", *files], check=True)
    # Only these files: other changes in the work tree are not swept into the commit.
    subprocess.run(
        [*git, "commit", "-q", "-m", f"Start {name} from the runlab template", "--", *files],
        check=True,
    )
    return [f"committed {', '.join(files)}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pixi run init",
        description="Turn a fresh clone of the runlab template into your own project "
        "(without pixi: bash scripts/init NAME).",
    )
    parser.add_argument("name", help="the project's name: lowercase letters, digits, - and _")
    parser.add_argument("--commit", action="store_true", help="commit the files it changed")
    parser.add_argument(
        "--dry-run", action="store_true", help="print what would change, change nothing"
    )
    parser.add_argument(
        "--root", type=Path, default=ROOT, help="the clone to change (default: this script's)"
    )
    args = parser.parse_args(argv)
    try:
        done = init(args.root.resolve(), args.name, commit=args.commit, dry_run=args.dry_run)
    except InitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    prefix = "would change" if args.dry_run else "changed"
    for line in done:
        print(f"{prefix}: {line}")
    if not done:
        print(f"nothing to do: {args.root.resolve()} is already the project {args.name!r}")
    if not args.dry_run:
        print(
            "runlab stays a dependency; next: pixi install && pixi run test "
            "(with pip: pip install -e '.[dev]' && pytest)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
