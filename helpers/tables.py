"""Tables as DataFrames of numbers (fractions, counts, p-values; a list holds one value per seed) with snake_case
columns, and `view`, the one formatter that turns them into what the notebook shows: `x_std` and `x_ci` are shown
with `x` as "x ± …", `x_note` instead of a missing `x` (why it is missing) or after it; accuracies and their
differences are fractions, shown in percent and points."""
from __future__ import annotations

import math
import statistics
from typing import Any

import pandas as pd

from . import report
from .data import CLASS_NAMES
from .gradients import FIRST_STEPS
WINDOW = 10
from .report import Group, compare, mean, std, values

HEADERS = {"lr": "Lr", "accuracy": "Accuracy (%)", "epoch": "Epoch", "structure": "Structures", "params": "Parameters",
           "validation": "Validation (%)", "train": "Train acc. (%)", "diff": "Δ (points, 95 % CI)", "p": "p",
           "runs": "Runs", "classes": "Classes predicted", "dead_1": "Dead units, layer 1", "dead_2": "Dead units, layer 2",
           "multiply_adds": "Multiply-adds / image", "s_per_epoch": "s / epoch", "seeds": "Seeds",
           "network": "Network", "change": "Change (the rest fixed)", "search": "Search", "class": "Class",
           "test_epoch": "Test ≥ 90 % at", "validation_epoch": "Validation ≥ 90 % at", "train_epoch": "Train ≥ 90 % at",
           "best_test": "Best test (%)", "best_validation": "Best validation (%)", "selection": "Selection seed (%)",
           "quickstart": "Quickstart loop (%)", "notebook": "This notebook (%)",
           "test_at_best_validation": "Test at best validation (%)", "lowest_loss_epoch": "Min. test loss at",
           "loss_rise": "Test loss rise",
           "mlp": "Best MLP (%)", "cnn": "CNN (%)", "layer": "Layer", "chosen": "Chosen"}
PERCENT = ("accuracy", "validation", "train", "diff", "best_test", "best_validation", "test_at_best_validation",
           "selection", "quickstart",
           "notebook", "mlp", "cnn")


def _frame(rows: list[dict[str, Any]], index: str | list[str], **headers: str) -> pd.DataFrame:
    table = pd.DataFrame(rows).set_index(index)
    table.attrs["headers"] = headers
    return table


def _summary(runs: Group, series: str = "test_accuracy", prefix: str = "accuracy") -> dict[str, Any]:
    """Mean and std over the seeds; where a seed has no value (it diverged), how the runs ended."""
    xs = values(runs, series)
    return {prefix: mean(xs), f"{prefix}_std": std(xs),
            **({f"{prefix}_note": report.outcomes(runs)} if None in xs else {})}


def _differences(pairs: dict[Any, tuple[Group, Group]]) -> dict[Any, dict[str, Any]]:
    """a − b for each pair (Welch), with Holm-adjusted p-values over the family."""
    found = {key: compare(values(a), values(b)) for key, (a, b) in pairs.items()}
    adjusted = report.holm([d.p for d in found.values()])
    return {key: {"diff": d.difference, "diff_ci": d.ci, "p": p} for (key, d), p in zip(found.items(), adjusted)}


def accuracy(groups: dict[Any, Group]) -> pd.DataFrame:
    """Q1.2, the assignment's table: Lr | Accuracy, the test accuracy after the runs' epochs."""
    return _frame([{"lr": lr, **_summary(runs)} for lr, runs in groups.items()], "lr")


def quickstart(loop: dict[float, Group], notebook: dict[float, Group]) -> pd.DataFrame:
    """Q1.2: the quickstart's loop unchanged (all 60,000 images in their stored order) beside this notebook's
    (55,000 images, reshuffled every epoch): test accuracy after the same epochs, and the difference."""
    differences = _differences({lr: (loop[lr], notebook[lr]) for lr in loop})
    return _frame([{"lr": lr, **_summary(loop[lr], prefix="quickstart"), **_summary(notebook[lr], prefix="notebook"),
                    **differences[lr]} for lr in loop], "lr", diff="Δ quickstart − notebook (points, 95 % CI)",
                  p="p (Holm)")


