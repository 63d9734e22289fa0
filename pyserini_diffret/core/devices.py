"""Device names and CPU thread counts, shared by every runtime (no torch, no onnxruntime here).

A device is ``cpu``, ``cuda`` or ``cuda:N``. Whether the device exists is a question for the runtime that
will use it (torch asks CUDA, onnxruntime asks for its CUDA provider): an ONNX model on CUDA needs
onnxruntime-gpu, not a CUDA build of torch.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

DEVICE_VARIABLE = "PYSERINI_DIFFRET_DEVICE"


def default_device() -> str:
    """``cpu`` unless ``PYSERINI_DIFFRET_DEVICE`` says otherwise (for encoders Pyserini builds from a name)."""
    return os.environ.get(DEVICE_VARIABLE, "").strip() or "cpu"


def parse_device(device: str | None) -> tuple[str, int]:
    """``("cpu", 0)`` or ``("cuda", N)``; a clear error for anything else."""
    text = (device or default_device()).strip().lower()
    if text == "cpu":
        return "cpu", 0
    if text == "cuda" or text.startswith("cuda:"):
        index = text.partition(":")[2] or "0"
        if not index.isdigit():
            raise ValueError(f"device {device!r}: expected 'cpu', 'cuda' or 'cuda:N'")
        return "cuda", int(index)
    raise ValueError(f"device {device!r} is not supported; use 'cpu', 'cuda' or 'cuda:N'")


def canonical_device(device: str | None) -> str:
    """``cpu`` or ``cuda:N``."""
    kind, index = parse_device(device)
    return "cpu" if kind == "cpu" else f"cuda:{index}"


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
