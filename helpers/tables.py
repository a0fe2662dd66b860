"""Tables (pandas DataFrames): what was trained, and what came out. Numbers come from `report`."""
from __future__ import annotations

import math
from typing import Any

import pandas as pd

from . import models, report
from .data import CLASS_NAMES
from .report import Group, compare, median_range, spread
from .training import History

NBSP, MINUS = "\u00a0", "\u2212"
pd.set_option("display.max_colwidth", None)


def pct(value: float | None, digits: int = 2) -> str:
    """0.8976 -> '89.76 %' (no-break space); None -> '—'."""
    return "—" if value is None or not math.isfinite(value) else f"{100 * value:.{digits}f}{NBSP}%"


def sci(value: float | None, digits: int = 1) -> str:
    """1.7e-05 -> '1.7e−05' (a minus sign: no line break inside); None -> '—'."""
    return "—" if value is None or not math.isfinite(value) else f"{value:.{digits}e}".replace("-", MINUS)


def _frame(rows: list[dict[str, Any]], index: str) -> pd.DataFrame:
    """Rows as a DataFrame indexed by `index`, its name moved into the header row (one header row in print)."""
    table = pd.DataFrame(rows).set_index(index)
    return table.rename_axis(index=None, columns=index)


def learning_rates(groups: dict[float, Group]) -> pd.DataFrame:
    """Q1.2, Q1.4: Lr | Accuracy (mean ± std) | per seed | validation | how the runs ended | the difference to
    the most accurate rate, with Welch's p."""
    best = max(groups, key=lambda lr: -1 if spread(groups[lr]).mean is None else spread(groups[lr]).mean)
    rows = []
    for lr, runs in groups.items():
        difference = compare(spread(runs), spread(groups[best]), f"lr {lr:g}", f"lr {best:g}")
        rows.append({"Lr": f"{lr:g}", "Accuracy": spread(runs).text(),
                     "Per seed": ", ".join(pct(report.final(run), 1) for run in runs),
                     "Validation": spread(runs, "validation_accuracy").text(), "Runs": report.outcomes(runs),
                     f"vs lr {best:g}": "—" if lr == best else difference.text()
                     + ("" if difference.real else " (within the spread)")})
    return _frame(rows, "Lr")


def final_models(groups: dict[float, Group]) -> pd.DataFrame:
    """Per rate and seed, the model as each run ended: epochs, test accuracy, classes it predicts, and hidden
    units that never fire on the test set."""
    units = next((run.dead_units for runs in groups.values() for run in runs if run.dead_units), {})
    rows = []
    for lr, runs in groups.items():
        def each(value) -> str:
            return ", ".join(value(run) if run.dead_units else "—" for run in runs)  # "—": diverged
        row = {"Lr": f"{lr:g}", "Epochs": ", ".join(str(run.epochs) for run in runs),
               "Test accuracy": each(lambda run: pct(report.final(run), 1)),
               "Classes predicted": each(lambda run: str(report.distinct_predictions(run)))}
        for i, layer in enumerate(units, start=1):
            row[f"Dead units, layer {i} (of {units[layer][1]})"] = each(lambda run: str(run.dead_units[layer][0]))
        rows.append(row)
    return _frame(rows, "Lr")


STOPS = {"target": "both reached", "stalled": "no gain", "epochs": "the cap", "diverged": "diverging"}


def epochs_to_target(groups: dict[float, Group], target: float) -> pd.DataFrame:
    """Q1.3 over the seeds: the epoch each accuracy first reached the target (median, range) and the accuracy
    then; the best test accuracy and its epoch; how long the runs went and why they stopped."""
    label = pct(target, 0)
    rows = []
    for lr, runs in groups.items():
        row: dict[str, Any] = {"Lr": f"{lr:g}"}
        for name in ("train", "test"):
            epochs = report.epochs_reaching(runs, target, f"{name}_accuracy")
            then = [getattr(run, f"{name}_accuracy")[e - 1] for run, e in zip(runs, epochs) if e]
            row[f"Epoch {name} ≥ {label}"] = median_range(epochs)
            row[f"{name.capitalize()} acc. then"] = pct(sum(then) / len(then)) if then else "—"
        best = [(max(run.test_accuracy), run.test_accuracy.index(max(run.test_accuracy)) + 1)
                for run in runs if run.test_accuracy]
        row["Best test acc. (epoch)"] = ", ".join(f"{100 * a:.1f} ({e})" for a, e in best) or "—"
        row["Epochs run"] = ", ".join(str(run.epochs) for run in runs)
        row["Stopped by"] = ", ".join(dict.fromkeys(STOPS[run.stop_reason] for run in runs))
        rows.append(row)
    return _frame(rows, "Lr")


