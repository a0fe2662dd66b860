"""Where a run computes: the device (env A3_DEVICE), one CPU thread and deterministic algorithms while a run
trains, and the line describing the machine that is stored with every run."""
from __future__ import annotations

import os
import platform
import time
from contextlib import contextmanager
from typing import Iterator

# cuBLAS is deterministic only with a fixed workspace, read when CUDA starts: set before any CUDA work.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import torch  # noqa: E402

DEVICES = ("auto", "cpu", "cuda", "mps")


def requested() -> str:
    """Env A3_DEVICE: auto (CUDA when present, else the CPU), cpu, cuda or mps."""
    value = os.environ.get("A3_DEVICE", "auto")
    if value not in DEVICES:
        raise ValueError(f"A3_DEVICE={value!r} is unknown; choose one of {DEVICES}")
    return value


def mps_available() -> bool:
    """True where Apple's Metal backend can be used."""
    return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()


def pick() -> torch.device:
    """The device A3_DEVICE asks for; auto = CUDA when PyTorch sees a GPU, else the CPU (MPS only when asked)."""
    asked = requested()
    if asked == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if asked == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("A3_DEVICE=cuda, but PyTorch sees no CUDA GPU here: unset A3_DEVICE to use the CPU")
    if asked == "mps" and not mps_available():
        raise RuntimeError("A3_DEVICE=mps, but Apple's MPS backend is not available here: unset A3_DEVICE")
    return torch.device(asked)


@contextmanager
def reproducible(device: torch.device) -> Iterator[None]:
    """While a run trains: one CPU thread (the thread count changes the order of floating-point sums, so a fixed
    count gives the same numbers on a 2-core and a 16-core machine) and, on CUDA, deterministic cuDNN and cuBLAS
    without TF32, where an operation that has no deterministic version raises an error. Restored afterwards."""
    saved = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark,
             torch.backends.cudnn.deterministic, torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.set_num_threads(1)
    if device.type == "cuda":
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.set_num_threads(saved[0])
        torch.use_deterministic_algorithms(saved[1])
        (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic, torch.backends.cudnn.allow_tf32,
         torch.backends.cuda.matmul.allow_tf32) = saved[2:]


def cpu_name() -> str:
    """The CPU model (Linux: /proc/cpuinfo), else what the platform reports."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
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
    """What computes a run: device type, its name, the CPU kernels in use and the torch version."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    elif device.type == "mps":
        name = f"{platform.machine()} ({platform.system()})"
    else:
        name = cpu_name()
    return {"device": device.type, "name": name, "kernels": torch.backends.cpu.get_cpu_capability(),
            "torch": torch.__version__.split("+")[0]}


def kind(machine: dict[str, str]) -> tuple[str, str, str]:
    """What decides a run's numbers besides its recipe: device type, CPU kernels and torch version."""
    return machine["device"], machine["kernels"], machine["torch"]


def machine_line(machine: dict[str, str]) -> str:
    """'CPU AMD EPYC (AVX2 kernels), torch 2.14.1': what computed a run."""
    return f"{machine['device'].upper()} {machine['name']} ({machine['kernels']} kernels), torch {machine['torch']}"
