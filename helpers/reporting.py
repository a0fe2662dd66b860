"""Tables (pandas DataFrames), generated sentences and the summary, all read from Histories."""
from __future__ import annotations

import statistics
from typing import Any

import pandas as pd

from .data import CLASS_NAMES
from .models import STRUCTURES
from .training import History, first_reaching


def percent(value: float | None, digits: int = 2) -> str:
    """0.8976 -> '89.76 %'; None -> '—'."""
    return "—" if value is None else f"{100 * value:.{digits}f} %"


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n-1; 0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def group_accuracy(group: list[History]) -> tuple[float, float] | None:
    """Mean and sample std of the final test accuracies over seeds; None if any run diverged."""
    finals = [run.final_test_accuracy for run in group]
    return None if any(value is None for value in finals) else mean_std(finals)


def outcome(history: History) -> str:
    """'diverged at step N', 'collapsed to chance', or 'trained'."""
    if history.diverged:
        return f"diverged (loss not finite at step {history.diverged_step})"
    if history.at_chance_since():
        return f"collapsed to chance from epoch {history.at_chance_since()}"
    return "trained"


def lr_table(runs: dict[float, History], epochs: int) -> pd.DataFrame:
    """Q1.2: Lr | Accuracy (test, after `epochs` epochs) | Outcome."""
    rows = []
    for lr, run in runs.items():
        first = run.first_epochs(epochs)
        rows.append({"Lr": f"{lr:g}", "Accuracy": "diverged" if first.diverged else percent(first.test_accuracy[-1]),
                     "Outcome": outcome(first)})
    return pd.DataFrame(rows).set_index("Lr")


def epoch_text(epoch: int | None, run: History) -> str:
    """The epoch a target was reached, or why it was not."""
    if epoch is not None:
        return str(epoch)
    if run.diverged:
        return "not reached (diverged)"
    if run.stop_reason == "chance":
        return f"not reached (stuck at chance, stopped after {run.epochs})"
    return f"not reached in {run.epochs}"


def target_table(runs: dict[float, History], target: float) -> pd.DataFrame:
    """Q1.3: Lr | Accuracy (best test) | Epoch test >= target | Epoch train >= target | epochs run."""
    label = percent(target, 0)
    rows = []
    for lr, run in runs.items():
        best = max(run.test_accuracy, default=None)
        best_epoch = run.test_accuracy.index(best) + 1 if best is not None else None
        rows.append({"Lr": f"{lr:g}",
                     "Accuracy": percent(best) + (f" (epoch {best_epoch})" if best_epoch else ""),
                     f"Epoch (test ≥ {label})": epoch_text(run.epoch_test_target, run),
                     f"Epoch (train ≥ {label})": epoch_text(run.epoch_train_target, run),
                     "Epochs run": run.epochs})
    return pd.DataFrame(rows).set_index("Lr")


def structure_label(name: str) -> str:
    """'deeper' -> 'deeper: 784-512-512-512-512-10'."""
    return f"{name}: " + "-".join(str(n) for n in (784, *STRUCTURES[name], 10))


def accuracy_text(runs: list[History]) -> str:
    """Mean ± sample std of the final test accuracy over seeds, in percent."""
    accuracy = group_accuracy(runs)
    return "diverged" if accuracy is None else f"{100 * accuracy[0]:.2f} ± {100 * accuracy[1]:.2f} %"


def seconds_per_epoch(runs: list[History]) -> float:
    """Median training seconds per epoch over all epochs of all runs."""
    return statistics.median(s for run in runs for s in run.seconds)


def structure_table(runs: dict[str, list[History]]) -> pd.DataFrame:
    """Q1.5: Structures | Accuracy (mean ± std over seeds) | Parameters | s/epoch."""
    return pd.DataFrame([{"Structures": structure_label(name), "Accuracy": accuracy_text(group),
                          "Parameters": f"{group[0].parameters:,}", "Seeds": len(group),
                          "s/epoch": f"{seconds_per_epoch(group):.1f}"}
                         for name, group in runs.items()]).set_index("Structures")


def comparison_table(cnn: list[History], mlps: dict[str, list[History]], target: float) -> pd.DataFrame:
    """Q1.7: every model: Parameters | Accuracy (mean ± std) | epoch test >= target (per seed) | s/epoch."""
    groups = {"CNN (small)": cnn, **{f"MLP {structure_label(k)}": v for k, v in mlps.items()}}
    rows = []
    for name, group in groups.items():
        epochs = [first_reaching(run.test_accuracy, target) for run in group]
        rows.append({"Model": name, "Parameters": f"{group[0].parameters:,}",
                     "Accuracy": accuracy_text(group), "Epochs": group[0].epochs,
                     f"First epoch test ≥ {percent(target, 0)}": ", ".join(str(e) if e else "–" for e in epochs),
                     "s/epoch": f"{seconds_per_epoch(group):.1f}"})
    return pd.DataFrame(rows).set_index("Model")