def structure_search(search: dict[str, History], grid: list[float], chosen: dict[str, float]) -> pd.DataFrame:
    """Q1.5: validation accuracy of each structure at each rate of the coarse sweep (seed 0); ✓ = chosen."""
    rows = []
    for name, lr in chosen.items():
        row = {"Structure": f"{name} ({models.layer_sizes(name)})"}
        for rate in grid:
            row[f"lr {rate:g}"] = pct(report.final(search[f"{name}_lr{rate:g}"], "validation_accuracy")) \
                + (" ✓" if rate == lr else "")
        rows.append(row)
    return _frame(rows, "Structure")


def structures(groups: dict[str, Group]) -> pd.DataFrame:
    """Q1.5: Structures | Lr | Accuracy | difference to the base (Welch) | train accuracy | Parameters |
    multiply-adds | s/epoch."""
    base = spread(groups["base"])
    rows = []
    for name, runs in groups.items():
        difference = compare(spread(runs), base, name, "base")
        rows.append({"Structures": f"{name} ({models.layer_sizes(name)})", "Lr": f"{runs[0].recipe.lr:g}",
                     "Accuracy": spread(runs).text(), "vs base": "—" if name == "base" else difference.text(),
                     "Train acc.": spread(runs, "train_accuracy").text(),
                     "Parameters": f"{runs[0].parameters:,}",
                     "Multiply-adds / image": f"{models.multiply_adds(name):,}",
                     "s/epoch": f"{report.seconds_per_epoch(runs):.1f}"})
    return _frame(rows, "Structures")


def gradient_readings(groups: dict[float, Group]) -> pd.DataFrame:
    """Q1.6: both readings of the mean gradient, mean over the seeds: steps 1–10 and 91–100 with Welch's p of the
    change, and the first and last traced epoch (seeds traced that long)."""
    rows = []
    for lr, runs in groups.items():
        traced = [run for run in runs if run.gradients]
        longest = [run for run in traced if run.recipe.gradient_epochs == max(r.recipe.gradient_epochs for r in traced)]
        row: dict[Any, Any] = {("", "Lr"): f"{lr:g}", ("", "Seeds: steps / epochs"): f"{len(traced)} / {len(longest)}"}
        for reading, name in (("signed_mean", "signed mean"), ("abs_mean", "mean |gradient|")):
            early, late = (report.Spread([report.window_mean(r.gradients["steps"][reading], a, b) for r in traced],
                                         [], []) for a, b in ((0, 10), (90, 100)))
            row[(name, "steps 1–10")], row[(name, "91–100")] = sci(early.mean), sci(late.mean)
            row[(name, "p, steps")] = report.p_text(compare(late, early, "", "").p) if late.finite and early.finite else "—"
            first, last = (report.Spread([epoch_means(r, reading)[i] for r in longest], [], []) for i in (0, -1))
            row[(name, "epoch 1")] = sci(_mean_of([epoch_means(r, reading)[0] for r in traced]))
            row[(name, "last epoch")] = sci(last.mean)
            row[(name, "p, epochs")] = report.p_text(compare(last, first, "", "").p) if len(first.finite) > 1 else "—"
        rows.append(row)
    table = pd.DataFrame(rows).set_index(("", "Lr"))
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    return table.rename_axis(index="Lr")


def epoch_means(run: History, key: str, layer: str | None = None) -> list[float | None]:
    """Per traced epoch, the mean of a gradient series over the blocks whose middle falls in that epoch."""
    blocks = run.gradients["blocks"]
    values = blocks["layers"][layer][key] if layer else blocks[key]
    epoch = [int(x) for x in report.block_epochs(run)]
    return [report.window_mean([v for v, e in zip(values, epoch) if e == k], 0, None) for k in sorted(set(epoch))] or [None]


