#!/usr/bin/env python3
"""Record the reference implementation's numbers (ielab/diffretriever) as JSON fixtures for
``tests/reference/test_parity.py``.

Run with the project's Python (it builds the model folders with our fixture code, ``tests/real_arch.py``);
the reference itself runs in a side virtualenv with its own pins (transformers 4.54.0), created on first use:

    .venv/bin/python tools/reference/record.py --reference REF --dream-code DREAM --llada-code LLADA

``REF``: a checkout or export of ielab/diffretriever. ``DREAM``/``LLADA``: folders holding the models' own
modelling code (``modeling_dream.py``, ``configuration_dream.py``, ``generation_utils.py``,
``tokenization_dream.py``; ``modeling_llada.py``, ``configuration_llada.py``), copied into the model folders
(their ``config.json`` points at them through ``auto_map``). See ``tools/reference/README.md``.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SIDE = Path(__file__).resolve().parent / "reference_side.py"
DEFAULT_VENV = REPO / ".cache" / "reference-env"
DEFAULT_OUT = REPO / "tests" / "reference" / "fixtures"
FORMAT = 1

# The side environment: torch first (the local CPU wheel; an unpinned torch pulls a multi-GB CUDA build),
# then the reference's own pins (its requirements.txt) for what its encoding modules import.
TORCH = "torch==2.13.0"
PINS = ["transformers==4.54.0", "tokenizers==0.21.4", "huggingface_hub==0.36.2", "safetensors==0.7.0",
        "nltk==3.9.3", "PyYAML==6.0.3", "numpy==2.2.6", "accelerate==1.12.0", "Jinja2==3.1.6"]

# What the reference modules need from each model's code folder.
CODE_FILES = {
    "dream": ["modeling_dream.py", "configuration_dream.py", "generation_utils.py", "tokenization_dream.py"],
    "llada": ["modeling_llada.py", "configuration_llada.py"],
}
# Real checkpoint folders carry a generation_config.json (Dream's from_pretrained reads it); the fixture builder
# does not write one, so the recorder adds the real file's values when it is missing.
GENERATION_CONFIGS = {
    "dream": {"_from_model_config": True, "alg": "origin", "alg_temp": None, "bos_token_id": 151643,
              "eos_token_id": 151643, "eps": 0.001, "mask_token_id": None, "output_history": False,
              "pad_token_id": 151643, "steps": 512, "temperature": 0.0, "top_k": None, "top_p": None,
              "transformers_version": "4.46.2"},
    "llada": {"_from_model_config": True, "bos_token_id": 126080, "eos_token_id": 126081,
              "transformers_version": "4.38.2"},
}
# Factors on the EOS row of the LM head (``tests/reference/folders.scale_head_row``), chosen for seed 0 so that the
# stop-token truncation happens at the first slot (all kept), at later slots, and not at all.
STOP_SCALE = {"dream": -4.0, "llada": 4.3}
# The reference files whose behaviour is recorded (their sha256 goes into the fixture).
REFERENCE_FILES = [
    "src/models/diffretriever_dream.py", "src/models/diffretriever_llada.py", "src/models/sparse_utils.py",
    "src/models/diffretriever_trainable.py", "src/models/backbone_adapters.py", "src/models/block_schedule.py",
    "scripts/encode.py", "scripts/shard_io.py", "scripts/run_encode.sh",
    "prompts/default/query_prompt_few.yaml", "prompts/default/passage_prompt_few.yaml",
]

LONG_TEXT = (
    "Suspension bridges carry their decks on vertical hangers that hang from two main cables, and the cables "
    "pass over tall towers before they are anchored in massive blocks of concrete set into rock at each end "
    "of the crossing. Engineers choose this form when the span is too long for a beam or an arch, because "
    "steel wire is strongest in tension and the cables can be spun in place from thousands of thin strands. "
    "Wind is the main danger: a light deck can twist and flutter, and the collapse of a famous bridge in "
    "a moderate wind taught designers to test every deck shape in a wind tunnel, to stiffen decks with deep "
    "trusses or box girders, and to add dampers that absorb the energy of small oscillations before they "
    "grow. Traffic loads, temperature changes and the slow creep of concrete are smaller problems that are "
    "handled with expansion joints, bearings and careful monitoring. Modern bridges carry sensors that "
    "record strain, acceleration and cable tension every second, and maintenance crews inspect the cables "
    "for broken wires and corrosion, dehumidify the air inside them, and repaint the steel on a regular "
    "cycle so that a bridge built today can serve for more than a century. Cable stayed bridges, which run "
    "straight cables from the towers to the deck, compete with suspension bridges for medium spans because "
    "they need no heavy anchorages and can be built outward from each tower without temporary supports."
)
QUERIES = [
    "what causes ocean tides",
    "how do engineers keep long bridges safe in strong wind when " + LONG_TEXT.lower(),
    "what does <|mask|> mean after <|im_end|> or <|eot_id|> and <|mdm_mask|>",
]
DOCUMENTS = [
    {"_id": "d1", "title": "Ocean tides",
     "text": "Tides are the rise and fall of sea levels caused by the gravitational pull of the moon and the sun."},
    {"_id": "d2", "title": "Photosynthesis in desert plants", "text": ""},
    {"_id": "d3", "title": "Bridge engineering", "text": LONG_TEXT},
    {"_id": "d4", "title": "",
     "text": "The <|mask|> token and the <|mdm_mask|> marker appear before <|endoftext|> in training data."},
]


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    return subprocess.run([str(c) for c in cmd], check=True, **kwargs)


def ensure_env(venv: Path) -> Path:
    """The side virtualenv (created and filled on first use; refilled when the pins change)."""
    python = venv / "bin" / "python"
    stamp = venv / ".reference-pins"
    wanted = "\n".join([TORCH, *PINS]) + "\n"
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    if not python.exists():
        run([sys.executable, "-m", "venv", venv])
    pip = [python, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    run([*pip, TORCH])
    run([*pip, *PINS])
    stamp.write_text(wanted)
    return python


def side_versions(python: Path) -> dict[str, str]:
    out = subprocess.run([str(python), "-m", "pip", "freeze", "--disable-pip-version-check"], check=True,
                         capture_output=True, text=True).stdout
    return dict(line.split("==", 1) for line in out.splitlines() if "==" in line)


def reference_commit(reference: Path, given: str | None) -> str:
    if given:
        return given
    try:
        return subprocess.run(["git", "-C", str(reference), "rev-parse", "HEAD"], check=True, capture_output=True,
                              text=True).stdout.strip()
    except (subprocess.CalledProcessError, FileNotFoundError):
        commit_file = reference / "COMMIT"
        return commit_file.read_text().strip() if commit_file.is_file() else "unknown"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_nltk_data(root: Path) -> Path:
    """NLTK's ``corpora/stopwords/english``, filled with the stopword list our package ships."""
    target = root / "corpora" / "stopwords"
    target.mkdir(parents=True, exist_ok=True)
    source = REPO / "pyserini_diffret" / "resources" / "stopwords_en.txt"
    shutil.copyfile(source, target / "english")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description="Record the reference implementation's numbers as JSON fixtures.")
    parser.add_argument("--reference", type=Path, required=True, help="checkout or export of ielab/diffretriever")
    parser.add_argument("--reference-commit", help="the reference's commit (default: git rev-parse, or REF/COMMIT)")
    parser.add_argument("--dream-code", type=Path, required=True, help="folder with Dream's modelling files")
    parser.add_argument("--llada-code", type=Path, required=True, help="folder with LLaDA's modelling files")
    parser.add_argument("--code-source", action="append", default=[], metavar="ARCH=TEXT",
                        help="where the modelling files came from, recorded in the fixture (e.g. a repo and commit)")
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help=f"side virtualenv (default {DEFAULT_VENV})")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"fixture folder (default {DEFAULT_OUT})")
    parser.add_argument("--work", type=Path, help="keep the model folders here (default: a temporary folder)")
    parser.add_argument("--arch", choices=("dream", "llada"), action="append", help="only these (default both)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=16)
    parser.add_argument("--stop-scale", action="append", default=[], metavar="ARCH=FACTOR",
                        help="factor on the LM-head row of EOS, so that some slots decode to it (0: no change); "
                             f"default {STOP_SCALE}")
    parser.add_argument("--budget", type=int, default=256, help="the reference's --max_length (run_encode.sh: 256)")
    args = parser.parse_args()

    sys.path.insert(0, str(REPO))
    from tests.reference.folders import (  # noqa: PLC0415
        STOP_TOKEN, build_folder, file_checksums, scale_head_row, weights_checksum)

    stop_scale = dict(STOP_SCALE, **{a: float(f) for a, f in (item.split("=", 1) for item in args.stop_scale)})
    python = ensure_env(args.venv)
    versions = side_versions(python)
    reference = args.reference.resolve()
    code_dirs = {"dream": args.dream_code.resolve(), "llada": args.llada_code.resolve()}
    sources = dict(item.split("=", 1) for item in args.code_source)
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="diffret-reference-"))
    nltk_data = write_nltk_data(work / "nltk_data")
    plan = {"queries": QUERIES, "documents": DOCUMENTS, "k": [1, 4, 16], "budget": args.budget,
            "batches": ["all", "single"], "finetuned_topk": 256,
            # the fine-tuned read-out runs the same forward pass as the zero-shot one: one batch per side is
            # enough for it; encode.py's --sparse_topk is an option, and a small value makes the per-slot top-k
            # bind (the tiny tokenizer gives a text far fewer than 128 content ids)
            "finetuned_batches": ["all"], "finetuned_small_topk": [8]}
    plan_file = work / "plan.json"
    plan_file.write_text(json.dumps(plan), encoding="utf-8")

    for arch in args.arch or ["dream", "llada"]:
        folder = work / arch
        if folder.exists():
            shutil.rmtree(folder)
        build_folder(arch, folder, seed=args.seed, layers=args.layers, hidden=args.hidden)
        built = file_checksums(folder)
        factor = stop_scale[arch]
        if factor:
            scale_head_row(folder, arch, STOP_TOKEN[arch], factor)
        checksum = weights_checksum(folder)
        added = []
        if not (folder / "generation_config.json").exists():
            (folder / "generation_config.json").write_text(json.dumps(GENERATION_CONFIGS[arch], indent=2) + "\n")
            added.append("generation_config.json")
        code = {}
        for name in CODE_FILES[arch]:
            source = code_dirs[arch] / name
            shutil.copyfile(source, folder / name)
            code[name] = sha256(source)
        raw = work / f"{arch}-raw.json"
        env = dict(os.environ, NLTK_DATA=str(nltk_data), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                   TOKENIZERS_PARALLELISM="false", PYTHONHASHSEED="0",
                   HF_MODULES_CACHE=str(work / "hf_modules"))
        run([python, SIDE, "--reference", reference, "--folder", folder, "--arch", arch, "--plan", plan_file,
             "--out", raw], env=env)
        side = json.loads(raw.read_text(encoding="utf-8"))
        fixture = {
            "format": FORMAT,
            "recorded": datetime.date.today().isoformat(),
            "recorder": "tools/reference/record.py",
            "arch": arch,
            "reference": {
                "repository": "ielab/diffretriever",
                "commit": reference_commit(reference, args.reference_commit),
                "files": {name: sha256(reference / name) for name in REFERENCE_FILES},
            },
            "model_code": {"files": code, "source": sources.get(arch, str(code_dirs[arch]))},
            "environment": {**side["versions"],
                            "packages": {k: versions[k] for k in sorted(versions)}},
            "folder": {
                "builder": f"tests/real_arch.py:{'write_dream_folder' if arch == 'dream' else 'write_llada_folder'}",
                "arguments": {"seed": args.seed, "layers": args.layers, "hidden": args.hidden},
                "edit": {"scale_head_row": {"token_id": STOP_TOKEN[arch], "factor": factor}} if factor else None,
                "weights_sha256": checksum,
                "files_sha256_as_built": built,
                "added_by_recorder": added + list(CODE_FILES[arch]),
            },
            "settings": {
                "sequence_budget": args.budget,
                "prompt": "few (prompts/default/{query,passage}_prompt_few.yaml) at every K",
                "num_denoise_steps": 1,
                "zero_shot": {"path": "encode(encoding_mode='promptreps', encode_type='all_steps')",
                              "terms_per_slot": 128, "quantisation": "truncate", "stop_truncation": True},
                "fine_tuned": {"path": "TrainableDiffusionRetriever.encode + scripts/encode.py trained_diff read-out",
                               "terms_per_slot": plan["finetuned_topk"], "quantisation": "round",
                               "stop_truncation": False,
                               "also": f"--sparse_topk {plan['finetuned_small_topk']} (each case's "
                                       "terms_per_slot)", "batches": plan["finetuned_batches"]},
                "batches": {"all": "all texts of a side in one batch (left-padded)", "single": "one text per batch"},
                "vectors": "slot vectors L2-normalised (scripts/evaluate_sweep.py), single vector = mean of the "
                           "non-zero slots; float32 throughout (the reference stores bfloat16)",
                "impacts": "max over the K slots of the per-slot integer impacts (float32, exact); "
                           "impacts_stored: the same after the reference's pool_sparse_across_k (bfloat16)",
            },
            "substitutions": {
                "dtype": "weights loaded in float32 (the reference loads bfloat16)",
                "nltk_stopwords": "pyserini_diffret/resources/stopwords_en.txt written as NLTK's "
                                  "corpora/stopwords/english (sha256 "
                                  + sha256(REPO / "pyserini_diffret/resources/stopwords_en.txt") + ")",
                "nltk_word_tokenize": "sparse_utils.word_tokenize = untrained PunktSentenceTokenizer + "
                                      "NLTKWordTokenizer (no punkt_tab data here)",
                "llada_mask_token_id": "126336 passed to LLaDA2Retriever (its table's id for the hub name)",
            },
            "texts": {"query": QUERIES, "document": DOCUMENTS, "document_joined": side["document_texts"]},
            "cases": compact_cases(side["cases"]),
        }
        path = args.out / f"{arch}.json"
        path.write_text(json.dumps(fixture, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
        print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")


def compact_cases(cases: list[dict]) -> list[dict]:
    """Batches stored without their padding: per row the ids of the real tokens and the number of pad
    positions before them (the attention mask is zeros there, ones after: checked here)."""
    for case in cases:
        for batch in case["batches"]:
            rows, pads, pad_ids = [], [], set()
            for ids, mask in zip(batch.pop("input_ids"), batch.pop("attention_mask")):
                pad = mask.index(1)
                assert mask == [0] * pad + [1] * (len(mask) - pad), "not left padding"
                rows.append(ids[pad:])
                pads.append(pad)
                pad_ids.update(ids[:pad])
            assert len(pad_ids) <= 1, pad_ids
            batch["rows"], batch["padding"] = rows, pads
            batch["pad_id"] = pad_ids.pop() if pad_ids else None
    return cases


if __name__ == "__main__":
    main()
