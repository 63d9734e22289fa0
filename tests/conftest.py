"""Shared fixtures. Everything runs offline, on CPU, in temporary folders."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import pyserini_diffret  # noqa: F401 - Java and offline set-up before any Pyserini import

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
