"""The torch reference runtime: runs ``RetrieverModule`` on a Hugging Face model."""
from __future__ import annotations

import numpy as np
import torch

from pyserini_diffret.backbones.base import Backbone
from pyserini_diffret.core.prompts import EncodedBatch
from pyserini_diffret.core.readout import RetrieverModule


def resolve_device(device: str) -> torch.device:
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} was asked for, but torch sees no CUDA device")
    return resolved


class TorchRuntime:
    name = "torch"

    def __init__(self, backbone: Backbone, top_k: int, tail_length: int, device: str = "cpu") -> None:
        self.device = resolve_device(device)
        self.module = RetrieverModule(backbone, top_k=top_k, tail_length=tail_length).to(self.device).eval()

    @property
    def backbone(self) -> Backbone:
        return self.module.backbone

    @torch.inference_mode()
    def run(self, batch: EncodedBatch, content_mask: np.ndarray, stop_truncation: bool) -> tuple[np.ndarray, np.ndarray]:
        to = lambda a: torch.from_numpy(a).to(self.device)  # noqa: E731
        vectors, weights = self.module(
            to(batch.input_ids),
            to(batch.attention_mask),
            torch.arange(batch.num_slots, device=self.device),
            to(content_mask),
            torch.tensor(stop_truncation, device=self.device),
        )
        return vectors.cpu().numpy(), weights.cpu().numpy()
