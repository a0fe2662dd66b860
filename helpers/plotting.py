"""Figures from Histories (never trains). Drawn at most as wide as an A4 page's text (7.4 in) and shown at their own
size, so every font prints at 8 pt or more; the style applies inside these figures only. One colour per learning
rate and per network in every figure; solid = held-out data, dashed = train. A mean over the seeds is drawn only
while every seed is still running; after that each seed goes on as a thin line that ends in a dot."""
from __future__ import annotations

import functools
import io
import itertools
import math
from typing import Any, Callable

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from . import report
from .data import CLASS_NAMES
from .report import Group

STYLE = {"font.size": 8.5, "axes.titlesize": 9, "axes.labelsize": 8.5, "legend.fontsize": 8, "xtick.labelsize": 8,
         "ytick.labelsize": 8, "figure.dpi": 96, "axes.grid": True, "grid.alpha": 0.3}
WIDTH = 7.4  # inches: the text width of an A4 page, so the figure prints at its own size
TICK_SPACING = 0.16  # inches between labelled ticks, at least (8 pt labels are 0.11 in high)
RATE_COLORS = {1: "#d62728", 0.7: "#e377c2", 0.5: "#ff7f0e", 0.3: "#bcbd22", 0.1: "#1f77b4", 0.03: "#17becf",
               0.01: "#2ca02c", 0.001: "#9467bd"}
MODEL_COLORS = {"base": "#1f77b4", "deeper": "#ff7f0e", "wider": "#e377c2", "narrow": "#2ca02c", "base+bn": "#8c564b",
                "cnn": "#222222", "cnn short": "#e6550d"}
SCHEME_NAMES = {"demo": "demo scheme", "cnn": "CNN scheme", "short": "CNN scheme, MLP's FLOPs"}
NETWORK_NAMES = {"cnn": "CNN", "base": "MLP", "base+bn": "MLP+BN", "narrow": "MLP 64-64"}  # Q1.7: MLPs meet the CNN


def color(key: Any) -> str:
    """The colour of a learning rate (a number), a network (a name) or a (network, scheme) cell."""
    key = (" ".join(key) if key in (("cnn", "short"),) else key[0]) if isinstance(key, tuple) else key
    return (MODEL_COLORS if isinstance(key, str) else RATE_COLORS).get(key, "#7f7f7f")


def label(key: Any) -> str:
    """'lr 0.1', a structure ('base', 'wider'), or a (network, scheme) cell: 'MLP+BN, CNN's scheme'."""
    if isinstance(key, tuple):
        return f"{NETWORK_NAMES.get(key[0], key[0])}, {SCHEME_NAMES.get(key[1], key[1])}"
    return key if isinstance(key, str) else f"lr {key:g}"


def figure(draw: Callable[..., Figure]) -> Callable[..., Figure]:
    """Draw with STYLE (only inside this figure); in a notebook, show it at its own size, twice as sharp, and close
    it (so it is shown once). Returns the figure."""
    @functools.wraps(draw)
    def drawn(*args: Any, **kwargs: Any) -> Figure:
        with plt.rc_context(STYLE):
            fig = draw(*args, **kwargs)
            try:
                from IPython import get_ipython
                from IPython.display import Image, display
            except ImportError:
                return fig
            if get_ipython() is not None:
                png = io.BytesIO()
                fig.savefig(png, format="png", dpi=2 * fig.dpi)
                display(Image(png.getvalue(), width=round(fig.get_figwidth() * fig.dpi)))
                plt.close(fig)
        return fig
    return drawn


