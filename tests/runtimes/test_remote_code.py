"""An exported folder's own code never runs unless the caller passes ``trust_remote_code=True``, and loading
never asks on stdin.

The folders are copies of a tiny export whose ``tokenizer_config.json`` gains an ``auto_map`` pointing at a
module planted in the folder; importing that module writes a marker file. Each load runs in a fresh
process with stdin closed and ``input`` replaced by a function that records any prompt.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from pyserini_diffret.core.config import CONFIG_NAME
from tests.conftest import REPO, clean_env

MODULE = textwrap.dedent('''\
    from pathlib import Path
    Path({marker!r}).write_text("ran")
    from transformers import BertTokenizerFast

    class EvilTokenizer(BertTokenizerFast):
        pass
''')

PROBE = textwrap.dedent('''\
    import builtins, json, sys
    prompts = []
    builtins.input = lambda *args: prompts.append(args) or ""
    from pyserini_diffret import load_model
    results = {}
    for name, folder, trust in json.loads(sys.argv[1]):
        options = {"trust_remote_code": True} if trust else {}
        try:
            model = load_model(folder, **options)
            results[name] = "loaded " + type(model.tokenizer).__name__
        except Exception as error:
            results[name] = f"error {type(error).__name__}: {error}"
    print(json.dumps({"results": results, "prompts": len(prompts)}))
''')


def _remote_folder(onnx_copy, tmp_path: Path, name: str, tokenizer_class: str, checksums: bool) -> tuple[Path, Path]:
    folder = onnx_copy("mlm").rename(tmp_path / name)
    marker = folder / "evil_tokenizer.ran"
    (folder / "evil_tokenizer.py").write_text(MODULE.format(marker=str(marker)), encoding="utf-8")
    path = folder / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config.update(auto_map={"AutoTokenizer": [None, "evil_tokenizer.EvilTokenizer"]}, tokenizer_class=tokenizer_class)
    path.write_text(json.dumps(config), encoding="utf-8")
    if not checksums:  # a record whose checksums were taken out: only the tokenizer rules stand guard
        record_path = folder / CONFIG_NAME
        data = json.loads(record_path.read_text(encoding="utf-8"))
        del data["extra"]["onnx"]["sha256"]
        record_path.write_text(json.dumps(data), encoding="utf-8")
    return folder, marker


def test_folder_code_runs_only_with_trust_remote_code(onnx_copy, tmp_path):
    cases = {  # name: (tokenizer_class, checksums recorded, trust_remote_code)
        "checked": ("EvilTokenizer", True, False),
        "unchecked": ("EvilTokenizer", False, False),
        "library-class": ("BertTokenizerFast", False, False),
        "trusted": ("EvilTokenizer", False, True),
    }
    folders, markers = {}, {}
    for name, (tokenizer_class, checksums, _) in cases.items():
        folders[name], markers[name] = _remote_folder(onnx_copy, tmp_path, name, tokenizer_class, checksums)
    probe = [[name, str(folders[name]), trust] for name, (_, _, trust) in cases.items()]
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(probe)], cwd=REPO, stdin=subprocess.DEVNULL,
                          env=clean_env(HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1"),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    results = report["results"]
    assert report["prompts"] == 0, results
    # Recorded checksums: the changed tokenizer_config.json is found before any tokenizer is loaded.
    assert results["checked"].startswith("error ModelFolderError: ")
    assert "tokenizer_config.json: its sha256 differs" in results["checked"] and "damaged or replaced" in results["checked"]
    # No checksums: the tokenizer rules refuse the folder's code, naming the option.
    assert results["unchecked"].startswith("error ValueError: ")
    assert "ships as code in the model folder" in results["unchecked"]
    assert "trust_remote_code=True" in results["unchecked"]
    # A library tokenizer_class beside the auto_map: the library's class, not the folder's.
    assert results["library-class"] in ("loaded BertTokenizer", "loaded BertTokenizerFast"), results["library-class"]
    for name in ("checked", "unchecked", "library-class"):
        assert not markers[name].exists(), f"{name}: the folder's code ran"
    # trust_remote_code=True reaches the tokenizer: the caller asked for the folder's code, and it runs.
    assert results["trusted"] == "loaded EvilTokenizer", results["trusted"]
    assert markers["trusted"].exists()
