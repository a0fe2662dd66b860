"""Run-or-load: every experiment's History is cached as ``RESULTS_DIR/NAME.json``, keyed by its settings.

A cached file is reused only when its settings equal the requested ones; a missing, truncated or
unreadable file is reported in one line and that experiment trains again. Files are written
atomically (temp file + rename), so stopping the notebook midway loses only the run in progress.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from .config import Profile, progress_enabled, rerun_requested
from .data import load_fashion_mnist
from .models import STRUCTURES, build
from .training import History, check_settings, fit

CACHE_VERSION = 1


@dataclass(frozen=True)
class Experiment:
    """What to train: a model name and fit()'s settings. Together with the profile, the cache key."""

    model: str
    lr: float
    epochs: int
    seed: int = 0
    batch_size: int = 64
    optimizer: str = "sgd"
    weight_decay: float = 0.0
    schedule: str = "constant"
    flip: bool = False
    target_accuracy: float | None = None
    stop_at_target: bool = False
    min_epochs: int = 1
    track_gradient_steps: int = 0


def cache_key(experiment: Experiment, profile: Profile) -> dict[str, Any]:
    """The settings a cached result must match to be reused."""
    return {"version": CACHE_VERSION, "profile": profile.name, "train_samples": profile.train_samples,
            "test_samples": profile.test_samples, **asdict(experiment)}


def run(name: str, experiment: Experiment, profile: Profile, *, rerun: bool | None = None,
        log: Callable[[str], None] = print) -> History:
    """Return the experiment's History: loaded from the cache when its settings match, else trained and saved."""
    build(experiment.model)  # unknown model names fail here, before any data is loaded
    check_settings(epochs=experiment.epochs, lr=experiment.lr, batch_size=experiment.batch_size,
                   optimizer=experiment.optimizer, schedule=experiment.schedule,
                   target_accuracy=experiment.target_accuracy)
    path = profile.results_dir / f"{name}.json"
    key = cache_key(experiment, profile)
    if not (rerun_requested() if rerun is None else rerun):
        cached = load_cached(path, key, log)
        if cached is not None:
            log(f"{name}: loaded from {_shown(path)}")
            return cached
    data = load_fashion_mnist(profile.data_root).subset(profile.train_samples, profile.test_samples)
    settings = asdict(experiment)
    model = build(settings.pop("model"), experiment.seed)
    start = time.perf_counter()
    history = fit(model, data, **settings, progress=progress_enabled(), description=name)
    write_json(path, {"key": key, "history": history.to_dict()})
    outcome = (f"diverged at step {history.diverged_step}" if history.diverged
               else f"test accuracy {history.test_accuracy[-1]:.4f}")
    log(f"{name}: trained {history.epochs} epochs in {time.perf_counter() - start:.0f} s, {outcome}")
    return history


def load_cached(path: Path, key: dict[str, Any], log: Callable[[str], None] = print) -> History | None:
    """Return the History cached at `path` if it is intact and was made with `key`, else None (saying why)."""
    if not path.exists():
        return None
    try:
        stored = json.loads(path.read_text())
        if stored["key"] != key:
            log(f"{name_of(path)}: settings changed since {_shown(path)} was written; training again")
            return None
        return History.from_dict(stored["history"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        log(f"{name_of(path)}: {_shown(path)} is unreadable ({type(error).__name__}); training again")
        return None


def write_json(path: Path, content: Any) -> None:
    """Write JSON atomically: a temp file in the same folder, then rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".tmp")
    with open(partial, "w") as f:
        json.dump(content, f, separators=(",", ":"), allow_nan=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)


def learning_rate_runs(profile: Profile) -> dict[float, History]:
    """Q1.2/Q1.3: the base MLP per learning rate, until train and test accuracy reach the target (capped)."""
    return {lr: run(f"lr_{lr:g}", Experiment(
        "base", lr, profile.max_epochs, batch_size=profile.batch_size, target_accuracy=profile.target_accuracy,
        stop_at_target=True, min_epochs=profile.epochs, track_gradient_steps=profile.gradient_steps), profile)
        for lr in profile.learning_rates}


def structure_runs(profile: Profile, lr_runs: dict[float, History] | None = None) -> dict[str, list[History]]:
    """Q1.5: every MLP structure with the demo scheme at `structure_lr`, one run per seed.

    The base MLP with seed 0 at `structure_lr` is the first `epochs` epochs of that learning-rate run
    (same weights, same shuffling, constant lr), so it is taken from `lr_runs` instead of retrained.
    """
    def one(structure: str, seed: int) -> History:
        if structure == "base" and seed == 0 and lr_runs and profile.structure_lr in lr_runs:
            return lr_runs[profile.structure_lr].first_epochs(profile.epochs)
        return run(f"{structure}_seed{seed}", Experiment(
            structure, profile.structure_lr, profile.epochs, seed=seed, batch_size=profile.batch_size), profile)

    return {structure: [one(structure, seed) for seed in profile.seeds] for structure in STRUCTURES}


def cnn_runs(profile: Profile) -> list[History]:
    """Q1.7: the small CNN with its own training scheme, one run per seed."""
    return [run(f"cnn_seed{seed}", Experiment(
        "cnn", profile.cnn_lr, profile.cnn_epochs, seed=seed, batch_size=profile.cnn_batch_size,
        optimizer=profile.cnn_optimizer, weight_decay=profile.cnn_weight_decay,
        schedule=profile.cnn_schedule, flip=profile.cnn_flip), profile) for seed in profile.seeds]


def name_of(path: Path) -> str:
    """The experiment name a results file belongs to."""
    return path.name.removesuffix(".json")


def _shown(path: Path) -> str:
    """The path relative to the working directory when possible (shorter in notebook output)."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
