"""Profiles: what differs between the graded run and the nbval smoke test, as plain data.

``full`` (default) is the graded run. ``quick`` (``A3_PROFILE=quick``) trains on a subset for a few
epochs so the whole notebook runs in a few minutes under nbval; it reads and writes its own
results folder and never touches the full run's results. What is trained (the recipes) is declared
in the notebook; a profile only sets the data sizes, epochs and seeds those recipes use.
Environment: ``A3_PROFILE`` (full|quick), ``A3_RERUN=1`` (retrain: ignore results stored before the retrain began),
``A3_PROGRESS=0`` (no progress bars), ``A3_WORKERS=N`` (runs side by side; default: by cores and memory; 0: in
this process), ``A3_DEVICE`` (see device.py), ``A3_CPU_KERNELS`` (see kernels.py).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOLING = "tooling"  # the tag of outputs that only serve the machine (run logs): the PDF leaves them out


@dataclass(frozen=True)
class Profile:
    """One profile's settings."""

    name: str
    train_samples: int                 # images every run trains on
    validation_samples: int            # held out from the 60 000 training images: every choice is made on these
    test_samples: int                  # the test set only reports
    train_eval_samples: int            # fixed sample of the training images on which train accuracy is measured
    epochs: int = 10                   # Q1.2, Q1.4, Q1.5, Q1.7
    max_epochs: int = 50               # Q1.5: the structures train this long
    long_epochs: int = 150             # Q1.2, Q1.3: every learning rate trains this long
    target_accuracy: float = 0.90      # Q1.3
    seeds: tuple[int, ...] = (0, 1, 2)            # the seeds reported
    selection_seeds: tuple[int, ...] = (100, 101, 102)  # the seeds every choice is made with (never reported)
    gradient_seeds: int = 10           # Q1.6: seeds per rate over the first 100 steps
    probe_images: int = 1024           # Q1.6: the fixed probe batch, the first training images
    results_dir: Path = ROOT / "results"
    data_root: Path = ROOT / "data"

    def describe(self) -> str:
        """Two lines: the data (train accuracy is measured on a fixed sample of the training images) and the epochs."""
        return (f"{self.name} profile: {self.train_samples:,} train images (train accuracy on {self.train_eval_samples:,} "
                f"of them), {self.validation_samples:,} validation, {self.test_samples:,} test\n"
                f"{self.epochs} epochs (Q1.3: {self.long_epochs}, Q1.5: {self.max_epochs})")

    @property
    def rerun_mark(self) -> Path:
        """Where a retrain (A3_RERUN=1) keeps the time it began, until the notebook's end (summary.save)."""
        return self.results_dir / "rerun-since.json"

    @property
    def data_sizes(self) -> dict[str, int]:
        """The image counts a run sees, as stored with its results."""
        return {"train": self.train_samples, "validation": self.validation_samples,
                "test": self.test_samples, "train_eval": self.train_eval_samples}


PROFILES = {
    "full": Profile("full", train_samples=55_000, validation_samples=5_000, test_samples=10_000,
                    train_eval_samples=10_000),
    "quick": Profile("quick", train_samples=4_000, validation_samples=500, test_samples=1_000,
                     train_eval_samples=1_000, epochs=2, max_epochs=4, long_epochs=6, seeds=(0, 1), selection_seeds=(100, 101),
                     gradient_seeds=3, probe_images=128, results_dir=ROOT / "results" / "quick"),
}


def get_profile(name: str | None = None) -> Profile:
    """Return the profile called `name`, or the one named by env A3_PROFILE (default 'full')."""
    name = name or os.environ.get("A3_PROFILE", "full")
    if name not in PROFILES:
        raise ValueError(f"A3_PROFILE={name!r} is unknown; choose one of {sorted(PROFILES)}")
    return PROFILES[name]


def workers_requested() -> int | None:
    """Runs trained side by side, as env A3_WORKERS asks (None: decide by cores and memory; 0: in this process)."""
    value = os.environ.get("A3_WORKERS")
    if value is None:
        return None
    if not value.isdigit():
        raise ValueError(f"A3_WORKERS={value!r}: must be a whole number (0: train in this process)")
    return int(value)


def cores() -> int:
    """The CPU cores this process may use."""
    usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    return max(1, len(usable))
