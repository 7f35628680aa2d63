"""``runlab doctor``: every branch that a machine without a GPU can produce.

``nvidia-smi``, ``sinfo`` and ``pixi`` are faked with small shell scripts on a
temporary PATH; the real ``sinfo`` of the local cluster is used when there is one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runlab import doctor
from runlab.cli.doctor import configure_doctor, run_doctor

ROOT = Path(__file__).resolve().parents[1]

SMI_BANNER = """\
Mon Nov 23 10:00:00 2026
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 520.61.05              Driver Version: 520.61.05      CUDA Version: {cuda}     |
|-----------------------------------------+------------------------+----------------------+
| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |
|=========================================+========================+======================|
|   0  NVIDIA A100-SXM4-40GB          On  |   00000000:07:00.0 Off |                    0 |
|   1  NVIDIA A100-SXM4-40GB          On  |   00000000:0F:00.0 Off |                    0 |
+-----------------------------------------+------------------------+----------------------+
"""
SMI_QUERY = """\
NVIDIA A100-SXM4-40GB, 520.61.05, 40960 MiB
NVIDIA A100-SXM4-40GB, 520.61.05, 40960 MiB
"""


def fake(bin_dir: Path, name: str, body: str) -> Path:
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def fake_smi(bin_dir: Path, cuda: str = "11.8") -> None:
    """``nvidia-smi`` of a two-A100 node whose driver supports CUDA ``cuda``."""
    banner = SMI_BANNER.format(cuda=cuda)
    fake(
        bin_dir,
        "nvidia-smi",
        'case "$1" in --query-gpu=*)\n'
        f"cat <<'EOF'\n{SMI_QUERY}EOF\nexit 0;;\nesac\n"
        f"cat <<'EOF'\n{banner}EOF\n",
    )


@pytest.fixture
def fakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A bin/ directory put first on PATH, with no fake yet; git, sh and friends stay."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    keep = tmp_path / "keep"
    keep.mkdir()
    for tool in ("git", "sh", "cat", "sed", "printf", "python"):
        found = shutil.which(tool)
        if found:
            (keep / tool).symlink_to(found)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{keep}")
    monkeypatch.delenv("PIXI_EXE", raising=False)
    monkeypatch.delenv("CONDA_OVERRIDE_CUDA", raising=False)
    return bin_dir


def by_name(checks: list[doctor.Check]) -> dict[str, doctor.Check]:
    return {c.name: c for c in checks}


TORCH_CUDA = doctor.TorchProbe(installed=True, version="2.13.0", cuda="12.9")
TORCH_CPU = doctor.TorchProbe(installed=True, version="2.13.0", cuda=None)
MANIFEST = doctor.load_manifest(ROOT)


# --------------------------------------------------------------------------- pixi


def test_pixi_environment_skips_outside_pixi() -> None:
    check = doctor.check_pixi_environment(ROOT, {})
    if check.verdict == "warn":
        pytest.skip("this python is a pixi environment's, run without pixi's activation")
    assert check.verdict == "skip" and "not running under pixi" in check.detail
    check = doctor.check_pixi_environment(
        ROOT, {"PIXI_ENVIRONMENT_NAME": "cuda", "PIXI_PROJECT_ROOT": str(ROOT)}
    )
    assert check.verdict == "ok" and "cuda" in check.detail
    other = doctor.check_pixi_environment(
        ROOT, {"PIXI_ENVIRONMENT_NAME": "default", "PIXI_PROJECT_ROOT": "/elsewhere"}
    )
    assert other.verdict == "warn" and "/elsewhere" in other.detail


def test_pixi_lock_branches(tmp_path: Path, fakes: Path) -> None:
    assert doctor.check_pixi_lock(tmp_path).verdict == "skip"  # no pixi.toml
    (tmp_path / "pixi.toml").write_text('[workspace]\nname = "x"\n')
    missing = doctor.check_pixi_lock(tmp_path)
    assert missing.verdict == "warn" and "no pixi.lock" in missing.detail

    (tmp_path / "pixi.lock").write_text("version: 6\n")
    no_pixi = doctor.check_pixi_lock(tmp_path)
    assert no_pixi.verdict == "ok" and "pixi not on PATH" in no_pixi.detail
    os.utime(tmp_path / "pixi.lock", (1, 1))  # the manifest changed after the lock
    assert doctor.check_pixi_lock(tmp_path).verdict == "warn"

    fake(fakes, "pixi", f'echo "$@" > {fakes / "args"}; exit 0\n')
    current = doctor.check_pixi_lock(tmp_path)
    assert current.verdict == "ok" and "pixi lock --check" in current.detail
    assert (fakes / "args").read_text().split()[:2] == ["lock", "--check"]

    fake(fakes, "pixi", "echo 'lock-file not up-to-date with the workspace' >&2; exit 1\n")
    stale = doctor.check_pixi_lock(tmp_path)
    assert stale.verdict == "warn" and "not up-to-date" in stale.detail
    assert "pixi lock" in stale.fix


# --------------------------------------------------------------------------- git


def git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


def test_git_not_a_repository(tmp_path: Path) -> None:
    check = doctor.check_git(tmp_path)
    assert check.verdict == "warn" and "not a git repository" in check.detail
    assert "git init" in check.fix


def test_git_clean_then_dirty(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "-b", "main")
    assert "no commit yet" in doctor.check_git(tmp_path).detail
    (tmp_path / "a.txt").write_text("a\n")
    git(tmp_path, "add", "a.txt")
    git(tmp_path, "commit", "-q", "-m", "a")
    clean = doctor.check_git(tmp_path)
    assert clean.verdict == "ok" and clean.detail.startswith("clean at ") and "main" in clean.detail
    (tmp_path / "a.txt").write_text("b\n")
    (tmp_path / "new.txt").write_text("n\n")
    dirty = doctor.check_git(tmp_path)
    assert dirty.verdict == "warn" and "2 uncommitted change(s)" in dirty.detail
    assert "a.txt" in dirty.detail and "new.txt" in dirty.detail


# --------------------------------------------------------------------------- GPUs and CUDA


def test_no_driver_skips_every_gpu_check(fakes: Path) -> None:
    gpu = doctor.probe_gpus()
    assert not gpu.present and "nvidia-smi not found" in (gpu.reason or "")
    assert doctor.check_gpus(gpu).verdict == "skip"
    assert doctor.check_cuda_versions(gpu, TORCH_CUDA, "12.9").verdict == "skip"
    torch_gpu = doctor.check_torch_gpu(gpu, TORCH_CUDA)
    assert torch_gpu.verdict == "skip" and torch_gpu.detail
    override = doctor.check_cuda_override(gpu, MANIFEST, {})
    assert override.verdict == "skip"
    assert override.fix.startswith(
        "to install the cuda environment on this GPU-less login node: "
        "CONDA_OVERRIDE_CUDA=12.9 pixi install -e cuda (pip needs no override"
    )
    ok = doctor.check_cuda_override(gpu, MANIFEST, {"CONDA_OVERRIDE_CUDA": "12.9"})
    assert ok.verdict == "ok"
    low = doctor.check_cuda_override(gpu, MANIFEST, {"CONDA_OVERRIDE_CUDA": "11.8"})
    assert low.verdict == "warn" and "CONDA_OVERRIDE_CUDA=12.9" in low.fix
    assert doctor.check_cuda_override(gpu, {"workspace": {}}, {}).verdict == "skip"


def test_old_driver_against_cuda_12_environment_fails(fakes: Path, tmp_path: Path) -> None:
    fake_smi(fakes, cuda="11.8")
    gpu = doctor.probe_gpus()
    assert gpu.present and gpu.driver_cuda == "11.8" and gpu.driver == "520.61.05"
    gpus = doctor.check_gpus(gpu)
    assert gpus.verdict == "ok" and "2 × NVIDIA A100-SXM4-40GB" in gpus.detail

    # The environment's CUDA from its conda-meta, as pixi installs cuda-version.
    meta = tmp_path / "env" / "conda-meta"
    meta.mkdir(parents=True)
    (meta / "cuda-version-12.9-h4f385c5_3.json").write_text(
        json.dumps({"name": "cuda-version", "version": "12.9"})
    )
    conda = doctor.conda_cuda_version(tmp_path / "env")
    assert conda == "12.9"
    check = doctor.check_cuda_versions(gpu, TORCH_CUDA, conda)
    assert check.verdict == "fail"
    assert "11.8" in check.detail and "cuda-version 12.9" in check.detail
    assert "driver" in check.fix
    assert doctor.check_cuda_versions(gpu, TORCH_CUDA, None).verdict == "fail"  # torch alone
    assert doctor.check_cuda_versions(gpu, TORCH_CPU, "11.8").verdict == "ok"
    cpu = doctor.check_cuda_versions(gpu, TORCH_CPU, None)
    assert cpu.verdict == "skip" and "no CUDA" in cpu.detail
    # A driver is present: no override needed.
    assert doctor.check_cuda_override(gpu, MANIFEST, {}).verdict == "ok"


def test_newer_and_minor_older_drivers(fakes: Path) -> None:
    fake_smi(fakes, cuda="12.10")
    gpu = doctor.probe_gpus()
    assert doctor.check_cuda_versions(gpu, TORCH_CUDA, "12.9").verdict == "ok"  # 12.10 > 12.9
    fake_smi(fakes, cuda="12.4")
    minor = doctor.check_cuda_versions(doctor.probe_gpus(), TORCH_CUDA, "12.9")
    assert minor.verdict == "warn" and "minor-version compatibility" in minor.detail


def test_torch_gpu_branches_without_importing_torch(fakes: Path) -> None:
    fake_smi(fakes, cuda="12.9")
    gpu = doctor.probe_gpus()
    assert doctor.check_torch_gpu(gpu, doctor.TorchProbe(installed=False)).verdict == "skip"
    cpu = doctor.check_torch_gpu(gpu, TORCH_CPU)
    assert cpu.verdict == "warn" and "CPU build" in cpu.detail and "-e cuda" in cpu.fix
    assert "with pip: install a CUDA build of torch" in cpu.fix
    sees = doctor.TorchCuda(available=True, devices=["NVIDIA A100-SXM4-40GB"] * 2)
    assert doctor.check_torch_gpu(gpu, TORCH_CUDA, sees).verdict == "ok"
    blind = doctor.check_torch_gpu(gpu, TORCH_CUDA, doctor.TorchCuda(available=False))
    assert blind.verdict == "fail" and "sees no GPU" in blind.detail


def test_driver_that_fails_or_sees_no_device(fakes: Path) -> None:
    fake(fakes, "nvidia-smi", "echo 'No devices were found'; exit 6\n")
    gpu = doctor.probe_gpus()
    assert doctor.check_gpus(gpu).verdict == "skip" and "sees no GPU" in (gpu.reason or "")
    fake(
        fakes,
        "nvidia-smi",
        'echo "NVIDIA-SMI has failed because it couldn\'t communicate with the NVIDIA driver."\n'
        "exit 9\n",
    )
    check = doctor.check_gpus(doctor.probe_gpus())
    assert check.verdict == "fail" and "couldn't communicate" in check.detail


def test_torch_version_is_read_without_import() -> None:
    probe = doctor.probe_torch()
    if not probe.installed:
        pytest.skip("torch not installed")
    import torch

    assert probe.version == torch.__version__ and probe.cuda == torch.version.cuda


# --------------------------------------------------------------------------- SLURM


def test_slurm_branches(fakes: Path) -> None:
    assert doctor.check_scheduler("slurm").verdict == "skip"
    fake(fakes, "sinfo", "printf 'gpu up\\ncpu* up\\nold down\\n'\n")
    ok = doctor.check_scheduler("slurm")
    assert ok.verdict == "ok" and ok.detail.startswith("default partition 'cpu'")
    assert "old (down)" in ok.detail
    fake(fakes, "sinfo", "printf 'gpu up\\ncpu up\\n'\n")
    no_default = doctor.check_scheduler("slurm")
    assert no_default.verdict == "warn" and "launcher.partition=gpu" in no_default.fix
    fake(fakes, "sinfo", "printf 'gpu up\\ncpu* down\\n'\n")
    assert doctor.check_scheduler("slurm").verdict == "warn"
    fake(
        fakes,
        "sinfo",
        "echo 'slurm_load_partitions: Unable to contact slurm controller (connect failure)' >&2\n"
        "exit 1\n",
    )
    down = doctor.check_scheduler("slurm")
    assert down.verdict == "fail" and "Unable to contact" in down.detail


@pytest.mark.skipif(shutil.which("sinfo") is None, reason="no SLURM client (sinfo) here")
def test_the_real_cluster() -> None:
    probe = subprocess.run(["sinfo", "-h"], capture_output=True, timeout=10)
    if probe.returncode != 0:
        pytest.skip("sinfo is installed but the cluster is not running")
    check = doctor.check_scheduler("slurm")
    assert check.verdict in ("ok", "warn"), check
    assert "partition" in check.detail


# --------------------------------------------------------------------------- logs


def test_logs_writable_and_left_as_found(tmp_path: Path) -> None:
    existing = tmp_path / "logs"
    existing.mkdir()
    assert doctor.check_logs(existing).verdict in ("ok", "warn")
    assert list(existing.iterdir()) == []
    missing = tmp_path / "a" / "b" / "logs"
    check = doctor.check_logs(missing)
    assert check.verdict in ("ok", "warn") and "does not exist yet" in check.detail
    assert not (tmp_path / "a").exists()


def test_logs_under_a_regular_file_fail(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    check = doctor.check_logs(tmp_path / "file" / "logs")
    assert check.verdict == "fail" and "cannot write" in check.detail
    assert "RUNLAB_LOGS" in check.fix


# --------------------------------------------------------------------------- the command


def doctor_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    configure_doctor(parser)
    return parser.parse_args(list(argv))


def test_requirements_and_exit_code() -> None:
    checks = [
        doctor.Check(doctor.GPUS, "skip", "no driver"),
        doctor.Check(doctor.TORCH_GPU, "skip", "no GPU"),
        doctor.Check("slurm", "ok", "default partition debug"),
        doctor.Check(doctor.GIT, "warn", "dirty"),
    ]
    assert doctor.exit_code(checks) == 0
    assert doctor.exit_code(checks, ["slurm"]) == 0
    assert set(doctor.unmet_requirements(checks, ["gpu"])) == {"gpu"}
    assert doctor.exit_code(checks, ["gpu"]) == 1
    assert doctor.exit_code([doctor.Check(doctor.LOGS, "fail", "x")]) == 1
    with pytest.raises(ValueError):
        doctor.Check("x", "bad", "")


def test_require_gpu_fails_here_and_json_parses(
    fakes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logs = tmp_path / "logs"
    assert run_doctor(doctor_args("--logs", str(logs), "--json")) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is True and data["unmet"] == {}
    verdicts = {c["name"]: c["verdict"] for c in data["checks"]}
    assert verdicts[doctor.GPUS] == verdicts["slurm"] == verdicts["sge"] == "skip"
    assert verdicts[doctor.TORCH_GPU] == verdicts[doctor.CUDA_VERSIONS] == "skip"

    assert run_doctor(doctor_args("--logs", str(logs), "--json", "--require", "gpu")) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False and data["required"] == ["gpu"] and "gpu" in data["unmet"]

    # --require slurm without sinfo; a failing check without --require; the table.
    assert run_doctor(doctor_args("--logs", str(logs), "--require", "slurm")) == 1
    assert "--require slurm" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert run_doctor(doctor_args("--logs", str(tmp_path / "file" / "logs"))) == 1
    out = capsys.readouterr()
    assert "logs" in out.out and "failed" in out.err


def test_fake_old_driver_makes_doctor_fail(
    fakes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    fake_smi(fakes, cuda="11.8")
    meta = tmp_path / "env" / "conda-meta"
    meta.mkdir(parents=True)
    (meta / "cuda-version-12.9-h4f385c5_3.json").write_text('{"version": "12.9"}')
    monkeypatch.setenv("CONDA_PREFIX", str(tmp_path / "env"))
    monkeypatch.setattr(doctor, "probe_torch_cuda", lambda: doctor.TorchCuda(available=False))
    assert run_doctor(doctor_args("--logs", str(tmp_path / "logs"), "--json")) == 1
    data = json.loads(capsys.readouterr().out)
    verdicts = {c["name"]: c["verdict"] for c in data["checks"]}
    assert verdicts[doctor.CUDA_VERSIONS] == "fail" and verdicts[doctor.GPUS] == "ok"


def test_runlab_doctor_in_this_repository(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIXI_", "CONDA_OVERRIDE"))}
    env["RUNLAB_LOGS"] = str(tmp_path / "logs")
    proc = subprocess.run(
        [sys.executable, "-m", "runlab", "doctor", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    if shutil.which("nvidia-smi") is None:
        for name in (doctor.GPUS, doctor.CUDA_VERSIONS, doctor.TORCH_GPU):
            assert checks[name]["verdict"] == "skip" and checks[name]["detail"], name
    assert checks[doctor.LOGS]["verdict"] in ("ok", "warn")
    proc = subprocess.run(
        [sys.executable, "-m", "runlab", "doctor"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and "runlab doctor" in proc.stdout
