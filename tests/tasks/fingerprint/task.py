"""The fingerprint task of tests/test_reproduce_matrix.py: its metrics are hashes of
everything that should decide a run's outcome, so two runs are ``identical`` only when
they ran the same code, the same config and the same environment.

It logs one row to ``metrics/fp.jsonl`` holding integers below 2**52 (exact in JSON) taken
from sha256 of:

* ``code``: every file of its code tree (the directory up from this file holding
  ``FINGERPRINT_ROOT``, else this file's directory), by relative path: the bytes of a
  file with its executable bit, the target of a symlink; ``.git``, ``__pycache__`` and the
  logs directory are skipped;
* ``config``: its resolved config as sorted JSON, without the ``runlab`` key;
* ``env``: the values of the environment variables its config reads (``FP_SCALE``);
* ``job``: Hydra's ``job.name``, ``job.chdir`` and ``job.num`` (``hydra.job.*`` overrides;
  the number of a job of a ``-m`` sweep). They are read here, not interpolated in the
  config (``${hydra:job.name}``), because ``runlab submit`` and ``runlab tune`` resolve the
  config outside Hydra's run, where ``${hydra:...}`` fails.

``all`` hashes the four together. The inputs themselves are written to
``fingerprint.json`` in the run directory, so a test can say which input differed.
A reopened run (``runlab.run_id=N``) that already logged its row logs nothing more.
"""

import hashlib
import json
import os
import stat
from pathlib import Path

from omegaconf import OmegaConf

import runlab

ENV_READ = ("FP_SCALE",)
SKIP = {".git", "__pycache__"}


def code_root() -> Path:
    here = Path(__file__).resolve().parent
    for place in (here, *here.parents):
        if (place / "FINGERPRINT_ROOT").is_file():
            return place
    return here


def code_tree(root: Path, logs: Path) -> dict[str, str]:
    """``relative path -> description`` of every file under ``root`` (symlinks not followed)."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        keep = []
        for name in sorted(dirnames):
            path = here / name
            if name in SKIP or path.resolve() == logs:
                continue
            if path.is_symlink():
                filenames.append(name)  # a link to a directory: its target, not its files
                continue
            keep.append(name)
        dirnames[:] = keep
        for name in sorted(filenames):
            path = here / name
            rel = path.relative_to(root).as_posix()
            if name in SKIP:
                continue
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                out[rel] = f"link:{os.readlink(path)}"
            elif stat.S_ISREG(info.st_mode):
                exe = "x" if info.st_mode & 0o111 else "-"
                out[rel] = f"file:{exe}:{hashlib.sha256(path.read_bytes()).hexdigest()}"
            else:
                out[rel] = f"other:{stat.S_IFMT(info.st_mode)}"
    return out


def number(value: object) -> int:
    text = json.dumps(value, sort_keys=True)
    return int(hashlib.sha256(text.encode()).hexdigest()[:13], 16)  # 52 bits


def hydra_job() -> dict[str, object]:
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}
    job = HydraConfig.get().job
    return {key: OmegaConf.select(job, key, default=None) for key in ("name", "chdir", "num")}


@runlab.launch(config_path="conf", config_name="fingerprint")
def main(ctx: runlab.Context) -> None:
    if (ctx.run_dir / "fingerprint.json").exists():  # reopened: this run's row is logged
        return
    config = OmegaConf.to_container(ctx.config, resolve=True)
    logs = Path(str(config.get("runlab", {}).get("logs") or "logs")).resolve()
    config.pop("runlab", None)
    inputs = {
        "code": code_tree(code_root(), logs),
        "config": config,
        "env": {name: os.environ.get(name) for name in ENV_READ},
        "job": hydra_job(),
    }
    (ctx.run_dir / "fingerprint.json").write_text(json.dumps(inputs, indent=1, sort_keys=True))
    row = {key: number(value) for key, value in inputs.items()}
    row["all"] = number(inputs)
    ctx.logger.log_metrics(row, name="fp", step=0)


if __name__ == "__main__":
    main()
