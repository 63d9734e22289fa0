"""Settings files: the current format, and folders written before the renames (format 1)."""
from __future__ import annotations

import dataclasses

import pytest

from pyserini_diffret.core.config import RetrieverConfig
from pyserini_diffret.core.record import ExportRecord, ModelFolderError


def test_format_1_settings_load_under_their_new_names():
    current = RetrieverConfig.zero_shot("mlm", max_document_length=40, terms_per_slot=16)
    old = current.to_dict()
    old.update(format=1, max_passage_length=old.pop("max_document_length"), top_k=old.pop("terms_per_slot"))
    old["prompts"] = {("passage" if side == "document" else side): v for side, v in old["prompts"].items()}
    for key in ("sequence_budget", "quantisation", "split_special_tokens"):  # not in format 1
        old.pop(key)
    loaded = RetrieverConfig.from_dict(old)
    assert (loaded.max_document_length, loaded.terms_per_slot) == (40, 16)
    assert loaded.prompts == current.prompts
    assert dataclasses.replace(loaded, sequence_budget=current.sequence_budget,
                               quantisation=current.quantisation) == current
    with pytest.raises(ValueError, match="config format 7 is not supported"):
        RetrieverConfig.from_dict({**current.to_dict(), "format": 7})


@pytest.mark.parametrize("version", [1, 2, 3])
def test_export_records_of_vocabulary_wide_graphs_are_refused_with_the_way_out(version):
    record = {"format": version, "precision": "fp32", "opset": 18, "terms_per_slot": 128, "logit_shift": 0,
              "tail_length": 2, "layout": {"chat_template": False, "mask_id": 4, "tail_ids": [5, 3], "pad_id": 0}}
    with pytest.raises(ModelFolderError, match=f"x: this graph was exported by an earlier pyserini-diffret "
                                               f"\\(export record format {version}\\).*Export the model again"):
        ExportRecord.from_dict(record, "x")


def test_former_option_names_still_work_in_load_model(tiny_model_dirs):
    from pyserini_diffret import load_model

    model = load_model(tiny_model_dirs["mlm"], backbone="mlm", max_passage_length=20, top_k=8)
    assert (model.config.max_document_length, model.config.terms_per_slot) == (20, 8)
