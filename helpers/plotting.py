"""Figures from Histories (never trains). Drawn at most as wide as an A4 page's text (7.4 in) and shown at their own
size, so every font prints at 8 pt or more. One colour per learning rate and per network in every figure;
solid = held-out data, dashed = train. A mean over the seeds is drawn only while every seed is still running;
after that each seed goes on as a thin line that ends in a dot. Every axis shows all of its curves and at least 4
ticks; legends list only what is drawn."""
from __future__ import annotations

import math
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter, SymmetricalLogLocator

from . import models, report
from .data import CLASS_NAMES
from .experiments import SCHEMES
from .report import Group

plt.rcParams.update({"font.size": 8.5, "axes.titlesize": 9, "axes.labelsize": 8.5, "legend.fontsize": 8,
                     "xtick.labelsize": 8, "ytick.labelsize": 8, "figure.dpi": 96, "savefig.dpi": 96,
                     "axes.grid": True, "grid.alpha": 0.3})
try:  # sharp figures that print at their own size (Jupyter shows PNGs at twice the pixels)
    from matplotlib_inline.backend_inline import set_matplotlib_formats
    set_matplotlib_formats("retina")
except ImportError:
    pass
WIDTH = 7.4  # inches: the text width of an A4 page, so the figure prints at its own size
RATE_COLORS = {1: "#d62728", 0.7: "#e377c2", 0.5: "#ff7f0e", 0.3: "#bcbd22", 0.2: "#8c564b", 0.1: "#1f77b4",
               0.03: "#17becf", 0.01: "#2ca02c", 0.001: "#9467bd"}
MODEL_COLORS = {"base": "#1f77b4", "deeper": "#ff7f0e", "wider": "#e377c2", "base+bn": "#8c564b", "cnn": "#222222"}
SCHEME_NAMES = {"demo": "demo scheme", "cnn": "CNN's scheme"}
NETWORK_NAMES = {"cnn": "CNN", "base": "MLP", "base+bn": "MLP+BN"}  # in Q1.7, where the base MLP meets the CNN
assert set(SCHEME_NAMES) == set(SCHEMES)


def color(key: Any) -> str:
    """The colour of a learning rate (a number) or a network (a name), the same in every figure."""
    return (MODEL_COLORS if isinstance(key, str) else RATE_COLORS).get(key, "#7f7f7f")


def label(key: Any) -> str:
    """'lr 0.1', a structure ('base', 'wider'), or a (network, scheme) cell: 'MLP, demo scheme', 'MLP+BN, CNN's
    scheme' (with BatchNorm), 'CNN, demo scheme'."""
    if isinstance(key, tuple):
        return f"{NETWORK_NAMES.get(key[0], key[0])}, {SCHEME_NAMES[key[1]]}"
    if isinstance(key, str):
        return NETWORK_NAMES.get(key, key) if key != "base" else key
    return f"lr {key:g}"


def _number(value: float, _: Any = None) -> str:
    """A tick label: 3 significant digits, small and large values in scientific notation (3.08e-4)."""
    if value == 0 or 1e-2 <= abs(value) < 1e4:
        return f"{value:.3g}"
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def _ticks(*axes: plt.Axes) -> None:
    """4 to 8 labelled ticks on every value axis: on a log or symlog axis the first of decades, 1-2-5 steps or
    finer steps that gives that many (else evenly spaced ticks); 4 to 6 on a linear one."""
    for ax in axes:
        for axis, scale, limits in ((ax.yaxis, ax.get_yscale(), ax.get_ylim()), (ax.xaxis, ax.get_xscale(), ax.get_xlim())):
            if scale == "linear":  # epochs and steps are whole numbers
                axis.set_major_locator(MaxNLocator(nbins=6, min_n_ticks=4, integer=axis is ax.xaxis))
                continue
            low, high = sorted(limits)
            steps = [(1, 2, 5), (1, 3), (1,), (1, 2, 3, 5, 7), (1, 1.5, 2, 3, 4, 5, 6, 7, 8, 9)]
            candidates = ([LogLocator(subs=s, numticks=30) for s in steps] if scale == "log" else  # not thinned by size
                          [SymmetricalLogLocator(linthresh=axis.get_transform().linthresh, base=10, subs=s) for s in steps])
            fitting = [c for c in candidates if 4 <= sum(low <= v <= high for v in c.tick_values(low, high)) <= 7]
            wide = scale == "log" and high / low > 1e7  # many decades: every other decade or so
            axis.set_major_locator(fitting[0] if fitting else LogLocator(numticks=6) if wide
                                   else MaxNLocator(nbins=4, min_n_ticks=4))
            axis.set_major_formatter(FuncFormatter(_number))
            axis.set_minor_formatter(NullFormatter())


