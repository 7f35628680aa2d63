"""What decided a run's config, recorded so that ``runlab reproduce`` can start it again
exactly: ``metadata/inputs.yaml`` (and its JSON twin).

The resolved config (``config.yaml``) says what the task saw; this record says how it
was made, which a rerun needs and a resolved config cannot give back:

``task``, ``cwd``
    the task file and the working folder, relative to the code's git root where inside it;
``config``
    the primary config folder (``path``, and ``in_code``: relative to the git root, or
    ``None`` outside it, where ``sha256`` fingerprints its YAML files), its ``name``,
    whether they came from the decorator or the command line (``given``), and the
    folders added with ``--config-dir`` (``dirs``, each recorded the same way);
``overrides``
    the job's own overrides (``task``: ``+``/``~`` forms kept) and the ``hydra.*`` ones
    the user gave (``hydra``), without the ones runlab adds;
``multirun``
    ``None`` for a single run, else the job's ``num`` and ``id`` in its sweep and the
    sweep's command-line arguments;
``env``
    each environment variable the config reads (``${oc.env:NAME}``): its ``value``
    (redacted where it looks like a credential, as every record is) and its ``sha256``
    (``None`` when it was not set), so that a rerun can check it without storing it.

Written once, by the run's first attempt: a reopened run keeps the inputs it was made with.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

INPUTS_FILE = "inputs.yaml"

# Set by `runlab reproduce` for its rerun: the config file (JSON) of the run reproduced,
# which the config composed now must equal before the task may run.
EXPECT_CONFIG_ENV = "RUNLAB_EXPECT_CONFIG"
# How the rerun says it refused to start (exit 2): `runlab reproduce` reads it.
REFUSED = "not a reproduction, so nothing ran: "

# Hydra's flags that name the config: (long, short).
CONFIG_FLAGS = {
    "--config-path": "path",
    "-cp": "path",
    "--config-name": "name",
    "-cn": "name",
    "--config-dir": "dir",
    "-cd": "dir",
}

_ENV_REFERENCE = re.compile(r"\$\{(?:oc\.env|env):\s*['\"]?([A-Za-z_][A-Za-z0-9_]*)")


def config_flags(argv: Sequence[str]) -> dict[str, list[str]]:
    """The values of ``--config-path``/``--config-name``/``--config-dir`` (any form) in
    ``argv``, as given: ``{"path": [...], "name": [...], "dir": [...]}``."""
    out: dict[str, list[str]] = {"path": [], "name": [], "dir": []}
    i = 0
    while i < len(argv):
        arg = argv[i]
        flag, eq, value = arg.partition("=")
        if flag in CONFIG_FLAGS and flag.startswith("--") and eq:
            out[CONFIG_FLAGS[flag]].append(value)
        elif arg in CONFIG_FLAGS and i + 1 < len(argv):
            out[CONFIG_FLAGS[arg]].append(argv[i + 1])
            i += 1
        i += 1
    return out


def env_names(config: Any) -> list[str]:
    """The environment variables an unresolved config reads, sorted."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, Mapping):
            for v in value.values():
                walk(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)
        elif isinstance(value, str) and "${" in value:
            found.update(_ENV_REFERENCE.findall(value))

    walk(config)
    return sorted(found)


def env_record(names: Iterable[str], environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``{NAME: {"value": ..., "sha256": ...}}``; both ``None`` for a variable not set."""
    environ = os.environ if environ is None else environ
    out: dict[str, Any] = {}
    for name in names:
        value = environ.get(name)
        digest = None if value is None else hashlib.sha256(value.encode()).hexdigest()
        out[name] = {"value": value, "sha256": digest}
    return out


def yaml_digest(folder: Path) -> str | None:
    """A sha256 over the names and bytes of every file under ``folder`` (``None``: gone)."""
    if not folder.is_dir():
        return None
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if "__pycache__" in path.parts:
            continue
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def place(path: Path, root: Path | None) -> dict[str, Any]:
    """Where a folder is: ``in_code`` (relative to ``root``) or, outside it, a digest."""
    path = Path(path)
    if root is not None:
        try:
            return {"path": str(path), "in_code": path.resolve().relative_to(root).as_posix()}
        except (OSError, ValueError):
            pass
    return {"path": str(path), "in_code": None, "sha256": yaml_digest(path)}


def capture(
    config: Any,
    task_file: Path,
    argv: Sequence[str],
    injected: Sequence[str],
    code_root: Path | None,
) -> dict[str, Any]:
    """The inputs record of the Hydra job now running (call inside the task function).

    ``config`` is the job's unresolved config; ``argv`` the command line as typed (no
    program); ``injected`` the overrides runlab added to it; ``code_root`` the git root
    of the task's code (``None`` outside git).
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    hc = HydraConfig.get()
    flags = config_flags(argv)
    sources = [
        {"path": s.path, "schema": s.schema, "provider": s.provider}
        for s in hc.runtime.config_sources
    ]
    main = next((s for s in sources if s.get("provider") == "main"), None)
    dirs = [
        s["path"] for s in sources if s.get("provider") == "command-line" and s["schema"] == "file"
    ]
    config_part: dict[str, Any] = {
        "name": hc.job.config_name,
        "given": {"path": bool(flags["path"]), "name": bool(flags["name"])},
    }
    if main is not None and main.get("schema") == "file":
        config_part.update(place(Path(main["path"]), code_root))
    elif main is not None:
        config_part.update({"path": f"{main['schema']}://{main['path']}", "in_code": None})
    config_part["dirs"] = [place(Path(d), code_root) for d in dirs]
    injected_set = set(injected)
    hydra_overrides = [
        o
        for o in hc.overrides.hydra
        if o not in injected_set and not o.startswith(("hydra.mode=", "hydra.sweep.dir="))
    ]
    multirun = None
    if hc.mode == RunMode.MULTIRUN:
        sweep = [a for a in argv[1:] if a not in ("-m", "--multirun")]
        multirun = {"num": int(hc.job.num), "id": str(hc.job.id), "arguments": sweep}
    raw = OmegaConf.to_container(config, resolve=False)
    return {
        "task": _relative(task_file, code_root),
        "cwd": _relative(Path.cwd(), code_root),
        "config": config_part,
        "overrides": {"task": list(hc.overrides.task), "hydra": hydra_overrides},
        "multirun": multirun,
        "env": env_record(env_names(raw)),
    }


def _relative(path: Path, root: Path | None) -> dict[str, Any]:
    path = Path(path).absolute()
    in_code = None
    if root is not None:
        try:
            in_code = path.resolve().relative_to(root).as_posix()
        except (OSError, ValueError):
            pass
    return {"path": str(path), "in_code": in_code}
