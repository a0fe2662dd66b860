"""Run-or-load: each recipe's History is cached as ``RESULTS_DIR/NAME.json``, keyed by what was trained.

The key is the recipe, the data sizes, the network's architecture (modules, parameter count, forward
code) and CACHE_VERSION, which is bumped whenever the training code changes what a run means. A file
with another key is reported in one line saying what changed, and that run trains again; so is a
truncated or unreadable file. Files are written atomically, as each run finishes, so stopping the
notebook midway keeps every finished run and the next call resumes after them.

Missing runs train side by side on the CPU, one worker process and one thread each (one worker per
core); on a GPU they train one after another on the device.
"""
from __future__ import annotations

import functools
import json
import multiprocessing
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from . import models
from .config import Profile, progress_enabled, rerun_requested, worker_count
from .data import Splits, load_fashion_mnist, split
from .training import History, Recipe, fit, pick_device

CACHE_VERSION = 2
_names: dict[tuple[Path, str], dict[str, Any]] = {}  # run name -> key, for this process
_written: set[Path] = set()                           # results files this process trained and wrote
TOOLING = "tooling"  # output tag: run logs stay in the notebook and are left out of the PDF


def run(recipes: dict[str, Recipe], profile: Profile, *, rerun: bool | None = None, workers: int | None = None,
        log: Callable[[str], None] | None = None) -> dict[str, History]:
    """Return each recipe's History: loaded from the cache when its key matches, else trained and saved."""
    log = log or note
    rerun = rerun_requested() if rerun is None else rerun
    keys = {name: cache_key(recipe, profile) for name, recipe in recipes.items()}
    for name, key in keys.items():  # one name, one recipe: two recipes under one name would overwrite each other
        if _names.setdefault((profile.results_dir, name), key) != key:
            raise ValueError(f"run name {name!r} is already used for another recipe in this session: "
                             f"give this recipe its own name ({what_changed(_names[(profile.results_dir, name)], key)})")
    histories: dict[str, History] = {}
    for name in recipes:
        path = profile.results_dir / f"{name}.json"
        # A3_RERUN retrains what earlier sessions wrote, not what this one already trained
        cached = None if rerun and path not in _written else load_cached(path, keys[name], log)
        if cached is not None:
            histories[name] = cached
    missing = {name: recipe for name, recipe in recipes.items() if name not in histories}
    if missing:
        start = time.perf_counter()
        histories.update(train(missing, keys, profile, workers))
        log(f"trained {len(missing)} of {len(recipes)} runs in {(time.perf_counter() - start) / 60:.1f} min "
            f"({', '.join(missing)}); {len(recipes) - len(missing)} loaded from {_shown(profile.results_dir)}/")
    else:
        log(f"all {len(recipes)} runs loaded from {_shown(profile.results_dir)}/")
    return {name: histories[name] for name in recipes}


def cache_key(recipe: Recipe, profile: Profile) -> dict[str, Any]:
    """What a cached result must match to be reused: recipe, data sizes, architecture, cache version."""
    return {"version": CACHE_VERSION, "recipe": asdict(recipe), "data": profile.data_sizes,
            "architecture": _architecture(recipe.model)}


@functools.lru_cache(maxsize=None)
def _architecture(name: str) -> dict[str, Any]:
    return models.architecture(name)


def what_changed(old: dict[str, Any], new: dict[str, Any]) -> str:
    """A short phrase naming how two cache keys differ."""
    if old.get("version") != new["version"]:
        return f"the training code changed (cache version {old.get('version')} -> {new['version']})"
    if old.get("architecture") != new["architecture"]:
        before = (old.get("architecture") or {}).get("parameters")
        return (f"the network changed ({before:,} -> {new['architecture']['parameters']:,} parameters)"
                if isinstance(before, int) and before != new["architecture"]["parameters"]
                else "the network's definition changed")
    if old.get("data") != new["data"]:
        return f"the data sizes changed ({old.get('data')} -> {new['data']})"
    recipe = old.get("recipe") or {}
    changes = [f"{k} {recipe.get(k)!r} -> {v!r}" for k, v in new["recipe"].items() if recipe.get(k) != v]
    return "the recipe changed (" + ", ".join(changes) + ")"


