"""What runs inside a worker process (the pool is in pool.py): train one run from plain data, say how it goes
on a queue, and end when the process that started it ends.

Workers are spawned fresh, so they import the code as it is on disk (and the pinned CPU kernels); the code of
every module this one imports is part of each run's key. Each worker reads the images once and keeps only
its splits (uint8: 55 MB for the full profile).
"""
from __future__ import annotations

import functools
import multiprocessing
import multiprocessing.connection
import os
import sys
import threading
from pathlib import Path
from typing import Any, Callable

import torch

from . import models
from .data import read_fashion_mnist
from .splits import Splits, make_splits
from .training import Recipe, fit

_events: Any = None  # the pool's queue of (kind, pid, run name) events, set by `start`


def start(events: Any) -> None:
    """Pool initializer: keep the event queue, compute on one thread, and exit as soon as the parent process
    ends (killed, crashed or restarted), so that no worker outlives the notebook that started it."""
    global _events
    _events = events
    torch.set_num_threads(1)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent.sentinel,), daemon=True).start()
    report("ready")


def _exit_with(sentinel: Any) -> None:
    multiprocessing.connection.wait([sentinel])
    os._exit(1)


def report(kind: str, name: str | None = None) -> None:
    """Tell the pool: 'ready', a run's 'start', an 'epoch' done (nothing when training in the calling process)."""
    if _events is not None:
        _events.put((kind, os.getpid(), name))


@functools.lru_cache(maxsize=1)
def load_splits(sizes: tuple[tuple[str, int], ...], root: Path) -> Splits:
    """The train/validation/test images of these sizes, read once per process (the full set is let go)."""
    return make_splits(read_fashion_mnist(root), **dict(sizes))


def train_one(name: str, recipe: Recipe, network: dict[str, Any], sizes: dict[str, int], root: Path,
              device: str, on_epoch: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Build the network (seeded) from its spec and fit it on the profile's data; the History as a dict, with the
    peak memory of this run."""
    report("start", name)
    data = load_splits(tuple(sorted(sizes.items())), Path(root))
    reset_peak_memory()
    history = fit(models.from_spec(network, recipe.seed), data, recipe, torch.device(device),
                  on_epoch or (lambda epoch: report("epoch", name)))
    history.peak_memory_mb = peak_memory_mb()
    return history.to_dict()


def reset_peak_memory() -> bool:
    """Start measuring the peak memory afresh (Linux: the high-water mark is reset to the current use); False
    where it cannot be, and the peak is then that of the process so far."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="utf-8") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_memory_mb() -> float | None:
    """The largest resident memory this process has used (since `reset_peak_memory`), in MB: on Linux the
    high-water mark of its own memory (VmHWM), elsewhere what the system reports."""
    try:
        with open("/proc/self/status", encoding="utf-8") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 2 ** 10
    except (OSError, StopIteration):
        pass
    try:
        import resource
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2 ** 20 if sys.platform == "darwin" else peak / 2 ** 10
    except ImportError:  # Windows
        try:
            import psutil
            return psutil.Process().memory_info().peak_wset / 2 ** 20
        except (ImportError, AttributeError):
            return None