def most_confused(confusion: list[list[int]], top: int = 5) -> pd.DataFrame:
    """The `top` largest off-diagonal cells: true class, predicted as, count, share of that class."""
    cells = [(confusion[t][p], t, p) for t in range(len(confusion)) for p in range(len(confusion)) if t != p]
    rows = [{"True class": CLASS_NAMES[t], "Predicted as": CLASS_NAMES[p], "Count": n,
             "Share of class": percent(n / sum(confusion[t]), 1)}
            for n, t, p in sorted(cells, reverse=True)[:top]]
    return pd.DataFrame(rows)


def training_seconds(runs: list[History]) -> float:
    """Training plus evaluation seconds of the distinct runs (views cut from a longer run count once)."""
    return sum(sum(r.seconds) + sum(r.eval_seconds) for r in runs if "cut_from_epochs" not in r.settings)


def summary(profile_name: str, environment: dict[str, Any], seconds_total: float, lr_runs: dict[float, History],
            epochs: int, gradient_lr: float, structure_runs: dict[str, list[History]],
            cnn_runs: list[History]) -> dict[str, Any]:
    """The machine-readable summary written to results/summary.json."""
    def first(run: History) -> History:
        return run.first_epochs(epochs)

    def accuracy_fields(group: list[History]) -> dict[str, Any]:
        mean, std = group_accuracy(group) or (None, None)
        return {"test_accuracy_mean": mean, "test_accuracy_std": std,
                "seeds": [run.settings["seed"] for run in group]}

    def model_row(name: str, group: list[History]) -> dict[str, Any]:
        return {"model": name, "parameters": group[0].parameters, "epochs": group[0].epochs,
                **accuracy_fields(group), "seconds_per_epoch": seconds_per_epoch(group)}

    gradient_run = lr_runs[gradient_lr]
    return {
        "profile": profile_name,
        "environment": environment,
        "seconds_total": seconds_total,
        "q1_2": [{"lr": lr, "epochs": first(run).epochs, "test_accuracy": first(run).final_test_accuracy,
                  "diverged": first(run).diverged, "collapsed_to_chance": first(run).at_chance_since() is not None}
                 for lr, run in lr_runs.items()],
        "q1_3": [{"lr": lr, "max_epochs": run.settings["epochs"], "epochs_run": run.epochs,
                  "stop_reason": run.stop_reason, "epoch_test_90": run.epoch_test_target,
                  "epoch_train_90": run.epoch_train_target,
                  "best_test_accuracy": max(run.test_accuracy, default=None)} for lr, run in lr_runs.items()],
        "q1_5": [{"structure": name, "hidden_sizes": list(STRUCTURES[name]), "parameters": group[0].parameters,
                  **accuracy_fields(group)} for name, group in structure_runs.items()],
        "q1_6": {"lr": gradient_lr, "steps": len(gradient_run.gradient_mean),
                 "gradient_mean": gradient_run.gradient_mean, "gradient_abs_mean": gradient_run.gradient_abs_mean},
        "q1_7": [model_row("cnn", cnn_runs), *(model_row(f"mlp_{k}", v) for k, v in structure_runs.items())],
    }



def bullets(lines: list[str]) -> str:
    """Markdown bullet list."""
    return "\n".join(f"- {line}" for line in lines)


def _lr(lr: float) -> str:
    return f"lr {lr:g}"


def lr_findings(runs: dict[float, History], epochs: int) -> str:
    """Q1.2 in numbers: accuracy after `epochs` epochs per lr, the best lr, and how fast each started."""
    cut = {lr: run.first_epochs(epochs) for lr, run in runs.items()}
    trained = {lr: run for lr, run in cut.items() if outcome(run) == "trained"}
    lines = []
    for lr, run in cut.items():
        if lr in trained:
            lines.append(f"{_lr(lr)}: test accuracy {percent(run.test_accuracy[-1])} after {epochs} epochs; "
                         f"train loss {run.train_loss[0]:.3f} after epoch 1, {run.train_loss[-1]:.3f} after "
                         f"epoch {epochs}.")
        else:
            losses = ", ".join(f"{v:.2f}" for v in run.train_loss)
            lines.append(f"{_lr(lr)}: {outcome(run)}; test accuracy {percent(run.final_test_accuracy)} "
                         f"after {run.epochs} epochs; train loss per epoch: {losses}.")
    if trained:
        best = max(trained, key=lambda lr: trained[lr].test_accuracy[-1])
        lines.append(f"Best after {epochs} epochs: **{_lr(best)}** ({percent(trained[best].test_accuracy[-1])}).")
    return bullets(lines)


