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
    finals = [run.final_test_accuracy for run in runs]
    if any(value is None for value in finals):
        return "diverged"
    mean, std = mean_std(finals)
    return f"{100 * mean:.2f} ± {100 * std:.2f} %"


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

    def model_row(name: str, group: list[History]) -> dict[str, Any]:
        mean, std = mean_std([run.final_test_accuracy or 0.0 for run in group])
        return {"model": name, "parameters": group[0].parameters, "epochs": group[0].epochs,
                "seeds": [run.settings["seed"] for run in group], "test_accuracy_mean": mean,
                "test_accuracy_std": std, "seconds_per_epoch": seconds_per_epoch(group)}

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
                  **dict(zip(("test_accuracy_mean", "test_accuracy_std"),
                             mean_std([run.final_test_accuracy or 0.0 for run in group]))),
                  "seeds": [run.settings["seed"] for run in group]} for name, group in structure_runs.items()],
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
    base_mean, base_std = mean_std([run.final_test_accuracy or 0.0 for run in base])
    lines = []
    for name, group in runs.items():
        if name == "base":
            continue
        mean, std = mean_std([run.final_test_accuracy or 0.0 for run in group])
        lines.append(f"{name}: {accuracy_text(group)} vs base {accuracy_text(base)} "
                     f"(difference {100 * (mean - base_mean):+.2f} points; seed std {100 * std:.2f} / "
                     f"{100 * base_std:.2f}) with {group[0].parameters / base[0].parameters:.2f}x the parameters "
                     f"and {seconds_per_epoch(group) / seconds_per_epoch(base):.1f}x the time per epoch.")
    for name, group in runs.items():
        gap = statistics.fmean(run.train_accuracy[-1] - run.test_accuracy[-1] for run in group)
        lines.append(f"{name}: final train loss {statistics.fmean(run.train_loss[-1] for run in group):.3f}, "
                     f"train-test accuracy gap {100 * gap:.1f} points.")
    return bullets(lines)


def gradient_table(runs: dict[str, History]) -> pd.DataFrame:
    """Q1.6 per run: the signed mean and the mean |gradient| over the tracked steps, and the output layer's share."""
    rows = []
    for label, run in runs.items():
        signed, absolute = run.gradient_mean, run.gradient_abs_mean
        tail = max(1, len(signed) // 10)
        output_layer = list(run.layer_gradient_mean)[-1]
        rows.append({
            "Run": label,
            "signed mean: step 1": f"{signed[0]:.2e}",
            f"signed mean: average of {len(signed)} steps": f"{statistics.fmean(signed):.2e}",
            "signed mean: min … max": f"{min(signed):.1e} … {max(signed):.1e}",
            "signed mean: steps > 0": sum(v > 0 for v in signed),
            "mean |g|: step 1": f"{absolute[0]:.2e}",
            f"mean |g|: last {tail} steps": f"{statistics.fmean(absolute[-tail:]):.2e}",
            "|signed mean| / mean |g| (average)": f"{statistics.fmean(abs(a) / b for a, b in zip(signed, absolute)):.2f}",
            "output layer: max |signed mean|": f"{max(abs(v) for v in run.layer_gradient_mean[output_layer]):.0e}",
        })
    return pd.DataFrame(rows).set_index("Run").T  # one column per run: fits a printed page


def gradient_findings(run: History, lr: float) -> str:
    """Q1.6 in numbers for one run: sign and size of the signed mean, how the mean |gradient| moved."""
    signed, absolute = run.gradient_mean, run.gradient_abs_mean
    steps, tail = len(signed), max(1, len(signed) // 10)
    end = statistics.fmean(absolute[-tail:])
    hidden = [k for k in run.layer_gradient_mean][:-1]
    negative = sum(v < 0 for v in signed)
    return bullets([
        f"{_lr(lr)}: the signed mean starts at {signed[0]:.2e} (step 1) and is negative in {negative} of the "
        f"{steps} steps (range {min(signed):.1e} … {max(signed):.1e}).",
        f"Its size is on average {statistics.fmean(abs(a) / b for a, b in zip(signed, absolute)):.2f} of the mean "
        f"absolute gradient: partly cancelled, but not noise around zero.",
        f"Mean |gradient|: {absolute[0]:.2e} at step 1, {end:.2e} over the last {tail} steps "
        f"({end / absolute[0]:.1f}x the start).",
        "Signed mean per hidden layer, average over the steps: "
        + ", ".join(f"{k}: {statistics.fmean(run.layer_gradient_mean[k]):.1e}" for k in hidden)
        + f"; output layer: at most {max(abs(v) for v in run.layer_gradient_mean[list(run.layer_gradient_mean)[-1]]):.0e}.",
    ])


def cnn_findings(cnn: list[History], mlps: dict[str, list[History]], target: float) -> str:
    """Q1.7 in numbers: the CNN against every MLP on accuracy, size, speed of convergence and time."""
    base = mlps["base"]
    best_mlp = max(mlps, key=lambda k: mean_std([r.final_test_accuracy or 0.0 for r in mlps[k]])[0])
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
