"""Figures from Histories (never trains). One colour per learning rate and per network, the same in every
figure; solid lines are test, dashed lines train; bands span the seeds (min to max)."""
from __future__ import annotations

import math
from typing import Any, Callable

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from . import models
from .data import CLASS_NAMES
from .stats import SCHEME_NAMES, Group, band, percent
from .training import History

plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
                     "xtick.labelsize": 8, "ytick.labelsize": 8, "figure.dpi": 100, "savefig.dpi": 100})
WIDTH = 10.0  # inches: figures are scaled to the text width of the page
RATE_COLORS = {1: "#d62728", 0.5: "#ff7f0e", 0.3: "#bcbd22", 0.2: "#8c564b", 0.1: "#1f77b4",
               0.01: "#2ca02c", 0.001: "#9467bd"}
MODEL_COLORS = {"base": "#1f77b4", "deeper": "#17becf", "wider": "#e377c2"}
CNN_COLOR = "#222222"
MINIBATCH = "0.72"


def color(key: Any) -> str:
    """The colour of a learning rate (a number) or a network (a name), the same in every figure."""
    if isinstance(key, str):
        return CNN_COLOR if models.is_cnn(key) else MODEL_COLORS.get(key, "#7f7f7f")
    return RATE_COLORS.get(key, "#7f7f7f")


def label(key: Any) -> str:
    """'lr 0.1', 'base MLP 784-512-512-10', or the CNN's name."""
    if isinstance(key, str):
        return f"CNN {models.layer_sizes(key)}" if models.is_cnn(key) else f"{key} MLP {models.layer_sizes(key)}"
    return f"lr {key:g}"


def _legend_below(fig: Figure, ax: plt.Axes, columns: int = 4, space: float = 0.09) -> None:
    """One legend for the figure, under the axes, so it never covers data."""
    handles, names = ax.get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=columns, frameon=False)
    fig.tight_layout(rect=(0, space, 1, 1))


def show_samples(images: torch.Tensor, labels: torch.Tensor, indices: list[int]) -> Figure:
    """The images at `indices`, each titled with its class name and label."""
    fig, axes = plt.subplots(1, len(indices), figsize=(WIDTH, 2.3))
    for ax, index in zip(np.atleast_1d(axes), indices):
        ax.imshow(images[index].squeeze(0), cmap="gray_r")
        ax.set_title(f"{CLASS_NAMES[int(labels[index])]} (label {int(labels[index])})")
        ax.set_xlabel(f"training image #{index}", fontsize=8)
        ax.set_xticks([]), ax.set_yticks([])
    fig.tight_layout()
    return fig


def _smooth(values: list[float], window: int) -> np.ndarray:
    """Moving average (valid part only)."""
    if len(values) < window:
        return np.asarray(values, dtype=float)
    return np.convolve(values, np.ones(window) / window, mode="valid")


def _loss_panel(ax: plt.Axes, key: Any, group: Group) -> None:
    first = group[0]
    per_epoch = first.steps_per_epoch
    top = 1.15 * max([*(v for run in group for v in run.train_loss + run.test_loss), math.log(10)])
    if first.step_loss:
        window = max(1, per_epoch // 20)
        smooth = _smooth(first.step_loss, window)
        ax.plot((np.arange(len(smooth)) + window) / per_epoch, np.minimum(smooth, top), color=MINIBATCH, lw=0.7)
        if smooth.max() > top:
            ax.text(0.98, 0.97, f"clipped (peak {smooth.max():.1f})", transform=ax.transAxes, ha="right", va="top",
                    fontsize=7, color="0.3", bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})
    for i, run in enumerate(group):
        epochs = np.arange(1, run.epochs + 1)
        width, alpha = (1.6, 1.0) if i == 0 else (0.9, 0.55)
        ax.plot(epochs, run.test_loss, "-", color=color(key), lw=width, alpha=alpha)
        ax.plot(epochs - 0.5, run.train_loss, "--", color=color(key), lw=width, alpha=alpha)  # mean over the epoch
        if run.diverged:
            ax.text(0.5, 0.5, f"seed {run.recipe.seed}: diverged at step {run.diverged_step}",
                    transform=ax.transAxes, ha="center", color=color(key))
    ax.set_title(label(key), fontsize=9)
    ax.set_ylim(0, top)
    ax.set_xlim(0, max(max(r.epochs for r in group), 1) + 0.3)
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy loss")
    ax.grid(alpha=0.3)


