"""Tables as DataFrames of numbers (fractions, counts, p-values; a list holds one value per seed) with snake_case
columns, and `view`, the one formatter that turns them into what the notebook shows: `x_std` and `x_ci` are shown
with `x` as "x ± …", `x_note` instead of a missing `x` (why it is missing) or after it; accuracies and their
differences are fractions, shown in percent and points."""
from __future__ import annotations

import math
from typing import Any

import pandas as pd

from . import report
from .report import Group, compare, mean, std, values

HEADERS = {"lr": "Lr", "accuracy": "Accuracy (%)", "epoch": "Epoch", "structure": "Structures", "params": "Parameters",
           "validation": "Validation (%)", "train": "Train acc. (%)", "diff": "Δ (points, 95 % CI)", "p": "p",
           "runs": "Runs", "classes": "Classes predicted", "dead_1": "Dead units, layer 1", "dead_2": "Dead units, layer 2",
           "train_epoch": "Train ≥ 90 % at", "best_validation": "Best validation (%)", "epochs_run": "Epochs run",
           "stopped": "Stopped by", "multiply_adds": "Multiply-adds / image", "s_per_epoch": "s / epoch",
           "seeds": "Seeds", "network": "Network", "change": "Change (the rest fixed)", "layer": "Layer",
           "search": "Search", "error": "‖δ‖", "input": "‖a‖", "abs_mean": "mean |g|", "first": "epoch 1",
           "last": "epoch 10"}
PERCENT = ("accuracy", "validation", "train", "diff", "best_validation")
STOPS = {"target": "target", "stalled": "no gain", "epochs": "the cap", "diverged": "diverging"}


def _frame(rows: list[dict[str, Any]], index: str | list[str], **headers: str) -> pd.DataFrame:
    table = pd.DataFrame(rows).set_index(index)
    table.attrs["headers"] = headers
    return table


def _summary(runs: Group, series: str = "test_accuracy", prefix: str = "accuracy") -> dict[str, Any]:
    """Mean and std over the seeds; where a seed has no value (it diverged), how the runs ended."""
    xs = values(runs, series)
    return {prefix: mean(xs), f"{prefix}_std": std(xs),
            **({f"{prefix}_note": report.outcomes(runs)} if None in xs else {})}


def _difference(a: Group, b: Group) -> dict[str, Any]:
    d = compare(values(a), values(b))
    return {"diff": d.difference, "diff_ci": d.ci, "p": d.p}


def accuracy(groups: dict[Any, Group]) -> pd.DataFrame:
    """Q1.2, the assignment's table: Lr | Accuracy, the test accuracy after the runs' epochs."""
    return _frame([{"lr": lr, **_summary(runs)} for lr, runs in groups.items()], "lr")


def learning_rates(groups: dict[float, Group], reference: float) -> pd.DataFrame:
    """Per rate: test and validation accuracy, the difference to the `reference` rate, how the runs ended."""
    return _frame([{"lr": lr, **_summary(runs), **_summary(runs, "validation_accuracy", "validation"),
                    **(_difference(runs, groups[reference]) if lr != reference else {}), "runs": report.outcomes(runs)}
                   for lr, runs in groups.items()], "lr", diff=f"vs lr {reference:g} (points, 95 % CI)")


def final_models(groups: dict[float, Group]) -> pd.DataFrame:
    """Per rate, the model each seed ended with: epochs run, how the runs ended, the classes it predicts on the
    test set, and the hidden units that never fire on a test image (per layer)."""
    rows = []
    for lr, runs in groups.items():
        layers = next((list(r.dead_units) for r in runs if r.dead_units), [])
        rows.append({"lr": lr, "epochs_run": [r.epochs for r in runs], "runs": report.outcomes(runs),
                     "classes": [report.distinct_predictions(r) for r in runs],
                     **{f"dead_{i}": [r.dead_units[layer][0] if r.dead_units else None for r in runs]
                        for i, layer in enumerate(layers, start=1)}})
    return _frame(rows, "lr")


