"""Numbers read from Histories: how a run ended, a setting over its seeds, and the one rule for "different".

- A run *learned* when it did not diverge and ended with at least LEARNED test accuracy (chance is 10 %).
- Two settings *differ* when Welch's t-test over their seeds gives p < ALPHA; otherwise the difference is
  within the seed spread.
"""
from __future__ import annotations

import math
import statistics
import warnings
from dataclasses import dataclass
from typing import Any, Callable

from scipy import stats as scipy_stats

from .training import History, first_reaching

LEARNED = 0.5
ALPHA = 0.05
Group = list[History]  # one setting's runs, in seed order


def group(runs: dict[str, History], field: str) -> dict[Any, Group]:
    """Runs grouped by a recipe field (e.g. 'lr' or 'model'), each group in seed order."""
    groups: dict[Any, Group] = {}
    for run in runs.values():
        groups.setdefault(getattr(run.recipe, field), []).append(run)
    return {key: sorted(runs_, key=lambda r: r.recipe.seed) for key, runs_ in groups.items()}


def choose_on_validation(runs: dict[Any, History]) -> Any:
    """The key whose run has the highest final validation accuracy (a run that diverged never wins)."""
    scores = {key: run.validation_accuracy[-1] for key, run in runs.items()
              if not run.diverged and run.validation_accuracy}
    if not scores:
        raise ValueError("no run to choose from: every one diverged")
    return max(scores, key=scores.get)


def final(run: History, series: str = "test_accuracy") -> float | None:
    """The last value of a per-epoch series; None for a run that diverged or completed no epoch."""
    values = getattr(run, series)
    return None if run.diverged or not values else values[-1]


def outcome(run: History) -> str:
    """'diverged at step N', 'did not learn' or 'learned'."""
    if run.diverged:
        return f"diverged at step {run.diverged_step}"
    return "learned" if (final(run) or 0) >= LEARNED else "did not learn"


def outcomes(runs: list[History]) -> str:
    """How a group's runs ended, counted: '3 learned', '2 learned, 1 did not learn', 'diverged at steps 5, 7'."""
    ends = [outcome(run) for run in runs]
    lost = [end.rsplit(" ", 1)[1] for end in ends if end.startswith("diverged")]
    parts = [f"{ends.count(kind)} {kind}" for kind in ("learned", "did not learn") if kind in ends]
    if lost:
        parts.append(f"diverged at step{'s' if len(lost) > 1 else ''} {', '.join(lost)}")
    return ", ".join(parts)


@dataclass
class Spread:
    """One setting over its seeds: a value per seed (None: diverged), and mean ± sample std of the others."""

    values: list[float | None]
    seeds: list[int]
    outcomes: list[str]

    @property
    def finite(self) -> list[float]:
        return [v for v in self.values if v is not None and math.isfinite(v)]

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.finite) if self.finite else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.finite) if len(self.finite) > 1 else 0.0 if self.finite else None

    def text(self, scale: float = 100, digits: int = 2, unit: str = "\u00a0%") -> str:
        """'87.40 ± 0.99 %'; with diverged seeds '… (1 of 3 diverged)'; all diverged: 'diverged (steps …)'."""
        lost = [o for o in self.outcomes if o.startswith("diverged")]
        if not self.finite:
            return "diverged (" + ", ".join(o.removeprefix("diverged at ") for o in lost) + ")" if lost else "—"
        body = f"{scale * self.mean:.{digits}f}\u00a0±\u00a0{scale * self.std:.{digits}f}{unit}"
        return body + (f" ({len(lost)} of {len(self.values)} diverged)" if lost else "")


def spread(runs: Group, value: str | Callable[[History], float | None] = "test_accuracy") -> Spread:
    """A per-seed value of the group: the final value of a series (by name), or what `value(run)` gives."""
    get = value if callable(value) else (lambda run: final(run, value))
    return Spread([get(run) for run in runs], [run.recipe.seed for run in runs], [outcome(run) for run in runs])


@dataclass
class Difference:
    """a − b over the seeds, with Welch's t-test."""

    a: str
    b: str
    difference: float
    p: float

    @property
    def real(self) -> bool:
        return self.p < ALPHA

    def text(self, scale: float = 100, unit: str = " points") -> str:
        """'+2.67 points, p = 0.01' (a real minus sign)."""
        return f"{scale * self.difference:+.2f}{unit}, p\u00a0{p_text(self.p)}".replace("-", "\u2212")


def compare(a: Spread, b: Spread, a_name: str, b_name: str) -> Difference:
    """a − b and Welch's p-value (1 when either side has fewer than two finite seeds)."""
    x, y = a.finite, b.finite
    if len(x) < 2 or len(y) < 2:
        return Difference(a_name, b_name, (a.mean or 0) - (b.mean or 0), 1.0)
    if statistics.pvariance(x) == statistics.pvariance(y) == 0:  # no spread at all: equal means or not
        return Difference(a_name, b_name, a.mean - b.mean, 1.0 if a.mean == b.mean else 0.0)
    with warnings.catch_warnings():  # nearly equal seeds: scipy warns, the p-value is still right
        warnings.simplefilter("ignore", RuntimeWarning)
        return Difference(a_name, b_name, a.mean - b.mean, float(scipy_stats.ttest_ind(x, y, equal_var=False).pvalue))


def p_text(p: float) -> str:
    """0.0312 -> '= 0.03', tiny -> '< 0.001' (no-break spaces)."""
    return "<\u00a00.001" if p < 0.001 else f"=\u00a0{p:.3f}" if p < 0.01 else f"=\u00a0{p:.2f}"


def epochs_reaching(runs: Group, target: float, series: str) -> list[int | None]:
    """Per seed: the first epoch whose accuracy (a series name) reached `target`, or None."""
    return [first_reaching(getattr(run, series), target) for run in runs]


def median_range(epochs: list[int | None]) -> str:
    """'12 (11–14)' over the seeds that reached it, with how many did when not all: '41 (38–44; 2 of 3)'."""
    reached = sorted(e for e in epochs if e is not None)
    if not reached:
        return "not reached"
    text = f"{statistics.median(reached):g}"
    if len(reached) > 1:
        text += f" ({reached[0]}–{reached[-1]}" + ("" if len(reached) == len(epochs) else
                                                   f"; {len(reached)} of {len(epochs)}") + ")"
    elif len(epochs) > 1:
        text += f" (1 of {len(epochs)})"
    return text


def seconds_per_epoch(runs: Group) -> float:
    """Median training seconds per epoch over all epochs of the runs."""
    return statistics.median(s for run in runs for s in run.seconds)


def ci95(values: list[float]) -> float:
    """Half-width of the 95 % confidence interval of the mean (Student's t); 0 for fewer than two values."""
    if len(values) < 2:
        return 0.0
    return float(scipy_stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values)))


def window_mean(values: list[float | None], start: int, stop: int | None) -> float | None:
    """Mean of values[start:stop] that exist and are finite (None when none are)."""
    kept = [v for v in values[start:stop] if v is not None and math.isfinite(v)]
    return statistics.fmean(kept) if kept else None


def block_epochs(run: History) -> list[float]:
    """Where each block mean of a run's gradient trace sits, in epochs (the block's middle)."""
    block = run.gradients["block"]
    return [(i + 0.5) * block / run.steps_per_epoch for i in range(len(run.gradients["blocks"]["signed_mean"]))]


def distinct_predictions(run: History) -> int | None:
    """How many different classes the final model predicts over the test set (None: diverged)."""
    return sum(1 for column in zip(*run.confusion) if sum(column) > 0) if run.confusion else None
