"""Profiles: every knob of the notebook's experiments in one place, as plain data.

``full`` (default) is the graded run. ``quick`` (``A3_PROFILE=quick``) trains on a subset for a few
epochs so the whole notebook runs in about a minute under nbval; it reads and writes its own
results folder and never touches the full run's results.
Environment: ``A3_PROFILE`` (full|quick), ``A3_RERUN=1`` (retrain, ignore cached results),
``A3_PROGRESS=0`` (no progress bars).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Profile:
    """One profile's settings."""

    name: str
    train_samples: int | None = None          # None: all 60000
    test_samples: int | None = None           # None: all 10000
    results_dir: Path = ROOT / "results"
    data_root: Path = ROOT / "data"
    # Q1.2-Q1.4: the demo scheme (SGD, batch 64) at several learning rates
    learning_rates: tuple[float, ...] = (1.0, 0.1, 0.01, 0.001)
    batch_size: int = 64
    epochs: int = 10                          # Q1.2 and Q1.5
    max_epochs: int = 50                      # Q1.3: cap on epochs spent reaching the target
    target_accuracy: float = 0.90             # Q1.3
    # Q1.5: structures trained with the demo scheme at this learning rate, over these seeds
    structure_lr: float = 0.1
    seeds: tuple[int, ...] = (0, 1, 2)
    gradient_steps: int = 100                 # Q1.6
    # Q1.7: the CNN's own training scheme
    cnn_epochs: int = 10
    cnn_lr: float = 0.02
    cnn_batch_size: int = 128
    cnn_optimizer: str = "adamw"
    cnn_weight_decay: float = 0.05
    cnn_schedule: str = "onecycle"
    cnn_flip: bool = True                     # random left-right mirroring of training images


PROFILES = {
    "full": Profile("full"),
    "quick": Profile("quick", train_samples=4000, test_samples=1000, results_dir=ROOT / "results" / "quick",
                     epochs=2, max_epochs=3, seeds=(0, 1), cnn_epochs=2),
}


def get_profile(name: str | None = None) -> Profile:
    """Return the profile called `name`, or the one named by env A3_PROFILE (default 'full')."""
    name = name or os.environ.get("A3_PROFILE", "full")
    if name not in PROFILES:
        raise ValueError(f"A3_PROFILE={name!r} is unknown; choose one of {sorted(PROFILES)}")
    return PROFILES[name]


def rerun_requested() -> bool:
    """True when env A3_RERUN=1 asks to retrain instead of loading cached results."""
    return os.environ.get("A3_RERUN", "0") == "1"


def progress_enabled() -> bool:
    """False when env A3_PROGRESS=0 turns progress bars off (batch runs, CI)."""
    return os.environ.get("A3_PROGRESS", "1") != "0"