def epochs_to_target(groups: dict[float, Group], target: float) -> pd.DataFrame:
    """Q1.3, the assignment's table: Lr | Accuracy | Epoch. Epoch: the first epoch whose validation accuracy
    reached `target` (median over the seeds that did); Accuracy: the mean test accuracy at that epoch."""
    rows = []
    for lr, runs in groups.items():
        hits = [(run, e) for run, e in zip(runs, report.epochs_reaching(runs, target, "validation_accuracy")) if e]
        rows.append({"lr": lr, "accuracy": mean([run.test_accuracy[e - 1] for run, e in hits]),
                     "accuracy_note": "" if hits else "—",
                     "epoch": float(pd.Series([e for _, e in hits]).median()) if hits else None,
                     "epoch_note": "not reached" if not hits else
                     f"{len(hits)} of {len(runs)} seeds" if len(hits) < len(runs) else ""})
    return _frame(rows, "lr")


def stopping(groups: dict[float, Group], target: float) -> pd.DataFrame:
    """Q1.3 per seed: when train accuracy reached the target, the best validation accuracy, the epochs run, why."""
    return _frame([{"lr": lr, "train_epoch": report.epochs_reaching(runs, target, "train_accuracy"),
                    "best_validation": [max(r.validation_accuracy, default=None) for r in runs],
                    "epochs_run": [r.epochs for r in runs], "stopped": ", ".join(STOPS[r.stop_reason] for r in runs)}
                   for lr, runs in groups.items()], "lr")


def structures(groups: dict[str, Group]) -> pd.DataFrame:
    """Q1.5, the assignment's table: Structures | Accuracy | Parameters."""
    return _frame([{"structure": name, **_summary(runs), "params": runs[0].parameters}
                   for name, runs in groups.items()], "structure")


def structure_costs(groups: dict[str, Group], base: str = "base") -> pd.DataFrame:
    """Q1.5 per structure: its rate, train accuracy, multiply-adds per image, seconds per epoch (one thread each),
    and the difference to the base network."""
    return _frame([{"structure": name, "lr": runs[0].recipe.lr, **_summary(runs, "train_accuracy", "train"),
                    "multiply_adds": runs[0].multiply_adds, "s_per_epoch": report.seconds_per_epoch(runs),
                    **(_difference(runs, groups[base]) if name != base else {})} for name, runs in groups.items()],
                  "structure", diff=f"vs {base} (points, 95 % CI)")


def search(searches: dict[str, Any]) -> pd.DataFrame:
    """Learning-rate searches (experiments.Search), a row per rate tried: validation accuracy, seeds, the choice."""
    return _frame([{"search": name, "lr": lr, **_summary(runs, "validation_accuracy", "validation"),
                    "validation_note": "chosen" if lr == found.chosen else "", "seeds": len(runs)}
                   for name, found in searches.items() for lr, runs in found.runs.items()], ["search", "lr"])


def gradient_changes(groups: dict[float, Group], windows: str) -> pd.DataFrame:
    """Q1.6 per rate, both readings (signed mean, mean |g|), mean over the seeds: at the start and the change to
    the end, paired by seed: steps 1–10 -> 91–100 (windows='steps') or epoch 1 -> the last traced ('epochs')."""
    rows = []
    for lr, runs in groups.items():
        traced = [r for r in runs if r.gradients and (windows == "steps" or r.recipe.gradient_epochs > 1)]
        row: dict[str, Any] = {"lr": lr, "seeds": len(traced)}
        for reading, short in (("signed_mean", "signed"), ("abs_mean", "abs")):
            early, late = ([mean(r.gradients["steps"][reading][a:b]) for r in traced] for a, b in ((0, 10), (90, 100))) \
                if windows == "steps" else ([report.epoch_means(r, reading)[i] for r in traced] for i in (0, -1))
            change = report.paired(late, early)
            row |= {f"{short}_early": mean(early), f"{short}_change": change.difference,
                    f"{short}_change_ci": change.ci, f"{short}_p": change.p}
        rows.append(row)
    when = ("1–10", "Δ to 91–100") if windows == "steps" else ("epoch 1", "Δ to 10")
    return _frame(rows, "lr", **{f"{short}_{k}": f"{name} {w}" for short, name in (("signed", "signed"), ("abs", "|g|"))
                                 for k, w in (("early", when[0]), ("change", when[1]), ("p", "p"))})