def final_models(groups: dict[float, Group]) -> pd.DataFrame:
    """Per rate, the model each seed ended with: how the runs ended, the epoch of its lowest test loss and how much
    higher the loss is at the end, the classes it predicts on the test set, and the hidden units that never fire
    on a test image (per layer)."""
    rows = []
    for lr, runs in groups.items():
        layers = next((list(r.dead_units) for r in runs if r.dead_units), [])
        lowest = [report.lowest_loss_epoch(r) for r in runs]
        rows.append({"lr": lr, "runs": report.outcomes(runs), "lowest_loss_epoch": lowest,
                     "loss_rise": [r.test_loss[-1] - r.test_loss[e - 1] if e else None for r, e in zip(runs, lowest)],
                     "classes": [report.distinct_predictions(r) for r in runs],
                     **{f"dead_{i}": [r.dead_units[layer][0] if r.dead_units else None for r in runs]
                        for i, layer in enumerate(layers, start=1)}})
    return _frame(rows, "lr")


def epochs_to_target(groups: dict[float, Group], target: float) -> pd.DataFrame:
    """Q1.3, the assignment's table: Lr | Accuracy | Epoch, read off each run's test-accuracy curve (the accuracy
    the demo prints; a measurement: nothing is chosen on it). Epoch: the first epoch whose test accuracy reached
    `target` (median over the seeds that did); Accuracy: the test accuracy then. Where no seed reached it: '> N'
    (the epochs run) and the test accuracy at each run's epoch of best validation accuracy (chosen on validation)."""
    rows = []
    for lr, runs in groups.items():
        hits = [(run, e) for run, e in zip(runs, report.epochs_reaching(runs, target, "test_accuracy")) if e]
        if hits:
            rows.append({"lr": lr, "accuracy": mean([run.test_accuracy[e - 1] for run, e in hits]),
                         "epoch": float(statistics.median(e for _, e in hits)),
                         "epoch_note": f"{len(hits)} of {len(runs)} seeds" if len(hits) < len(runs) else ""})
        else:
            chosen = [report.at_best_validation(run) for run in runs]
            rows.append({"lr": lr, "accuracy": mean(chosen), "accuracy_std": std(chosen),
                         "accuracy_note": "best validation epoch", "epoch": None,
                         "epoch_note": f"> {max(run.epochs for run in runs)}"})
    return _frame(rows, "lr")


def crossings(groups: dict[float, Group], target: float) -> pd.DataFrame:
    """Q1.3 per seed: the first epoch each accuracy (test, validation, train) reached `target`, the best test and
    validation accuracy of each run, and its test accuracy at the epoch of its best validation accuracy (the epoch
    chosen on validation)."""
    return _frame([{"lr": lr, **{f"{split}_epoch": report.epochs_reaching(runs, target, f"{split}_accuracy")
                                 for split in ("test", "validation", "train")},
                    "best_test": [report.best(r) for r in runs],
                    "best_validation": [report.best(r, "validation_accuracy") for r in runs],
                    "test_at_best_validation": [report.at_best_validation(r) for r in runs]}
                   for lr, runs in groups.items()], "lr")


def learning_rates(groups: dict[float, Group], reference: float) -> pd.DataFrame:
    """Q1.4 per rate: validation and test accuracy, and the test accuracy's difference to the `reference` rate (chosen
    on the selection seeds), Holm-adjusted over the rates."""
    differences = _differences({lr: (runs, groups[reference]) for lr, runs in groups.items() if lr != reference})
    return _frame([{"lr": lr, **_summary(runs, "validation_accuracy", "validation"), **_summary(runs),
                    **differences.get(lr, {}), "runs": report.outcomes(runs)} for lr, runs in groups.items()], "lr",
                  diff=f"Δ vs lr {reference:g} (points, 95 % CI)", p="p (Holm)")


def structures(groups: dict[str, Group]) -> pd.DataFrame:
    """Q1.5, the assignment's table: Structures | Accuracy | Parameters."""
    return _frame([{"structure": name, **_summary(runs), "params": runs[0].parameters}
                   for name, runs in groups.items()], "structure")