def _legend_below(fig: Figure, handles: list, names: list[str], space: float) -> None:
    """One legend for the figure, under the axes (in one row, or three columns for long names)."""
    one_row = sum(map(len, names)) < 90
    fig.legend(handles, names, loc="lower center", ncol=len(names) if one_row else 3, frameon=False, handlelength=1.2,
               handletextpad=0.4, columnspacing=0.8)
    fig.tight_layout(rect=(0, space if one_row else 1.7 * space, 1, 1))


def show_samples(images: torch.Tensor, labels: torch.Tensor, indices: list[int]) -> Figure:
    """The images at `indices`, each titled with its class name and label."""
    fig, axes = plt.subplots(1, len(indices), figsize=(WIDTH * 0.55, 1.4))
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
          x: np.ndarray | None = None, band: str = "range", x0: float = 1) -> bool:
    """Mean over the seeds while all of them have values, with a band (min to max, the 95 % confidence interval, or
    none); after that each seed alone, thin, ending in a dot. `x`: the positions (default x0, x0 + 1, ...). Returns
    False when nothing could be drawn."""
    values = _padded(series)
    if not np.isfinite(values).any():
        return False
    x = x0 + np.arange(values.shape[1]) if x is None else np.asarray(x, float)[:values.shape[1]]
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
    """(a) every minibatch loss of the first seed, smoothed over a twentieth of an epoch (log scale), per rate or
    network; (b) train loss (mean over each epoch, dashed) and test loss (end of each epoch, solid) over the seeds."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(WIDTH, 1.9))
    for key, runs in groups.items():
        first = runs[0]
        window = max(1, first.steps_per_epoch // 20)
        if len(first.step_loss) >= window:
            smooth = np.convolve(first.step_loss, np.ones(window) / window, mode="valid")
            left.plot((np.arange(len(smooth)) + window) / first.steps_per_epoch, smooth, color=color(key), lw=0.8,
                      label=label(key))
        seeds(right, [r.test_loss for r in runs], color(key), label(key))
        seeds(right, [r.train_loss for r in runs], color(key), "_", "--", x0=0.5)
        for run in runs:
            if run.diverged:
                left.annotate(f"seed {run.recipe.seed} diverged at step {run.diverged_step}",
                              (run.diverged_step / run.steps_per_epoch, 0.5), xycoords=("data", "axes fraction"),
                              color=color(key), fontsize=8)
    left.set_yscale("log")
    left.set_title(f"(a) minibatch loss, seed {next(iter(groups.values()))[0].recipe.seed} (smoothed; log scale)")
    right.set_title(f"(b) loss per epoch, {len(next(iter(groups.values())))} seeds")
    right.set_ylim(bottom=0)
    for ax in (left, right):
        ax.set_xlabel("epoch")
    left.set_ylabel("cross-entropy loss")
    _ticks(left, right)
    handles, names = left.get_legend_handles_labels()
    handles += [plt.Line2D([], [], color="0.2"), plt.Line2D([], [], color="0.2", ls="--")]
    fig.suptitle(title, fontsize=9)
    _legend_below(fig, handles, names + ["test loss (b)", "train loss (b)"], 0.1)
    return fig


def error_curves(groups: dict[float, Group], target: float, title: str) -> Figure:
    """Q1.3 per epoch, mean over the seeds (band: min to max): (a) test error = 1 − accuracy on a log scale, with
    validation and train dashed lighter, the target dotted; (b) test loss (solid) and train loss (dashed)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(WIDTH, 1.75))
    for key, runs in groups.items():
        seeds(left, [[100 * (1 - a) for a in r.test_accuracy] for r in runs], color(key), label(key))
        seeds(left, [[100 * (1 - a) for a in r.train_accuracy] for r in runs], color(key), "_", ":", band="none")
        seeds(right, [r.test_loss for r in runs], color(key), "_")
        seeds(right, [r.train_loss for r in runs], color(key), "_", "--", x0=0.5)
    left.axhline(100 * (1 - target), color="black", lw=0.8, ls="--")
    left.set_yscale("log")
    left.set_title(f"(a) error = 100 − accuracy (%), log; dashed: {100 * target:g} % accuracy")
    left.set_ylabel("error (%)")
    right.set_title("(b) cross-entropy loss")
    right.set_ylim(bottom=0)
    for ax in (left, right):
        ax.set_xlabel("epoch")
    _ticks(left, right)
    handles, names = left.get_legend_handles_labels()
    handles += [plt.Line2D([], [], color="0.2"), plt.Line2D([], [], color="0.2", ls=":"),
                plt.Line2D([], [], color="0.2", ls="--")]
    fig.suptitle(title, fontsize=9)
    _legend_below(fig, handles, names + ["test (a, b)", "train (a)", "train (b)"], 0.1)
    return fig