def loss_curves(groups: dict[Any, Group], title: str, columns: int | None = None) -> Figure:
    """One panel per rate or network: minibatch loss (seed 0, smoothed), train and test loss per epoch."""
    columns = columns or min(len(groups), 2 if len(groups) == 4 else 3)
    rows = math.ceil(len(groups) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(WIDTH, 2.7 * rows + 0.5), squeeze=False)
    for ax, (key, group) in zip(axes.flat, groups.items()):
        _loss_panel(ax, key, group)
    for ax in axes.flat[len(groups):]:
        ax.remove()
    legend = [plt.Line2D([], [], color=MINIBATCH, lw=0.8), plt.Line2D([], [], color="0.2", lw=1.6),
              plt.Line2D([], [], color="0.2", lw=1.6, ls="--")]
    fig.legend(legend, ["minibatch loss, first seed (smoothed)", "test loss, end of epoch",
                        "train loss, mean over the epoch (drawn mid-epoch)"], loc="lower center", ncol=3, frameon=False)
    seeds = sorted({r.recipe.seed for group in groups.values() for r in group})
    fig.suptitle(title + (f"  (bold: seed {seeds[0]}; thin: seeds {', '.join(map(str, seeds[1:]))})"
                          if len(seeds) > 1 else ""))
    fig.tight_layout(rect=(0, 0.06 if rows > 1 else 0.1, 1, 1))
    return fig


def accuracy_curves(runs: dict[Any, History], target: float) -> Figure:
    """Train (dashed, eval mode on the training sample) and test (solid) accuracy per epoch per rate, the
    target line, and circles where each first reached it."""
    fig, ax = plt.subplots(figsize=(WIDTH, 3.6))
    for key, run in runs.items():
        epochs = np.arange(1, run.epochs + 1)
        ax.plot(epochs, run.test_accuracy, "-", color=color(key), lw=1.6, label=f"{label(key)}: test")
        ax.plot(epochs, run.train_accuracy, "--", color=color(key), lw=1.1, label=f"{label(key)}: train")
        for series in (run.test_accuracy, run.train_accuracy):
            hit = next((i for i, v in enumerate(series) if v >= target), None)
            if hit is not None:
                ax.plot(hit + 1, series[hit], "o", color=color(key), ms=7, mfc="white", mew=2)
    ax.axhline(target, color="black", lw=0.8, ls=":")
    ax.text(0.6, target + 0.004, f"target {percent(target, 0)}", fontsize=8, va="bottom")
    low = min(min(r.test_accuracy[1:] or r.test_accuracy) for r in runs.values() if r.test_accuracy)
    ax.set_ylim(max(0.0, min(0.7, low - 0.02)), 1.0)
    ax.set_xlim(0, max(r.epochs for r in runs.values()) + 1)
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.set_title("Q1.3: accuracy per epoch, seed 0 (circles: first epoch at or above the target)")
    ax.grid(alpha=0.3)
    ax.legend(ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.17), frameon=False)
    fig.tight_layout()
    return fig


