"""Check ``pixi.toml`` against pixi's JSON schema, offline; exit 1 naming each problem.

The schema is looked for at ``$PIXI_SCHEMA``, then ``../shared/pixi/schema.json``
beside the repository, then ``.pixi/schema.json`` (save pixi's published schema
there to check offline). When ``pixi`` is on PATH, ``pixi info`` also parses the
manifest with pixi's own, stricter reader. With neither, it says so and exits 0:
there is nothing to check against.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def schema_path() -> Path | None:
    candidates = [
        os.environ.get("PIXI_SCHEMA"),
        ROOT.parent / "shared" / "pixi" / "schema.json",
        ROOT / ".pixi" / "schema.json",
    ]
    return next((Path(c) for c in candidates if c and Path(c).is_file()), None)


def schema_problems(manifest: dict, schema_file: Path) -> list[str]:
    import jsonschema

    schema = json.loads(schema_file.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [
        f"pixi.toml: {'.'.join(map(str, e.path)) or '<root>'}: {e.message[:300]}"
        for e in sorted(validator.iter_errors(manifest), key=lambda e: list(e.path))
    ]


def main() -> int:
    manifest_file = ROOT / "pixi.toml"
    try:
        manifest = tomllib.loads(manifest_file.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        print(f"pixi.toml: cannot be read as TOML: {exc}", file=sys.stderr)
        return 1
    problems: list[str] = []
    checked: list[str] = []
    schema_file = schema_path()
    if schema_file is not None:
        problems += schema_problems(manifest, schema_file)
        checked.append(f"schema {schema_file}")
    pixi = shutil.which("pixi")
    if pixi is not None:
        proc = subprocess.run(
            [pixi, "info", "--manifest-path", str(manifest_file)], capture_output=True, text=True
        )
        checked.append("pixi info")
        if proc.returncode != 0:
            problems.append(f"pixi.toml: pixi cannot read it: {proc.stderr.strip()[-500:]}")
    if not checked:
        print(
            "pixi.toml: not checked: no pixi on PATH and no schema (set PIXI_SCHEMA or save "
            "pixi's schema as .pixi/schema.json)",
            file=sys.stderr,
        )
        return 0
    for line in problems:
        print(line, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
