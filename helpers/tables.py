"""Tables (pandas DataFrames) read from Histories and Recipes: what was trained, and what came out."""
from __future__ import annotations

from dataclasses import asdict
from typing import Any

import pandas as pd

from . import models
from .config import Profile
from .data import CLASS_NAMES
from .stats import (SCHEME_NAMES, Group, accuracy, accuracy_text, best_epoch, distinct_predictions,
                    first_epochs_reaching, gradient_stats, percent, sci, seconds_per_epoch, signed, stuck)
from .training import History, Recipe, first_reaching

OPTIMIZER_NAMES = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW"}
pd.set_option("display.max_colwidth", None)  # sentences in the overview are shown whole, never cut to "..."


def compact(table: pd.DataFrame) -> pd.DataFrame:
    """The index name moved into the header row (one header row instead of two in print)."""
    if table.index.nlevels > 1 or table.index.name is None:
        return table
    return table.rename_axis(index=None, columns=table.index.name)


def _join(values: list[Any]) -> str:
    """Distinct values in first-seen order, comma-separated."""
    return ", ".join(dict.fromkeys(f"{v:g}" if isinstance(v, float) else str(v) for v in values))


def recipes(declared: dict[str, Recipe], profile: Profile) -> pd.DataFrame:
    """What is trained: one row per scheme (recipes that differ only in model, lr or seed share a row)."""
    varying = ("model", "lr", "seed", "gradient_steps")
    rows: dict[tuple, list[Recipe]] = {}
    for recipe in declared.values():
        rows.setdefault(tuple(v for k, v in asdict(recipe).items() if k not in varying), []).append(recipe)
    sizes = profile.data_sizes
    table = []
    for group in rows.values():
        r = group[0]
        optimizer = OPTIMIZER_NAMES[r.optimizer] + (f", momentum {r.momentum:g}" if r.momentum else "") + (
            f", weight decay {r.weight_decay:g}" if r.weight_decay else "")
        epochs = (f"until train and test ≥ {percent(r.target_accuracy, 0)} (≥ {r.min_epochs}, ≤ {r.epochs})"
                  if r.target_accuracy else str(r.epochs))
        table.append({"Network": _join([g.model for g in group]), "Optimizer": optimizer,
                      "Lr": _join([g.lr for g in group]) + (" (peak)" if r.schedule == "onecycle" else ""),
                      "Schedule": "one-cycle" if r.schedule == "onecycle" else "constant",
                      "Batch": r.batch_size, "Epochs": epochs,
                      "Augmentation": "mirror ½ of each batch" if r.flip else "none",
                      "Seeds": _join([g.seed for g in group]),
                      "Images train / val / test": f"{sizes['train']:,} / {sizes['validation']:,} / {sizes['test']:,}"})
    return compact(pd.DataFrame(table).set_index("Network"))


def run_outcome(run: History, target: float) -> str:
    """'trained', 'diverged at step N' or 'did not learn' (final test accuracy under half the target)."""
    if run.diverged:
        return f"diverged at step {run.diverged_step}"
    return "did not learn" if stuck(run, target) else "trained"


def learning_rates(groups: dict[float, Group], target: float) -> pd.DataFrame:
    """Q1.2: Lr | Accuracy (mean ± std) | per seed | Validation | Outcome."""
    rows = []
    for lr, group in groups.items():
        outcomes = [run_outcome(run, target) for run in group]
        bad = [o for o in outcomes if o != "trained"]
        rows.append({"Lr": f"{lr:g}", "Accuracy": accuracy_text(group),
                     "Per seed": ", ".join(percent(r.final_test_accuracy, 1) for r in group),
                     "Validation": accuracy_text(group, "validation_accuracy"),
                     "Outcome": "trained" if not bad else f"{len(bad)} of {len(group)}: {_join(bad)}"})
    return compact(pd.DataFrame(rows).set_index("Lr"))


def epochs_to_target(runs: dict[float, History], target: float) -> pd.DataFrame:
    """Q1.3: per rate, the first epoch each accuracy reached the target and the accuracy at that epoch."""
    label = percent(target, 0)
    rows = []
    for lr, run in runs.items():
        row: dict[str, Any] = {"Lr": f"{lr:g}"}
        for name, series in (("train", "train_accuracy"), ("test", "test_accuracy")):
            epoch = first_reaching(getattr(run, series), target)
            if epoch:
                row[f"Epoch {name} ≥ {label}"] = str(epoch)
                row[f"{name.capitalize()} accuracy then"] = percent(getattr(run, series)[epoch - 1])
            else:
                best, at = best_epoch(run, series)
                row[f"Epoch {name} ≥ {label}"] = "not reached"
                row[f"{name.capitalize()} accuracy then"] = f"best {percent(best)} (epoch {at})"
        row["Epochs run"] = f"{run.epochs} ({STOP_REASONS[run.stop_reason]})"
        rows.append(row)
    return compact(pd.DataFrame(rows).set_index("Lr"))


