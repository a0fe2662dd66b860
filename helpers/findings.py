"""Generated sentences: every result the answers quote, stated in numbers read from the Histories.

A sentence here states what the numbers are; where it compares (e.g. a difference against the seed
spread), the comparison is computed, so it changes when the numbers do.
"""
from __future__ import annotations

import ast
import inspect
import statistics
from types import ModuleType
from typing import Any

from IPython.display import Markdown

from . import models
from .stats import (Group, accuracy, accuracy_text, best_epoch, gradient_stats, improvement_rate, percent, sci,
                    seconds_per_epoch, signed, stuck)
from .training import History, first_reaching


def source(*objects: Any) -> Markdown:
    """The source code of functions/classes, or of (module, 'NAME') top-level assignments, as a code block."""
    parts = []
    for obj in objects:
        if isinstance(obj, tuple):
            module, name = obj
            parts.append(_assignment_source(module, name))
        else:
            parts.append(inspect.getsource(obj).rstrip())
    return Markdown("```python\n" + "\n\n".join(parts) + "\n```")


def _assignment_source(module: ModuleType, name: str) -> str:
    text = inspect.getsource(module)
    for node in ast.parse(text).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            lines = text.splitlines()
            start = node.lineno - 1
            while start > 0 and lines[start - 1].startswith("#"):  # the comment above belongs to it
                start -= 1
            return "\n".join(lines[start:node.end_lineno])
    raise ValueError(f"{module.__name__} has no top-level assignment to {name}")


def bullets(lines: list[str]) -> str:
    """Markdown bullet list."""
    return "\n".join(f"- {line}" for line in lines)


def points(value: float) -> str:
    """0.0123 -> '+1.23 points' (a real minus sign for negative values)."""
    return f"{signed(100 * value)} points"


def _mean_series(group: Group, series: str, epoch: int) -> float:
    return statistics.fmean(getattr(run, series)[epoch - 1] for run in group)


def learning_rates(groups: dict[float, Group], target: float) -> str:
    """Q1.2 in numbers beyond the table: the loss of the rates that learned, the runs that did not, the best rate."""
    learned = {lr: g for lr, g in groups.items() if all(not r.diverged and not stuck(r, target) for r in g)}
    lines = []
    if learned:
        epochs = next(iter(learned.values()))[0].recipe.epochs
        lines.append(f"Mean train loss, epoch 1 → {epochs}: " + "; ".join(
            f"lr {lr:g} {_mean_series(g, 'train_loss', 1):.3f} → {_mean_series(g, 'train_loss', epochs):.3f}"
            for lr, g in learned.items()) + ".")
    for lr, group in groups.items():
        if lr in learned:
            continue
        finals = [r.final_test_accuracy for r in group if r.final_test_accuracy is not None]
        losses = [r.train_loss[-1] for r in group if r.train_loss]
        peaks = [best_epoch(r) for r in group if r.test_accuracy]
        text = f"lr {lr:g}: {len(group) - len([r for r in group if not stuck(r, target)])} of {len(group)} seeds did not learn"
        if finals:
            text += f" (final test accuracy {percent(min(finals), 1)} to {percent(max(finals), 1)}"
            text += f"; best of any epoch {percent(max(peaks)[0], 1)}, epoch {max(peaks)[1]})" if peaks else ")"
        if losses:
            text += f"; train loss in the last epoch {min(losses):.2f} to {max(losses):.2f} (uniform guess: ln 10 = 2.30)"
        diverged = [r for r in group if r.diverged]
        text += (f"; {len(diverged)} diverged (loss not finite)" if diverged else "; no loss became NaN or infinite")
        lines.append(text + ".")
    scored = {lr: accuracy(g) for lr, g in groups.items() if accuracy(g)}
    ranked = sorted(scored, key=lambda lr: -scored[lr][0])
    if len(ranked) > 1:
        best, second = ranked[:2]
        gap, spread = scored[best][0] - scored[second][0], max(scored[best][1], scored[second][1])
        lines.append(f"Highest mean test accuracy: **lr {best:g}**, {100 * gap:.2f} points above lr {second:g}"
                     + (f" — {gap / spread:.1f}× the larger seed standard deviation ({100 * spread:.2f})." if spread else "."))
    return bullets(lines)


def epochs_to_target(runs: dict[float, History], target: float) -> str:
    """Q1.3 in numbers beyond the table: for a missed target the trend and what it implies; noise and overfitting."""
    label = percent(target, 0)
    lines = []
    for lr, run in runs.items():
        if not run.test_accuracy:
            lines.append(f"lr {lr:g}: diverged before completing an epoch.")
            continue
        parts = []
        for name, series, trend_series in (("train", "train_accuracy", "train_accuracy"),
                                           ("test", "test_accuracy", "validation_accuracy")):
            values = getattr(run, series)
            if first_reaching(values, target):
                continue
            rate = improvement_rate(run, trend_series)
            text = f"{name} trend of the last 10 epochs {signed(100 * rate)} points/epoch"
            if trend_series != series:
                text += " (on validation)"
            if rate > 0:
                text += f", so {label} in about {(target - values[-1]) / rate:.0f} more epochs at that rate"
            parts.append(text)
        if run.epochs > 1:
            drop, at = max((run.test_accuracy[i] - run.test_accuracy[i + 1], i + 1) for i in range(run.epochs - 1))
            if drop > 0:
                parts.append(f"largest fall of test accuracy in one epoch {100 * drop:.1f} points (after epoch {at})")
            low, low_at = min((v, i + 1) for i, v in enumerate(run.test_loss))
            if low_at < run.epochs:
                parts.append(f"test loss lowest at epoch {low_at} ({low:.3f}), {run.test_loss[-1]:.3f} at the end, "
                             f"while train loss went {run.train_loss[low_at - 1]:.3f} → {run.train_loss[-1]:.3f}")
            parts.append(f"final train−test accuracy gap {100 * (run.train_accuracy[-1] - run.test_accuracy[-1]):.1f} points")
        lines.append(f"lr {lr:g}: " + "; ".join(parts) + ".")
    return bullets(lines)