def _number(value: float, _: Any = None) -> str:
    """A tick label: 3 significant digits, small and large values in scientific notation (3.08e-4)."""
    if 1e3 <= abs(value) < 1e5 and float(value).is_integer():
        return f"{value:.0f}"
    if value == 0 or 1e-2 <= abs(value) < 1e3:
        return f"{value:.3g}"
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def _ticks(*axes: plt.Axes) -> None:
    """Readable value ticks, labelled compactly and at least TICK_SPACING apart: on a log axis decades (1-2-5 steps
    where few show, every other one where many do, else 3 evenly spaced); on a linear one 3 to 6 (whole numbers on the
    x axis: epochs, steps)."""
    for ax in axes:
        box = ax.get_position()  # before tight_layout, titles and the legend below leave a panel about half of it
        size = ax.figure.get_size_inches()
        for axis, scale, (low, high), inches in ((ax.yaxis, ax.get_yscale(), ax.get_ylim(), 0.5 * box.height * size[1]),
                                                 (ax.xaxis, ax.get_xscale(), ax.get_xlim(), 0.5 * box.width * size[0])):
            bins = max(2, min(6, int(inches / TICK_SPACING)))  # labelled ticks at least TICK_SPACING apart
            if scale == "linear":
                axis.set_major_locator(MaxNLocator(nbins=bins, min_n_ticks=3, integer=axis is ax.xaxis))
            elif scale == "log":  # decades, 1-3 or 1-2-5 steps, every n-th decade: the first with 3 ticks spaced apart
                def shown(locator: LogLocator) -> list[float]:
                    return [v for v in locator.tick_values(low, high) if min(low, high) <= v <= max(low, high)]

                def spaced(locator: LogLocator) -> bool:
                    ticks = np.log10(shown(locator))
                    return len(ticks) >= 3 and np.diff(ticks).min() * inches / np.ptp(np.log10([low, high])) >= TICK_SPACING
                fitting = [LogLocator(subs=subs, numticks=30) for subs in ((1,), (1, 3), (1, 2, 5))]
                if 0 < low < high / 100 and len(shown(fitting[0])) < 4:  # 2-3 decades: widened to whole decades, so
                    low, high = 10.0 ** math.floor(math.log10(low)), 10.0 ** math.ceil(math.log10(high))
                    (ax.set_ylim if axis is ax.yaxis else ax.set_xlim)(low, high)  # each is labelled, no 1-3 steps
                fitting += [LogLocator(base=100, subs=(first,)) for first in (1, 10)]  # every other decade
                axis.set_major_locator(next((c for c in fitting if spaced(c)), fitting[0]))
                axis.set_minor_formatter(NullFormatter())
            if scale == "log" and 0 < low < high and not spaced(axis.get_major_locator()):  # 3 ticks evenly spaced
                ticks = low * (high / low) ** np.array([0.1, 0.5, 0.9])
                if (step := np.diff(ticks).min()) > 0:
                    digits = 1 - math.floor(math.log10(step))  # two digits of the smallest step
                    axis.set_major_locator(FixedLocator([round(float(v), digits) for v in ticks]))
            values = [v for v in axis.get_major_locator().tick_values(low, high) if min(low, high) <= v <= max(low, high)]
            if len(values) > 1 and len({_number(v) for v in values}) < len(values):  # 3 digits too few: 2.29, 2.29
                digits = max(0, -math.floor(math.log10(min(b - a for a, b in zip(values, values[1:])))))
                axis.set_major_formatter(FuncFormatter(lambda v, _, d=digits: f"{v:.{d}f}"))
            else:
                axis.set_major_formatter(FuncFormatter(_number))


def _legend_below(fig: Figure, handles: list, names: list[str], space: float) -> None:
    """One legend for the figure, under the axes (one row, or three columns for long names)."""
    one_row = sum(map(len, names)) < 95
    fig.legend(handles, names, loc="lower center", ncol=len(names) if one_row else 3, frameon=False,
               handlelength=1.6, handletextpad=0.4, columnspacing=0.9)
    fig.tight_layout(rect=(0, space if one_row else 1.7 * space, 1, 1))


def seeds(ax: plt.Axes, series: list[list[float | None]], color_: str, name: str, style: str = "-",
          x: np.ndarray | None = None, band: bool = True, x0: float = 1) -> None:
    """Mean over the seeds while all of them have values, with a band from the lowest to the highest; after that
    each seed alone, thin, ending in a dot. `x`: the positions (default x0, x0 + 1, ...)."""
    values = np.array(list(itertools.zip_longest(*series)), float).T  # missing values (None, shorter seeds): NaN
    if not np.isfinite(values).any():
        return
    x = x0 + np.arange(values.shape[1]) if x is None else np.asarray(x, float)[:values.shape[1]]
    finite = np.all(np.isfinite(values), axis=0)
    together = values.shape[1] if finite.all() else int(np.argmin(finite))
    if together:
        ax.plot(x[:together], values[:, :together].mean(axis=0), style, color=color_, lw=1.4, label=name)
        if len(series) > 1 and band:
            ax.fill_between(x[:together], values[:, :together].min(axis=0), values[:, :together].max(axis=0),
                            color=color_, alpha=0.18, lw=0)
    for row in values:
        kept = np.flatnonzero(np.isfinite(row))
        if len(kept) and kept[-1] >= together:
            start = max(together - 1, 0)
            ax.plot(x[start:kept[-1] + 1], row[start:kept[-1] + 1], style, color=color_, lw=0.7,
                    label=None if together else name)
            ax.plot(x[kept[-1]], row[kept[-1]], "o", color=color_, ms=2.5)
            name = "_" if not together else name


