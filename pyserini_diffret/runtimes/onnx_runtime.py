"""The ONNX Runtime runtime: runs an exported graph with onnxruntime on CPU or CUDA.

It opens a session on the graph of an exported folder and turns encoded batches into arrays; reading the
folder (export record, tokenizer, checks) is the engine's work (``pyserini_diffret.model``).

CPU: one intra-op thread per physical core available to this process (cgroup quota and affinity
respected), sequential execution, all graph optimisations. CUDA (``device="cuda"`` or ``"cuda:N"``,
onnxruntime-gpu): the CUDA provider with I/O binding (outputs allocated on the device, copied back once),
and sequences left-padded to a multiple of 8, which lets fp16 MultiHeadAttention use the
memory-efficient kernel (extra left padding changes no result: positions count from the first real
token and padding is masked).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pyserini_diffret.core.devices import canonical_device, parse_device, physical_cores
from pyserini_diffret.core.prompts import EncodedBatch
from pyserini_diffret.core.record import INPUT_NAMES, OUTPUT_NAMES, ModelFolderError
from pyserini_diffret.core.spec import ModelSpec

CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PAD_MULTIPLE = 8


class OnnxRuntime:
    """Runs the exported graph: ``run(batch, content_ids, stop_truncation) -> (slot_vectors, content_scores)``."""

    name = "onnx"

    @classmethod
    def open(cls, graph: Path, spec: ModelSpec, *, device: str = "cpu", providers: Sequence[Any] | None = None,
             threads: int | None = None, pad_multiple: int | None = None,
             io_binding: bool | None = None) -> "OnnxRuntime":
        """A session on ``graph``, checked against ``spec``.

        ``providers``: an explicit onnxruntime provider list (overrides ``device``'s choice). ``threads``:
        intra-op threads (default: physical cores on CPU). ``pad_multiple`` / ``io_binding``: default 8 /
        True on CUDA, 1 / False on CPU.
        """
        session = make_session(graph, device=device, providers=providers, threads=threads)
        _check_session(graph, session, spec)
        on_cuda = session.get_providers()[0] == CUDA_PROVIDER
        if io_binding and not on_cuda:
            raise ValueError("io_binding=True needs the CUDA provider")
        return cls(
            session, pad_id=spec.layout.pad_id, device=device if on_cuda else "cpu",
            pad_multiple=pad_multiple if pad_multiple is not None else (CUDA_PAD_MULTIPLE if on_cuda else 1),
            io_binding=io_binding if io_binding is not None else on_cuda,
        )

    @staticmethod
    def check_device(device: str) -> str:
        """The canonical device name; a clear error when this onnxruntime cannot use it."""
        device = canonical_device(device)
        if device.startswith("cuda"):
            import onnxruntime as ort  # noqa: PLC0415

            available = ort.get_available_providers()
            if CUDA_PROVIDER not in available:
                raise RuntimeError(
                    f"device {device!r} was asked for, but this onnxruntime ({ort.__version__}) has no CUDA provider "
                    f"(available: {', '.join(available)}). Install onnxruntime-gpu instead of onnxruntime "
                    "(`make setup GPU=1`, or pip install '.[gpu]' as the README describes), or use device='cpu'."
                )
        return device

    def __init__(self, session, *, pad_id: int, device: str = "cpu", pad_multiple: int = 1,
                 io_binding: bool = False) -> None:
        self.session = session
        self.pad_id = pad_id
        self.device, self.device_id = parse_device(device)
        self.pad_multiple = max(1, int(pad_multiple))
        self.io_binding = io_binding
        self.input_names = {i.name for i in session.get_inputs()}
        self._offsets: dict[int, np.ndarray] = {}
        self._stop = {flag: np.array(flag, dtype=bool) for flag in (False, True)}

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    def _slot_offsets(self, k: int) -> np.ndarray:
        if k not in self._offsets:
            self._offsets[k] = np.arange(k, dtype=np.int64)
        return self._offsets[k]

    def _pad(self, batch: EncodedBatch) -> tuple[np.ndarray, np.ndarray]:
        ids, mask = batch.input_ids, batch.attention_mask
        extra = -ids.shape[1] % self.pad_multiple
        if not extra:
            return ids, mask
        rows = ids.shape[0]
        ids = np.concatenate([np.full((rows, extra), self.pad_id, dtype=np.int64), ids], axis=1)
        mask = np.concatenate([np.zeros((rows, extra), dtype=np.int64), mask], axis=1)
        return ids, mask

    def feeds(self, batch: EncodedBatch, content_ids: np.ndarray, stop_truncation: bool) -> dict[str, np.ndarray]:
        ids, mask = self._pad(batch)
        feeds = {
            "input_ids": np.ascontiguousarray(ids, dtype=np.int64),
            "attention_mask": np.ascontiguousarray(mask, dtype=np.int64),
            "slot_offsets": self._slot_offsets(batch.num_slots),
            "content_ids": np.ascontiguousarray(content_ids, dtype=np.int64),
            "stop_truncation": self._stop[bool(stop_truncation)],
        }
        if stop_truncation and "stop_truncation" not in self.input_names:
            raise ValueError("stop_truncation was asked for, but this graph was exported without the stop-token rule; "
                             "export the model again with stop_truncation=True")
        # stop_truncation is an input only of graphs with the stop-token rule built in.
        return {name: value for name, value in feeds.items() if name in self.input_names}

    def run(self, batch: EncodedBatch, content_ids: np.ndarray, stop_truncation: bool) -> tuple[np.ndarray, np.ndarray]:
        feeds = self.feeds(batch, content_ids, stop_truncation)
        if self.io_binding:
            binding = self.session.io_binding()
            for name, value in feeds.items():
                binding.bind_cpu_input(name, value)
            for name in OUTPUT_NAMES:
                binding.bind_output(name, "cuda", self.device_id)
            self.session.run_with_iobinding(binding)
            vectors, scores = binding.copy_outputs_to_cpu()
        else:
            vectors, scores = self.session.run(list(OUTPUT_NAMES), feeds)
        return vectors, scores


def make_session(graph: Path, *, device: str = "cpu", providers: Sequence[Any] | None = None, threads: int | None = None):
    import onnxruntime as ort  # noqa: PLC0415

    kind, index = parse_device(device)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    options.intra_op_num_threads = int(threads) if threads else (physical_cores() if kind == "cpu" else 1)
    options.inter_op_num_threads = 1
    if providers is None:
        providers = [(CUDA_PROVIDER, {"device_id": index}), CPU_PROVIDER] if kind == "cuda" else [CPU_PROVIDER]
    try:
        session = ort.InferenceSession(str(graph), options, providers=list(providers))
    except Exception as error:  # noqa: BLE001 - onnxruntime raises several unrelated types
        raise ModelFolderError(
            f"{graph}: onnxruntime cannot load the graph (damaged or incomplete file, or a graph this onnxruntime "
            f"{ort.__version__} does not support): {type(error).__name__}: {str(error).strip()[:500]}"
        ) from None
    if kind == "cuda" and CUDA_PROVIDER in [p[0] if isinstance(p, tuple) else p for p in providers]:
        if session.get_providers()[0] != CUDA_PROVIDER:
            raise RuntimeError(
                f"device {device!r}: onnxruntime fell back to {session.get_providers()}; the CUDA provider could "
                "not start (CUDA/cuDNN libraries missing or not matching onnxruntime-gpu)"
            )
    return session


def _check_session(graph: Path, session, spec: ModelSpec) -> None:
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name: o for o in session.get_outputs()}
    required = {"input_ids", "attention_mask", "slot_offsets", "content_ids"}
    missing = sorted(required - set(inputs)) + sorted(set(OUTPUT_NAMES) - set(outputs))
    unknown = sorted(set(inputs) - set(INPUT_NAMES))
    if missing or unknown:
        raise ModelFolderError(
            f"{graph}: not a DiffRetriever graph (missing {missing or 'nothing'}, unexpected inputs {unknown or 'none'})"
        )
    last = outputs["slot_vectors"].shape[-1] if outputs["slot_vectors"].shape else None
    if isinstance(last, int) and last != spec.hidden_size:
        raise ModelFolderError(f"{graph}: output slot_vectors has size {last}, the config says {spec.hidden_size}")
