"""Figures from Histories (never trains). Drawn at most as wide as an A4 page's text (7.4 in) and shown at their own
size, so every font prints at 8 pt or more. One colour per learning rate and per network in every figure;
solid = held-out data, dashed = train. A mean over the seeds is drawn only while every seed is still running;
after that each seed goes on as a thin line that ends in a dot. Legends list only what is drawn."""
from __future__ import annotations

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
MODEL_COLORS = {"base": "#1f77b4", "deeper": "#ff7f0e", "wider": "#e377c2", "cnn": "#222222"}
SCHEMES = {"demo": "demo scheme", "cnn": "CNN's scheme"}


def color(key: Any) -> str:
    """The colour of a learning rate (a number) or a network (a name), the same in every figure."""
    return (MODEL_COLORS if isinstance(key, str) else RATE_COLORS).get(key, "#7f7f7f")


def label(key: Any) -> str:
    """'lr 0.1', 'wider' or 'CNN'."""
    return ("CNN" if models.is_cnn(key) else key) if isinstance(key, str) else f"lr {key:g}"


def _legend_below(fig: Figure, handles: list, names: list[str], space: float) -> None:
    """One legend for the figure, under the axes (in one row, or three columns for long names)."""
    fig.legend(handles, names, loc="lower center", ncol=len(names) if sum(map(len, names)) < 80 else 3, frameon=False)
    fig.tight_layout(rect=(0, space if sum(map(len, names)) < 80 else 1.7 * space, 1, 1))


def show_samples(images: torch.Tensor, labels: torch.Tensor, indices: list[int]) -> Figure:
    """The images at `indices`, each titled with its class name and label."""
    fig, axes = plt.subplots(1, len(indices), figsize=(WIDTH * 0.55, 1.5))
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


def seeds(ax: plt.Axes, series: list[list[float | None]], color_: str, name: str, style: str = "-",
          x0: float = 1, band: str = "range", dx: float = 1) -> bool:
    """Mean over the seeds while all of them have values, with a band (min to max, the 95 % confidence interval, or
    none); after that each seed alone, thin, ending in a dot. Returns False when nothing could be drawn."""
    values = _padded(series)
    if not np.isfinite(values).any():
        return False
    x = x0 + dx * np.arange(values.shape[1])
    together = int(np.argmin(np.all(np.isfinite(values), axis=0))) if not np.all(np.isfinite(values)) else values.shape[1]
    if together:
        mean = values[:, :together].mean(axis=0)
        ax.plot(x[:together], mean, style, color=color_, lw=1.4, label=name)
        if len(series) > 1 and band != "none":
            half = [report.ci95(list(c)) for c in values[:, :together].T] if band == "ci" else None
            low, high = ((mean - half, mean + half) if half is not None
                         else (values[:, :together].min(axis=0), values[:, :together].max(axis=0)))
            ax.fill_between(x[:together], low, high, color=color_, alpha=0.18, lw=0)
    for row in values:
        kept = np.flatnonzero(np.isfinite(row))
        if len(kept) and kept[-1] >= together:
            start = max(together - 1, 0)
            ax.plot(x[start:kept[-1] + 1], row[start:kept[-1] + 1], style, color=color_, lw=0.7,
                    label=None if together else name)
            ax.plot(x[kept[-1]], row[kept[-1]], "o", color=color_, ms=2.5)
            name = "_" if not together else name
    return True


