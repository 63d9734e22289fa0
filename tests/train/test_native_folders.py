"""The trainer sizes Dream and LLaDA folders (LoRA auto, bf16) without their remote code."""
from __future__ import annotations

import pytest

from pyserini_diffret.train.trainer import _library_config, _parameter_estimate
from tests.real_arch import write_dream_folder, write_llada_folder


@pytest.mark.parametrize("write, library", [(write_dream_folder, "Qwen2Config"), (write_llada_folder, "LlamaConfig")])
def test_real_architecture_folders_are_sized_without_remote_code(tmp_path, write, library):
    folder = tmp_path / "model"
    write(folder)
    config = _library_config(folder, trust_remote_code=False)
    assert type(config).__name__ == library
    assert _parameter_estimate(config) > config.vocab_size * config.hidden_size