def target_findings(runs: dict[float, History], target: float) -> str:
    """Q1.3 in numbers: when train and test accuracy reached the target, or how close they came."""
    lines = []
    for lr, run in runs.items():
        if not run.test_accuracy:
            lines.append(f"{_lr(lr)}: {outcome(run)} before completing an epoch.")
            continue
        best = max(run.test_accuracy)
        train = (f"train accuracy reached {percent(target, 0)} at epoch {run.epoch_train_target}"
                 if run.epoch_train_target else
                 f"train accuracy never reached {percent(target, 0)} (best {percent(max(run.train_accuracy))})")
        test = (f"test accuracy at epoch {run.epoch_test_target}" if run.epoch_test_target else
                f"test accuracy never did in {run.epochs} epochs (best {percent(best)} at epoch "
                f"{run.test_accuracy.index(best) + 1})")
        extra = ""
        if run.stop_reason == "chance":
            extra = f"; stuck at chance from epoch {run.at_chance_since()}, so the run stopped at epoch {run.epochs}"
        elif run.epoch_train_target and not run.epoch_test_target:
            extra = (f"; by the last epoch train accuracy is {percent(run.train_accuracy[-1])} but test accuracy "
                     f"{percent(run.test_accuracy[-1])}, a gap of {100 * (run.train_accuracy[-1] - run.test_accuracy[-1]):.1f} points")
        lines.append(f"{_lr(lr)}: {train}; {test}{extra}.")
    return bullets(lines)


def structure_findings(runs: dict[str, list[History]]) -> str:
    """Q1.5 in numbers: each structure's accuracy, size and cost against the base network."""
    base = runs["base"]
    base_mean, base_std = group_accuracy(base) or (0.0, 0.0)
    lines = []
    for name, group in runs.items():
        if name == "base":
            continue
        mean, std = group_accuracy(group) or (0.0, 0.0)
        lines.append(f"{name}: {accuracy_text(group)} vs base {accuracy_text(base)} "
                     f"(difference {100 * (mean - base_mean):+.2f} points; seed std {100 * std:.2f} / "
                     f"{100 * base_std:.2f}) with {group[0].parameters / base[0].parameters:.2f}x the parameters "
                     f"and {seconds_per_epoch(group) / seconds_per_epoch(base):.1f}x the time per epoch.")
    for name, group in runs.items():
        gap = statistics.fmean(run.train_accuracy[-1] - run.test_accuracy[-1] for run in group)
        lines.append(f"{name}: final train loss {statistics.fmean(run.train_loss[-1] for run in group):.3f}, "
                     f"train-test accuracy gap {100 * gap:.1f} points.")
    return bullets(lines)