def loss_curves(groups: dict[Any, Group], title: str) -> Figure:
    """(a) every minibatch loss of the first seed, smoothed over a twentieth of an epoch, per rate or network;
    (b) train loss (mean over each epoch, dashed) and test loss (end of each epoch, solid) over the seeds."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(WIDTH, 1.75))
    top = 1.15 * max([v for runs in groups.values() for r in runs for v in r.train_loss + r.test_loss] + [0.5])
    for key, runs in groups.items():
        first = runs[0]
        window = max(1, first.steps_per_epoch // 20)
        if len(first.step_loss) >= window:
            smooth = np.convolve(first.step_loss, np.ones(window) / window, mode="valid")
            left.plot((np.arange(len(smooth)) + window) / first.steps_per_epoch, np.minimum(smooth, top),
                      color=color(key), lw=0.8, label=label(key))
        seeds(right, [r.test_loss for r in runs], color(key), label(key))
        seeds(right, [r.train_loss for r in runs], color(key), "_", "--", x0=0.5)
        for run in runs:
            if run.diverged:
                left.annotate(f"seed {run.recipe.seed} diverged at step {run.diverged_step}",
                              (run.diverged_step / run.steps_per_epoch, top * 0.95), color=color(key), fontsize=8)
    left.set_title(f"(a) minibatch loss, seed {next(iter(groups.values()))[0].recipe.seed} (smoothed)")
    right.set_title(f"(b) per epoch, {len(next(iter(groups.values())))} seeds")
    for ax in (left, right):
        ax.set_ylim(0, top)
        ax.set_xlabel("epoch")
    left.set_ylabel("cross-entropy loss")
    handles, names = left.get_legend_handles_labels()
    handles += [plt.Line2D([], [], color="0.2"), plt.Line2D([], [], color="0.2", ls="--")]
    fig.suptitle(title, fontsize=9)
    _legend_below(fig, handles, names + ["test loss (b)", "train loss (b)"], 0.1)
    return fig


def epoch_curves(groups: dict[Any, Group], target: float | None = None, low: float = 0.0) -> Figure:
    """Per epoch, mean over the seeds (band: min to max): (a) validation accuracy, (b) validation loss, solid.
    Keyed by rate (Q1.3): train accuracy and loss dashed too, the target dotted, a rate below `low` left out and
    named. Keyed by (network, scheme) (Q1.7): the demo scheme dashed."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(WIDTH, 1.9))
    hidden = []
    for key, runs in groups.items():
        if max((v for r in runs for v in r.train_accuracy + r.validation_accuracy), default=0) < low:
            hidden.append(key)
            continue
        network, scheme = key if isinstance(key, tuple) else (key, None)
        name = f"{label(network) if models.is_cnn(network) else 'MLP'}, {SCHEMES[scheme]}" if scheme else label(network)
        for ax, series in ((left, "accuracy"), (right, "loss")):
            seeds(ax, [getattr(r, f"validation_{series}") for r in runs], color(network), name if ax is left else "_",
                  "--" if scheme == "demo" else "-")
            if scheme is None:
                seeds(ax, [getattr(r, f"train_{series}") for r in runs], color(network), "_", "--",
                      x0=0.5 if series == "loss" else 1)  # the train loss is the mean over the epoch
    if target is not None:
        left.axhline(target, color="black", lw=0.8, ls=":")
    left.set_ylim(bottom=low or None)
    if not isinstance(next(iter(groups)), tuple):
        right.set_ylim(0, 1.0)
    left.set_title("(a) accuracy" + (f"; dotted: {100 * target:g} %" if target else "")
                   + "".join(f"; {label(k)} below {100 * low:g} %" for k in hidden))
    right.set_title("(b) cross-entropy loss")
    for ax in (left, right):
        ax.set_xlabel("epoch")
    handles, names = left.get_legend_handles_labels()
    if not isinstance(next(iter(groups)), tuple):
        handles += [plt.Line2D([], [], color="0.2"), plt.Line2D([], [], color="0.2", ls="--")]
        names += ["validation", "train"]
    _legend_below(fig, handles, names, 0.12)
    return fig


def gradient_means(groups: dict[float, Group], demo: float) -> Figure:
    """Q1.6, per rate (mean over the seeds, band: 95 % confidence interval): the signed mean over the first 100
    steps (a: the rates that learned quickly, b: the demo rate, c: the rates that did not learn, each on its own
    axis), the mean |gradient| over those steps (d), and both over the traced epochs as 50-step means (e, f)."""
    fig, grid = plt.subplots(2, 3, figsize=(WIDTH, 2.95))
    (slow, own, failed), (size, signed, sizes) = grid
    for lr, runs in groups.items():
        traced = [r for r in runs if r.gradients]
        panel = own if lr == demo else failed if not all(report.outcome(r) == "learned" for r in runs) else slow
        seeds(panel, [r.gradients["steps"]["signed_mean"] for r in traced], color(lr), f"{label(lr)} ({len(traced)} seeds)",
              band="ci")
        seeds(size, [r.gradients["steps"]["abs_mean"] for r in traced], color(lr), "_", band="none")
        longest = [r for r in traced if r.recipe.gradient_epochs == max(x.recipe.gradient_epochs for x in traced)]
        step = longest[0].gradients["block"] / longest[0].steps_per_epoch  # a block, in epochs
        for ax, reading in ((signed, "signed_mean"), (sizes, "abs_mean")):
            seeds(ax, [r.gradients["blocks"][reading] for r in longest], color(lr), "_", x0=step / 2, dx=step,
                  band="ci" if reading == "signed_mean" else "none")
    titles = ["(a) signed mean, 100 steps", f"(b) signed mean, lr {demo:g}", "(c) signed mean, no learning",
              "(d) mean |g|, 100 steps", "(e) signed mean, 50-step means", "(f) mean |g|, 50-step means"]
    for ax, title in zip(grid.flat, titles):
        ax.set_title(title)
        ax.set_xlabel("training step" if ax in (slow, own, failed, size) else "epoch")
    for ax in (slow, own, failed, signed):
        ax.axhline(0, color="black", lw=0.6, zorder=1)
        ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    for ax in (size, sizes):
        ax.set_yscale("log")
    handles, names = [], []
    for ax in (slow, own, failed):
        h, n = ax.get_legend_handles_labels()
        handles, names = handles + h, names + n
    _legend_below(fig, handles, names, 0.08)
    return fig


