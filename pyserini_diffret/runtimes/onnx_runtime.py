"""The ONNX Runtime encoders: an exported model folder run by onnxruntime on CPU or CUDA.

The folder (``python -m pyserini_diffret.onnx_export``) holds the graph, the tokenizer files and
``diffret_config.json`` with the export record; nothing of the source model is needed. Loading checks
the folder (files present and of the recorded sizes, record version, graph inputs and outputs, settings
baked into the graph) and fails with a message that names what is wrong.

CPU: one intra-op thread per physical core available to this process (cgroup quota and affinity
respected), sequential execution, all graph optimisations. CUDA (``device="cuda"`` or ``"cuda:N"``,
onnxruntime-gpu): the CUDA provider with I/O binding (outputs allocated on the device, copied back once),
and sequences left-padded to a multiple of 8, which lets fp16 MultiHeadAttention use the
memory-efficient kernel (extra left padding changes no result: positions count from the first real
token and padding is masked).

Prompts before and post-processing after the graph are shared with the torch runtime (``DiffRetriever``).
"""
from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Sequence

import numpy as np

from pyserini_diffret.core.config import CONFIG_NAME, RetrieverConfig
from pyserini_diffret.core.prompts import EncodedBatch, PromptBuilder
from pyserini_diffret.onnx_export.record import INPUT_NAMES, OUTPUT_NAMES, RECORD_KEY, ExportRecord, ModelFolderError

CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PAD_MULTIPLE = 8


def physical_cores() -> int:
    """Physical cores this process may use: affinity mask, one per core (not per hyper-thread), cgroup quota."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = list(range(os.cpu_count() or 1))
    cores = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add(((topology / "physical_package_id").read_text().strip(), (topology / "core_id").read_text().strip()))
        except OSError:
            cores.add(("cpu", str(cpu)))
    count = len(cores) or 1
    try:  # cgroup v2 quota, e.g. "200000 100000" = 2 CPUs
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            count = min(count, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return count


def parse_device(device: str) -> tuple[str, int]:
    device = (device or "cpu").strip().lower()
    if device == "cpu":
        return "cpu", 0
    if device == "cuda" or device.startswith("cuda:"):
        index = device.partition(":")[2] or "0"
        if not index.isdigit():
            raise ValueError(f"device {device!r}: expected 'cuda' or 'cuda:N'")
        return "cuda", int(index)
    raise ValueError(f"device {device!r} is not supported by the ONNX runtime; use 'cpu', 'cuda' or 'cuda:N'")


class OnnxRuntime:
    """Runs the exported graph: ``run(batch, content_mask, stop_truncation) -> (slot_vectors, term_weights)``."""

    name = "onnx"

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

    def feeds(self, batch: EncodedBatch, content_mask: np.ndarray, stop_truncation: bool) -> dict[str, np.ndarray]:
        ids, mask = self._pad(batch)
        feeds = {
            "input_ids": np.ascontiguousarray(ids, dtype=np.int64),
            "attention_mask": np.ascontiguousarray(mask, dtype=np.int64),
            "slot_offsets": self._slot_offsets(batch.num_slots),
            "content_mask": np.ascontiguousarray(content_mask, dtype=bool),
            "stop_truncation": self._stop[bool(stop_truncation)],
        }
        # The exporter may prune an input the graph does not read (e.g. stop_truncation folded away).
        return {name: value for name, value in feeds.items() if name in self.input_names}

    def run(self, batch: EncodedBatch, content_mask: np.ndarray, stop_truncation: bool) -> tuple[np.ndarray, np.ndarray]:
        feeds = self.feeds(batch, content_mask, stop_truncation)
        if self.io_binding:
            binding = self.session.io_binding()
            for name, value in feeds.items():
                binding.bind_cpu_input(name, value)
            for name in OUTPUT_NAMES:
                binding.bind_output(name, "cuda", self.device_id)
            self.session.run_with_iobinding(binding)
            vectors, weights = binding.copy_outputs_to_cpu()
        else:
            vectors, weights = self.session.run(list(OUTPUT_NAMES), feeds)
        return vectors, weights


# -- loading -----------------------------------------------------------------------------------------------
def read_record(path: Path, config: RetrieverConfig) -> ExportRecord:
    """The export record of ``path``, checked against the folder's files; clear errors otherwise."""
    origin = str(path / CONFIG_NAME)
    if config.runtime != "onnx" or RECORD_KEY not in config.extra:
        if any(path.glob("*.onnx")):
            raise ModelFolderError(f"{origin}: not an ONNX export config (runtime {config.runtime!r}, no export record)")
        raise ModelFolderError(
            f"{path}: not an exported ONNX model folder (no graph, no export record); export it first with "
            f"`python -m pyserini_diffret.onnx_export --model {path} --output DIR`"
        )
    record = ExportRecord.from_dict(config.extra[RECORD_KEY], origin)
    for name in ("hidden_size", "vocab_size"):
        if not isinstance(getattr(config, name), int):
            raise ModelFolderError(f"{origin}: {name} is missing; an export always records it")
    for file, size in record.files(path):
        if not file.is_file():
            raise ModelFolderError(f"{path}: incomplete export: {file.name} is missing")
        actual = file.stat().st_size
        if size is not None and actual != size:
            raise ModelFolderError(
                f"{file}: {actual} bytes where the export wrote {size}: the file is damaged, truncated or replaced"
            )
    return record


