"""Runs side by side in worker processes: spawned fresh (they import the code on disk and the pinned CPU
kernels), one CPU thread each, as many as the cores and the free memory allow (on a GPU: a few at once).

A worker that dies (out of memory, killed) stops the call within a second with one line naming its run;
every run that finished before is kept. Ctrl-C stops the workers too.
"""
from __future__ import annotations

import functools
import multiprocessing
import os
import pickle
import queue
import sys
from typing import Any, Callable

import torch

from . import models
from .config import Profile, cores, workers_requested
from .data import load_fashion_mnist
from .device import CUDA_ENVIRONMENT, make_deterministic
from .splits import Splits, split
from .training import History, Recipe, fit

WORKER_MB = 1200     # peak memory of one worker (torch, one uint8 copy of the data, the largest run): README
GPU_RUNS = 4         # runs sharing one GPU at once: a batch-64 run alone leaves it mostly idle

Job = tuple[str, Recipe, dict[str, Any]]  # run name, recipe, network spec (models.spec)


class WorkerDied(RuntimeError):
    """A worker process ended while training a run (killed, out of memory)."""


def free_memory_mb() -> float:
    """Memory available to new processes, in MB (unknown: infinite)."""
    try:
        import psutil
        return psutil.virtual_memory().available / 2 ** 20
    except ImportError:
        return float("inf")


def worker_count(device: torch.device, jobs: int) -> int:
    """How many runs train at once: A3_WORKERS, else by cores and free memory (CUDA: up to GPU_RUNS; MPS: 1)."""
    asked = workers_requested()
    if asked is None:
        free = free_memory_mb()
        fitting = int(free // WORKER_MB) if free != float("inf") else cores()
        limit = {"cpu": cores(), "cuda": min(cores(), GPU_RUNS)}.get(device.type, 1)
        asked = max(1, min(limit, fitting))
    return max(1, min(asked, jobs))


@functools.lru_cache(maxsize=2)
def splits(profile: Profile) -> Splits:
    """The profile's train/validation/test images (uint8, loaded once per process)."""
    return split(load_fashion_mnist(profile.data_root), **profile.data_sizes)


def train_one(recipe: Recipe, network: dict[str, Any], profile: Profile, device: torch.device,
              on_epoch: Callable[[int], None] = lambda epoch: None) -> History:
    """Build the network (seeded) and fit it on the profile's data."""
    return fit(models.from_spec(network, recipe.seed), splits(profile), recipe, device, on_epoch)


def peak_memory_mb() -> float | None:
    """The largest resident memory this process has used so far, in MB. On Linux the high-water mark of its
    own memory (getrusage's maximum would include the parent's memory, copied when the worker was forked)."""
    try:
        with open("/proc/self/status") as f:
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


def train(jobs: list[Job], profile: Profile, device: torch.device, workers: int,
          on_epoch: Callable[[], None], on_done: Callable[[str, History], None]) -> None:
    """Train the jobs (longest first) in `workers` spawned processes; call on_done as each run finishes."""
    if device.type == "cuda":
        for name, value in CUDA_ENVIRONMENT.items():
            os.environ.setdefault(name, value)
    context = multiprocessing.get_context("spawn")  # fork is unsafe with threads; spawn works on every OS
    tasks, events = context.Queue(), context.Queue()
    for job in jobs:
        tasks.put(job)
    processes = [context.Process(target=_work, args=(tasks, events, profile, device.type), daemon=True)
                 for _ in range(workers)]
    for process in processes:
        tasks.put(None)
        process.start()
    running: dict[int, str] = {}
    left = len(jobs)
    try:
        while left:
            try:
                kind, pid, name, payload = events.get(timeout=0.5)
            except queue.Empty:
                _check_alive(processes, running)
                continue
            if kind == "start":
                running[pid] = name
            elif kind == "epoch":
                on_epoch()
            elif kind == "done":
                running.pop(pid, None)
                left -= 1
                on_done(name, History.from_dict(payload))
            else:
                raise payload
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.join(timeout=5)


def _check_alive(processes: list, running: dict[int, str]) -> None:
    """Raise WorkerDied, in one line, if a worker ended while it trained a run (or all ended early)."""
    for process in processes:
        if process.exitcode is not None and process.pid in running:
            cause = ("killed by the system, most likely out of memory (or by a signal)" if process.exitcode < 0
                     else f"exit code {process.exitcode}")
            raise WorkerDied(f"run {running[process.pid]}: its worker process ended ({cause}); the runs that had "
                             f"finished are kept, run the cell again to train the rest")
    if all(process.exitcode is not None for process in processes):
        raise WorkerDied("every worker process ended before its runs finished; run the cell again")


def _work(tasks, events, profile: Profile, device_type: str) -> None:
    """A worker: train jobs from `tasks` until a None, reporting on `events`."""
    pid, device = os.getpid(), torch.device(device_type)
    torch.set_num_threads(1)
    make_deterministic(device)
    while (job := tasks.get()) is not None:
        name, recipe, network = job
        events.put(("start", pid, name, None))
        try:
            history = train_one(recipe, network, profile, device,
                                on_epoch=lambda epoch: events.put(("epoch", pid, name, None)))
        except BaseException as error:  # sent to the notebook, which raises it
            events.put(("error", pid, name, _sendable(error, name)))
            return
        history.peak_memory_mb = peak_memory_mb()
        events.put(("done", pid, name, history.to_dict()))


def _sendable(error: BaseException, name: str) -> BaseException:
    """The error itself if it can cross to the notebook's process, else a RuntimeError with its text."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:
        return RuntimeError(f"run {name}: {type(error).__name__}: {error}")
