"""The same CPU kernels on every x86-64 machine with AVX2, chosen before torch loads.

PyTorch, oneDNN and MKL each pick their kernels by the instruction set they find, so an AVX-512 machine
sums in another order than an AVX2 one and the same seed gives different numbers. Importing `helpers`
calls `pin()` first, which asks all three for their AVX2 kernels; the worker processes that train inherit
it. `A3_CPU_KERNELS=native` keeps the machine's fastest kernels instead. Apple Silicon and GPUs have their
own kernels: nothing here applies to them. This module must not import torch.

What this gives, as measured (tests/reference_losses.json, tests/test_reference.py, the probe in
tests/kernel_probe.py): the same bits on CPUs whose kernels agree, which so far are AMD EPYC CPUs with and
without AVX-512; an Intel Xeon with AVX-512 computes otherwise under the same settings (its MKL and oneDNN
kernels sum in another order), so there the numbers agree only within the tolerance test_reference.py measures.
No setting gives Intel's bits on an AMD EPYC at a bearable cost: MKL_CBWR=COMPATIBLE does for the MLP, at 2.5
times the step time (1.8 times on the Intel CPU), and none of the six settings probed does for the CNN.
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
import warnings

PINNED = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"}
SWITCH = "A3_CPU_KERNELS"  # "avx2" (default) or "native"


def has_avx2() -> bool:
    """True on an x86-64 CPU with AVX2 (Linux, macOS and Windows are asked in their own way)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        if sys.platform.startswith("linux"):
            with open("/proc/cpuinfo") as f:
                return " avx2" in f.read()
        if sys.platform == "darwin":
            flags = subprocess.run(["sysctl", "-n", "machdep.cpu.leaf7_features"], capture_output=True, text=True)
            return "AVX2" in flags.stdout
        if sys.platform == "win32":
            import ctypes
            return bool(ctypes.windll.kernel32.IsProcessorFeaturePresent(40))  # PF_AVX2_INSTRUCTIONS_AVAILABLE
    except (OSError, AttributeError):
        pass
    return False


def pin() -> bool:
    """Ask PyTorch, oneDNN and MKL for their AVX2 kernels (unless A3_CPU_KERNELS=native or the CPU lacks AVX2).

    Returns True when pinned. Settings the user exported already are kept.
    """
    choice = os.environ.get(SWITCH, "avx2")
    if choice not in ("avx2", "native"):
        raise ValueError(f"{SWITCH}={choice!r}: use 'avx2' (the pinned kernels: see helpers/kernels.py) or 'native'")
    if choice == "native" or not has_avx2():
        return False
    for name, value in PINNED.items():
        os.environ.setdefault(name, value)
    return True


def warn_if_too_late(torch_loaded: bool, exported: bool, pinned: bool) -> bool:
    """Warn when torch was imported before helpers without the pinned kernels exported: this process then keeps
    the CPU's own kernels (worker processes are not affected). Returns True when this process has them."""
    if pinned and torch_loaded and not exported:
        warnings.warn("torch was imported before helpers, so this process computes with the CPU's own kernels, not "
                      "the pinned AVX2 ones: runs trained in this process (A3_WORKERS=0) may differ from results/ in "
                      "the last digits. Import helpers first (restart the kernel), or ignore this if runs train in "
                      "workers.", RuntimeWarning, stacklevel=3)
    return pinned and (exported or not torch_loaded)


PINNED_HERE = warn_if_too_late("torch" in sys.modules, all(os.environ.get(k) == v for k, v in PINNED.items()), pin())