STOP_REASONS = {"target": "both reached", "out_of_reach": "out of reach", "epochs": "cap", "diverged": "diverged"}


def speed_by_rate(runs: dict[float, History], rates: list[float], target: float,
                  levels: tuple[tuple[str, float], ...] = (("test_accuracy", 0.80), ("test_accuracy", 0.85),
                                                           ("train_accuracy", 0.90))) -> pd.DataFrame:
    """Q1.4: epochs each rate needed to reach a few accuracy levels, and (in brackets) how many times the
    epochs the next-larger rate needed."""
    learning = sorted((lr for lr in rates if lr in runs and not stuck(runs[lr], target)), reverse=True)
    rows = []
    for i, lr in enumerate(learning):
        row: dict[str, Any] = {"Lr": f"{lr:g}"}
        for series, level in levels:
            name = f"Epochs to {'test' if series == 'test_accuracy' else 'train'} ≥ {percent(level, 0)}"
            epoch = first_reaching(getattr(runs[lr], series), level)
            before = first_reaching(getattr(runs[learning[i - 1]], series), level) if i else None
            row[name] = (f"> {runs[lr].epochs}" if not epoch else
                         f"{epoch} ({epoch / before:.1f}× lr {learning[i - 1]:g})" if before else str(epoch))
        rows.append(row)
    return compact(pd.DataFrame(rows).set_index("Lr"))


def structures(groups: dict[str, Group]) -> pd.DataFrame:
    """Q1.5: Structures | Accuracy (mean ± std) | Validation | Parameters | s/epoch."""
    return pd.DataFrame([{"Structures": f"{models.layer_sizes(name)} ({name})",
                          "Accuracy": accuracy_text(group), "Validation": accuracy_text(group, "validation_accuracy"),
                          "Parameters": f"{group[0].parameters:,}", "s/epoch": f"{seconds_per_epoch(group):.1f}"}
                         for name, group in groups.items()]).set_index("Structures").pipe(compact)


def gradient_readings(groups: dict[float, Group]) -> pd.DataFrame:
    """Q1.6: both readings of the mean gradient at several horizons, mean over seeds, per rate."""
    rows = []
    for lr, group in groups.items():
        if not any(r.gradients for r in group):
            continue
        g = gradient_stats(group)
        row: dict[str, Any] = {"Lr": f"{lr:g}"}
        for reading, name in (("signed", "signed mean"), ("abs", "mean |g|")):
            for horizon, when in (("step1", "step 1"), ("91_100", "steps 91–100"), ("epoch1", "epoch 1"),
                                  ("last", "last epoch")):
                row[f"{name}: {when}"] = sci(g[f"{reading}_{horizon}"])
        rows.append(row)
    return compact(pd.DataFrame(rows).set_index("Lr"))


def collapse(group: Group) -> pd.DataFrame:
    """Q1.6, the largest rate: per seed, accuracy, classes predicted and hidden units that never fire on the test set."""
    rows = []
    for run in group:
        row: dict[str, Any] = {"Seed": run.recipe.seed, "Test accuracy": percent(run.final_test_accuracy, 1),
                               "Final train loss": f"{run.train_loss[-1]:.2f}" if run.train_loss else "—",
                               "Classes predicted": distinct_predictions(run) if run.confusion else "—"}
        for i, (layer, (dead, units)) in enumerate((run.dead_units or {}).items(), start=1):
            row[f"Dead units, hidden layer {i}"] = f"{dead} of {units}"
        rows.append(row)
    return compact(pd.DataFrame(rows).set_index("Seed"))


def candidates(groups: dict[str, Group], chosen: str) -> pd.DataFrame:
    """Q1.7: the candidate CNNs with their validation accuracy (the test set plays no part in the choice)."""
    return pd.DataFrame([{"Candidate": name, "Channels": models.layer_sizes(name),
                          "Parameters": f"{group[0].parameters:,}",
                          "Validation accuracy": percent(accuracy(group, "validation_accuracy")[0]),
                          "s/epoch": f"{seconds_per_epoch(group):.1f}", "Chosen": "✓" if name == chosen else ""}
                         for name, group in groups.items()]).set_index("Candidate").pipe(compact)


def ablation(groups: dict[tuple[str, str], Group], target: float) -> pd.DataFrame:
    """Q1.7: network x scheme: parameters, accuracy (mean ± std), s/epoch, first epoch with test ≥ target."""
    rows = []
    for (network, scheme), group in groups.items():
        epochs = first_epochs_reaching(group, target)
        rows.append({"Network": f"CNN {models.layer_sizes(network)}" if models.is_cnn(network) else "base MLP",
                     "Scheme": SCHEME_NAMES[scheme].removesuffix(" scheme"), "Parameters": f"{group[0].parameters:,}",
                     "Accuracy": accuracy_text(group), "s/epoch": f"{seconds_per_epoch(group):.1f}",
                     f"First epoch ≥ {percent(target, 0)} (per seed)": ", ".join(str(e) if e else "–" for e in epochs)})
    return pd.DataFrame(rows).set_index(["Network", "Scheme"])