def _losses(ax: plt.Axes, runs: Group, color_: str, name: str = "_") -> None:
    """Test loss (end of each epoch, solid) and train loss (mean over each epoch, dashed, drawn at mid-epoch)."""
    seeds(ax, [r.test_loss for r in runs], color_, name)
    seeds(ax, [r.train_loss for r in runs], color_, "_", "--", x0=0.5)


@figure
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


@figure
def loss_curves(groups: dict[Any, Group], title: str) -> Figure:
    """(a) every minibatch loss of the first seed, smoothed over a twentieth of an epoch (log scale), per rate or
    network; (b) train loss (mean over each epoch, dashed) and test loss (end of each epoch, solid) over the seeds
    (log scale: rates whose losses are close stay apart)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(WIDTH, 1.85))
    for key, runs in groups.items():
        first = runs[0]
        window = max(1, first.steps_per_epoch // 20)
        if len(first.step_loss) >= window:
            smooth = np.convolve(first.step_loss, np.ones(window) / window, mode="valid")
            left.plot((np.arange(len(smooth)) + window) / first.steps_per_epoch, smooth, color=color(key), lw=0.8,
                      label=label(key))
        _losses(right, runs, color(key), label(key))
        for run in runs:
            if run.diverged:
                left.annotate(f"seed {run.recipe.seed} diverged at step {run.diverged_step}",
                              (run.diverged_step / run.steps_per_epoch, 0.5), xycoords=("data", "axes fraction"),
                              color=color(key), fontsize=8)
    left.set_yscale("log")
    left.set_title(f"(a) minibatch loss, seed {next(iter(groups.values()))[0].recipe.seed} (smoothed; log scale)")
    right.set_title(f"(b) loss per epoch, {len(next(iter(groups.values())))} seeds (log scale)")
    right.set_yscale("log")
    for ax in (left, right):
        ax.set_xlabel("epoch")
    left.set_ylabel("cross-entropy loss")
    _ticks(left, right)
    entries = {n: h for ax in (right, left) for h, n in zip(*ax.get_legend_handles_labels())}  # also a rate whose
    handles, names = list(entries.values()), list(entries)  # seed 0 diverged before (a) could draw it
    handles += [Line2D([], [], color="0.2"), Line2D([], [], color="0.2", ls="--")]
    fig.suptitle(title, fontsize=9)
    _legend_below(fig, handles, names + ["test loss (b)", "train loss (b)"], 0.1)
    return fig


@figure
def loss_panels(groups: dict[Any, Group], title: str) -> Figure:
    """One panel per network (Q1.5's structures): test loss (end of each epoch, solid) and train loss (mean over each
    epoch, dashed), mean over the seeds, band: lowest to highest. The title says which line is which."""
    fig, axes = plt.subplots(1, len(groups), figsize=(WIDTH, 1.9), sharey=True)
    for ax, (key, runs) in zip(axes, groups.items()):
        _losses(ax, runs, color(key))
        ax.set_title(label(key))
        ax.set_xlabel("epoch")
    axes[0].set_ylabel("cross-entropy loss")
    axes[0].set_ylim(bottom=0)
    _ticks(*axes)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


@figure
def error_curves(groups: dict[float, Group], target: float, title: str) -> Figure:
    """Q1.3 per epoch, mean over the seeds (band: lowest to highest): (a) test accuracy (validation dotted, the
    target dash-dot), zoomed (so titled) from 5 points below the lowest end of the runs that learned to above every
    value; a rate that stays below the axis is named; (b) test loss (solid) and train loss (dashed), log scale."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(WIDTH, 1.85))
    for key, runs in groups.items():
        seeds(left, [[100 * a for a in r.test_accuracy] for r in runs], color(key), label(key))
        seeds(left, [[100 * a for a in r.validation_accuracy] for r in runs], color(key), "_", ":", band=False)
        _losses(right, runs, color(key))
    ends = [100 * report.final(r) for runs in groups.values() for r in runs if (report.final(r) or 0) >= report.LEARNED]
    tops = [100 * max(r.validation_accuracy + r.test_accuracy, default=0) for runs in groups.values() for r in runs]
    low, high = min(ends, default=0) - 5, max(tops + [100 * target]) + 1
    left.set_ylim(low, high)
    below = [label(k) for k, runs in groups.items() if all(100 * max(r.test_accuracy, default=0) < low for r in runs)]
    if below:
        left.text(0.98, 0.04, f"{', '.join(below)}: below the axis", transform=left.transAxes, ha="right", fontsize=8)
    left.axhline(100 * target, color="black", lw=0.8, ls="-.")
    left.set_title(f"(a) accuracy (%), zoomed near {100 * target:g} % (dash-dot)")
    left.set_ylabel("accuracy (%)")
    right.set_title("(b) cross-entropy loss (log scale)")
    right.set_yscale("log")
    for ax in (left, right):
        ax.set_xlabel("epoch")
    _ticks(left, right)
    handles, names = left.get_legend_handles_labels()
    handles += [Line2D([], [], color="0.2"), Line2D([], [], color="0.2", ls=":"), Line2D([], [], color="0.2", ls="--")]
    fig.suptitle(title, fontsize=9)
    _legend_below(fig, handles, names + ["test", "validation (a)", "train (b)"], 0.1)
    return fig