def _mean_of(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def gradient_layers(groups: dict[float, Group]) -> pd.DataFrame:
    """Q1.6: per linear layer and rate, from the first to the last traced epoch (mean over seeds): the error
    reaching the layer ||δ||, the layer's input ||a||, and the layer's mean |gradient|, each as first → last."""
    rows = []
    for lr, runs in groups.items():
        traced = [run for run in runs if run.gradients and not run.diverged]
        if not traced:
            continue
        for i, layer in enumerate(traced[0].gradients["blocks"]["layers"], start=1):
            row: dict[str, Any] = {"Lr, layer": f"{lr:g}, layer {i}",
                                   "Entries": f"{traced[0].gradients['layer_sizes'][layer]:,}"}
            for key, name in (("error", "‖δ‖"), ("input", "‖a‖"), ("abs_mean", "mean |g|")):
                series = [epoch_means(run, key, layer) for run in traced]
                first, last = _mean_of([s[0] for s in series]), _mean_of([s[-1] for s in series])
                digits = sci if key == "abs_mean" else (lambda v: "—" if v is None else f"{v:.3g}")
                row[name] = f"{digits(first)} → {digits(last)}"
            rows.append(row)
    return _frame(rows, "Lr, layer")


def cnn_search(candidates: dict[str, History], search: dict[str, History], chosen: str,
               rates: dict[str, list[float]], peak: dict[str, float]) -> pd.DataFrame:
    """Q1.7: the CNN widths at peak lr 0.01, then the peak rate of the chosen CNN and of the base MLP under the
    CNN's scheme; validation accuracy decides (seed 0)."""
    rows = [{"Network": f"CNN {models.layer_sizes(name)}", "Peak lr": f"{run.recipe.lr:g}",
             "Parameters": f"{run.parameters:,}", "Multiply-adds / image": f"{models.multiply_adds(name):,}",
             "Validation": pct(report.final(run, "validation_accuracy")), "Chosen": "width ✓" if name == chosen else ""}
            for name, run in candidates.items()]
    for model, lrs in rates.items():
        for lr in lrs:
            run = search[f"{model}_adamw_lr{lr:g}"]
            if model in candidates and candidates[model].recipe == run.recipe:  # a row above shows it already
                if lr == peak[model]:
                    next(r for r in rows if r["Network"] == f"CNN {models.layer_sizes(model)}")["Chosen"] += ", peak lr ✓"
                continue
            rows.append({"Network": f"CNN {models.layer_sizes(model)}" if models.is_cnn(model) else "base MLP",
                         "Peak lr": f"{lr:g}", "Parameters": f"{run.parameters:,}",
                         "Multiply-adds / image": f"{models.multiply_adds(model):,}",
                         "Validation": pct(report.final(run, "validation_accuracy")),
                         "Chosen": "peak lr ✓" if lr == peak[model] else ""})
    return pd.DataFrame(rows).set_index(["Network", "Peak lr"])


SCHEMES = {"demo": "demo (SGD)", "cnn": "CNN's (AdamW)"}


def ablation(groups: dict[tuple[str, str], Group], target: float) -> pd.DataFrame:
    """Q1.7: network × scheme: lr, parameters, multiply-adds, accuracy, first epoch ≥ target per seed, s/epoch."""
    rows = [{"Network": f"CNN {models.layer_sizes(network)}" if models.is_cnn(network) else "base MLP",
             "Scheme": SCHEMES[scheme], "Lr": f"{runs[0].recipe.lr:g}", "Parameters": f"{runs[0].parameters:,}",
             "Multiply-adds / image": f"{models.multiply_adds(network):,}", "Accuracy": spread(runs).text(),
             f"Epoch test ≥ {pct(target, 0)}": _epochs(report.epochs_reaching(runs, target, "test_accuracy")),
             "s/epoch": f"{report.seconds_per_epoch(runs):.1f}"}
            for (network, scheme), runs in groups.items()]
    return pd.DataFrame(rows).set_index(["Network", "Scheme"])


def _epochs(epochs: list[int | None]) -> str:
    """Per seed, the epoch a level was reached: '6, 4, 6'; 'not reached' when no seed reached it."""
    return ", ".join(str(e) if e else "not reached" for e in epochs) if any(epochs) else "not reached"


def ablation_effects(groups: dict[tuple[str, str], Group]) -> pd.DataFrame:
    """Q1.7: what the network and what the scheme change, each with the other held fixed (Welch over seeds)."""
    (mlp, cnn), schemes = sorted({n for n, _ in groups}, key=models.is_cnn), list(SCHEMES)
    effects = [(f"CNN instead of MLP, {SCHEMES[s]} scheme", (cnn, s), (mlp, s)) for s in schemes]
    effects += [(f"CNN's scheme instead of the demo's, {'CNN' if models.is_cnn(n) else 'MLP'}", (n, "cnn"), (n, "demo"))
                for n in (mlp, cnn)]
    rows = []
    for change, a, b in effects:
        difference = compare(spread(groups[a]), spread(groups[b]), "", "")
        rows.append({"Change (the rest fixed)": change, "Test accuracy": difference.text(),
                     "Real?": "yes" if difference.real else "within the spread"})
    return _frame(rows, "Change (the rest fixed)")


def most_confused(runs: Group, top: int = 5) -> pd.DataFrame:
    """The `top` most frequent confusions on the test set, summed over the seeds: true class, predicted as,
    count per seed, share of that class."""
    matrices = [run.confusion for run in runs if run.confusion]
    n = len(CLASS_NAMES)
    counts = [[sum(m[t][p] for m in matrices) / len(matrices) for p in range(n)] for t in range(n)]
    cells = sorted(((counts[t][p], t, p) for t in range(n) for p in range(n) if t != p), reverse=True)[:top]
    rows = [{"Rank": i, "True class": CLASS_NAMES[t], "Predicted as": CLASS_NAMES[p], "Per seed (mean)": f"{c:.0f}",
             "Share of the class": pct(c / sum(counts[t]), 1)} for i, (c, t, p) in enumerate(cells, start=1)]
    return _frame(rows, "Rank")