def _check_settings(path: Path, config: RetrieverConfig, record: ExportRecord) -> None:
    """Settings baked into the graph cannot be overridden at load time."""
    baked = {"top_k": record.top_k, "logit_shift": record.logit_shift}
    for name, value in baked.items():
        if getattr(config, name) != value:
            raise ValueError(
                f"{path}: {name}={value} is built into the exported graph; {name}={getattr(config, name)!r} needs "
                f"a new export (python -m pyserini_diffret.onnx_export ... with that setting)"
            )
    if config.backbone not in ("mlm", "dream", "llada"):
        raise ModelFolderError(f"{path}: backbone {config.backbone!r} cannot run from an ONNX graph")


def _check_tokenizer(path: Path, tokenizer, config: RetrieverConfig, record: ExportRecord) -> None:
    layout = record.slot_layout()
    if config.mask_token is not None:
        ids = tokenizer.convert_tokens_to_ids([config.mask_token])
        if not ids or ids[0] != layout.mask_id:
            raise ValueError(
                f"{path}: mask token {config.mask_token!r} is id {ids[0] if ids else None} in the tokenizer, but the "
                f"graph was exported with mask id {layout.mask_id}; the tokenizer files do not belong to this graph"
            )
    largest = max([layout.mask_id, layout.pad_id, *layout.tail_ids, *layout.start_ids])
    if largest >= config.vocab_size:
        raise ModelFolderError(f"{path}: token id {largest} of the slot layout is outside the vocabulary ({config.vocab_size})")


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
        if kind == "cuda":
            available = ort.get_available_providers()
            if CUDA_PROVIDER not in available:
                raise RuntimeError(
                    f"device {device!r} was asked for, but this onnxruntime ({ort.__version__}) has no CUDA provider "
                    f"(available: {', '.join(available)}). Install onnxruntime-gpu instead of onnxruntime "
                    "(`make setup GPU=1`, or pip install '.[gpu]' as the README describes), or use device='cpu'."
                )
            providers = [(CUDA_PROVIDER, {"device_id": index}), CPU_PROVIDER]
        else:
            providers = [CPU_PROVIDER]
    try:
        session = ort.InferenceSession(str(graph), options, providers=list(providers))
    except Exception as error:  # noqa: BLE001 - onnxruntime raises several unrelated types
        raise ModelFolderError(
            f"{graph}: onnxruntime cannot load the graph (damaged or incomplete file, or a graph this onnxruntime "
            f"{ort.__version__} does not support): {type(error).__name__}: {str(error).strip()[:500]}"
        ) from None
    if kind == "cuda" and providers and CUDA_PROVIDER in [p[0] if isinstance(p, tuple) else p for p in providers]:
        if session.get_providers()[0] != CUDA_PROVIDER:
            raise RuntimeError(
                f"device {device!r}: onnxruntime fell back to {session.get_providers()}; the CUDA provider could "
                "not start (CUDA/cuDNN libraries missing or not matching onnxruntime-gpu)"
            )
    return session