@figure
def sharpness(groups: dict[float, Group], title: str) -> Figure:
    """Q1.4 on the probe batch at each checkpoint, per rate (mean over the seeds): (a) the sharpness (largest Hessian
    eigenvalue; log scale) with the stability limit 2 / lr dashed in the rate's colour;
    (b) the probe loss; (c) the share of the last hidden layer's units silent on every probe image."""
    fig, axes = plt.subplots(1, 3, figsize=(WIDTH, 1.95))
    limits = []
    for lr, runs in groups.items():
        probes = [p for p in (report.probe_stats(r) for r in runs) if p is not None]
        if not probes:
            continue
        x = max((p["step"] for p in probes), key=len)
        seeds(axes[0], [list(p["sharpness"]) for p in probes], color(lr), label(lr), x=x)
        seeds(axes[1], [list(p["loss"]) for p in probes], color(lr), "_", x=x)
        seeds(axes[2], [list(100 * p["dead"][:, -1]) for p in probes], color(lr), "_", x=x)
        limits.append((lr, 2 / lr))
    axes[0].set_yscale("log")
    for lr, limit in limits:
        axes[0].axhline(limit, color=color(lr), ls="--", lw=0.9)
    axes[0].set_ylim(top=2 * max(limit for _, limit in limits))
    for ax, name in zip(axes, ("(a) sharpness; dashed: 2 / lr", "(b) probe loss", "(c) silent units, last hidden (%)")):
        ax.set_title(name)
        ax.set_xscale("symlog", linthresh=10)  # steps on a symmetric log scale (0 is the initial network)
        ax.set_xlim(left=0)
        ax.set_xlabel(f"step (1 epoch = {next(iter(groups.values()))[0].steps_per_epoch})")
    axes[1].set_yscale("log")
    _ticks(*axes)
    for ax in axes:  # after _ticks: steps ticked at 0, 10, 100, ... (1e4 and beyond in short form)
        ax.xaxis.set_major_locator(FixedLocator([0, 10, 100, 1000, 10000, 100000]))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0f}" if v < 1e4 else f"1e{round(np.log10(v))}"))
    fig.suptitle(title, fontsize=9)
    handles, names = axes[0].get_legend_handles_labels()
    _legend_below(fig, handles, names, 0.1)
    return fig