def gradient_stats(run: History) -> dict[str, Any]:
    """Q1.6 numbers of one run: the signed mean and mean |gradient| over the tracked steps."""
    signed, absolute = run.gradient_mean, run.gradient_abs_mean
    tail = max(1, len(signed) // 10)
    layers = list(run.layer_gradient_mean)
    return {"steps": len(signed), "first": signed[0], "average": statistics.fmean(signed),
            "min": min(signed), "max": max(signed), "positive": sum(v > 0 for v in signed),
            "negative": sum(v < 0 for v in signed), "abs_first": absolute[0], "tail": tail,
            "abs_tail": statistics.fmean(absolute[-tail:]),
            "ratio": statistics.fmean(abs(a) / b for a, b in zip(signed, absolute)),
            "hidden": {k: statistics.fmean(run.layer_gradient_mean[k]) for k in layers[:-1]},
            "output_max": max(abs(v) for v in run.layer_gradient_mean[layers[-1]])}


def gradient_table(runs: dict[str, History]) -> pd.DataFrame:
    """Q1.6 per run: the signed mean and the mean |gradient| over the tracked steps, and the output layer's share."""
    rows = []
    for label, run in runs.items():
        g = gradient_stats(run)
        rows.append({
            "Run": label,
            "signed mean: step 1": f"{g['first']:.2e}",
            f"signed mean: average of {g['steps']} steps": f"{g['average']:.2e}",
            "signed mean: min … max": f"{g['min']:.1e} … {g['max']:.1e}",
            "signed mean: steps > 0": g["positive"],
            "mean |g|: step 1": f"{g['abs_first']:.2e}",
            f"mean |g|: last {g['tail']} steps": f"{g['abs_tail']:.2e}",
            "|signed mean| / mean |g| (average)": f"{g['ratio']:.2f}",
            "output layer: max |signed mean|": f"{g['output_max']:.0e}",
        })
    return pd.DataFrame(rows).set_index("Run").T  # one column per run: fits a printed page


def gradient_findings(run: History, lr: float) -> str:
    """Q1.6 in numbers for one run: sign and size of the signed mean, how the mean |gradient| moved."""
    g = gradient_stats(run)
    return bullets([
        f"{_lr(lr)}: the signed mean starts at {g['first']:.2e} (step 1) and is negative in {g['negative']} of the "
        f"{g['steps']} steps (range {g['min']:.1e} … {g['max']:.1e}).",
        f"Its size is on average {g['ratio']:.2f} of the mean absolute gradient: partly cancelled, "
        f"but not noise around zero.",
        f"Mean |gradient|: {g['abs_first']:.2e} at step 1, {g['abs_tail']:.2e} over the last {g['tail']} steps "
        f"({g['abs_tail'] / g['abs_first']:.1f}x the start).",
        "Signed mean per hidden layer, average over the steps: "
        + ", ".join(f"{k}: {v:.1e}" for k, v in g["hidden"].items())
        + f"; output layer: at most {g['output_max']:.0e}.",
    ])


def size_and_accuracy(cnn: list[History], mlps: dict[str, list[History]], lr_runs: dict[float, History],
                      epochs: int, structure_lr: float) -> tuple[dict[str, tuple[int, list[float]]], str]:
    """Every model trained here as (parameters, final test accuracies), and a note on runs left out.

    The run at `structure_lr` is already among the MLP structures (base, seed 0), so it is not repeated."""
    points = {"small CNN": (cnn[0].parameters, [r.final_test_accuracy for r in cnn]),
              **{f"MLP {structure_label(k)}": (v[0].parameters, [r.final_test_accuracy for r in v])
                 for k, v in mlps.items()}}
    left_out = []
    for lr, run in lr_runs.items():
        if lr == structure_lr:
            continue
        first = run.first_epochs(epochs)
        if outcome(first) == "trained":
            points[f"base MLP at lr {lr:g}"] = (first.parameters, [first.final_test_accuracy])
        else:
            left_out.append(f"not shown: base MLP at lr {lr:g}, {outcome(first)}")
    return points, "; ".join(left_out)


def cnn_findings(cnn: list[History], mlps: dict[str, list[History]], target: float) -> str:
    """Q1.7 in numbers: the CNN against every MLP on accuracy, size, speed of convergence and time."""
    base = mlps["base"]
    best_mlp = max(mlps, key=lambda k: (group_accuracy(mlps[k]) or (0.0, 0.0))[0])
    def reached(group: list[History]) -> str:
        return ", ".join(str(first_reaching(r.test_accuracy, target) or "never") for r in group)

    lines = [
        f"CNN: {accuracy_text(cnn)} after {cnn[0].epochs} epochs with {cnn[0].parameters:,} parameters "
        f"({base[0].parameters / cnn[0].parameters:.1f}x fewer than the base MLP's {base[0].parameters:,}).",
        f"Best MLP: {best_mlp}, {accuracy_text(mlps[best_mlp])} with {mlps[best_mlp][0].parameters:,} parameters.",
        f"First epoch with test accuracy ≥ {percent(target, 0)}, per seed: CNN {reached(cnn)}; "
        + "; ".join(f"MLP {k} {reached(v)}" for k, v in mlps.items()) + ".",
        f"Test loss after epoch 1: CNN {statistics.fmean(r.test_loss[0] for r in cnn):.3f}, "
        f"base MLP {statistics.fmean(r.test_loss[0] for r in base):.3f}; after the last epoch: "
        f"CNN {statistics.fmean(r.test_loss[-1] for r in cnn):.3f}, "
        f"base MLP {statistics.fmean(r.test_loss[-1] for r in base):.3f}.",
        f"Time per epoch on {cnn[0].settings['device']}: CNN {seconds_per_epoch(cnn):.1f} s, "
        f"base MLP {seconds_per_epoch(base):.1f} s.",
    ]
    return bullets(lines)