def accuracy_vs_lr(groups: dict[float, Group], required: list[float]) -> Figure:
    """Test accuracy after the runs' epochs against the learning rate (log axis): each seed a dot, the mean a
    line; (a) the whole range, (b) the rates that learned, with mean ± std."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(WIDTH, 3.3), gridspec_kw={"width_ratios": [1.25, 1]})
    rates = sorted(groups)
    finals = {lr: [r.final_test_accuracy if r.final_test_accuracy is not None else 0.0 for r in groups[lr]]
              for lr in rates}
    learned = [lr for lr in rates if min(finals[lr]) > 0.5]
    for ax, shown in ((left, rates), (right, learned)):
        for lr in shown:
            ax.scatter([lr] * len(finals[lr]), finals[lr], s=26, color=color(lr), zorder=3,
                       marker="o" if lr in required else "D", edgecolor="black" if lr in required else "none",
                       label=f"{label(lr)}{'' if lr in required else ' (sweep)'}")
        ax.plot(shown, [np.mean(finals[lr]) for lr in shown], "-", color="0.4", lw=1, zorder=2)
        ax.set_xscale("log")
        ax.set_xticks(shown, [f"{lr:g}" for lr in shown])
        ax.minorticks_off()
        ax.set_xlabel("learning rate (log scale)")
        ax.grid(alpha=0.3)
    for lr in learned:
        right.errorbar(lr, np.mean(finals[lr]), yerr=np.std(finals[lr], ddof=1) if len(finals[lr]) > 1 else 0,
                       color="0.3", capsize=3, lw=1, zorder=1)
    epochs = groups[rates[0]][0].recipe.epochs
    left.set_ylabel(f"test accuracy after {epochs} epochs")
    left.set_ylim(0, 1)
    left.set_title("(a) every rate: dots are seeds, the line their mean")
    right.set_title("(b) the rates where every seed learned: mean ± std")
    _legend_below(fig, left, columns=7, space=0.1)
    return fig


def _steps_axis(run: History, horizon: str) -> np.ndarray:
    """x positions: step numbers (first steps) or epochs (block centres)."""
    if horizon == "steps":
        return np.arange(1, len(run.gradients["steps"]["signed_mean"]) + 1)
    block = run.gradients["block"]
    n = len(run.gradients["blocks"]["signed_mean"])
    return (np.arange(n) * block + block / 2) / run.steps_per_epoch


def _banded(ax: plt.Axes, key: Any, group: Group, x_of: Callable[[History], np.ndarray],
            values: Callable[[History], list[float]], lw: float = 1.3) -> None:
    mean, low, high = band(group, values)
    x = x_of(group[0])[:len(mean)]
    ax.plot(x, mean, color=color(key), lw=lw, label=label(key))
    if len(group) > 1:
        ax.fill_between(x, low, high, color=color(key), alpha=0.2, lw=0)


def _clip_to_the_others(ax: plt.Axes, groups: dict[Any, Group], values: Callable[[History], list[float]]) -> None:
    """Scale the y axis to every rate but the largest (whose swings would flatten the rest), and say so."""
    largest = max(groups)
    others = [v for key, group in groups.items() if key != largest for run in group if run.gradients for v in values(run)]
    extreme = [abs(v) for run in groups[largest] if run.gradients for v in values(run)]
    if not others or not extreme:
        return
    low, high = min(others), max(others)
    pad = 0.15 * (high - low) or 0.1 * abs(high) or 1e-9
    ax.set_ylim(low - pad, high + pad)
    if max(extreme) > high + pad or -max(extreme) < low - pad:
        ax.text(0.99, 0.02, f"{label(largest)} leaves this range (up to {max(extreme):.1e}): clipped",
                transform=ax.transAxes, ha="right", va="bottom", fontsize=7, color=color(largest))


def gradient_readings(groups: dict[float, Group], steps: int) -> Figure:
    """Q1.6's two readings per rate: the signed mean (left) and the mean |gradient| (right), over the first
    `steps` steps one by one (top) and over whole runs as block means (bottom)."""
    fig, axes = plt.subplots(2, 2, figsize=(WIDTH, 6.6))
    block = next(r.gradients["block"] for g in groups.values() for r in g if r.gradients)
    rows = (("steps", "training step (gradients read after loss.backward())", f"first {steps} steps"),
            ("blocks", "epoch", f"whole runs, {block}-step means"))
    for (horizon, xlabel, span), (left, right), letters in zip(rows, axes, ("ab", "cd")):
        for key, group in groups.items():
            tracked = [r for r in group if r.gradients and r.gradients[horizon]["signed_mean"]]
            if tracked:
                x_of = lambda run, h=horizon: _steps_axis(run, h)  # noqa: E731
                _banded(left, key, tracked, x_of, lambda r, h=horizon: r.gradients[h]["signed_mean"])
                _banded(right, key, tracked, x_of, lambda r, h=horizon: r.gradients[h]["abs_mean"])
        left.axhline(0, color="black", lw=0.7)
        _clip_to_the_others(left, groups, lambda r, h=horizon: r.gradients[h]["signed_mean"])
        left.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
        left.set_ylabel("signed mean of all entries")
        right.set_yscale("log")
        right.set_ylabel("mean |entry| (log scale)")
        left.set_title(f"({letters[0]}) reading (a), the signed mean: {span}")
        right.set_title(f"({letters[1]}) reading (b), the mean |gradient|: {span}")
        for ax in (left, right):
            ax.set_xlabel(xlabel)
            ax.grid(alpha=0.3, which="both")
    fig.suptitle("Q1.6: line = mean over the seeds, band = min to max", fontsize=9)
    _legend_below(fig, axes[0][1], space=0.05)
    return fig


def gradient_factors(groups: dict[float, Group]) -> Figure:
    """What a weight gradient is made of, over whole runs: the error term ||p - y|| and the hidden activations."""
    first = next(r for g in groups.values() for r in g if r.gradients)
    relus = list(first.gradients["blocks"]["activation_norm"])
    clipped = False
    fig, axes = plt.subplots(1, 1 + len(relus), figsize=(WIDTH, 3.2))
    x_of = lambda run: _steps_axis(run, "blocks")  # noqa: E731
    for key, group in groups.items():
        tracked = [r for r in group if r.gradients and r.gradients["blocks"]["error_norm"]]
        if not tracked:
            continue
        _banded(axes[0], key, tracked, x_of, lambda r: r.gradients["blocks"]["error_norm"])
        for ax, relu in zip(axes[1:], relus):
            _banded(ax, key, tracked, x_of, lambda r, relu=relu: r.gradients["blocks"]["activation_norm"][relu])
    axes[0].set_title("(e) error term: batch mean of ||softmax - one-hot||")
    axes[0].set_ylabel("||p - y||")
    for i, ax in enumerate(axes[1:], start=1):
        ax.set_title(f"({chr(ord('e') + i)}) hidden layer {i}: batch mean of ||ReLU output||")
        ax.set_ylabel("activation norm (log scale)")
        ax.set_yscale("log")
        if ax.get_ylim()[0] < 1e-2:
            ax.set_ylim(bottom=1e-2)
            clipped = True
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3, which="both")
        ax.title.set_fontsize(8)
    fig.suptitle("Q1.6: the two factors of a weight gradient, mean over the seeds (band: min to max)"
                 + ("; activation axes clipped below 0.01 (bands that reach 0 are layers whose units died)"
                    if clipped else ""), fontsize=8)
    _legend_below(fig, axes[0], space=0.1)
    return fig


def ablation_curves(groups: dict[tuple[str, str], Group]) -> Figure:
    """Test accuracy and test loss per epoch for each network x scheme (mean over seeds, band min to max)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(WIDTH, 3.4))
    for (network, scheme), group in groups.items():
        epochs = lambda run: np.arange(1, run.epochs + 1)  # noqa: E731
        for ax, series in ((left, "test_accuracy"), (right, "test_loss")):
            mean, low, high = band(group, lambda r, s=series: getattr(r, s))
            x = epochs(group[0])[:len(mean)]
            ax.plot(x, mean, "-" if scheme == "cnn" else "--", color=color(network), lw=1.5,
                    label=f"{'CNN' if models.is_cnn(network) else 'base MLP'}, {SCHEME_NAMES[scheme]}")
            ax.fill_between(x, low, high, color=color(network), alpha=0.15, lw=0)
    left.set_ylabel("test accuracy")
    right.set_ylabel("test loss")
    left.set_title("(a) test accuracy")
    right.set_title("(b) test loss")
    for ax in (left, right):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.suptitle("Q1.7: network x training scheme, mean over 3 seeds (band: min to max)", fontsize=9)
    _legend_below(fig, left, space=0.1)
    return fig