def load_cached(path: Path, key: dict[str, Any], log: Callable[[str], None] = print) -> History | None:
    """Return the History cached at `path` if it is intact and was made with `key`, else None (saying why)."""
    if not path.exists():
        return None
    try:
        stored = json.loads(path.read_text())
        if stored["key"] != key:
            log(f"{name_of(path)}: {what_changed(stored['key'], key)} since {_shown(path)} was written; "
                f"training again")
            return None
        return History.from_dict(stored["history"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        log(f"{name_of(path)}: {_shown(path)} is unreadable ({type(error).__name__}); training again")
        return None


def write_json(path: Path, content: Any) -> None:
    """Write JSON atomically: a temp file in the same folder, then rename over `path`; no temp file is left."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".tmp")
    try:
        with open(partial, "w") as f:
            json.dump(content, f, separators=(",", ":"), allow_nan=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


@functools.lru_cache(maxsize=2)
def splits(profile: Profile) -> Splits:
    """The profile's train/validation/test tensors (loaded once per process)."""
    return split(load_fashion_mnist(profile.data_root), **profile.data_sizes)


def train_one(recipe: Recipe, profile: Profile, device: torch.device | None = None,
              on_epoch: Callable[[int], None] | None = None) -> History:
    """Build the recipe's model (seeded) and fit it on the profile's data; the History as it is stored."""
    history = fit(models.build(recipe.model, recipe.seed), splits(profile), recipe, device=device, on_epoch=on_epoch)
    return History.from_dict(json.loads(json.dumps(history.to_dict())))  # fresh and cached runs read alike


def train(recipes: dict[str, Recipe], keys: dict[str, dict[str, Any]], profile: Profile,
          workers: int | None = None) -> dict[str, History]:
    """Train the recipes, longest first, saving each as it finishes: side by side on the CPU, in turn on a GPU."""
    device = pick_device()
    order = sorted(recipes, key=lambda name: -recipes[name].epochs * models.relative_cost(recipes[name].model))
    workers = min(workers or worker_count(), len(order)) if device.type == "cpu" else 1
    bar = tqdm(total=sum(r.epochs for r in recipes.values()), unit="epoch", disable=not progress_enabled(),
               desc=f"training {len(order)} runs ({workers} side by side)" if workers > 1 else f"training {len(order)} runs")
    done: dict[str, History] = {}

    def save(name: str, history: History) -> None:
        path = profile.results_dir / f"{name}.json"
        write_json(path, {"key": keys[name], "history": history.to_dict()})
        _written.add(path)
        bar.total -= recipes[name].epochs - history.epochs  # runs that stopped early
        bar.refresh()
        done[name] = history

    try:
        if workers == 1:
            for name in order:
                save(name, train_one(recipes[name], profile, device, on_epoch=lambda epoch: bar.update()))
        else:
            _train_side_by_side(order, recipes, profile, workers, bar, save)
    finally:
        bar.close()
    return done


def _train_side_by_side(order: list[str], recipes: dict[str, Recipe], profile: Profile, workers: int, bar,
                        save: Callable[[str, History], None]) -> None:
    context = multiprocessing.get_context("spawn")  # fork is unsafe with threads; spawn also works on macOS/Windows
    progress = context.Queue()
    with context.Pool(workers, initializer=_worker_start, initargs=(progress,)) as pool:  # exit: terminate workers
        jobs = {name: pool.apply_async(_worker_train, (recipes[name], profile)) for name in order}
        while jobs:
            while not progress.empty():
                bar.update(progress.get())
            for name in [name for name, job in jobs.items() if job.ready()]:
                save(name, History.from_dict(jobs.pop(name).get()))  # .get() re-raises a worker's error
            time.sleep(0.2)


_progress = None


def _worker_start(progress) -> None:
    global _progress
    _progress = progress
    torch.set_num_threads(1)


def _worker_train(recipe: Recipe, profile: Profile) -> dict[str, Any]:
    return train_one(recipe, profile, torch.device("cpu"), on_epoch=lambda epoch: _progress.put(1)).to_dict()


def name_of(path: Path) -> str:
    """The run name a results file belongs to."""
    return path.name.removesuffix(".json")


def note(line: str) -> None:
    """Print a log line; in a notebook, as an output tagged TOOLING so the PDF leaves it out."""
    try:
        from IPython import get_ipython
        from IPython.display import Pretty, display
        if get_ipython() is not None:
            display(Pretty(line), metadata={"tags": [TOOLING]})
            return
    except ImportError:
        pass
    print(line)


def _shown(path: Path) -> str:
    """The path relative to the working directory when possible (shorter in notebook output)."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
