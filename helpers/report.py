"""Numbers read from Histories: how a run ended, a setting over its seeds, Q1.6's gradient statistics, and the one
rule for "different": p < ALPHA — Welch's t-test between two settings, the paired t-test for a change within the
same runs, the one-sample t-test for per-seed changes against 0. Where a table makes m tests, each p-value is
multiplied by m and each interval is at 1 − ALPHA / m (Bonferroni), so an interval excludes 0 exactly when
p < ALPHA. A run *learned* when it ends with at least LEARNED accuracy."""
from __future__ import annotations

import math
import statistics
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from scipy import stats

from .gradients import SUMS
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


def values(runs: Group, series: str = "test_accuracy") -> list[float | None]:
    """Per seed: the final value of a series; None where there is none."""
    return [final(run, series) for run in runs]


def finite(xs: list[float | None]) -> list[float]:
    """The values that are numbers (not None, not NaN)."""
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
    """A difference (of means, or a mean change), the half-width of its 95 % confidence interval, and the p-value."""

    difference: float | None
    ci: float | None
    p: float | None


def _tested(test: Callable[[], Any], difference: float, tests: int) -> Difference:
    """A scipy t-test's interval and p-value, Bonferroni-adjusted for a family of `tests` (with no spread at all the
    difference is exact)."""
    with warnings.catch_warnings():  # no spread: scipy warns, the p-value is undefined
        warnings.simplefilter("ignore", RuntimeWarning)
        result = test()
    if math.isnan(result.pvalue):
        return Difference(difference, 0.0, 1.0 if difference == 0 else 0.0)
    low, high = result.confidence_interval(1 - ALPHA / tests)
    return Difference(difference, float(high - low) / 2, min(1.0, float(result.pvalue) * tests))


def compare(a: list[float | None], b: list[float | None], tests: int = 1) -> Difference:
    """Two settings' seeds, a − b: Welch's t-test, one of `tests` (nothing to test with fewer than two finite seeds
    a side)."""
    x, y = finite(a), finite(b)
    if len(x) < 2 or len(y) < 2:
        return Difference(mean(x) - mean(y) if x and y else None, None, None)
    return _tested(lambda: stats.ttest_ind(x, y, equal_var=False), mean(x) - mean(y), tests)


def paired(after: list[float | None], before: list[float | None], tests: int = 1) -> Difference:
    """A change within the same runs (after − before, seed by seed): the paired t-test, one of `tests`."""
    pairs = [(a, b) for a, b in zip(after, before) if a is not None and b is not None]
    if len(pairs) < 2:
        return Difference(pairs[0][0] - pairs[0][1] if pairs else None, None, None)
    return _tested(lambda: stats.ttest_rel(*zip(*pairs)), statistics.fmean(a - b for a, b in pairs), tests)


def change(xs: list[float | None], tests: int = 1) -> Difference:
    """The mean of per-seed changes against 0: the one-sample t-test, one of `tests`."""
    kept = finite(xs)
    if len(kept) < 2:
        return Difference(kept[0] if kept else None, None, None)
    return _tested(lambda: stats.ttest_1samp(kept, 0.0), statistics.fmean(kept), tests)


def epochs_reaching(runs: Group, target: float, series: str) -> list[int | None]:
    """Per seed: the first epoch whose accuracy (a series name) reached `target`, or None."""
    return [first_reaching(getattr(run, series), target) for run in runs]


def best_epoch(run: History, series: str = "validation_accuracy", lowest: bool = False) -> int | None:
    """The first epoch (from 1) of the highest (or lowest) value of a per-epoch series; None: no finite value."""
    kept = [(v, i) for i, v in enumerate(getattr(run, series)) if v is not None and math.isfinite(v)]
    if not kept:
        return None
    sign = -1 if lowest else 1
    return max(kept, key=lambda vi: (sign * vi[0], -vi[1]))[1] + 1


def selection_score(run: History) -> tuple[float, float]:
    """What every choice is made on: the validation accuracy, averaged over the last 3 epochs under a constant rate
    (SGD noise moves it by points from one epoch to the next) or the last epoch of an annealed schedule; then the
    validation loss, lower first. A diverged run scores 0 and infinity."""
    last = 3 if run.recipe.schedule == "constant" else 1
    if run.diverged or not run.validation_accuracy:
        return 0.0, -math.inf
    accuracy, loss = (statistics.fmean(series[-last:]) for series in (run.validation_accuracy, run.validation_loss))
    return accuracy, -loss


def predicted_classes(run: History, share: float = 0.01) -> list[int]:
    """The classes the final model predicts for at least `share` of the test images (its confusion matrix's columns);
    none for a run without one (it diverged)."""
    counts = np.array(run.confusion or [[0]]).sum(axis=0)
    return [int(c) for c in np.flatnonzero(counts >= share * counts.sum())] if counts.sum() else []


def training_tflop(run: History) -> list[float]:
    """After each epoch: the training compute spent so far (forward and backward passes), in TFLOP."""
    return [run.data_sizes["train"] * (e + 1) * run.flops_per_image / 1e12 for e in range(run.epochs)]


# --- Q1.6: the gradient, from the per-layer sums a run recorded (gradients.SUMS) ----------------------------------

def gradient_stats(record: dict[str, Any], sizes: list[int]) -> dict[str, np.ndarray]:
    """From per-layer sums (one row per step or checkpoint, a column per layer): the mean of all gradient entries
    ('signed'), the mean of their absolute values ('abs'), the Euclidean norm ('norm'), and each layer's sum over
    all entries ('layers', that layer's share of the signed mean times the parameter count) and of their sizes
    ('layers_abs')."""
    total = sum(sizes)
    signed, absolute, square = (np.array(record[name], float) for name in SUMS)
    return {"signed": signed.sum(1) / total, "abs": absolute.sum(1) / total, "norm": np.sqrt(square.sum(1)),
            "layers": signed, "layers_abs": absolute}


def traced(runs: Group) -> list[dict[str, np.ndarray]]:
    """Per run that recorded its first steps: their gradient_stats, with the minibatch loss of each ('loss'). A run
    that diverged before its last recorded step is left out (its change would be the divergence's)."""
    found = []
    for run in runs:
        record = run.gradients
        if record and len(record["steps"]["sum"] or []) >= max(run.recipe.gradient_steps, 1):
            stats = gradient_stats(record["steps"], record["layer_sizes"])
            found.append({**stats, "loss": np.array(run.step_loss[:len(stats["signed"])], float)})
    return found


def probe_stats(run: History) -> dict[str, np.ndarray] | None:
    """gradient_stats of the probe batch at each checkpoint, with its 'step', 'loss', 'sharpness' and 'dead' (per ReLU
    layer, the share of units silent on every probe image); None for a run without a probe."""
    probe = (run.gradients or {}).get("probe")
    if not probe:
        return None
    return {**gradient_stats(probe, run.gradients["layer_sizes"]),
            **{k: np.array(probe[k], float) for k in ("step", "loss", "sharpness", "dead")}}


ENDS = 10  # Q1.6: a change over the first steps compares the mean of their last ENDS with that of their first ENDS


def ends_change(series: np.ndarray, steps: int = ENDS) -> float:
    """The change of a series from its start to its end: the mean of its last `steps` values minus the mean of its
    first `steps` (no shape assumed: the curves it is used on are not monotone)."""
    return float(np.mean(series[-steps:]) - np.mean(series[:steps]))
