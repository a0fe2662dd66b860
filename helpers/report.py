"""Numbers read from Histories: how a run ended, a setting over its seeds, and the one rule for "different":
p < ALPHA — Welch's t-test between two settings, the paired t-test for a change within the same runs; where a table
compares several settings with one reference, the p-values are Holm-adjusted for the family. A run *learned* when
it ends with at least LEARNED accuracy."""
from __future__ import annotations

import math
import statistics
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from scipy import stats

from .data import CLASS_NAMES
from .training import History, first_reaching

LEARNED = 0.5
ALPHA = 0.05
Group = list[History]  # one setting's runs, in seed order


def group(runs: dict[str, History], field: str) -> dict[Any, Group]:
    """Runs grouped by a recipe field (e.g. 'lr'), each group in seed order."""
    groups: dict[Any, Group] = {}
    for run in runs.values():
        groups.setdefault(getattr(run.recipe, field), []).append(run)
    return {key: sorted(members, key=lambda r: r.recipe.seed) for key, members in groups.items()}


def final(run: History, series: str = "test_accuracy") -> float | None:
    """The last value of a per-epoch series; None for a run that diverged or completed no epoch."""
    return None if run.diverged or not getattr(run, series) else getattr(run, series)[-1]


def outcome(run: History) -> str:
    """'diverged at step N', 'did not learn' or 'learned'."""
    if run.diverged:
        return f"diverged at step {run.diverged_step}"
    return "learned" if (final(run) or 0) >= LEARNED else "did not learn"


def outcomes(runs: Group) -> str:
    """How a group's runs ended, counted: '3 learned', '2 learned, 1 did not learn', 'diverged at steps 5, 7'."""
    ends = [outcome(run) for run in runs]
    lost = [end.rsplit(" ", 1)[1] for end in ends if end.startswith("diverged")]
    parts = [f"{ends.count(kind)} {kind}" for kind in ("learned", "did not learn") if kind in ends]
    return ", ".join(parts + ([f"diverged at step{'s' * (len(lost) > 1)} {', '.join(lost)}"] if lost else []))


def values(runs: Group, value: str | Callable[[History], float | None] = "test_accuracy") -> list[float | None]:
    """Per seed: the final value of a series (by name), or value(run); None where there is none."""
    return [value(run) if callable(value) else final(run, value) for run in runs]


def finite(xs: list[float | None]) -> list[float]:
    return [x for x in xs if x is not None and math.isfinite(x)]


def mean(xs: list[float | None]) -> float | None:
    """Mean of the finite values (None when there are none)."""
    return statistics.fmean(finite(xs)) if finite(xs) else None


def std(xs: list[float | None]) -> float | None:
    """Sample standard deviation of the finite values (None for fewer than two: one seed has no spread to show)."""
    kept = finite(xs)
    return statistics.stdev(kept) if len(kept) > 1 else None


@dataclass
class Difference:
    """a − b: the difference of the means, the half-width of its 95 % confidence interval, and the p-value."""

    difference: float | None
    ci: float | None
    p: float | None

    @property
    def real(self) -> bool:
        return self.p is not None and self.p < ALPHA


def _tested(test: Callable[[], Any], difference: float) -> Difference:
    """A scipy t-test's interval and p-value (with no spread at all the difference is exact)."""
    with warnings.catch_warnings():  # no spread: scipy warns and gives nan
        warnings.simplefilter("ignore", RuntimeWarning)
        result = test()
    if math.isnan(result.pvalue):
        return Difference(difference, 0.0, 1.0 if difference == 0 else 0.0)
    low, high = result.confidence_interval(0.95)
    return Difference(difference, float(high - low) / 2, float(result.pvalue))


def compare(a: list[float | None], b: list[float | None]) -> Difference:
    """Two settings' seeds: Welch's t-test (nothing to test with fewer than two finite seeds a side)."""
    x, y = finite(a), finite(b)
    if len(x) < 2 or len(y) < 2:
        return Difference(mean(x) - mean(y) if x and y else None, None, None)
    return _tested(lambda: stats.ttest_ind(x, y, equal_var=False), mean(x) - mean(y))


