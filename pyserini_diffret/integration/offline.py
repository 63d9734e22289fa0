"""Let Pyserini 2.4 import without network access.

Pyserini reads its prebuilt-index catalogues from GitHub while its modules import (module-level alias
tables index into them), so offline every ``pyserini.search``/``encode``/``index`` import raises
``URLError`` and not even a local index can be used. We rewrite that one module's source as it loads:
its ``urlopen`` becomes ``catalogue_urlopen``, which answers a *failed* fetch with an empty catalogue
(and warns once), and each module-level alias entry (``"old-name": CATALOGUE["new-name"]``, looked up
while the module loads) is kept only when its target is in the catalogue. Prebuilt index names are then
unknown offline, and Pyserini says so in its own words (``Unrecognized index name ...``; an alias kept
with no record behind it would end in ``AttributeError: 'NoneType' object has no attribute 'get'`` in
``download_prebuilt_index``); local paths work. When the fetch succeeds nothing changes.
"""
from __future__ import annotations

import io
import json
import re
import urllib.request
import warnings

from pyserini_diffret.integration.module_hooks import rewrite_source

CATALOGUE_MODULE = "pyserini.prebuilt_index_info"
_IMPORT_LINE = "from urllib.request import urlopen"
# e.g. `    "msmarco-passage-unicoil-d2q": IMPACT_INDEX_INFO_MSMARCO["msmarco-v1-passage.unicoil"],` inside an
# alias table at module level; becomes `    **({"msmarco-passage-unicoil-d2q": IMPACT_INDEX_INFO_MSMARCO[...]}
# if "msmarco-v1-passage.unicoil" in IMPACT_INDEX_INFO_MSMARCO else {}),` (same line, same value online).
_ALIAS_LOOKUP = re.compile(r'^([ \t]+)("[^"]+"):\s*([A-Z_]+_INFO[A-Z_]*)\[("[^"]+")\]', re.MULTILINE)
_ALIAS_IF_KNOWN = r"\1**({\2: \3[\4]} if \4 in \3 else {})"
_warned = False


def catalogue_urlopen(url: str, *args, **kwargs):
    """``urlopen`` that answers a failed catalogue fetch with an empty JSON list."""
    try:
        return urllib.request.urlopen(url, *args, **kwargs)
    except OSError as error:  # URLError, timeouts and DNS failures are all OSError
        global _warned
        if not _warned:
            _warned = True
            warnings.warn(
                f"pyserini-diffret: Pyserini's prebuilt-index catalogues could not be fetched ({error}); "
                "prebuilt index names are unavailable offline, local index paths work.",
                RuntimeWarning,
                stacklevel=2,
            )
        # A list serves both catalogue readers: they iterate records, or test keys with ``in``.
        return io.BytesIO(json.dumps([]).encode())


def guard_source(source: str) -> str:
    if _IMPORT_LINE not in source:
        warnings.warn(
            "pyserini-diffret: this Pyserini version fetches its catalogues differently; "
            "the offline guard was not applied.",
            RuntimeWarning,
            stacklevel=2,
        )
        return source
    source = source.replace(
        _IMPORT_LINE,
        "from pyserini_diffret.integration.offline import catalogue_urlopen as urlopen",
        1,
    )
    return _ALIAS_LOOKUP.sub(_ALIAS_IF_KNOWN, source)


def register() -> None:
    rewrite_source(CATALOGUE_MODULE, guard_source)
