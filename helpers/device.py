"""Where a run computes: the device (env A3_DEVICE), one CPU thread per run, deterministic CUDA, and the
line describing the machine that is stored with every run."""
from __future__ import annotations

import platform
import time
from contextlib import contextmanager
from typing import Iterator

import torch

from .config import device_requested

# cuBLAS is only deterministic with a fixed workspace; it must be in the environment before CUDA starts,
# so the parent sets it before it spawns the workers that train.
CUDA_ENVIRONMENT = {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"}


def mps_available() -> bool:
    """True where Apple's Metal backend can be used."""
    return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()


def pick() -> torch.device:
    """The device A3_DEVICE asks for; auto = CUDA when PyTorch sees a GPU, else the CPU (MPS only when asked)."""
    asked = device_requested()
    if asked == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if asked == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("A3_DEVICE=cuda, but PyTorch sees no CUDA GPU here: unset A3_DEVICE to use the CPU")
    if asked == "mps" and not mps_available():
        raise RuntimeError("A3_DEVICE=mps, but Apple's MPS backend is not available here: unset A3_DEVICE")
    return torch.device(asked)


def make_deterministic(device: torch.device) -> None:
    """On CUDA: deterministic cuDNN and cuBLAS, no TF32, so two runs of one seed are equal."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.use_deterministic_algorithms(True, warn_only=True)


@contextmanager
def one_thread() -> Iterator[None]:
    """Compute with one CPU thread: the thread count changes the order of floating-point sums, so a fixed
    count gives the same numbers on a 2-core and a 16-core machine (and keeps runs side by side apart)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cpu_name() -> str:
    """The CPU model (Linux: /proc/cpuinfo), else what the platform reports."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """The best float32 matrix-multiply rate (GFLOP/s) on square n x n matrices, all threads: the floor's rate."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best / 1e9


def describe(device: torch.device) -> dict[str, str]:
    """What computed a run: device type, its name, the CPU kernels in use and the torch version."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    elif device.type == "mps":
        name = f"{platform.machine()} ({platform.system()})"
    else:
        name = cpu_name()
    return {"device": device.type, "name": name, "kernels": torch.backends.cpu.get_cpu_capability(),
            "torch": torch.__version__.split("+")[0]}