def paired(after: list[float | None], before: list[float | None]) -> Difference:
    """A change within the same runs (after − before, seed by seed): the paired t-test."""
    pairs = [(a, b) for a, b in zip(after, before) if a is not None and b is not None]
    if len(pairs) < 2:
        return Difference(pairs[0][0] - pairs[0][1] if pairs else None, None, None)
    return _tested(lambda: stats.ttest_rel(*zip(*pairs)), statistics.fmean(a - b for a, b in pairs))


def ci95(xs: list[float]) -> float:
    """Half-width of the 95 % confidence interval of the mean (Student's t); 0 for fewer than two values."""
    kept = finite(xs)
    return float(stats.t.ppf(0.975, len(kept) - 1) * statistics.stdev(kept) / math.sqrt(len(kept))) \
        if len(kept) > 1 else 0.0


def epochs_reaching(runs: Group, target: float, series: str) -> list[int | None]:
    """Per seed: the first epoch whose accuracy (a series name) reached `target`, or None."""
    return [first_reaching(getattr(run, series), target) for run in runs]


def seconds_per_epoch(runs: Group) -> float:
    """Median training seconds per epoch over all epochs of the runs."""
    return statistics.median(s for run in runs for s in run.seconds)


def distinct_predictions(run: History) -> int | None:
    """How many different classes the final model predicts over the test set (None: diverged)."""
    return sum(1 for column in zip(*run.confusion) if sum(column) > 0) if run.confusion else None


def holm(ps: list[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of a family of p-values (None stays None): the family's error rate stays
    below ALPHA however many settings are compared with one reference."""
    known = sorted((p, i) for i, p in enumerate(ps) if p is not None)
    adjusted: list[float | None] = [None] * len(ps)
    running = 0.0
    for rank, (p, i) in enumerate(known):
        running = max(running, min(1.0, (len(known) - rank) * p))
        adjusted[i] = running
    return adjusted


def best(run: History, series: str = "test_accuracy") -> float | None:
    """The highest value of a per-epoch series (None: none)."""
    return max(getattr(run, series), default=None)


def at_best_validation(run: History) -> float | None:
    """The test accuracy at the epoch whose validation accuracy is highest (the first such epoch): chosen on
    validation, so an unbiased test figure."""
    if not run.validation_accuracy:
        return None
    return run.test_accuracy[max(range(len(run.validation_accuracy)), key=run.validation_accuracy.__getitem__)]


def lowest_loss_epoch(run: History) -> int | None:
    """The epoch (from 1) of the lowest test loss, if every epoch's loss is finite (None: a run that diverged)."""
    losses = run.test_loss
    if not losses or not all(math.isfinite(x) for x in losses):
        return None
    return min(range(len(losses)), key=losses.__getitem__) + 1


def at_compute(run: History, tflop: float) -> float | None:
    """The validation accuracy after `tflop` TFLOP of training, interpolated linearly between the epochs around it
    (None beyond the run, or before its first epoch)."""
    spent = training_tflop(run)
    if not spent or not spent[0] <= tflop <= spent[-1] * (1 + 1e-9):
        return None
    return float(np.interp(tflop, spent, run.validation_accuracy))


def per_class(runs: Group) -> dict[str, float]:
    """Test accuracy per class (the share of each class's images predicted right), mean over the runs."""
    rows = [[row[c] / sum(row) for c, row in enumerate(run.confusion)] for run in runs if run.confusion]
    return {name: statistics.fmean(r[c] for r in rows) for c, name in enumerate(CLASS_NAMES)}


def images_seen(run: History) -> list[int]:
    """After each epoch: the training images the run has processed so far."""
    return [run.data_sizes["train"] * (e + 1) for e in range(run.epochs)]


def training_tflop(run: History) -> list[float]:
    """After each epoch: the training compute spent so far (forward and backward passes), in TFLOP."""
    return [n * run.flops_per_image / 1e12 for n in images_seen(run)]