def structure_costs(groups: dict[str, Group], base: str = "base") -> pd.DataFrame:
    """Q1.5 per structure: its rate (chosen on the selection seeds), train accuracy, multiply-adds per image, seconds
    per epoch (one thread each), and the difference to the base network (Holm over the structures)."""
    differences = _differences({name: (runs, groups[base]) for name, runs in groups.items() if name != base})
    return _frame([{"structure": name, "lr": runs[0].recipe.lr, **_summary(runs, "train_accuracy", "train"),
                    "multiply_adds": runs[0].multiply_adds, "s_per_epoch": report.seconds_per_epoch(runs),
                    **differences.get(name, {})} for name, runs in groups.items()],
                  "structure", diff=f"Δ vs {base} (points, 95 % CI)", p="p (Holm)")


def search(searches: dict[str, Any]) -> pd.DataFrame:
    """Learning-rate searches (experiments.Search), a row per search: the rates tried, the validation accuracy of the
    selection seed at each, and the rate chosen."""
    return _frame([{"search": name, "lr": list(found.runs), "validation": [mean(values(runs, "validation_accuracy"))
                                                                            for runs in found.runs.values()],
                    "chosen": found.chosen} for name, found in searches.items()], "search",
                  lr="Rates tried", validation="Validation, selection seed (%)")


def first_steps(groups: dict[float, Group]) -> pd.DataFrame:
    """Q1.6 per rate, over the first 100 minibatches, both readings (signed mean, mean |g|), mean over the seeds:
    the mean over steps 1–10 and the change to steps 91–100, paired by seed; the p-values Holm-adjusted over every
    test in the table."""
    rows = []
    for lr, runs in groups.items():
        traced = [r for r in runs if r.gradients and len(r.gradients["steps"]["abs_mean"]) >= FIRST_STEPS]
        row: dict[str, Any] = {"lr": lr, "seeds": len(traced)}
        for reading, short in (("signed_mean", "signed"), ("abs_mean", "abs")):
            early, late = ([mean(r.gradients["steps"][reading][a:b]) for r in traced]
                           for a, b in ((0, WINDOW), (FIRST_STEPS - WINDOW, FIRST_STEPS)))
            change = report.paired(late, early)
            row |= {f"{short}_early": mean(early), f"{short}_change": change.difference,
                    f"{short}_change_ci": change.ci, f"{short}_p": change.p}
        rows.append(row)
    tests = [(row, f"{short}_p") for row in rows for short in ("signed", "abs")]  # one family: every test shown
    for (row, column), adjusted in zip(tests, report.holm([row[column] for row, column in tests])):
        row[column] = adjusted
    early, late = f"1–{WINDOW}", f"Δ to {FIRST_STEPS - WINDOW + 1}–{FIRST_STEPS}"
    return _frame(rows, "lr", **{f"{short}_{k}": f"{name} {w}" for short, name in (("signed", "signed"), ("abs", "|g|"))
                                 for k, w in (("early", early), ("change", late), ("p", "p (Holm)"))})


def probe(groups: dict[float, Group]) -> pd.DataFrame:
    """Q1.6 per rate, the probe batch's gradient through the run (mean over the seeds): its mean |g| at the start,
    at its peak (and the epoch of the peak), at the end; the minibatch |g| at the end; the signed mean at the start
    and the end; the probe loss at the end."""
    rows = []
    for lr, runs in groups.items():
        probes = [r.gradients["probe"] for r in runs if r.gradients and "probe" in r.gradients and not r.diverged]
        if not probes:
            continue
        per_epoch = runs[0].steps_per_epoch
        peaks = [max(range(len(p["abs_mean"])), key=p["abs_mean"].__getitem__) for p in probes]
        rows.append({"lr": lr, "abs_start": mean([p["abs_mean"][0] for p in probes]),
                     "abs_peak": mean([p["abs_mean"][i] for p, i in zip(probes, peaks)]),
                     "peak_epoch": [round(p["step"][i] / per_epoch, 2) for p, i in zip(probes, peaks)],
                     "abs_end": mean([p["abs_mean"][-1] for p in probes]),
                     "minibatch_end": mean([p["minibatch_abs_mean"][-1] for p in probes]),
                     "signed_start": mean([p["signed_mean"][0] for p in probes]),
                     "signed_end": mean([p["signed_mean"][-1] for p in probes]),
                     "loss_end": mean([p["loss"][-1] for p in probes])})
    return _frame(rows, "lr", abs_start="|g| at step 0", abs_peak="|g| at its peak", peak_epoch="Peak at epoch",
                  abs_end="|g| at the end", minibatch_end="Minibatch |g| at the end", signed_start="signed at step 0",
                  signed_end="signed at the end", loss_end="Probe loss at the end")