def gradient_layers(groups: dict[float, Group]) -> pd.DataFrame:
    """Q1.6 per rate and linear layer, first and last traced epoch (mean over the seeds): the error reaching the
    layer ‖δ‖, its input ‖a‖ and its mean |gradient|."""
    rows = []
    for lr, runs in groups.items():
        traced = [r for r in runs if r.gradients and not r.diverged and r.recipe.gradient_epochs > 1]
        for i, layer in enumerate(traced[0].gradients["blocks"]["layers"] if traced else [], start=1):
            series = {key: [report.epoch_means(r, key, layer) for r in traced] for key in ("error", "input", "abs_mean")}
            rows.append({"lr": lr, "layer": i, **{f"{key}_{when}": mean([s[at] for s in found])
                                                  for key, found in series.items()
                                                  for when, at in (("first", 0), ("last", -1))}})
    return _frame(rows, ["lr", "layer"])


def networks(groups: dict[str, Group], target: float) -> pd.DataFrame:
    """Q1.7, each network as trained: rate, test accuracy, parameters, multiply-adds, the first epoch validation
    accuracy reached `target` (per seed), seconds per epoch."""
    return _frame([{"network": name, "lr": runs[0].recipe.lr, **_summary(runs), "params": runs[0].parameters,
                    "multiply_adds": runs[0].multiply_adds,
                    "epoch": report.epochs_reaching(runs, target, "validation_accuracy"),
                    "s_per_epoch": report.seconds_per_epoch(runs)} for name, runs in groups.items()], "network",
                  epoch=f"Epoch validation ≥ {100 * target:g} %")


def effects(groups: dict[tuple[str, str], Group], changes: dict[str, tuple[tuple, tuple]]) -> pd.DataFrame:
    """Q1.7: what one change does with the rest fixed: {name: (cell changed, cell it is compared with)}."""
    return _frame([{"change": name, **_difference(groups[a], groups[b])} for name, (a, b) in changes.items()], "change")


def number(column: str, value: Any) -> str:
    """One value as shown: accuracies in percent (differences in signed points), p-values, counts with thousands
    separators, gradients in scientific notation, a list per seed joined by commas, a missing value as '—'."""
    if isinstance(value, (list, tuple)):
        return ", ".join(number(column, v) for v in value)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, str):
        return value
    base = column.removesuffix("_ci").removesuffix("_std")
    if column == "p" or column.endswith("_p"):
        return "< 0.001" if value < 0.001 else f"{value:.3f}" if value < 0.01 else f"{value:.2f}"
    if base in PERCENT:
        text = f"{100 * value:+.2f}" if column == "diff" else f"{100 * value:.2f}"
    elif base.startswith(("signed", "abs")):
        text = f"{value:.1e}"
    elif isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) >= 1):
        text = f"{int(value):,}"
    else:
        text = f"{value:.2g}" if abs(value) < 0.01 else f"{value:.3g}"
    return text.replace("-", "\u2212")


def view(table: pd.DataFrame) -> pd.DataFrame:
    """The table as shown: strings, companion columns (_std, _ci, _note) folded into theirs, headers in words
    (HEADERS, then the table's own attrs['headers']), the index's name in the one header row."""
    names = {**HEADERS, **table.attrs.get("headers", {})}
    shown = pd.DataFrame(index=[", ".join(number(n or "", k) for n, k in zip(table.index.names, key))
                                if isinstance(key, tuple) else number(table.index.name or "", key) for key in table.index])
    for column in table.columns:
        if column.endswith(("_std", "_ci", "_note")) and column.rsplit("_", 1)[0] in table.columns:
            continue
        cells = []
        for _, row in table.iterrows():
            text = number(column, row[column])
            for part in ("std", "ci"):
                extra = row.get(f"{column}_{part}")
                if text != "—" and extra is not None and not (isinstance(extra, float) and math.isnan(extra)):
                    text += f" ± {number(f'{column}_{part}', extra)}"
            note = row.get(f"{column}_note")
            cells.append((note if text == "—" else f"{text} ({note})") if isinstance(note, str) and note else text)
        key, _, when = column.rpartition("_")
        shown[names.get(column) or (f"{names[key]}: {names[when]}" if key in names and when in names else column)] = cells
    return shown.rename_axis(columns=" / ".join(names.get(n, n) for n in table.index.names if n))
