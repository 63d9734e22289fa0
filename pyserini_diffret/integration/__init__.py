"""How pyserini-diffret plugs into an unmodified Pyserini 2.4 installation.

Pyserini has no plugin mechanism, so we patch a few of its modules right after they load:
an import hook (``module_hooks``) runs a patch function once the named module has executed, or at
once when it is already imported. Each patch lives in the module of its concern.

Importing this package (or ``pyserini_diffret``) changes nothing. ``setup()`` does it all: Java 21+
selection (``java``), the import hook, the offline guard and the ``diffret`` registration. It is called
by the start-up hook (``pyserini_diffret_hook``), by our commands, and by our modules that import
Pyserini or run Java, just before they do; the model engine never calls it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from pyserini_diffret.integration.module_hooks import after_import, install_import_hook

if TYPE_CHECKING:
    from pyserini_diffret.integration.java import JavaRuntime

__all__ = ["after_import", "install_import_hook", "install", "setup"]

_setup_done = False
_java_runtime: JavaRuntime | None = None


def install() -> None:
    """Register every patch; cheap, idempotent, imports nothing from Pyserini."""
    from pyserini_diffret.integration import offline, registration  # noqa: PLC0415

    install_import_hook()
    offline.register()
    registration.register()


def setup() -> JavaRuntime | None:
    """Make Pyserini work with pyserini-diffret in this process; call it before Pyserini or pyjnius loads.

    Selects a Java 21+ runtime (``JAVA_HOME``, ``PATH`` and jnius options, see ``java``), then installs
    the import hook with the offline guard and the ``diffret`` registration (``install``). Idempotent and
    cheap after the first call. Returns the Java runtime chosen, or None (no usable Java: one warning,
    only Lucene features fail; or pyjnius was already imported and its JVM cannot change).
    """
    global _setup_done, _java_runtime
    if not _setup_done:
        from pyserini_diffret.integration.java import configure_java  # noqa: PLC0415

        _java_runtime = configure_java()
        install()
        _setup_done = True
    return _java_runtime