def first_steps(groups: dict[float, Group]) -> Figure:
    """Q1.6, the assignment's plot: over the first 100 training steps, per rate (mean over the seeds, band: 95 %
    confidence interval), the signed mean of the gradients, each rate on its own axis (their sizes differ 100-fold),
    then the mean absolute value of the gradients of all rates together (log scale, band: min to max)."""
    fig, axes = plt.subplots(1, len(groups) + 1, figsize=(WIDTH, 1.9))
    *panels, size = axes
    for (lr, runs), letter, ax in zip(groups.items(), "abcdefghij", panels):
        traced = [r for r in runs if r.gradients]
        seeds(ax, [r.gradients["steps"]["signed_mean"] for r in traced], color(lr), "_", band="ci")
        ax.axhline(0, color="black", lw=0.6, zorder=1)
        ax.set_title(f"({letter}) {label(lr)}")
        ax.set_xlabel(f"step ({len(traced)} seeds)")
        seeds(size, [r.gradients["steps"]["abs_mean"] for r in traced], color(lr), label(lr))
        ax.yaxis.set_major_formatter(FuncFormatter(_number))
    panels[0].set_ylabel("signed mean")
    size.set_yscale("log")
    size.set_title(f"({'abcdefghij'[len(groups)]}) mean |g|, all")
    size.set_xlabel("step")
    _ticks(*panels, size)
    for ax in (*panels, size):
        ax.xaxis.set_major_locator(plt.FixedLocator([0, 50, 100]))
    fig.suptitle("Q1.6: the mean of the gradients after loss.backward(), first 100 steps (band: 95 % CI)", fontsize=9)
    handles, names = size.get_legend_handles_labels()
    _legend_below(fig, handles, names, 0.1)
    return fig


