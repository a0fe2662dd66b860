"""Runs side by side: a ``concurrent.futures.ProcessPoolExecutor`` of spawned workers (one CPU thread each) that
report on a queue, so that a cell can say which run a dead worker held, stop a worker that has gone silent, keep
every run that finished, and end all its workers when interrupted (twice, too). Only public APIs are used.
"""
from __future__ import annotations

import multiprocessing
import queue
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import workers
from .sourcecode import PACKAGE

# A worker's first code: import helpers from this project (where it cannot, `death` asks a fresh process why), then
# start. Spawned workers start with this process's sys.path, where "" is the folder torch was first imported in.
BOOT = """
import sys
sys.path.insert(0, path)
from helpers import workers
workers.start(events)
"""


class WorkerDied(RuntimeError):
    """A worker process ended abruptly while training (killed, out of memory, crashed), or went silent."""


@dataclass
class Reports:
    """What the workers said: who is ready, which run each is training, when each was last heard from."""

    ready: set[int] = field(default_factory=set)
    running: dict[int, str] = field(default_factory=dict)
    heard: dict[int, float] = field(default_factory=dict)

    def read(self, events: Any, on_epoch: Callable[[], None]) -> None:
        """Take every report waiting on the queue."""
        while True:
            try:
                kind, pid, name = events.get_nowait()
            except (queue.Empty, OSError, ValueError):
                return
            self.heard[pid] = time.monotonic()
            if kind == "ready":
                self.ready.add(pid)
            elif kind == "start":
                self.running[pid] = name
            else:
                on_epoch()

    def finished(self, name: str) -> None:
        self.running = {pid: run for pid, run in self.running.items() if run != name}


def train(jobs: dict[str, tuple], count: int, save: Callable[[str, dict], None], on_epoch: Callable[[], None],
          silence: dict[str, float], function: Callable[..., dict] = workers.train_one) -> None:
    """Run `function(*job)` for every job on `count` spawned workers, calling `save(name, result)` as each
    finishes. A worker that dies, or whose run sends nothing for `silence[name]` seconds, stops the call with one
    line naming its run, after every finished result is saved."""
    context = multiprocessing.get_context("spawn")  # fork is unsafe with threads; spawn works on every OS
    events = context.Queue()
    pool = ProcessPoolExecutor(count, mp_context=context, initializer=exec,
                               initargs=(BOOT, {"events": events, "path": str(PACKAGE.parent)}))
    reports = Reports()
    failed: list[BaseException] = []
    try:
        futures = {pool.submit(function, *job): name for name, job in jobs.items()}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            reports.read(events, on_epoch)
            failed += collect(done, futures, save, reports)
            for pid, name in reports.running.items():
                quiet = time.monotonic() - reports.heard[pid]
                if quiet > silence[name]:
                    raise WorkerDied(f"run {name}: its worker has sent nothing for {quiet / 60:.1f} min, more than "
                                     f"{silence[name] / 60:.1f} min that an epoch may take here; it was stopped. The "
                                     f"runs that had finished are kept; run the cell again to retry it")
    finally:
        stop(pool)
        events.close()
    if failed:  # a run's own error, raised once the other runs have finished and been saved
        raise failed[0]


def collect(done: set[Future], futures: dict[Future, str], save: Callable[[str, dict], None],
            reports: Reports) -> list[BaseException]:
    """Save every finished run among `done`; then raise for a worker that died (the pool is broken: no run can go
    on), or return the errors of runs that failed by themselves (the others go on)."""
    errors = []
    for future in done:
        error = future.exception()
        if isinstance(error, BrokenProcessPool):
            errors.insert(0, error)
            continue
        reports.finished(futures[future])
        if error is None:
            save(futures[future], future.result())
        else:
            errors.append(error)
    if errors and isinstance(errors[0], BrokenProcessPool):
        raise WorkerDied(death(futures, reports)) from None
    return errors


def death(futures: dict[Future, str], reports: Reports) -> str:
    """One line: which run's worker ended, and the likely cause."""
    if not reports.ready and (error := import_error()):  # in the main module (a script's) or in `BOOT`
        return f"a worker could not import helpers from {PACKAGE.parent} ({error})"
    if not reports.ready:  # the workers died before their first report: importing the main module failed
        main = getattr(sys.modules.get("__main__"), "__file__", None)
        if main and not Path(main).is_file():
            return (f"the worker processes import this program's main module, but it is {main!r}, not a file: save "
                    f"the script to a file and run it as `python FILE.py`, or set A3_WORKERS=0 to train in this process")
        return ("the worker processes ended while starting, before any run: each first imports this program's main "
                f"module{f' ({Path(main).name})' if main else ''}; if it trains when imported, put that code under "
                "`if __name__ == \"__main__\":` (the workers' error is printed above)")
    # the pool ends every worker once one has died: which one died first, it does not say
    running = sorted(set(reports.running.values())) or [name for future, name in futures.items()
                                                         if not future.done() or future.exception()]
    cause = (f"run {running[0]}: its worker process ended abruptly" if len(running) == 1 else
             f"a worker process ended abruptly while training one of {', '.join(running)}")
    return (cause + " (killed by the system, most likely out of memory, or crashed); the runs that had finished are "
            "kept, run the cell again to train the rest")


def import_error() -> str | None:
    """Why a fresh Python process cannot import this project's helpers (the last line of its error), or None."""
    done = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(PACKAGE.parent)!r}); "
                           "import helpers.workers"], capture_output=True, text=True, timeout=300)
    lines = done.stderr.strip().splitlines()
    return (lines[-1] if lines else f"exit code {done.returncode}") if done.returncode else None


def stop(pool: ProcessPoolExecutor) -> None:
    """Shut the pool down now: cancel what has not started and end every worker still running. An interrupt
    while stopping (a second Ctrl-C) does not stop the stopping; it is raised afterwards."""
    interrupted: BaseException | None = None
    for attempt in range(3):
        try:
            for process in multiprocessing.active_children():  # the pool's workers (this kit starts no others)
                process.terminate()
            pool.shutdown(wait=True, cancel_futures=True)
            break
        except KeyboardInterrupt as error:
            interrupted = error
    if interrupted is not None:
        raise interrupted