def probe_layers(runs: Group) -> pd.DataFrame:
    """Q1.6 per layer of the runs (one rate), the probe's mean |g| at step 0, at the layer's peak and at the end,
    mean over the seeds; the layer's share of the parameters."""
    probes = [r.gradients["probe"] for r in runs if r.gradients and "probe" in r.gradients]
    per_epoch = runs[0].steps_per_epoch
    rows = []
    for layer, size in probes[0]["layer_sizes"].items():
        series = [p["layers"][layer] for p in probes]
        peaks = [max(range(len(s)), key=s.__getitem__) for s in series]
        rows.append({"layer": int(layer), "params": size, "abs_start": mean([s[0] for s in series]),
                     "abs_peak": mean([s[i] for s, i in zip(series, peaks)]),
                     "peak_epoch": [round(probes[0]["step"][i] / per_epoch, 2) for i in peaks],
                     "abs_end": mean([s[-1] for s in series])})
    return _frame(rows, "layer", abs_start="|g| at step 0", abs_peak="|g| at its peak", peak_epoch="Peak at epoch",
                  abs_end="|g| at the end")


def networks(groups: dict[str, Group], target: float, budget: float) -> pd.DataFrame:
    """Q1.7, each network as trained: rate, test accuracy, parameters, multiply-adds, the first epoch validation
    accuracy reached `target` (per seed), the validation accuracy once `budget` TFLOP of training are spent (equal
    compute: interpolated linearly between the two epochs around the budget), seconds per epoch."""
    at_budget = {name: values(runs, lambda run: report.at_compute(run, budget)) for name, runs in groups.items()}
    return _frame([{"network": name, "lr": runs[0].recipe.lr, **_summary(runs), "params": runs[0].parameters,
                    "multiply_adds": runs[0].multiply_adds,
                    "epoch": report.epochs_reaching(runs, target, "validation_accuracy"),
                    "validation": mean(at_budget[name]), "validation_std": std(at_budget[name]),
                    "s_per_epoch": report.seconds_per_epoch(runs)} for name, runs in groups.items()], "network",
                  epoch=f"Epoch validation ≥ {100 * target:g} %", validation=f"Validation at {budget:.2f} TFLOP (%)")


def effects(groups: dict[Any, Group], changes: dict[str, tuple[Any, Any]]) -> pd.DataFrame:
    """Q1.7: what one change does with the rest fixed: {name: (cell changed, cell it is compared with)}, Holm over
    the changes."""
    differences = _differences({name: (groups[a], groups[b]) for name, (a, b) in changes.items()})
    return _frame([{"change": name, **differences[name]} for name in changes], "change", p="p (Holm)")


def classes(mlp: Group, cnn: Group, names: tuple[str, str] = ("MLP", "CNN")) -> pd.DataFrame:
    """Q1.7: test accuracy per class of an MLP and the CNN (mean over the seeds), and the difference; `names` head
    the two columns."""
    a, b = report.per_class(mlp), report.per_class(cnn)
    return _frame([{"class": name, "mlp": a[name], "cnn": b[name], "diff": b[name] - a[name]} for name in CLASS_NAMES],
                  "class", mlp=f"{names[0]} (%)", cnn=f"{names[1]} (%)", diff="Δ (points)")


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
    elif base == "loss_rise":
        text = f"{value:.3f}"
    elif base.startswith(("signed", "abs", "minibatch")):
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
        shown[names.get(column, column)] = cells
    return shown.rename_axis(columns=" / ".join(names.get(n, n) for n in table.index.names if n))