def most_confused(confusion: list[list[int]], top: int = 5) -> pd.DataFrame:
    """The `top` largest off-diagonal cells: true class, predicted as, count, share of that class."""
    cells = [(confusion[t][p], t, p) for t in range(len(confusion)) for p in range(len(confusion)) if t != p]
    rows = [{"True class": CLASS_NAMES[t], "Predicted as": CLASS_NAMES[p], "Count": n,
             "Share of class": percent(n / sum(confusion[t]), 1)}
            for n, t, p in sorted(cells, reverse=True)[:top]]
    return compact(pd.DataFrame(rows, index=pd.RangeIndex(1, len(rows) + 1, name="Rank")))


def overview(rates: dict[float, Group], chase: dict[float, History], every_rate: dict[float, Group],
             structures_: dict[str, Group], ablation_: dict[tuple[str, str], Group], candidates_: dict[str, Group],
             chosen: str, target: float) -> pd.DataFrame:
    """Each question's key result in a line (all numbers generated from the runs)."""
    label = percent(target, 0)
    sizes = next(iter(rates.values()))[0].data_sizes

    def reached(series: str) -> str:
        return "; ".join(f"lr {lr:g}: " + (f"epoch {e}" if (e := first_reaching(getattr(run, series), target))
                                           else f"not in {run.epochs} (best {percent(max(getattr(run, series), default=0), 1)})")
                         for lr, run in chase.items())

    learned = [lr for lr, g in every_rate.items() if all(not stuck(r, target) for r in g)]
    best_rate = max(learned, key=lambda lr: accuracy(every_rate[lr])[0])
    gradient_lr = max(lr for lr in rates if lr < max(rates)) if len(rates) > 1 else max(rates)
    g = gradient_stats(rates[gradient_lr])
    cnn, mlp = ablation_[(chosen, "cnn")], ablation_[("base", "demo")]
    mean = {key: accuracy(group)[0] for key, group in ablation_.items()}
    rows = [
        ("Q1.1", f"{sizes['train']:,} training / {sizes['validation']:,} validation / {sizes['test']:,} test images, "
                 "each a (1, 28, 28) float tensor in [0, 1]; labels 0–9."),
        ("Q1.2", "Test accuracy after 10 epochs (mean ± std, 3 seeds): "
                 + "; ".join(f"lr {lr:g}: {accuracy_text(group)}" for lr, group in rates.items()) + "."),
        ("Q1.3", f"First epoch with train accuracy ≥ {label}: {reached('train_accuracy')}. "
                 f"With test accuracy ≥ {label}: {reached('test_accuracy')}."),
        ("Q1.4", f"Most accurate after 10 epochs: lr {best_rate:g} ({accuracy_text(every_rate[best_rate])}); every "
                 f"seed learned at rates up to {max(learned):g}; "
                 + "; ".join(f"lr {lr:g}: {accuracy_text(g_)}" for lr, g_ in every_rate.items() if lr not in learned)
                 + "."),
        ("Q1.5", "; ".join(f"{name}: {accuracy_text(group)}, {group[0].parameters:,} parameters"
                           for name, group in structures_.items()) + "."),
        ("Q1.6", f"lr {gradient_lr:g}: signed mean {sci(g['signed_step1'])} (step 1) → {sci(g['signed_91_100'])} "
                 f"(steps 91–100) → {sci(g['signed_last'])} (last epoch); mean |g| {sci(g['abs_step1'])} → "
                 f"{sci(g['abs_91_100'])} → {sci(g['abs_last'])}."),
        ("Q1.7", f"CNN {models.layer_sizes(chosen)} (chosen on validation among "
                 f"{len(candidates_)}; {cnn[0].parameters:,} parameters): {accuracy_text(cnn)} vs base MLP "
                 f"{accuracy_text(mlp)} ({mlp[0].parameters:,}). Of the {signed(100 * (mean[(chosen, 'cnn')] - mean[('base', 'demo')]), 1)} "
                 f"points, the network alone gives {signed(100 * (mean[(chosen, 'demo')] - mean[('base', 'demo')]), 1)} "
                 f"(demo scheme); the CNN's scheme gives the MLP {signed(100 * (mean[('base', 'cnn')] - mean[('base', 'demo')]), 1)}."),
    ]
    return compact(pd.DataFrame(rows, columns=["Question", "Key result"]).set_index("Question"))