@figure
def first_steps(groups: dict[float, Group]) -> Figure:
    """Q1.6, the assignment's plot, over the first 100 training steps (mean over the seeds, band: lowest to
    highest): (a–d) per rate, the mean of all gradient entries, with the minibatch loss on the right axis (grey);
    (e) the norm ‖g‖ and (f) the mean size |g| of the gradients, every rate, each seed's divided by its mean over the
    first report.ENDS steps (log scales, set by the mean curves)."""
    fig, grid = plt.subplots(2, 3, figsize=(WIDTH, 2.85))
    panels = [grid[0, 0], grid[0, 1], grid[0, 2], grid[1, 0]]
    norm, size = grid[1, 1], grid[1, 2]
    means: dict[plt.Axes, list[float]] = {norm: [], size: []}  # the mean curves set the scale, not the bands
    for (lr, runs), letter, ax in zip(groups.items(), "abcd", panels):
        stats = report.traced(runs)
        seeds(ax, [list(s["signed"]) for s in stats], color(lr), label(lr))
        ax.axhline(0, color="black", lw=0.6, zorder=1)
        twin = ax.twinx()
        seeds(twin, [list(s["loss"]) for s in stats], "0.55", "_", band=False)
        twin.grid(False)
        ax.set_zorder(twin.get_zorder() + 1)  # the gradient drawn over the loss
        ax.patch.set_visible(False)
        twin.set_yscale("log")  # lr 1's spikes and lr 0.001's flat loss both readable
        ax.set_title(f"({letter}) {label(lr)}, {len(stats)} seeds")
        for panel, name in ((norm, "norm"), (size, "abs")):  # each seed over its mean of the first steps
            relative = [s[name] / np.mean(s[name][:report.ENDS]) for s in stats]
            seeds(panel, [list(r) for r in relative], color(lr), "_")
            means[panel] += list(np.mean(relative, axis=0)) if relative else []
        _ticks(ax, twin)
    for ax, name in ((norm, "(e) ‖g‖"), (size, "(f) mean |g|")):
        ax.set_yscale("log")
        if means[ax]:
            ax.set_ylim(min(means[ax]) / 1.5, max(means[ax]) * 1.5)
        ax.set_title(f"{name} ÷ its steps 1–{report.ENDS}")
    _ticks(norm, size)
    for ax in grid.flat:
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(plt.FixedLocator([0, 25, 50, 75, 100]))
    grid[0, 0].set_ylabel("mean g")
    grid[1, 0].set_ylabel("mean g")
    fig.suptitle("Q1.6: the mean of the gradients after loss.backward(), first 100 steps; grey, right axis: the loss",
                 fontsize=9)
    handles = [Line2D([], [], color=color(lr)) for lr in groups] + [Line2D([], [], color="0.55")]
    _legend_below(fig, handles, [label(lr) for lr in groups] + ["minibatch loss (right axes)"], 0.06)
    return fig


@figure
def networks(groups: dict[Any, Group], target: float, title: str) -> Figure:
    """Q1.7 per network × scheme, mean over the seeds (band: lowest to highest): (a) validation accuracy and (b) train
    loss (mean over each epoch, log scale) per epoch, (c) validation accuracy against the training compute spent
    (TFLOP, log scale). The demo scheme dashed."""
    fig, axes = plt.subplots(1, 3, figsize=(WIDTH, 1.9))
    for key, runs in groups.items():
        style = {"demo": "--", "short": "-."}.get(key[1], "-")
        accuracy = [[100 * a for a in r.validation_accuracy] for r in runs]
        seeds(axes[0], accuracy, color(key), label(key), style)
        seeds(axes[1], [r.train_loss for r in runs], color(key), "_", style, x0=0.5)  # a mean over each epoch
        seeds(axes[2], accuracy, color(key), "_", style, x=report.training_tflop(max(runs, key=lambda r: r.epochs)))
    for ax in (axes[0], axes[2]):
        ax.axhline(100 * target, color="black", lw=0.8, ls=":")
    axes[0].set_ylabel("validation (%)")
    axes[1].set_ylabel("train loss")
    axes[1].set_yscale("log")
    axes[2].set_xscale("log")
    for ax, name, x in zip(axes, (f"(a) validation; dotted: {100 * target:g} %", "(b) train loss (log scale)",
                                  "(c) against compute"), ("epoch", "epoch", "training TFLOP (log scale)")):
        ax.set_title(name)
        ax.set_xlabel(x)
    _ticks(*axes)
    fig.suptitle(title, fontsize=9)
    handles, names = axes[0].get_legend_handles_labels()
    _legend_below(fig, handles, names, 0.13)
    return fig
