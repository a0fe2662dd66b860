"""Tables as DataFrames of numbers (fractions, counts, p-values; a list holds one value per seed) with snake_case
columns, and `view`, the one formatter that turns them into what the notebook shows: `x_std` and `x_ci` are shown
with `x` as "x ± …", `x_note` instead of a missing `x` (why it is missing) or after it; accuracies and their
differences are fractions, shown in percent and points."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from . import report
from .report import Group, compare, mean, std, values

HEADERS = {"lr": "Lr", "accuracy": "Accuracy (%)", "epoch": "Epoch", "structure": "Structures", "params": "Parameters",
           "validation": "Validation (%)", "diff": "Δ (points, CI)", "p": "p", "runs": f"Runs (learned: test ≥ {100 * report.LEARNED:g} %)",
           "rank": "Rank", "multiply_adds": "Multiply-adds / image",
           "network": "Network", "change": "Change (each cell at its own chosen rate)", "search": "Search",
           "validation_epoch": "Validation ≥ 90 % at", "train_epoch": "Train ≥ 90 % at",
           "best_validation": "Best validation (%)", "best_epoch": "at epoch", "layer": "Layer",
           "quickstart": "Quickstart loop (%)", "notebook": "This notebook (%)",
           "chosen": "Chosen", "tflop": "Training TFLOP",
           "lowest_loss": "Lowest val. loss at"}
PERCENT = ("accuracy", "validation", "train", "diff", "best_validation", "test_there", "quickstart", "notebook",
           "after_10", "train_10", "train_end", "test_end", "gain", "score", "silent")


def _frame(rows: list[dict[str, Any]], index: str, **headers: str) -> pd.DataFrame:
    table = pd.DataFrame(rows).set_index(index)
    table.attrs["headers"] = headers
    return table


def _summary(runs: Group, series: str = "test_accuracy", prefix: str = "accuracy") -> dict[str, Any]:
    """Mean and std over the seeds; where a seed has no value (it diverged), how the runs ended."""
    xs = values(runs, series)
    return {prefix: mean(xs), f"{prefix}_std": std(xs),
            **({f"{prefix}_note": report.outcomes(runs)} if None in xs else {})}


def _differences(pairs: dict[Any, tuple[Group, Group]], series: str = "test_accuracy") -> dict[Any, dict[str, Any]]:
    """a − b for each pair (Welch), adjusted for the family of pairs (report: Bonferroni)."""
    return {key: _cells(values(a, series), values(b, series), len(pairs)) for key, (a, b) in pairs.items()}


def _cells(a: list[float | None], b: list[float | None], tests: int) -> dict[str, Any]:
    """a − b (Welch, one of `tests`) as a table's cells; the p-value noted "apart" where every seed of one setting is
    above every seed of the other (three seeds can be apart and still not differ by the report's rule)."""
    d, x, y = compare(a, b, tests), report.finite(a), report.finite(b)
    apart = d.p is not None and (min(x) > max(y) or max(x) < min(y))
    return {"diff": d.difference, "diff_ci": d.ci, "p": d.p, "p_note": "apart" if apart else None}


def accuracy(groups: dict[Any, Group]) -> pd.DataFrame:
    """Q1.2, the assignment's table: Lr | Accuracy, the test accuracy after the runs' epochs."""
    return _frame([{"lr": lr, **_summary(runs)} for lr, runs in groups.items()], "lr")


def _crossing(run: Any, target: float) -> tuple[int | str, float | None]:
    """Q1.3 for one run: the first epoch whose test accuracy reached `target` and the test accuracy then; where it
    never did, '> N' (or why it stopped) and no accuracy."""
    epoch = report.first_reaching(run.test_accuracy, target)
    if epoch:
        return epoch, run.test_accuracy[epoch - 1]
    return (f"diverged at step {run.diverged_step}" if run.diverged else f"> {run.epochs}"), None


def epochs_to_target(groups: dict[float, Group], target: float) -> pd.DataFrame:
    """Q1.3, the assignment's table: Lr | Accuracy | Epoch. Epoch, per seed: the first epoch whose test accuracy
    reached `target` ('> N' where it never did in N epochs); Accuracy: the test accuracy at that epoch, mean over the
    seeds that reached it; then the test accuracy after the last epoch. Rank: fewest seeds short of the target, then
    the earliest mean epoch, then the highest accuracy after the last epoch."""
    rows = []
    for lr, runs in groups.items():
        found = [_crossing(run, target) for run in runs]
        crossed = [e for e, _ in found if isinstance(e, int)]
        short = len(runs) - len(crossed)
        row = {"lr": lr, "accuracy": mean([a for _, a in found]), "accuracy_std": std([a for _, a in found]),
               "accuracy_note": "not reached" if not crossed else f"{len(crossed)} of {len(runs)} seeds" if short else "",
               "epoch": [e for e, _ in found], **_summary(runs, prefix="test_end")}
        rows.append({**row, "order": (short, mean(crossed) or 0, -(row["test_end"] or 0))})
    for rank, row in enumerate(sorted(rows, key=lambda r: r["order"]), start=1):
        row["rank"] = rank
    return _frame([{k: v for k, v in row.items() if k != "order"} for row in rows], "lr",
                  accuracy="Accuracy (test at Epoch, %)", epoch=f"Epoch (test ≥ {100 * target:g} %)",
                  test_end=f"Accuracy at epoch {_epochs(groups)} (%)")


def crossings(groups: dict[float, Group], target: float) -> pd.DataFrame:
    """Q1.3 per seed: the first epoch validation and train accuracy reached `target` (test accuracy's: in
    epochs_to_target), the best validation accuracy with its epoch, and the test accuracy at that epoch."""
    return _frame([{"lr": lr, **{f"{split}_epoch": [e or f"> {r.epochs}" for e, r in zip(
                                     report.epochs_reaching(runs, target, f"{split}_accuracy"), runs)]
                                 for split in ("validation", "train")},
                    "best_validation": [max(r.validation_accuracy, default=None) for r in runs],
                    "best_epoch": [report.best_epoch(r) for r in runs], "test_there": _at_best(runs, "test_accuracy")}
                   for lr, runs in groups.items()], "lr", test_there="Test there (%)")


def _epochs(groups: dict[Any, Group]) -> int:
    """The most epochs any run of these groups was set to train (what 'the end' means in a header)."""
    return max(r.recipe.epochs for runs in groups.values() for r in runs)


def _at_best(runs: Group, series: str) -> list[float | None]:
    """Per seed: a per-epoch series at the epoch of the best validation accuracy (None where there is none)."""
    return [getattr(r, series)[e - 1] if e else None for r, e in zip(runs, (report.best_epoch(r) for r in runs))]


def two_tables(after: dict[float, Group], groups: dict[float, Group], target: float) -> pd.DataFrame:
    """Q1.4, the tables of Q1.2 and Q1.3 side by side per rate, with what the epochs after the last of `after` bought
    (test accuracy at the end − after `after`'s epochs, paired by seed), the epoch of the lowest validation loss (per
    seed: where overfitting starts), and the peak sharpness against the stability limit 2 / lr (mean over the
    seeds)."""
    start = next(iter(after.values()))[0].recipe.epochs  # not .epochs: a run may have diverged before
    rows = []
    for lr, runs in groups.items():
        later = report.paired(values(runs), [r.test_accuracy[start - 1] if r.epochs >= start else None for r in runs],
                              len(groups))
        probes = [report.probe_stats(r) for r in runs]
        rows.append({"lr": lr, **_summary(after[lr], prefix="after_10"),
                     "epoch": [_crossing(r, target)[0] for r in runs], **_summary(runs, prefix="test_end"),
                     "gain": later.difference, "gain_ci": later.ci,
                     "lowest_loss": [report.best_epoch(r, "validation_loss", lowest=True) for r in runs],
                     "edge": mean([float(np.nanmax(p["sharpness"])) * lr / 2 for p in probes if p is not None]),
                     "silent": mean([float(p["dead"][-1, -1]) for p in probes if p is not None and len(p["dead"])])})
    epochs = _epochs(groups)
    return _frame(rows, "lr", after_10=f"Q1.2: epoch {start} (%)", epoch="Q1.3: epoch",
                  test_end=f"Epoch {epochs} (%)", gain=f"{epochs} − {start} (points, CI)",
                  edge="Peak λ × lr / 2", silent="Silent at end (%)")


def learning_rates(groups: dict[float, Group], reference: float) -> pd.DataFrame:
    """Q1.4 per rate after 10 epochs: validation and test accuracy, and the test accuracy's difference to the
    `reference` rate (chosen on the selection seed), adjusted over the rates."""
    differences = _differences({lr: (runs, groups[reference]) for lr, runs in groups.items() if lr != reference})
    return _frame([{"lr": lr, **_summary(runs, "validation_accuracy", "validation"), **_summary(runs),
                    **differences.get(lr, {}), "runs": report.outcomes(runs)} for lr, runs in groups.items()], "lr",
                  diff=f"Δ vs lr {reference:g} (points, CI)")


def structures(groups: dict[str, Group], base: str = "base") -> pd.DataFrame:
    """Q1.5, the assignment's table: Structures | Accuracy | Parameters, then the multiply-adds per image and the
    difference in accuracy to the base network (adjusted over the structures)."""
    differences = _differences({name: (runs, groups[base]) for name, runs in groups.items() if name != base})
    return _frame([{"structure": name, **_summary(runs), "params": runs[0].parameters,
                    "multiply_adds": runs[0].multiply_adds, **differences.get(name, {})}
                   for name, runs in groups.items()], "structure", diff=f"Δ vs {base} (points, CI)")


def capacity(short: dict[str, Group], long: dict[str, Group], base: str = "base") -> pd.DataFrame:
    """Q1.5, capacity against budget: per structure, its rate; train accuracy after the short budget; and within the
    long one, per seed the epochs of the lowest validation loss and of the best validation accuracy, and at the
    latter train and test accuracy and the test accuracy's difference to the base network (adjusted)."""
    found = {name: {s: _at_best(runs, f"{s}_accuracy") for s in ("train", "test")} for name, runs in long.items()}
    tested = {name: _cells(found[name]["test"], found[base]["test"], len(long) - 1) for name in long if name != base}
    n = short[base][0].epochs
    return _frame([{"structure": name, "lr": runs[0].recipe.lr, **_summary(short[name], "train_accuracy", "train_10"),
                    "lowest_loss": [report.best_epoch(r, "validation_loss", lowest=True) for r in runs],
                    "best_epoch": [report.best_epoch(r) for r in runs],
                    "train_end": mean(found[name]["train"]), "train_end_std": std(found[name]["train"]),
                    "test_end": mean(found[name]["test"]), "test_end_std": std(found[name]["test"]),
                    **tested.get(name, {})} for name, runs in long.items()], "structure",
                  train_10=f"Train, {n} ep. (%)", best_epoch="Best val. acc. at", train_end="Train, best val. epoch (%)",
                  test_end="Test there (%)", diff=f"Δ test there vs {base}")


def first_steps(groups: dict[float, Group]) -> pd.DataFrame:
    """Q1.6 per rate over the first steps traced: per seed, the change Δ (report.ends_change: the mean of the last
    report.ENDS steps − that of the first) of the mean of the gradients, of their norm ‖g‖ and of their mean size
    |g|, tested against 0 over the seeds, adjusted over the table's tests (the loss is in the figure).
    Seeds: the runs traced (report.traced leaves out a run that diverged within its first steps)."""
    traced = {lr: report.traced(runs) for lr, runs in groups.items()}
    tests = 3 * len(groups)
    rows = []
    for lr, found in traced.items():
        row: dict[str, Any] = {"lr": lr, "seeds": len(found)}
        for name in ("signed", "norm", "abs"):
            change = report.change([report.ends_change(t[name]) for t in found], tests)
            row |= {f"{name}_change": change.difference, f"{name}_change_ci": change.ci, f"{name}_p": change.p}
        rows.append(row)
    return _frame(rows, "lr", seeds="Seeds", signed_change="Δ mean g", signed_p="p", norm_change="Δ ‖g‖", norm_p="p",
                  abs_change="Δ mean |g|", abs_p="p")  # each p: of the Δ on its left


def layer_sums(runs: Group) -> pd.DataFrame:
    """Q1.6 per layer, over the recorded first steps of `runs` (mean over steps and seeds): how much of the layer's
    gradient cancels in its sum (|Σg| / Σ|g|), and its sum's size over all parameters (|Σg| / N): what it adds to
    the mean of the gradients. The last row: all layers together."""
    stats = report.traced(runs)
    sizes = runs[0].gradients["layer_sizes"]
    total = sum(sizes)
    rows = []
    for i, size in enumerate([*sizes, total]):
        signed = [np.abs(s["layers"][:, i] if i < len(sizes) else s["layers"].sum(1)) for s in stats]
        sizes_ = [s["layers_abs"][:, i] if i < len(sizes) else s["layers_abs"].sum(1) for s in stats]
        rows.append({"layer": str(i + 1) if i < len(sizes) else "all", "params": size,
                     "cancel": float(np.mean([np.mean(s / a) for s, a in zip(signed, sizes_)])),
                     "share": float(np.mean([np.mean(s) for s in signed])) / total})
    return _frame(rows, "layer", layer=f"Layer (lr {runs[0].recipe.lr:g})", cancel="|Σg| / Σ|g|, mean of steps",
                  share=f"|Σg| / N, mean of steps (N = {total:,})")


def probe(groups: dict[float, Group]) -> pd.DataFrame:
    """Q1.6 through the whole run, on the probe batch, per rate: ‖g‖ and the sharpness at step 0 (means over the
    seeds), and after the last step the loss and the sharpness (means) and ‖g‖ (per seed)."""
    rows = []
    for lr, runs in groups.items():
        probes = [p for p in (report.probe_stats(r) for r in runs) if p is not None and len(p["step"]) > 2]
        rows.append({"lr": lr, "norm_start": mean([float(p["norm"][0]) for p in probes]),
                     "sharp_start": mean([float(p["sharpness"][0]) for p in probes]),
                     "loss_end": mean([float(p["loss"][-1]) for p in probes]),
                     "sharp_end": mean([float(p["sharpness"][-1]) for p in probes]),
                     "norm_end": [float(p["norm"][-1]) for p in probes]})
    end = f"epoch {_epochs(groups)}"  # after its last step
    return _frame(rows, "lr", lr="Lr (probe)", norm_start="‖g‖, step 0", sharp_start="Sharpness, step 0",
                  norm_end=f"‖g‖, {end}", loss_end=f"Loss, {end}", sharp_end=f"Sharpness, {end}")


def networks(groups: dict[Any, Group], target: float, labels: dict[Any, str]) -> pd.DataFrame:
    """Q1.7, each network and scheme as trained (`labels` name them): rate, test accuracy, parameters, multiply-adds,
    training compute, the last epoch's train loss (mean over the seeds that did not diverge), the first epoch
    validation accuracy reached `target` (per seed)."""
    return _frame([{"network": labels.get(key, str(key)), "lr": runs[0].recipe.lr,
                    **_summary(runs), "params": runs[0].parameters, "multiply_adds": runs[0].multiply_adds,
                    "tflop": max((report.training_tflop(r)[-1] for r in runs if r.epochs), default=None),
                    "loss_train": mean(values(runs, "train_loss")),
                    "epoch": report.epochs_reaching(runs, target, "validation_accuracy")}
                   for key, runs in groups.items()], "network",
                  epoch=f"Val. ≥ {100 * target:g} % at", multiply_adds="Multiply-adds", tflop="TFLOP",
                  loss_train="Train loss")


def effects(groups: dict[Any, Group], changes: dict[str, tuple[Any, Any]]) -> pd.DataFrame:
    """Q1.7: what one change does, each cell at its own chosen rate: {name: (cell changed, cell it is compared
    with)}, adjusted over the changes."""
    differences = _differences({name: (groups[a], groups[b]) for name, (a, b) in changes.items()})
    return _frame([{"change": name, **differences[name]} for name in changes], "change")


def search(searches: dict[str, Any]) -> pd.DataFrame:
    """Learning-rate searches (experiments.Search), a row per search: the rates tried, the selection score
    (report.selection_score, the mean over the selection seeds) at each, and the rate chosen."""
    seeds = next(iter(next(iter(searches.values())).runs.values()))
    return _frame([{"search": name, "lr": list(found.runs),
                    "score": [mean([report.selection_score(r)[0] for r in runs]) for runs in found.runs.values()],
                    "chosen": found.chosen} for name, found in searches.items()], "search",
                  lr="Rates tried", score=f"Validation, mean of {len(seeds)} selection seeds (%)")


def quickstart(loop: dict[float, Group], notebook: dict[float, Group]) -> pd.DataFrame:
    """Q1.2: the quickstart's loop unchanged (all 60,000 images in their stored order) beside this notebook's
    (55,000 images, reshuffled every epoch): test accuracy after the same epochs, and the difference."""
    differences = _differences({lr: (loop[lr], notebook[lr]) for lr in loop})  # adjusted over the rates
    return _frame([{"lr": lr, **_summary(loop[lr], prefix="quickstart"), **_summary(notebook[lr], prefix="notebook"),
                    **differences[lr]} for lr in loop], "lr", diff="Δ quickstart − notebook (points, CI)")


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
        return "< 0.001" if value < 0.001 else f"{value:.3f}" if value < 0.1 else f"{value:.2f}"
    if base in PERCENT:
        text = f"{100 * value:+.2f}" if base in ("diff", "gain") and column == base else f"{100 * value:.2f}"
    elif base.startswith(("signed", "norm", "loss", "share", "cancel", "sharp", "abs")):
        text = (f"{value:.1e}" if base.startswith(("signed", "share", "cancel", "abs")) else
                f"{value:.2g}" if abs(value) < 10 else f"{value:.0f}")
    elif isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) >= 1):
        text = f"{int(value):,}"
    else:
        text = f"{value:.2g}" if abs(value) < 0.01 else f"{value:.3g}"
    return text.replace("-", "\u2212")


def view(table: pd.DataFrame) -> pd.DataFrame:
    """The table as shown: strings, companion columns (_std, _ci, _note) folded into theirs, headers in words
    (HEADERS, then the table's own attrs['headers']), the index's name in the one header row."""
    names = {**HEADERS, **table.attrs.get("headers", {})}
    shown: dict[str, list[str]] = {}
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
        shown[column] = cells
    view = pd.DataFrame(shown, index=[number(table.index.name or "", key) for key in table.index])
    view.columns = [names.get(column, column) for column in shown]  # a header may repeat: "p" after each Δ
    return view.rename_axis(columns=names.get(table.index.name, table.index.name))
