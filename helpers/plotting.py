"""Figures from Histories (never trains). Drawn at most as wide as an A4 page's text (7.4 in), at 96 dpi
shown at twice the resolution (the notebook's "retina" figures), so they print at their own size and every
font at 8 pt or more. One colour per learning rate and per network in every figure; solid = test,
dashed = train; bands span the seeds."""
from __future__ import annotations

import math
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from . import models, report
from .data import CLASS_NAMES
from .report import Group

plt.rcParams.update({"font.size": 8.5, "axes.titlesize": 9, "axes.labelsize": 8.5, "legend.fontsize": 8,
                     "xtick.labelsize": 8, "ytick.labelsize": 8, "figure.dpi": 96, "savefig.dpi": 96,
                     "axes.grid": True, "grid.alpha": 0.3})
WIDTH = 7.4  # inches: the text width of an A4 page, so the figure prints at its own size
RATE_COLORS = {1: "#d62728", 0.5: "#ff7f0e", 0.3: "#bcbd22", 0.2: "#8c564b", 0.1: "#1f77b4",
               0.03: "#17becf", 0.01: "#2ca02c", 0.001: "#9467bd"}
MODEL_COLORS = {"base": "#1f77b4", "deeper": "#ff7f0e", "wider": "#e377c2"}
CNN_COLOR, MINIBATCH = "#222222", "0.7"


def color(key: Any) -> str:
    """The colour of a learning rate (a number) or a network (a name), the same in every figure."""
    if isinstance(key, str):
        return CNN_COLOR if models.is_cnn(key) else MODEL_COLORS.get(key, "#7f7f7f")
    return RATE_COLORS.get(key, "#7f7f7f")


def label(key: Any) -> str:
    """'lr 0.1', 'wider 784-1024-1024-10' or 'CNN 16-32-64'."""
    if isinstance(key, str):
        return f"CNN {models.layer_sizes(key)}" if models.is_cnn(key) else f"{key} {models.layer_sizes(key)}"
    return f"lr {key:g}"


def _legend_below(fig: Figure, handles: list, names: list[str], columns: int, space: float) -> None:
    """One legend for the figure, under the axes, so it never covers data."""
    fig.legend(handles, names, loc="lower center", ncol=columns, frameon=False)
    fig.tight_layout(rect=(0, space, 1, 1))


def show_samples(images: torch.Tensor, labels: torch.Tensor, indices: list[int]) -> Figure:
    """The images at `indices`, each titled with its class name and label."""
    fig, axes = plt.subplots(1, len(indices), figsize=(WIDTH * 0.6, 1.7))
    for ax, index in zip(np.atleast_1d(axes), indices):
        ax.imshow(images[index].squeeze(0), cmap="gray_r")
        ax.set_title(f"{CLASS_NAMES[int(labels[index])]} (label {int(labels[index])})")
        ax.set_xlabel(f"training image #{index}")
        ax.set_xticks([]), ax.set_yticks([]), ax.grid(False)
    fig.tight_layout()
    return fig


def _padded(series: list[list[float | None]]) -> np.ndarray:
    """Lists of different lengths (None for missing) as rows of a NaN-padded array."""
    width = max((len(s) for s in series), default=0)
    return np.array([[np.nan if v is None else v for v in s] + [np.nan] * (width - len(s)) for s in series], float)


def _band(ax: plt.Axes, x: np.ndarray, series: list[list[float | None]], color_: str, name: str,
          style: str = "-", spread: str = "range") -> None:
    """Mean over the runs at each x, and a band: min to max ('range') or the 95 % confidence interval ('ci')."""
    values = _padded(series)[:, :len(x)]
    counts = np.sum(np.isfinite(values), axis=0)
    keep = counts > 0
    with np.errstate(all="ignore"):
        mean = np.nanmean(np.where(np.isfinite(values), values, np.nan)[:, keep], axis=0)
        if spread == "ci":
            half = np.array([report.ci95(list(c[np.isfinite(c)])) for c in values[:, keep].T])
            low, high = mean - half, mean + half
        else:
            low, high = np.nanmin(values[:, keep], axis=0), np.nanmax(values[:, keep], axis=0)
    ax.plot(x[keep], mean, style, color=color_, lw=1.3, label=name)
    if len(series) > 1:
        ax.fill_between(x[keep], low, high, color=color_, alpha=0.18, lw=0)