def errors_by_class(cnn: Group, mlp: Group, title: str) -> Figure:
    """(a) The CNN's test-set confusion matrix (first seed; row = true class, shares of the row); (b) per-class
    test accuracy of the CNN and the base MLP, mean over seeds."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(WIDTH, 3.9), gridspec_kw={"width_ratios": [1, 1.15]})
    counts = np.array(cnn[0].confusion)
    shares = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    left.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for t in range(len(counts)):
        for p in range(len(counts)):
            if counts[t, p]:
                left.text(p, t, counts[t, p], ha="center", va="center", fontsize=6,
                          color="white" if shares[t, p] > 0.5 else "black")
    left.set_xticks(range(len(CLASS_NAMES)), CLASS_NAMES, rotation=45, ha="right", fontsize=7)
    left.set_yticks(range(len(CLASS_NAMES)), CLASS_NAMES, fontsize=7)
    left.set_xlabel("predicted class")
    left.set_ylabel("true class")
    left.set_title(f"(a) {title}, seed {cnn[0].recipe.seed}: confusion counts", fontsize=9)
    y = np.arange(len(CLASS_NAMES))
    for offset, (name, group, shade) in zip((-0.2, 0.2), (("CNN", cnn, CNN_COLOR), ("base MLP", mlp, color("base")))):
        measured = [np.array(r.confusion) for r in group if r.confusion]  # a run cut from a longer one has none
        per_class = np.mean([np.diag(m) / m.sum(1) for m in measured], axis=0)
        right.barh(y + offset, per_class, height=0.4, color=shade,
                   label=f"{name} (mean of {len(measured)} seed{'s' if len(measured) > 1 else ''})")
    right.set_yticks(y, CLASS_NAMES, fontsize=7)
    right.invert_yaxis()
    right.set_xlim(0.5, 1.0)
    right.set_xlabel("test accuracy of the class (axis from 50 %)")
    right.set_title("(b) accuracy per class", fontsize=9)
    right.grid(alpha=0.3, axis="x")
    _legend_below(fig, right, columns=2, space=0.07)
    return fig