def learning_rate_sweep(groups: dict[float, Group], target: float) -> str:
    """Q1.4 in numbers: accuracy at every rate trained, and which rates learned in every seed."""
    epochs = next(iter(groups.values()))[0].recipe.epochs
    lines = [f"Test accuracy after {epochs} epochs (mean ± std over seeds): "
             + "; ".join(f"lr {lr:g}: {accuracy_text(g)}" for lr, g in groups.items()) + "."]
    scored = {lr: accuracy(g) for lr, g in groups.items()}
    learned_all = [lr for lr, g in groups.items() if all(not stuck(r, target) for r in g)]
    failed = {lr: sum(stuck(r, target) for r in g) for lr, g in groups.items() if lr not in learned_all}
    if learned_all:
        best = max(learned_all, key=lambda lr: scored[lr][0])
        lines.append(f"Every seed learned at lr {', '.join(f'{lr:g}' for lr in sorted(learned_all))}; the most "
                     f"accurate is lr {best:g}, the largest lr {max(learned_all):g}."
                     + (" Seeds that did not learn (final test accuracy under " f"{percent(target / 2, 0)}): "
                        + "; ".join(f"lr {lr:g}: {n} of {len(groups[lr])}" for lr, n in sorted(failed.items())) + "."
                        if failed else ""))
    return bullets(lines)


def structures(groups: dict[str, Group]) -> str:
    """Q1.5 in numbers: each variant against the base, with the seed spread, size and time; how well each fits."""
    base = groups["base"]
    base_mean, base_std = accuracy(base)
    lines = []
    for name, group in groups.items():
        if name == "base":
            continue
        mean, std = accuracy(group)
        difference = mean - base_mean
        lines.append(f"{name} − base: {points(difference)}, {'smaller' if abs(difference) < max(std, base_std) else 'larger'} "
                     f"than the larger seed standard deviation ({100 * max(std, base_std):.2f}); "
                     f"{group[0].parameters / base[0].parameters:.2f}× the parameters, "
                     f"{seconds_per_epoch(group) / seconds_per_epoch(base):.1f}× the time per epoch.")
    epochs = base[0].epochs
    lines.append(f"Epoch {epochs}, mean over seeds — train loss / train accuracy / train−test gap: " + "; ".join(
        f"{name} {_mean_series(g, 'train_loss', epochs):.3f} / {percent(_mean_series(g, 'train_accuracy', epochs), 1)} / "
        f"{100 * (_mean_series(g, 'train_accuracy', epochs) - _mean_series(g, 'test_accuracy', epochs)):.1f} points"
        for name, g in groups.items()) + ".")
    return bullets(lines)


def gradients(groups: dict[float, Group]) -> str:
    """Q1.6 in numbers beyond the table: sign and share of the signed mean, the two factors, the output layer."""
    lines = []
    for lr, group in groups.items():
        g = gradient_stats(group)
        activations = ", ".join(f"{g[f'activation{i}_epoch1']:.1f} → {g[f'activation{i}_last']:.1f}"
                                for i in (1, 2) if f"activation{i}_epoch1" in g)
        lines.append(f"lr {lr:g}: signed mean negative in {100 * g['negative_share']:.0f} % of the first 100 steps, "
                     f"on average {g['ratio']:.2f} of the mean |g| in size; error term ||p − y|| "
                     f"{g['error_epoch1']:.2f} → {g['error_last']:.2f} and hidden activation norms {activations} "
                     f"(epoch 1 → last); output layer's signed mean at most {sci(g['output_max'], 0)}.")
    return bullets(lines)


def ablation(groups: dict[tuple[str, str], Group], mlps: dict[str, Group]) -> str:
    """Q1.7 in numbers: the 2x2 split into architecture and scheme effects, and the time per epoch."""
    cnn = next(network for network, _ in groups if models.is_cnn(network))
    mean = {key: accuracy(group)[0] for key, group in groups.items()}
    spread = max(accuracy(group)[1] for group in groups.values())
    lines = [
        f"Base MLP with the demo scheme → CNN with its own scheme: {points(mean[(cnn, 'cnn')] - mean[('base', 'demo')])}.",
        f"Architecture (CNN instead of MLP): {points(mean[(cnn, 'demo')] - mean[('base', 'demo')])} with the demo "
        f"scheme, {points(mean[(cnn, 'cnn')] - mean[('base', 'cnn')])} with the CNN's. Scheme (the CNN's instead of "
        f"the demo's): {points(mean[('base', 'cnn')] - mean[('base', 'demo')])} for the MLP, "
        f"{points(mean[(cnn, 'cnn')] - mean[(cnn, 'demo')])} for the CNN. Largest seed std in the 2×2: "
        f"{100 * spread:.2f} points.",
        "Seconds per training epoch (1 thread): CNN " + f"{seconds_per_epoch(groups[(cnn, 'cnn')]):.1f}; "
        + "; ".join(f"{name} MLP {seconds_per_epoch(group):.1f}" for name, group in mlps.items()) + ".",
    ]
    return bullets(lines)


