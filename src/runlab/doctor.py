"""``runlab doctor``'s checks: can this machine run the project, and what to fix if not.

Each check is one function returning a :class:`Check` with a verdict:

- ``ok``: works;
- ``warn``: works, but something deserves attention (a dirty work tree, a CUDA
  minor-version mismatch);
- ``fail``: something the project relies on cannot work here (an unwritable
  logs directory, an unreachable SLURM controller, a driver too old for the
  environment's CUDA);
- ``skip``: the check cannot apply here (no GPU on a CI machine, not running
  under pixi), with the reason.

The checks never raise and stay cheap: external tools run with a timeout, and
torch is imported only when the driver reports a GPU (its version and CUDA come
from ``torch/version.py`` without importing torch).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import sys
import tempfile
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from runlab.logs import default_path
from runlab.record import distributed
from runlab.sweep import backends
from runlab.sweep.backends.base import first_line as _first_line
from runlab.sweep.backends.base import probe as _run

VERDICTS = ("ok", "warn", "fail", "skip")

# Check names (stable: `--json` output and `--require` refer to them).
PIXI_ENV = "pixi environment"
PIXI_LOCK = "pixi.lock"
GIT = "git"
GPUS = "gpus"
CUDA_VERSIONS = "cuda versions"
TORCH_GPU = "torch gpu"
CUDA_OVERRIDE = "cuda override"
LOGS = "logs"

# `--require X`: the checks that must reach one of the verdicts given (and each cluster
# scheduler's own check: `--require slurm`, `--require sge`, see requirements()).
REQUIREMENTS: dict[str, dict[str, tuple[str, ...]]] = {
    "gpu": {GPUS: ("ok",), TORCH_GPU: ("ok",)},
    "pixi": {PIXI_ENV: ("ok",), PIXI_LOCK: ("ok", "warn")},
}


def requirements() -> dict[str, dict[str, tuple[str, ...]]]:
    """What each ``--require`` name asks: the fixed ones, and one per cluster scheduler."""
    return {**REQUIREMENTS, **{n: {n: ("ok", "warn")} for n in scheduler_names()}}


PIXI_LOCK_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Check:
    """One line of the checklist."""

    name: str
    verdict: str  # one of VERDICTS
    detail: str
    fix: str = ""

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict {self.verdict!r} is none of {VERDICTS}")


@dataclass(frozen=True)
class GpuProbe:
    """What the NVIDIA driver reports (``nvidia-smi``)."""

    gpus: list[dict[str, str]] = field(default_factory=list)  # name, driver, memory
    driver_cuda: str | None = None  # the highest CUDA the driver supports, "12.4"
    driver: str | None = None
    error: str | None = None  # nvidia-smi present but failing
    reason: str | None = None  # why there is no GPU, when there is none

    @property
    def present(self) -> bool:
        return bool(self.gpus)


@dataclass(frozen=True)
class TorchProbe:
    """The installed torch: version and CUDA build read without importing it."""

    installed: bool
    version: str | None = None
    cuda: str | None = None  # torch.version.cuda: None for CPU builds
    error: str | None = None


@dataclass(frozen=True)
class TorchCuda:
    """What an imported torch sees of the GPUs."""

    available: bool
    devices: list[str] = field(default_factory=list)
    error: str | None = None


# ---------------------------------------------------------------- helpers


def version_tuple(text: str | None) -> tuple[int, ...]:
    """``"12.9.*"`` -> ``(12, 9)``; ``None`` or no digits -> ``()``."""
    return tuple(int(p) for p in re.findall(r"\d+", text or ""))


def _short(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


def project_root(start: Path | None = None) -> Path:
    """The nearest directory holding ``pixi.toml`` from ``start`` up, else ``start``."""
    start = (start or Path.cwd()).resolve()
    for path in (start, *start.parents):
        if (path / "pixi.toml").is_file():
            return path
    return start


def load_manifest(root: Path) -> dict[str, Any] | None:
    try:
        with (root / "pixi.toml").open("rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError):
        return None


def cuda_requirement(manifest: Mapping[str, Any] | None) -> tuple[str, str] | None:
    """``(environment, cuda)`` for the manifest's CUDA environment, e.g. ``("cuda", "12.9")``.

    The CUDA is the ``cuda-version`` a feature pins, else the ``cuda`` a rich
    platform declares; the environment is the first one using that feature.
    """
    if not manifest:
        return None
    feats = manifest.get("feature", {}) or {}
    cuda_feats = {
        name: str(spec.get("dependencies", {}).get("cuda-version", ""))
        for name, spec in feats.items()
        if isinstance(spec, dict)
        and ({"cuda-version", "pytorch-gpu"} & set(spec.get("dependencies", {}) or {}))
    }
    declared = None
    for entry in manifest.get("workspace", {}).get("platforms", []) or []:
        if isinstance(entry, dict) and entry.get("cuda"):
            cuda = entry["cuda"]
            declared = str(cuda.get("driver") if isinstance(cuda, dict) else cuda)
    if not cuda_feats and declared is None:
        return None
    pinned = max((version_tuple(v) for v in cuda_feats.values()), default=())
    cuda = _short(pinned[:2]) if pinned else (declared or "12")
    env_name = "cuda"
    for name, spec in (manifest.get("environments", {}) or {}).items():
        used = spec if isinstance(spec, list) else (spec or {}).get("features", [])
        if set(used) & set(cuda_feats):
            env_name = name
            break
    return env_name, cuda


def conda_cuda_version(prefix: str | os.PathLike[str] | None = None) -> str | None:
    """The ``cuda-version`` conda package of the environment at ``prefix`` ($CONDA_PREFIX)."""
    prefix = prefix if prefix is not None else os.environ.get("CONDA_PREFIX")
    if not prefix:
        return None
    meta = Path(prefix) / "conda-meta"
    for entry in sorted(meta.glob("cuda-version-*.json")):
        parts = entry.stem.rsplit("-", 2)  # cuda-version-12.9-3
        if len(parts) == 3 and parts[0] == "cuda-version":
            return parts[1]
    return None


def probe_gpus() -> GpuProbe:
    """Ask ``nvidia-smi`` for the GPUs, the driver and the CUDA it supports."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return GpuProbe(reason="nvidia-smi not found: no NVIDIA driver on this machine")
    code, out, err = _run(
        [exe, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
    )
    message = _first_line(err) or _first_line(out)
    if code != 0:
        if "no devices were found" in (out + err).lower():
            return GpuProbe(reason="the NVIDIA driver is installed but sees no GPU")
        return GpuProbe(error=message or f"nvidia-smi exited {code}")
    gpus = []
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 3 and parts[0]:
            gpus.append({"name": parts[0], "driver": parts[1], "memory": parts[2]})
    if not gpus:
        return GpuProbe(reason="nvidia-smi lists no GPU")
    # The CUDA version is only in the banner of plain `nvidia-smi`.
    _, banner, _ = _run([exe])
    match = re.search(r"CUDA Version\s*:\s*([\d.]+)", banner)
    return GpuProbe(
        gpus=gpus,
        driver=gpus[0]["driver"],
        driver_cuda=match.group(1) if match else None,
    )


def probe_torch() -> TorchProbe:
    """torch's version and CUDA build from ``torch/version.py``, without importing torch."""
    try:
        spec = importlib.util.find_spec("torch")
    except (ImportError, ValueError) as exc:
        return TorchProbe(installed=False, error=str(exc))
    if spec is None or not spec.submodule_search_locations:
        return TorchProbe(installed=False)
    version_file = Path(next(iter(spec.submodule_search_locations))) / "version.py"
    namespace: dict[str, Any] = {}
    try:
        exec(compile(version_file.read_text(), str(version_file), "exec"), namespace)
    except Exception as exc:  # an odd install: say so, do not raise
        return TorchProbe(installed=True, error=f"cannot read {version_file}: {exc}")
    return TorchProbe(
        installed=True,
        version=str(namespace.get("__version__")) if namespace.get("__version__") else None,
        cuda=namespace.get("cuda"),
    )


def probe_torch_cuda() -> TorchCuda:
    """Import torch and ask whether it sees a GPU (slow: only when the driver has one)."""
    try:
        import torch

        if not torch.cuda.is_available():
            return TorchCuda(available=False)
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        return TorchCuda(available=True, devices=names)
    except Exception as exc:
        return TorchCuda(available=False, error=f"{type(exc).__name__}: {exc}")


# ---------------------------------------------------------------- the checks


def check_pixi_environment(root: Path, env: Mapping[str, str] | None = None) -> Check:
    """Is this process running in a pixi environment, and in this project's?"""
    env = os.environ if env is None else env
    name = env.get("PIXI_ENVIRONMENT_NAME")
    if not name:
        match = re.search(r"[/\\]\.pixi[/\\]envs[/\\]([^/\\]+)", sys.prefix)
        if match:
            return Check(
                PIXI_ENV,
                "warn",
                f"the python of pixi environment {match.group(1)!r} runs without pixi's "
                "activation (PIXI_ENVIRONMENT_NAME unset)",
                "run through pixi: `pixi run doctor`, or `pixi shell` first",
            )
        return Check(
            PIXI_ENV,
            "skip",
            "not running under pixi (PIXI_ENVIRONMENT_NAME unset)",
            "none with pip (this check is pixi's); under pixi, `pixi run doctor` checks the "
            "project's pixi environment",
        )
    project = env.get("PIXI_PROJECT_ROOT")
    if project and Path(project).resolve() != root.resolve():
        return Check(
            PIXI_ENV,
            "warn",
            f"pixi environment {name!r} belongs to {project}, not to {root}",
            f"run pixi from {root} (or `pixi run --manifest-path {root / 'pixi.toml'} ...`)",
        )
    platforms = env.get("PIXI_ENVIRONMENT_PLATFORMS")
    where = f" ({platforms})" if platforms else ""
    return Check(PIXI_ENV, "ok", f"environment {name!r}{where} of {project or root}")


def check_pixi_lock(root: Path, pixi: str | None = None) -> Check:
    """Is ``pixi.lock`` present, and current for ``pixi.toml``?

    With pixi available (``pixi`` on PATH or ``$PIXI_EXE``), ``pixi lock --check``
    decides. Without it only the modification times can be compared, and the
    detail says so.
    """
    manifest, lock = root / "pixi.toml", root / "pixi.lock"
    if not manifest.is_file():
        return Check(PIXI_LOCK, "skip", f"no pixi.toml in {root}", "")
    if not lock.is_file():
        return Check(
            PIXI_LOCK,
            "warn",
            "no pixi.lock: each install solves the environments anew",
            "`pixi lock`, then commit pixi.lock",
        )
    pixi = pixi or os.environ.get("PIXI_EXE") or shutil.which("pixi")
    if pixi:
        code, out, err = _run(
            [pixi, "lock", "--check", "--dry-run"], cwd=root, timeout=PIXI_LOCK_TIMEOUT_S
        )
        if code == 0:
            return Check(PIXI_LOCK, "ok", "present and current for pixi.toml (pixi lock --check)")
        if code is None:
            return Check(PIXI_LOCK, "warn", f"could not check: {err}", "`pixi lock --check`")
        why = _first_line(err) or _first_line(out)
        return Check(
            PIXI_LOCK,
            "warn",
            "out of date for pixi.toml (pixi lock --check)" + (f": {why}" if why else ""),
            "`pixi lock`, then commit pixi.lock (`pixi install --locked` refuses a stale lock)",
        )
    if manifest.stat().st_mtime > lock.stat().st_mtime + 1:
        return Check(
            PIXI_LOCK,
            "warn",
            "pixi.toml was modified after pixi.lock (pixi not on PATH: compared by mtime only)",
            "`pixi lock` where pixi is installed, then commit pixi.lock",
        )
    return Check(
        PIXI_LOCK,
        "ok",
        "present, not older than pixi.toml (pixi not on PATH: compared by mtime only, "
        "`pixi lock --check` decides)",
    )


def check_git(root: Path) -> Check:
    """Is the project a git work tree, clean, at which commit?"""
    git = shutil.which("git")
    if git is None:
        return Check(
            GIT, "warn", "git not found: runs record no commit", "install git (conda-forge: git)"
        )
    code, out, err = _run([git, "rev-parse", "--show-toplevel"], cwd=root)
    if code != 0:
        why = _first_line(err)
        if "dubious ownership" in why:
            return Check(
                GIT,
                "warn",
                why,
                f"git config --global --add safe.directory {root}",
            )
        return Check(
            GIT,
            "warn",
            f"{root} is not a git repository: runs record no commit and cannot be reproduced",
            "git init && git add -A && git commit -m 'Initial commit'",
        )
    top = Path(out.strip())
    code, head, _ = _run([git, "rev-parse", "--short=12", "HEAD"], cwd=top)
    if code != 0:
        return Check(
            GIT,
            "warn",
            f"{top}: no commit yet",
            "git add -A && git commit -m 'Initial commit'",
        )
    _, branch, _ = _run([git, "rev-parse", "--abbrev-ref", "HEAD"], cwd=top)
    branch = branch.strip()
    at = f"{head.strip()} ({'detached HEAD' if branch == 'HEAD' else branch})"
    _, status, _ = _run([git, "status", "--porcelain", "--untracked-files=normal"], cwd=top)
    changed = [line[3:] for line in status.splitlines() if line.strip()]
    if changed:
        shown = ", ".join(changed[:3]) + (
            f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        )
        return Check(
            GIT,
            "warn",
            f"at {at}, {len(changed)} uncommitted change(s): {shown}",
            "commit before launching runs (runs record the diff, but a commit is easier to "
            "reproduce)",
        )
    return Check(GIT, "ok", f"clean at {at}")


def check_gpus(gpu: GpuProbe) -> Check:
    """The GPUs the NVIDIA driver sees."""
    if gpu.error:
        return Check(
            GPUS,
            "fail",
            f"nvidia-smi fails: {gpu.error}",
            "the NVIDIA driver is not working: check `nvidia-smi` (driver loaded? on a GPU node?)",
        )
    if not gpu.present:
        return Check(GPUS, "skip", gpu.reason or "no GPU", "")
    names: dict[str, int] = {}
    for g in gpu.gpus:
        names[g["name"]] = names.get(g["name"], 0) + 1
    listed = ", ".join(f"{n} × {name}" for name, n in names.items())
    cuda = f", CUDA {gpu.driver_cuda}" if gpu.driver_cuda else ""
    return Check(GPUS, "ok", f"{listed} (driver {gpu.driver}{cuda})")


def check_cuda_versions(gpu: GpuProbe, torch: TorchProbe, conda_cuda: str | None) -> Check:
    """The driver's CUDA against the environment's (``cuda-version``, ``torch.version.cuda``).

    A driver of an older major CUDA cannot run the environment's binaries (fail);
    an older minor usually can, through CUDA minor-version compatibility, but
    PTX JIT compilation and newer features need a newer driver (warn).
    """
    if not gpu.present:
        return Check(CUDA_VERSIONS, "skip", gpu.error or gpu.reason or "no GPU", "")
    wanted = {}
    if conda_cuda:
        wanted["cuda-version"] = conda_cuda
    if torch.cuda:
        wanted["torch.version.cuda"] = torch.cuda
    if not wanted:
        build = f"torch {torch.version}" if torch.version else "no torch"
        return Check(
            CUDA_VERSIONS,
            "skip",
            f"the environment has no CUDA ({build}, no cuda-version package)",
            "",
        )
    env_desc = ", ".join(f"{k} {v}" for k, v in wanted.items())
    if not gpu.driver_cuda:
        return Check(
            CUDA_VERSIONS,
            "warn",
            f"nvidia-smi does not say which CUDA driver {gpu.driver} supports; environment: "
            f"{env_desc}",
            "compare by hand with NVIDIA's driver/CUDA table",
        )
    driver = version_tuple(gpu.driver_cuda)[:2]
    need = max(version_tuple(v)[:2] for v in wanted.values())
    if driver >= need:
        return Check(
            CUDA_VERSIONS, "ok", f"driver supports CUDA {gpu.driver_cuda}; environment: {env_desc}"
        )
    if driver[:1] < need[:1]:
        return Check(
            CUDA_VERSIONS,
            "fail",
            f"driver supports CUDA {gpu.driver_cuda}, older than the environment's "
            f"{_short(need)} ({env_desc}): its CUDA {need[0]} binaries cannot run",
            f"use a node with a newer driver, or pin `cuda-version = "
            f'"{_short(driver)}.*"` in pixi.toml and `pixi lock` (with pip: install a torch '
            f"wheel built for CUDA {_short(driver)} or older)",
        )
    return Check(
        CUDA_VERSIONS,
        "warn",
        f"driver supports CUDA {gpu.driver_cuda}, older than the environment's {_short(need)} "
        f"({env_desc}): runs through minor-version compatibility, but PTX JIT and newer "
        "features may fail",
        f'pin `cuda-version = "{_short(driver)}.*"` in pixi.toml and `pixi lock` (with pip: '
        f"a torch wheel built for CUDA {_short(driver)} or older), or update the driver",
    )


def check_torch_gpu(
    gpu: GpuProbe, torch: TorchProbe, sees: TorchCuda | None = None, cuda_env: str = "cuda"
) -> Check:
    """Does torch see the GPU? torch is imported only when the driver reports one."""
    if not torch.installed:
        return Check(TORCH_GPU, "skip", "torch is not installed in this environment", "")
    if torch.error:
        return Check(TORCH_GPU, "warn", torch.error, "reinstall the environment")
    if not gpu.present:
        build = f"CUDA {torch.cuda} build" if torch.cuda else "CPU build"
        why = gpu.error or gpu.reason or "no GPU"
        return Check(TORCH_GPU, "skip", f"{why} (torch {torch.version}, {build})", "")
    if not torch.cuda:
        return Check(
            TORCH_GPU,
            "warn",
            f"torch {torch.version} is a CPU build: the GPUs go unused",
            f"use the CUDA environment: `pixi run -e {cuda_env} ...` (with pip: install a CUDA "
            "build of torch, https://pytorch.org/get-started/locally/)",
        )
    sees = sees if sees is not None else probe_torch_cuda()
    if sees.available:
        return Check(
            TORCH_GPU,
            "ok",
            f"torch {torch.version} (CUDA {torch.cuda}) sees {len(sees.devices)} GPU(s): "
            + ", ".join(dict.fromkeys(sees.devices)),
        )
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    hint = (
        f"CUDA_VISIBLE_DEVICES={visible!r} hides them"
        if visible is not None and visible.strip() in ("", "-1", "none", "NoDevFiles")
        else "check the driver's CUDA against the environment's (line above)"
    )
    return Check(
        TORCH_GPU,
        "fail",
        f"torch {torch.version} (CUDA {torch.cuda}) sees no GPU"
        + (f": {sees.error}" if sees.error else ""),
        hint,
    )


def check_cuda_override(
    gpu: GpuProbe, manifest: Mapping[str, Any] | None, env: Mapping[str, str] | None = None
) -> Check:
    """``CONDA_OVERRIDE_CUDA``: how to install the CUDA environment where no driver is seen."""
    env = os.environ if env is None else env
    requirement = cuda_requirement(manifest)
    if requirement is None:
        return Check(CUDA_OVERRIDE, "skip", "pixi.toml declares no CUDA environment", "")
    env_name, cuda = requirement
    advice = f"CONDA_OVERRIDE_CUDA={cuda} pixi install -e {env_name}"
    override = env.get("CONDA_OVERRIDE_CUDA")
    if gpu.present:
        if (
            override
            and gpu.driver_cuda
            and version_tuple(override) > version_tuple(gpu.driver_cuda)
        ):
            return Check(
                CUDA_OVERRIDE,
                "warn",
                f"CONDA_OVERRIDE_CUDA={override} claims more than the driver's CUDA "
                f"{gpu.driver_cuda}: pixi may install packages this driver cannot run",
                "unset CONDA_OVERRIDE_CUDA on GPU nodes",
            )
        detected = f"__cuda={gpu.driver_cuda}" if gpu.driver_cuda else "__cuda"
        return Check(CUDA_OVERRIDE, "ok", f"not needed: pixi detects {detected} from the driver")
    if override is None:
        return Check(
            CUDA_OVERRIDE,
            "skip",
            "no NVIDIA driver here, so pixi sees no __cuda and refuses the "
            f"{env_name!r} environment",
            f"to install the {env_name} environment on this GPU-less login node: {advice} "
            "(pip needs no override: a CUDA build of torch installs without a driver)",
        )
    if not override.strip():
        return Check(
            CUDA_OVERRIDE,
            "warn",
            "CONDA_OVERRIDE_CUDA is empty: it disables __cuda, so the "
            f"{env_name!r} environment cannot be installed",
            advice,
        )
    if version_tuple(override)[:2] < version_tuple(cuda)[:2]:
        return Check(
            CUDA_OVERRIDE,
            "warn",
            f"CONDA_OVERRIDE_CUDA={override} is below the CUDA {cuda} the {env_name!r} "
            "environment needs: its solve fails",
            advice,
        )
    return Check(
        CUDA_OVERRIDE,
        "ok",
        f"CONDA_OVERRIDE_CUDA={override}: pixi can install the {env_name!r} environment "
        "without a GPU",
    )


def check_scheduler(name: str) -> Check:
    """Can sweeps be sent to the scheduler ``name`` from here? (its backend's own check:
    ``sinfo`` for SLURM, ``qstat -g c`` for Grid Engine)."""
    verdict, detail, fix = backends.get(name).doctor()
    return Check(name, verdict, detail, fix)


def scheduler_names() -> list[str]:
    """The cluster schedulers runlab can send sweeps to (each one a check and a
    ``--require`` name)."""
    return [n for n in backends.NAMES if backends.get(n).cluster]


def check_logs(path: str | os.PathLike[str]) -> Check:
    """Can runs be written under the logs directory? (create and remove a temporary file)."""
    logs = Path(path).expanduser()
    created: list[Path] = []
    try:
        missing = [p for p in (logs, *logs.parents) if not p.exists()]
        for p in reversed(missing):
            p.mkdir()
            created.append(p)
        fd, name = tempfile.mkstemp(prefix=".runlab-doctor-", dir=logs)
        os.close(fd)
        os.unlink(name)
        free = shutil.disk_usage(logs).free
    except OSError as exc:
        return Check(
            LOGS,
            "fail",
            f"cannot write to {logs}: {exc.strerror or exc}"
            + (f" ({exc.filename})" if exc.filename and exc.filename != str(logs) else ""),
            "pass a writable directory with --logs, or set RUNLAB_LOGS",
        )
    finally:
        for p in reversed(created):
            with contextlib.suppress(OSError):
                p.rmdir()
    note = " (does not exist yet; runs create it)" if created else ""
    if free < 1 << 30:
        return Check(
            LOGS,
            "warn",
            f"{logs} writable{note}, but only {free / 2**20:.0f} MiB free",
            "free space, or point RUNLAB_LOGS elsewhere",
        )
    return Check(LOGS, "ok", f"{logs} writable{note}, {free / 2**30:.1f} GiB free")


# ---------------------------------------------------------------- all together


def run_checks(root: Path | None = None, logs: str | os.PathLike[str] | None = None) -> list[Check]:
    """Every check, in the order they are shown."""
    root = project_root(root)
    manifest = load_manifest(root)
    gpu = probe_gpus()
    torch = probe_torch()
    requirement = cuda_requirement(manifest)
    return [
        check_pixi_environment(root),
        check_pixi_lock(root),
        check_git(root),
        check_gpus(gpu),
        check_cuda_versions(gpu, torch, conda_cuda_version()),
        check_torch_gpu(gpu, torch, cuda_env=requirement[0] if requirement else "cuda"),
        check_cuda_override(gpu, manifest),
        Check(*distributed.doctor_check(gpu.present)),  # torch.distributed, NCCL on GPUs
        *(check_scheduler(name) for name in scheduler_names()),
        check_logs(logs if logs is not None else default_path()),
    ]


def unmet_requirements(checks: Iterable[Check], required: Iterable[str]) -> dict[str, list[str]]:
    """For each required thing (``gpu``, ``pixi``, a scheduler), the checks that fall short."""
    by_name = {c.name: c for c in checks}
    unmet: dict[str, list[str]] = {}
    known = requirements()
    for req in dict.fromkeys(required):
        if req not in known:
            raise ValueError(f"unknown requirement {req!r}: use one of {', '.join(known)}")
        short = []
        for name, accepted in known[req].items():
            check = by_name.get(name)
            if check is None or check.verdict not in accepted:
                short.append(f"{name}: {check.verdict if check else 'not run'}")
        if short:
            unmet[req] = short
    return unmet


def exit_code(checks: Iterable[Check], required: Iterable[str] = ()) -> int:
    """1 when a check fails or a required thing is not met, else 0."""
    checks = list(checks)
    failed = any(c.verdict == "fail" for c in checks)
    return 1 if failed or unmet_requirements(checks, required) else 0


def as_dict(check: Check) -> dict[str, str]:
    return asdict(check)
