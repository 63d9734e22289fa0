"""``python -m pyserini.search.hybrid`` with our model: the paper's fusion by default, explicit choices honoured.

In process: the source rewrite (line numbers kept), the argument rule (``parse_hybrid_args`` on Pyserini's own
parser, built by Pyserini's own lines), and ``HybridSearcher._hybrid_results`` (other encoders: Pyserini's,
bit for bit; ours: no division by zero on one-hit lists). The command itself runs in ``test_commands.py``.
"""
from __future__ import annotations

import difflib
import inspect
import random
import textwrap
from types import SimpleNamespace

import pytest

from pyserini_diffret.integration import registration
from pyserini_diffret.integration.registration import PAPER_FUSION, PYSERINI_NORMALIZATION
from pyserini_diffret.workflow.fusion import hybrid
from tests.workflow.fixtures import model_dir, plain_model_dir  # noqa: F401


@pytest.fixture(scope="module")
def hybrid_main():
    import pyserini.search.hybrid.__main__ as module

    return module


@pytest.fixture(scope="module")
def searcher():
    from pyserini.search.hybrid import HybridSearcher

    return HybridSearcher


def test_rewrite_keeps_every_other_line_in_place(hybrid_main):
    source = inspect.getsource(hybrid_main)  # the file as installed
    rewritten = registration.rewrite_hybrid_main(source)
    old, new = source.splitlines(), rewritten.splitlines()
    assert len(old) == len(new)
    changed = [number for number, (a, b) in enumerate(zip(old, new), 1) if a != b]
    assert [old[n - 1] for n in changed] == ["import argparse", "    args = parse_args(parser, commands)"]
    assert new[changed[0] - 1].startswith("import argparse; ")
    # the module Python loaded (through the import hook) is the rewritten one
    assert hybrid_main._diffret_registration is registration


def _parse(hybrid_main, monkeypatch, *argv: str):
    """Pyserini's own parser for the command (its lines under ``__main__``, run here), then our rule."""
    source = inspect.getsource(hybrid_main)
    block = source.split("if __name__ == '__main__':\n", 1)[1].split("    args = ", 1)[0]
    namespace = dict(vars(hybrid_main))
    exec(textwrap.dedent(block), namespace)  # noqa: S102 - Pyserini's own parser-building lines
    monkeypatch.setattr("sys.argv", ["hybrid", *argv])
    return registration.parse_hybrid_args(hybrid_main.parse_args, namespace["parser"], namespace["commands"])


def _line(dense_encoder, *fusion, sparse=("--impact", "--encoder", "other/model"), dense_extra=()):
    return ["dense", "--index", "d", "--encoder", dense_encoder, *dense_extra, "sparse", "--index", "s", *sparse,
            *(("fusion", *fusion) if fusion != (None,) else ()), "run", "--topics", "t.tsv", "--output", "o"]


def test_other_encoders_keep_pyserinis_arguments(hybrid_main, monkeypatch, capsys):
    args = _parse(hybrid_main, monkeypatch, *_line("some/bert", "--alpha", "0.5"))
    assert args.fusion.normalization is False and args.fusion.alpha == 0.5
    args = _parse(hybrid_main, monkeypatch, *_line("some/diffret-lab/bert", "--normalization"))
    assert args.fusion.normalization is True  # a name containing "diffret" is not ours
    assert _parse(hybrid_main, monkeypatch, *_line("some/bert", "--alpha", "3")).fusion.alpha == 3  # not checked
    with pytest.raises(SystemExit) as stop:  # rejected as by Pyserini alone
        _parse(hybrid_main, monkeypatch, *_line("some/bert", "--no-normalization"))
    assert stop.value.code == 2 and "unrecognized arguments: --no-normalization" in capsys.readouterr().err


def test_ours_normalises_by_default_and_honours_an_explicit_choice(hybrid_main, monkeypatch, capsys, model_dir,
                                                                   plain_model_dir):
    args = _parse(hybrid_main, monkeypatch, *_line("diffret", "--alpha", "0.5"))
    assert args.fusion.normalization is PAPER_FUSION
    assert "0.5 * sparse + 0.5 * dense, missing = 0 (the paper's" in capsys.readouterr().err
    assert _parse(hybrid_main, monkeypatch, *_line("diffret", "--alpha", "0.5", "--normalization")) \
        .fusion.normalization is PYSERINI_NORMALIZATION
    args = _parse(hybrid_main, monkeypatch, *_line("diffret", "--alpha", "0.5", "--no-normalization"))
    assert args.fusion.normalization is False and args.fusion.alpha == 0.5
    assert "raw scores (--no-normalization)" in capsys.readouterr().err
    # ours on either side: a folder with our config, --encoder-class diffret, or the impact side alone
    for line in (_line(str(model_dir)), _line(str(plain_model_dir), dense_extra=("--encoder-class", "diffret")),
                 _line("some/bert", sparse=("--impact", "--encoder", "diffret"))):
        assert _parse(hybrid_main, monkeypatch, *line).fusion.normalization is PAPER_FUSION
    # sparse --encoder without --impact is not used (BM25): not ours
    assert _parse(hybrid_main, monkeypatch, *_line("some/bert", sparse=("--encoder", "diffret"))) \
        .fusion.normalization is False
    # no fusion section: Pyserini's defaults (alpha 0.1), our rule
    args = _parse(hybrid_main, monkeypatch, *_line("diffret", None))
    assert args.fusion.normalization is PAPER_FUSION and args.fusion.alpha == 0.1 and args.fusion.hits == 1000
    capsys.readouterr()
    for bad, message in ((("--normalization", "--no-normalization"), "exclude each other"),
                         (("--alpha", "1.5"), "alpha must be in [0, 1]")):
        with pytest.raises(SystemExit) as stop:
            _parse(hybrid_main, monkeypatch, *_line("diffret", *bad))
        assert stop.value.code == 2 and message in capsys.readouterr().err
    # Pyserini's own alpha range stays open when its rule is asked for
    assert _parse(hybrid_main, monkeypatch, *_line("diffret", "--alpha", "1.5", "--normalization")).fusion.alpha == 1.5