def probe(groups: dict[float, Group], demo: float, title: str) -> Figure:
    """Q1.6 through the whole run, the probe batch (the same training images at every checkpoint), per rate (mean
    over the seeds): (a) its loss; (b) its gradient's mean |g| (solid) and a single minibatch's (dashed); (c) at the
    demo rate, per seed; (d) at the demo rate, per layer. Steps on a symmetric log scale (0 is the initial network)."""
    fig, grid = plt.subplots(1, 4, figsize=(WIDTH, 1.9))
    loss, size, each, layer = grid
    for lr, runs in groups.items():
        probed = [r for r in runs if r.gradients and "probe" in r.gradients]
        if not probed:
            continue
        probes = [r.gradients["probe"] for r in probed]
        steps = np.array(max((p["step"] for p in probes), key=len), float)  # the same checkpoints, some cut short
        seeds(loss, [p["loss"] for p in probes], color(lr), label(lr), x=steps)
        seeds(size, [p["abs_mean"] for p in probes], color(lr), "_", x=steps)
        seeds(size, [p["minibatch_abs_mean"] for p in probes], color(lr), "_", "--", x=steps, band="none")
        if lr == demo:
            for p, run, style in zip(probes, probed, ("-", "--", ":", "-.")):
                each.plot(p["step"], p["abs_mean"], style, color=color(lr), lw=1, label=f"seed {run.recipe.seed}")
            for name in probes[0]["layers"]:
                seeds(layer, [p["layers"][name] for p in probes], plt.cm.viridis(int(name) / (len(probes[0]["layers"]) + 1)),
                      f"layer {name}", x=steps)
    titles = ["(a) probe loss", "(b) mean |g|", f"(c) |g|, seeds, lr {demo:g}", f"(d) |g|, layers, lr {demo:g}"]
    steps_per_epoch = next(iter(groups.values()))[0].steps_per_epoch
    for ax, name in zip(grid.flat, titles):
        ax.set_title(name)
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlabel(f"step (1 epoch = {steps_per_epoch})")
        ax.set_yscale("log" if ax is not each else "linear")  # the seeds span less than a factor of 3
    _ticks(*grid.flat)
    each.yaxis.set_major_locator(MaxNLocator(nbins=4, min_n_ticks=4))
    each.yaxis.set_major_formatter(FuncFormatter(_number))
    for ax in grid.flat:
        ax.xaxis.set_major_locator(plt.FixedLocator([0, 10, 100, 1000, 10000]))
        ax.set_xlim(left=0)
    each.legend(loc="upper left", frameon=False, fontsize=8, handlelength=1.5)
    layer.legend(loc="upper left", frameon=False, fontsize=8, handlelength=1.5)
    fig.suptitle(title, fontsize=9)
    handles, names = loss.get_legend_handles_labels()
    kinds = [Line2D([], [], color="black", lw=1), Line2D([], [], color="black", lw=1, ls="--")]
    _legend_below(fig, handles + kinds, names + ["probe batch", "(b) a minibatch"], 0.1)
    return fig


def networks(groups: dict[Any, Group], target: float, title: str) -> Figure:
    """Q1.7 per network × scheme, mean over the seeds (band: min to max): validation accuracy (a) per epoch and (b)
    against the training compute spent (TFLOP, log scale): the comparison at equal cost. The demo scheme dashed."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(WIDTH, 2.3))
    for key, runs in groups.items():
        network, scheme = key
        style = "--" if scheme == "demo" else "-"
        seeds(left, [[100 * a for a in r.validation_accuracy] for r in runs], color(network), label(key), style)
        seeds(right, [[100 * a for a in r.validation_accuracy] for r in runs], color(network), "_", style,
              x=report.training_tflop(max(runs, key=lambda r: r.epochs)))
    for ax in (left, right):
        ax.axhline(100 * target, color="black", lw=0.8, ls=":")
        ax.set_ylabel("validation (%)")
    left.set_xlabel("epoch")
    right.set_xlabel("training compute (TFLOP, log scale)")
    right.set_xscale("log")
    left.set_title(f"(a) per epoch; dotted: {100 * target:g} %")
    right.set_title("(b) at equal compute")
    _ticks(left, right)
    fig.suptitle(title, fontsize=9)
    handles, names = left.get_legend_handles_labels()
    _legend_below(fig, handles, names, 0.13)
    return fig