def _check_session(graph: Path, session, config: RetrieverConfig) -> None:
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name: o for o in session.get_outputs()}
    required = {"input_ids", "attention_mask", "slot_offsets"}
    missing = sorted(required - set(inputs)) + sorted(set(OUTPUT_NAMES) - set(outputs))
    unknown = sorted(set(inputs) - set(INPUT_NAMES))
    if missing or unknown:
        raise ModelFolderError(
            f"{graph}: not a DiffRetriever graph (missing {missing or 'nothing'}, unexpected inputs {unknown or 'none'})"
        )
    expected = {"slot_vectors": config.hidden_size, "term_weights": config.vocab_size}
    for name, size in expected.items():
        last = outputs[name].shape[-1] if outputs[name].shape else None
        if isinstance(last, int) and last != size:
            raise ModelFolderError(f"{graph}: output {name} has size {last}, the config says {size}")


def load_onnx_model(path: str | Path, config: RetrieverConfig, *, device: str = "cpu", batch_size: int = 32,
                    providers: Sequence[Any] | None = None, threads: int | None = None,
                    pad_multiple: int | None = None, io_binding: bool | None = None):
    """A ``DiffRetriever`` over an exported folder (``config``: its ``diffret_config.json``, overrides applied).

    ``device``: ``cpu``, ``cuda`` or ``cuda:N``. ``providers``: an explicit onnxruntime provider list
    (overrides ``device``'s choice). ``threads``: intra-op threads (default: physical cores on CPU).
    ``pad_multiple`` / ``io_binding``: default 8 / True on CUDA, 1 / False on CPU.
    """
    from pyserini_diffret.backbones.base import load_tokenizer  # noqa: PLC0415
    from pyserini_diffret.model import DiffRetriever, check_lengths  # noqa: PLC0415

    path = Path(path)
    record = read_record(path, config)
    _check_settings(path, config, record)
    kind, _ = parse_device(device)
    if kind == "cpu" and record.precision == "fp16" and providers is None:
        warnings.warn(f"{path}: an fp16 export runs slowly on CPU (export fp32 or int8 for CPU)", stacklevel=2)
    if kind == "cuda" and record.precision == "int8":
        warnings.warn(f"{path}: an int8 (dynamic quantisation) export is meant for CPU; on CUDA use fp16", stacklevel=2)
    try:
        tokenizer = load_tokenizer(path)
    except FileNotFoundError as error:
        raise ModelFolderError(f"incomplete export: {error}") from None
    _check_tokenizer(path, tokenizer, config, record)
    layout = record.slot_layout()
    graph = path / record.graph
    session = make_session(graph, device=device, providers=providers, threads=threads)
    _check_session(graph, session, config)
    on_cuda = session.get_providers()[0] == CUDA_PROVIDER
    runtime = OnnxRuntime(
        session, pad_id=layout.pad_id, device=device if on_cuda else "cpu",
        pad_multiple=pad_multiple if pad_multiple is not None else (CUDA_PAD_MULTIPLE if on_cuda else 1),
        io_binding=io_binding if io_binding is not None else on_cuda,
    )
    if runtime.io_binding and not on_cuda:
        raise ValueError("io_binding=True needs the CUDA provider")
    limits = SimpleNamespace(name=config.backbone, max_positions=record.max_positions)
    check_lengths(limits, config, PromptBuilder(tokenizer, config, layout), path)
    return DiffRetriever(config, tokenizer, layout, runtime, config.hidden_size, config.vocab_size,
                         batch_size=batch_size, source=str(path))