def _hits(scores: dict[str, float]):
    return [SimpleNamespace(docid=docid, score=score) for docid, score in scores.items()]


def _pairs(results):
    return [(hit.docid, hit.score) for hit in results]


def _random_lists(rng: random.Random):
    docs = [f"d{i}" for i in range(60)]
    dense = {d: rng.uniform(-1, 1) for d in rng.sample(docs, 40)}
    sparse = {d: float(rng.randint(1, 5000)) for d in rng.sample(docs, 40)}
    return dense, sparse


def _original(searcher):
    return searcher.__dict__["_hybrid_results"].__func__.__wrapped__


def test_searcher_other_values_are_pyserinis_bit_for_bit(searcher):
    rng = random.Random(7)
    original = _original(searcher)
    for _ in range(20):
        dense, sparse = _random_lists(rng)
        for normalization in (False, True):
            for weight_on_dense in (False, True):
                args = (_hits(dense), _hits(sparse), 0.3, 25, normalization, weight_on_dense)
                assert _pairs(searcher._hybrid_results(*args)) == _pairs(original(*args))
        # our --normalization: the same arithmetic where Pyserini's is defined
        assert _pairs(searcher._hybrid_results(_hits(dense), _hits(sparse), 0.3, 25, PYSERINI_NORMALIZATION)) \
            == _pairs(original(_hits(dense), _hits(sparse), 0.3, 25, True))


def test_searcher_default_is_the_papers_fusion(searcher):
    rng = random.Random(11)
    for _ in range(20):
        dense, sparse = _random_lists(rng)
        fused = _pairs(searcher._hybrid_results(_hits(dense), _hits(sparse), 0.5, 1000, PAPER_FUSION))
        expected = hybrid({"q": dense}, {"q": sparse}, 0.5)["q"]  # python -m pyserini_diffret.fusion --alpha 0.5
        assert [docid for docid, _ in fused] == list(expected)
        assert [score for _, score in fused] == pytest.approx(list(expected.values()), abs=1e-12)
        # alpha names the sparse side's weight (Pyserini's convention); --weight-on-dense: the dense side's
        fused = _pairs(searcher._hybrid_results(_hits(dense), _hits(sparse), 0.2, 1000, PAPER_FUSION))
        assert [docid for docid, _ in fused] == list(hybrid({"q": dense}, {"q": sparse}, 0.8)["q"])
        fused = _pairs(searcher._hybrid_results(_hits(dense), _hits(sparse), 0.2, 1000, PAPER_FUSION, True))
        assert [docid for docid, _ in fused] == list(hybrid({"q": dense}, {"q": sparse}, 0.2)["q"])


@pytest.mark.parametrize("dense, sparse", [
    ({"a": 0.9, "b": 0.5, "c": 0.1}, {"b": 1234.0}),        # the sparse side returns one hit
    ({"a": 0.7}, {"a": 40.0, "b": 20.0, "c": 10.0}),         # the dense side returns one hit
    ({"a": 0.7}, {"b": 40.0}),                               # both
    ({"a": 0.5, "b": 0.5}, {}),                              # all equal / nothing
])
def test_one_hit_lists_do_not_crash(searcher, dense, sparse):
    with pytest.raises(ZeroDivisionError):  # Pyserini's own normalisation (DESIGN.md 2.5), unchanged for others
        searcher._hybrid_results(_hits(dense), _hits(sparse), 0.5, 10, True)
    default = _pairs(searcher._hybrid_results(_hits(dense), _hits(sparse), 0.5, 10, PAPER_FUSION))
    expected = hybrid({"q": dense}, {"q": sparse}, 0.5)["q"]
    assert [docid for docid, _ in default] == list(expected)
    assert [score for _, score in default] == pytest.approx(list(expected.values()))
    explicit = _pairs(searcher._hybrid_results(_hits(dense), _hits(sparse), 0.5, 10, PYSERINI_NORMALIZATION))
    assert {docid for docid, _ in explicit} == set(dense) | set(sparse)
    assert all(-1.5 <= score <= 1.5 for _, score in explicit)


def test_explicit_normalization_on_a_one_hit_list():
    # Pyserini's centred scores (-0.5 .. 0.5, a missing document at its list's minimum); a lone hit: 0.5,
    # a document it lacks: -0.5 (where Pyserini divides by zero)
    fused = dict(registration.pyserini_normalization({"a": 0.9, "b": 0.5, "c": 0.1}, {"b": 1234.0}, 0.5, 10))
    assert fused == pytest.approx({"a": 0.25, "b": 0.25, "c": -0.75})
    fused = dict(registration.pyserini_normalization({"a": 0.9, "b": 0.5, "c": 0.1}, {"b": 1234.0}, 2.0, 10))
    assert fused == pytest.approx({"a": -0.5, "b": 1.0, "c": -1.5})
