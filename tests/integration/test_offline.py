"""Pyserini imports offline through the catalogue guard."""
from pyserini_diffret.integration.offline import guard_source
from tests.conftest import run_python

SOURCE = '''from urllib.request import urlopen
ALIASES = {
    "old-name": IMPACT_INDEX_INFO_MSMARCO["msmarco-v1-passage.unicoil"],
}
'''


def test_guard_rewrites_fetch_and_alias_lookups():
    guarded = guard_source(SOURCE)
    assert "catalogue_urlopen as urlopen" in guarded
    # An alias is kept only when its target is in the catalogue (offline: unknown, as every prebuilt name).
    assert ('**({"old-name": IMPACT_INDEX_INFO_MSMARCO["msmarco-v1-passage.unicoil"]} '
            'if "msmarco-v1-passage.unicoil" in IMPACT_INDEX_INFO_MSMARCO else {}),') in guarded
    assert guarded.count("\n") == SOURCE.count("\n")
    namespace = {"IMPACT_INDEX_INFO_MSMARCO": {}}
    exec(guarded.split("\n", 1)[1], namespace)  # noqa: S102 - the rewritten alias table, without the import
    assert namespace["ALIASES"] == {}
    namespace = {"IMPACT_INDEX_INFO_MSMARCO": {"msmarco-v1-passage.unicoil": {"md5": "x"}}}
    exec(guarded.split("\n", 1)[1], namespace)  # noqa: S102
    assert namespace["ALIASES"] == {"old-name": {"md5": "x"}}


def test_pyserini_imports_offline_and_warns_once():
    code = (
        "import warnings\n"
        "from pyserini_diffret.integration import setup\n"
        "setup()\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    from pyserini.search.lucene import LuceneImpactSearcher\n"
        "    from pyserini.search.faiss import FaissSearcher\n"
        "    from pyserini.util import download_prebuilt_index\n"
        "mine = [w for w in caught if 'catalogues could not be fetched' in str(w.message)]\n"
        "print('WARNINGS', len(mine))\n"
    )
    out = run_python("-c", code).stdout
    # Either online (no warning) or offline with exactly one warning.
    assert "WARNINGS 0" in out or "WARNINGS 1" in out
