"""Numbers read from Histories: formatting, grouping over seeds, means ± std, first epochs, rates, choices."""
from __future__ import annotations

import statistics
from typing import Any, Callable

from .training import History, first_reaching, trend

Group = list[History]  # the runs of one setting over seeds, in seed order


NBSP = "\xa0"  # a no-break space: a number never ends a line with its unit on the next


MINUS = "\u2212"  # the minus sign: no line break inside "-1.7e-05" (a hyphen would allow one)


def sci(value: float, digits: int = 1) -> str:
    """1.7e-05 -> '1.7e−05' with minus signs, so the number never breaks across lines."""
    return f"{value:.{digits}e}".replace("-", MINUS)


def signed(value: float, digits: int = 2) -> str:
    """+1.23 / −0.66 with a real minus sign."""
    return f"{value:+.{digits}f}".replace("-", MINUS)


def percent(value: float | None, digits: int = 2) -> str:
    """0.8976 -> '89.76 %' (no-break space); None -> '—'."""
    return "—" if value is None else f"{100 * value:.{digits}f}{NBSP}%"


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n-1; 0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def group_by(runs: dict[str, History], field: str) -> dict[Any, Group]:
    """Runs grouped by a recipe field (e.g. 'lr' or 'model'), each group in seed order."""
    groups: dict[Any, Group] = {}
    for run in runs.values():
        groups.setdefault(getattr(run.recipe, field), []).append(run)
    return {key: sorted(group, key=lambda r: r.recipe.seed) for key, group in groups.items()}


def cut(group: Group, epochs: int) -> Group:
    """Every run of the group as it was after `epochs` epochs (constant-rate runs)."""
    return [run.first_epochs(epochs) for run in group]


def finals(group: Group, series: str = "test_accuracy") -> list[float | None]:
    """The last value of a per-epoch series for each run (None for a diverged run)."""
    return [None if run.diverged or not getattr(run, series) else getattr(run, series)[-1] for run in group]


def accuracy(group: Group, series: str = "test_accuracy") -> tuple[float, float] | None:
    """Mean and sample std of the final accuracies over seeds; None if any run diverged."""
    values = finals(group, series)
    return None if any(v is None for v in values) else mean_std(values)


def accuracy_text(group: Group, series: str = "test_accuracy") -> str:
    """'87.17 ± 0.79 %' (mean ± sample std over the seeds, no-break spaces) or 'diverged'."""
    value = accuracy(group, series)
    return "diverged" if value is None else f"{100 * value[0]:.2f}{NBSP}±{NBSP}{100 * value[1]:.2f}{NBSP}%"


def seconds_per_epoch(group: Group) -> float:
    """Median training seconds per epoch over all epochs of the group's runs."""
    return statistics.median(s for run in group for s in run.seconds)


def first_epochs_reaching(group: Group, target: float, series: str = "test_accuracy") -> list[int | None]:
    """Per run: the first epoch whose accuracy reached `target`, or None."""
    return [first_reaching(getattr(run, series), target) for run in group]


def best_epoch(run: History, series: str = "test_accuracy") -> tuple[float, int]:
    """The best value of a per-epoch series and its (first) epoch."""
    values = getattr(run, series)
    best = max(values)
    return best, values.index(best) + 1


def improvement_rate(run: History, series: str = "train_accuracy") -> float:
    """Least-squares slope of the last 10 epochs of a series, per epoch (the early-stop trend)."""
    return trend(getattr(run, series))


def stuck(run: History, target: float) -> bool:
    """A run that did not learn: final test accuracy below half the target (e.g. < 45 % for 90 %)."""
    return run.final_test_accuracy is None or run.final_test_accuracy < target / 2


def best_on_validation(groups: dict[Any, Group]) -> Any:
    """The key whose runs have the best mean final validation accuracy (diverged groups never win)."""
    scores = {key: accuracy(group, "validation_accuracy") for key, group in groups.items()}
    return max((key for key in scores if scores[key] is not None), key=lambda key: scores[key][0])


def distinct_predictions(run: History) -> int:
    """How many different classes the final model predicts over the test set."""
    return sum(1 for column in zip(*run.confusion) if sum(column) > 0) if run.confusion else 0


SCHEME_NAMES = {"demo": "demo scheme", "cnn": "CNN's scheme"}  # Q1.7's two training schemes


def blocks_per_epoch(run: History) -> float:
    """How many of the gradient trace's whole-run block means fall in one epoch."""
    return len(run.gradients["blocks"]["signed_mean"]) / max(run.epochs, 1)


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def gradient_stats(group: Group) -> dict[str, float]:
    """Q1.6 numbers of one rate, mean over the tracked seeds: both readings at several horizons, the factors."""
    runs = [r for r in group if r.gradients and r.gradients["steps"]["signed_mean"]]
    per_epoch = round(blocks_per_epoch(runs[0]))

    def avg(horizon: str, key: str, part: slice, sub: str | None = None) -> float:
        def series(run: History) -> list[float]:
            value = run.gradients[horizon][key]
            return value[sub] if sub else value
        return _mean([_mean(series(r)[part]) for r in runs if series(r)[part]])

    steps = runs[0].gradients["steps"]
    relus = list(steps["activation_norm"])
    layers = list(steps["layer_signed_mean"])
    first, last = slice(0, per_epoch), slice(-per_epoch, None)
    stats = {
        "signed_step1": avg("steps", "signed_mean", slice(0, 1)),
        "signed_91_100": avg("steps", "signed_mean", slice(90, 100)),
        "signed_epoch1": avg("blocks", "signed_mean", first),
        "signed_last": avg("blocks", "signed_mean", last),
        "abs_step1": avg("steps", "abs_mean", slice(0, 1)),
        "abs_91_100": avg("steps", "abs_mean", slice(90, 100)),
        "abs_epoch1": avg("blocks", "abs_mean", first),
        "abs_last": avg("blocks", "abs_mean", last),
        "negative_share": _mean([sum(v < 0 for v in r.gradients["steps"]["signed_mean"]) /
                                 len(r.gradients["steps"]["signed_mean"]) for r in runs]),
        "ratio": _mean([_mean([abs(s) / a for s, a in zip(r.gradients["steps"]["signed_mean"],
                                                          r.gradients["steps"]["abs_mean"]) if a])
                        for r in runs]),
        "output_max": max(abs(v) for r in runs for v in r.gradients["steps"]["layer_signed_mean"][layers[-1]]),
        "error_epoch1": avg("blocks", "error_norm", first), "error_last": avg("blocks", "error_norm", last),
        "error_step1": avg("steps", "error_norm", slice(0, 1)),
        "error_91_100": avg("steps", "error_norm", slice(90, 100)),
    }
    for i, relu in enumerate(relus, start=1):
        stats[f"activation{i}_step1"] = avg("steps", "activation_norm", slice(0, 1), relu)
        stats[f"activation{i}_91_100"] = avg("steps", "activation_norm", slice(90, 100), relu)
        stats[f"activation{i}_epoch1"] = avg("blocks", "activation_norm", first, relu)
        stats[f"activation{i}_last"] = avg("blocks", "activation_norm", last, relu)
    return stats


def band(group: Group, values: Callable[[History], list[float]]) -> tuple[list[float], list[float], list[float]]:
    """Mean, min and max over the group's runs, point by point (cut to the shortest run)."""
    series = [values(run) for run in group]
    n = min(len(s) for s in series)
    columns = list(zip(*(s[:n] for s in series)))
    return ([statistics.fmean(c) for c in columns], [min(c) for c in columns], [max(c) for c in columns])
