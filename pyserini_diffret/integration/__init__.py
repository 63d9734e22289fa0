"""How pyserini-diffret plugs into an unmodified Pyserini 2.4 installation.

Pyserini has no plugin mechanism, so we patch a few of its modules right after they load:
an import hook (``module_hooks``) runs a patch function once the named module has executed, or at
once when it is already imported. Each patch lives in the module of its concern.
"""
from pyserini_diffret.integration.module_hooks import after_import, install_import_hook

__all__ = ["after_import", "install_import_hook", "install"]


def install() -> None:
    """Register every patch; cheap, idempotent, imports nothing from Pyserini."""
    from pyserini_diffret.integration import offline, registration  # noqa: PLC0415

    install_import_hook()
    offline.register()
    registration.register()