def loss_curves(groups: dict[Any, Group], title: str) -> Figure:
    """One panel per rate or network: minibatch loss (first seed, smoothed), train and test loss per epoch
    for each seed (the first one bold)."""
    fig, axes = plt.subplots(1, len(groups), figsize=(WIDTH, 1.95), squeeze=False)
    for ax, (key, runs) in zip(axes[0], groups.items()):
        top = 1.15 * max([v for run in runs for v in run.train_loss + run.test_loss] + [math.log(10)])
        first = runs[0]
        if first.step_loss:
            window = max(1, first.steps_per_epoch // 20)
            smooth = np.convolve(first.step_loss, np.ones(window) / window, mode="valid") \
                if len(first.step_loss) >= window else np.asarray(first.step_loss)
            ax.plot((np.arange(len(smooth)) + window) / first.steps_per_epoch, np.minimum(smooth, top),
                    color=MINIBATCH, lw=0.6)
        for i, run in enumerate(runs):
            epochs = np.arange(1, run.epochs + 1)
            width, alpha = (1.5, 1.0) if i == 0 else (0.8, 0.5)
            ax.plot(epochs, run.test_loss, "-", color=color(key), lw=width, alpha=alpha)
            ax.plot(epochs - 0.5, run.train_loss, "--", color=color(key), lw=width, alpha=alpha)
        lost = [f"seed {run.recipe.seed} diverged at step {run.diverged_step}" for run in runs if run.diverged]
        if lost:
            ax.text(0.5, 0.5, "\n".join(lost), transform=ax.transAxes, ha="center", color=color(key), fontsize=8)
        ax.set_title(label(key))
        ax.set_ylim(0, top)
        ax.set_xlim(0, max(max(r.epochs for r in runs), 1) + 0.3)
        ax.set_xlabel("epoch")
    axes[0][0].set_ylabel("cross-entropy loss")
    handles = [plt.Line2D([], [], color=MINIBATCH, lw=0.8), plt.Line2D([], [], color="0.2", lw=1.5),
               plt.Line2D([], [], color="0.2", lw=1.5, ls="--")]
    fig.suptitle(title + (f" (bold: seed {groups[next(iter(groups))][0].recipe.seed}; thin: the other seeds)"
                          if len(next(iter(groups.values()))) > 1 else ""), fontsize=9)
    _legend_below(fig, handles, ["minibatch loss, first seed (smoothed)", "test loss, end of epoch",
                                 "train loss, mean over the epoch"], 3, 0.1)
    return fig


def accuracy_curves(groups: dict[float, Group], target: float) -> Figure:
    """Q1.3: (a) train (dashed, eval mode) and test (solid) accuracy per epoch, (b) train and test loss, mean
    over the seeds still running (band: min to max); the target line in (a)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(WIDTH, 2.5))
    for key, runs in groups.items():
        x = np.arange(1, max(run.epochs for run in runs) + 1)
        for ax, (test, train) in ((left, ("test_accuracy", "train_accuracy")), (right, ("test_loss", "train_loss"))):
            _band(ax, x, [getattr(run, test) for run in runs], color(key), label(key))
            _band(ax, x, [getattr(run, train) for run in runs], color(key), "_", style="--")
    left.axhline(target, color="black", lw=0.8, ls=":")
    left.set_ylim(0.6, 1.0)
    right.set_ylim(0, 1.0)
    left.set_ylabel("accuracy (below 60 %: off the axis)")
    right.set_ylabel("cross-entropy loss (lr 1: off the axis)")
    left.set_title(f"(a) accuracy; dotted: the target {target:.0%}")
    right.set_title("(b) loss")
    for ax in (left, right):
        ax.set_xlabel("epoch")
    handles, names = left.get_legend_handles_labels()
    handles += [plt.Line2D([], [], color="0.2"), plt.Line2D([], [], color="0.2", ls="--")]
    _legend_below(fig, handles, names + ["test", "train"], 6, 0.1)
    return fig


def accuracy_vs_lr(groups: dict[float, Group], required: list[float]) -> Figure:
    """Test accuracy after the runs' epochs against the learning rate (log axis): (a) every rate, seeds as
    dots and their mean as a line; (b) the rates where every seed learned, mean ± std."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(WIDTH, 2.2), gridspec_kw={"width_ratios": [1.2, 1]})
    rates = sorted(groups)
    values = {lr: [report.final(run) or 0.0 for run in groups[lr]] for lr in rates}
    learned = [lr for lr in rates if all(report.outcome(run) == "learned" for run in groups[lr])]
    for ax, shown in ((left, rates), (right, learned)):
        for lr in shown:
            ax.scatter([lr] * len(values[lr]), values[lr], s=18, color=color(lr), zorder=3,
                       marker="o" if lr in required else "D", edgecolor="black" if lr in required else "none")
        ax.plot(shown, [np.mean(values[lr]) for lr in shown], "-", color="0.4", lw=1, zorder=2)
        ax.set_xscale("log")
        ax.set_xticks(shown, [f"{lr:g}" for lr in shown], rotation=90)
        ax.minorticks_off()
        ax.set_xlabel("learning rate (log scale)")
    for lr in learned:
        right.errorbar(lr, np.mean(values[lr]), yerr=np.std(values[lr], ddof=1) if len(values[lr]) > 1 else 0,
                       color="0.3", capsize=3, lw=1, zorder=1)
    left.set_ylabel(f"test accuracy, epoch {groups[rates[0]][0].epochs}")
    left.set_ylim(0, 1)
    left.set_title("(a) every rate (circles: Q1.2, diamonds: added)")
    right.set_title("(b) rates where every seed learned")
    fig.tight_layout()
    return fig


def gradient_means(groups: dict[float, Group]) -> Figure:
    """Q1.6's two readings per rate, mean over the seeds with a 95 % confidence band: the signed mean (rates
    that learned; those that did not on their own axis) and the mean |gradient| (log axis); over the first
    100 steps (top) and over the traced epochs as 50-step means (bottom)."""
    fig, axes = plt.subplots(2, 3, figsize=(WIDTH, 4.0), gridspec_kw={"width_ratios": [1.25, 0.85, 1.1]})
    longest = {lr: [r for r in runs if r.gradients and r.recipe.gradient_epochs == max(
        x.recipe.gradient_epochs for x in runs if x.gradients)] for lr, runs in groups.items()}
    learned = {lr for lr, runs in longest.items() if all(report.outcome(run) == "learned" for run in runs)}
    for row, horizon in zip(axes, ("steps", "blocks")):
        for lr, runs in groups.items():
            traced = [run for run in runs if run.gradients] if horizon == "steps" else longest[lr]
            x = (np.arange(1, max(len(r.gradients["steps"]["signed_mean"]) for r in traced) + 1)
                 if horizon == "steps" else np.array(report.block_epochs(max(traced, key=lambda r: r.epochs))))
            for ax, reading in ((row[0] if lr in learned else row[1], "signed_mean"), (row[2], "abs_mean")):
                _band(ax, x, [run.gradients[horizon][reading] for run in traced], color(lr),
                      f"{label(lr)} ({len(traced)} seeds)" if horizon == "steps" else "_", spread="ci")
        for ax, title in zip(row, ("(a) signed mean", "(b) signed mean", "(c) mean |gradient|") if horizon == "steps"
                             else ("(d) signed mean", "(e) signed mean", "(f) mean |gradient|")):
            ax.set_title(title)
            ax.set_xlabel("training step" if horizon == "steps" else "epoch (50-step means)")
        for ax in row[:2]:
            ax.axhline(0, color="black", lw=0.7)
            ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
        row[2].set_yscale("log")
    legend = {n: h for ax in axes[0] for h, n in zip(*ax.get_legend_handles_labels())}  # each rate once
    handles, names = list(legend.values()), list(legend)
    fig.suptitle("Q1.6: first 100 steps (top), every epoch (bottom); (a, d) the rates that learned, (b, e) the others\n"
                 "line: mean over the seeds; band: its 95 % confidence interval", fontsize=8.5)
    _legend_below(fig, handles, names, 4, 0.07)
    return fig


def ablation_curves(groups: dict[tuple[str, str], Group]) -> Figure:
    """Q1.7: test accuracy and test loss per epoch for each network × scheme (mean over seeds, band min to max)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(WIDTH, 2.3))
    for (network, scheme), runs in groups.items():
        x = np.arange(1, max(run.epochs for run in runs) + 1)
        name = f"{'CNN' if models.is_cnn(network) else 'base MLP'}, {'CNN' if scheme == 'cnn' else 'demo'} scheme"
        for ax, series in ((left, "test_accuracy"), (right, "test_loss")):
            _band(ax, x, [getattr(run, series) for run in runs], color(network), name,
                  "-" if scheme == "cnn" else "--")
    left.set_ylabel("test accuracy")
    right.set_ylabel("test loss")
    left.set_title("(a) test accuracy")
    right.set_title("(b) test loss")
    for ax in (left, right):
        ax.set_xlabel("epoch")
    _legend_below(fig, *left.get_legend_handles_labels(), 2, 0.16)
    return fig
