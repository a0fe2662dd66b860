"""Figures from Histories (never trains): samples, loss and accuracy curves, gradient means, comparisons."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from .data import CLASS_NAMES
from .reporting import outcome, percent
from .training import History

TRAIN, TEST, STEP = "tab:blue", "tab:orange", "0.75"


def show_samples(images: torch.Tensor, labels: torch.Tensor, indices: list[int]) -> Figure:
    """The images at `indices`, each titled with its class name and label."""
    fig, axes = plt.subplots(1, len(indices), figsize=(2.4 * len(indices), 2.8))
    for ax, index in zip(np.atleast_1d(axes), indices):
        ax.imshow(images[index].squeeze(0), cmap="gray_r")
        ax.set_title(f"{CLASS_NAMES[int(labels[index])]} (label {int(labels[index])})", fontsize=10)
        ax.set_xlabel(f"training image #{index}", fontsize=8)
        ax.set_xticks([]), ax.set_yticks([])
    fig.tight_layout()
    return fig


def _smooth(values: list[float], window: int) -> np.ndarray:
    """Moving average (valid part only)."""
    if len(values) < window:
        return np.asarray(values)
    return np.convolve(values, np.ones(window) / window, mode="valid")


def _loss_panel(ax: plt.Axes, run: History, title: str) -> None:
    steps_per_epoch = math.ceil(run.settings["train_samples"] / run.settings["batch_size"])
    if run.step_loss:
        window = max(1, steps_per_epoch // 20)
        smooth = _smooth(run.step_loss, window)
        x = (np.arange(len(smooth)) + window) / steps_per_epoch
        ax.plot(x, smooth, color=STEP, lw=0.8, label=f"minibatch loss ({window}-step mean)")
    epochs = np.arange(1, run.epochs + 1)
    ax.plot(epochs, run.train_loss, "o-", color=TRAIN, ms=3, label="train loss (epoch mean)")
    ax.plot(epochs, run.test_loss, "s-", color=TEST, ms=3, label="test loss (end of epoch)")
    note = outcome(run)
    ax.set_title(title if note == "trained" else f"{title}: {note}", fontsize=10,
                 color="black" if note == "trained" else "crimson")
    epoch_losses = [*run.train_loss, *run.test_loss] or run.step_loss[:1] or [1.0]
    ax.set_ylim(0, 1.3 * max(epoch_losses))  # minibatch spikes above this are clipped
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy loss")
    ax.set_xlim(0, max(run.epochs, 1) + 0.5)
    ax.grid(alpha=0.3)


def loss_curves(runs: dict[str, History], title: str, columns: int = 2) -> Figure:
    """One panel per run: per-step loss (smoothed), epoch train loss and test loss."""
    rows = math.ceil(len(runs) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(6 * columns, 3.6 * rows), squeeze=False)
    for ax, (label, run) in zip(axes.flat, runs.items()):
        _loss_panel(ax, run, label)
    for ax in axes.flat[len(runs):]:
        ax.remove()
    axes.flat[0].legend(fontsize=8, loc="upper right")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def accuracy_curves(runs: dict[str, History], target: float, title: str) -> Figure:
    """Train and test accuracy per epoch for each run, with the target line and the epochs it was reached."""
    fig, ax = plt.subplots(figsize=(11, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for color, (label, run) in zip(colors, runs.items()):
        epochs = np.arange(1, run.epochs + 1)
        ax.plot(epochs, run.test_accuracy, "-", color=color, lw=1.6, label=f"{label}: test")
        ax.plot(epochs, run.train_accuracy, "--", color=color, lw=1.2, label=f"{label}: train")
        for epoch, accuracies in ((run.epoch_test_target, run.test_accuracy),
                                  (run.epoch_train_target, run.train_accuracy)):
            if epoch:
                ax.plot(epoch, accuracies[epoch - 1], "o", color=color, ms=7, mfc="white", mew=2)
    ax.axhline(target, color="black", lw=0.8, ls=":")
    ax.text(1, target + 0.003, f"target {percent(target, 0)}", fontsize=8, va="bottom")
    ax.set_ylim(max(0.0, min(0.75, ax.get_ylim()[0])), 1.0)
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.set_title(title + "  (circles: first epoch at or above the target)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2, loc="lower right")
    fig.tight_layout()
    return fig


def gradient_means(runs: dict[str, History]) -> Figure:
    """Top: the signed mean gradient per step, one panel per run (own scale); bottom: mean |gradient|, log scale."""
    fig = plt.figure(figsize=(12, 6.4))
    grid = fig.add_gridspec(2, len(runs))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    bottom = fig.add_subplot(grid[1, :])
    for i, (label, run) in enumerate(runs.items()):
        steps = np.arange(1, len(run.gradient_mean) + 1)
        ax = fig.add_subplot(grid[0, i])
        ax.plot(steps, run.gradient_mean, color=colors[i], lw=1.1)
        ax.axhline(0, color="black", lw=0.7)
        ax.set_title(f"{label}: signed mean", fontsize=9)
        ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        bottom.plot(steps, run.gradient_abs_mean, color=colors[i], lw=1.2, label=label)
    bottom.set_yscale("log")
    bottom.set_title("mean absolute gradient entry (log scale)", fontsize=10)
    bottom.set_xlabel("training step (gradients read after loss.backward())")
    bottom.grid(alpha=0.3, which="both")
    bottom.legend(fontsize=8, ncol=len(runs))
    fig.tight_layout()
    return fig


def layer_gradient_means(run: History, title: str) -> Figure:
    """Signed mean gradient per layer over the tracked steps."""
    fig, ax = plt.subplots(figsize=(12, 3.4))
    for layer, values in run.layer_gradient_mean.items():
        ax.plot(np.arange(1, len(values) + 1), values, lw=1.1, label=f"layer {layer.rsplit('.', 1)[-1]}")
    ax.axhline(0, color="black", lw=0.7)
    ax.set_xlabel("training step")
    ax.set_ylabel("signed mean gradient")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=3)
    fig.tight_layout()
    return fig


def compare_convergence(groups: dict[str, list[History]]) -> Figure:
    """Test loss and test accuracy per epoch, mean over seeds with min-max band, for every model."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
    for label, group in groups.items():
        epochs = np.arange(1, min(run.epochs for run in group) + 1)
        for ax, key in ((left, "test_loss"), (right, "test_accuracy")):
            values = np.array([getattr(run, key)[:len(epochs)] for run in group])
            line, = ax.plot(epochs, values.mean(0), "o-", ms=3, label=label)
            ax.fill_between(epochs, values.min(0), values.max(0), color=line.get_color(), alpha=0.15)
    left.set_ylabel("test loss")
    right.set_ylabel("test accuracy")
    for ax in (left, right):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    right.legend(fontsize=8)
    fig.suptitle("Convergence, mean over seeds (band: min to max)")
    fig.tight_layout()
    return fig


def accuracy_vs_parameters(points: dict[str, tuple[int, list[float]]], note: str = "") -> Figure:
    """Final test accuracy (each seed as a dot, mean as a cross) against trainable parameters, log x."""
    fig, ax = plt.subplots(figsize=(8, 4.2))
    for label, (parameters, accuracies) in points.items():
        line, = ax.plot([parameters] * len(accuracies), accuracies, "o", alpha=0.5)
        ax.plot(parameters, np.mean(accuracies), "x", color=line.get_color(), ms=10, mew=2, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters (log scale)")
    ax.set_ylabel("final test accuracy")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Accuracy against size, every model trained in this notebook" + (f"\n{note}" if note else ""),
                 fontsize=10)
    fig.tight_layout()
    return fig


def confusion(matrix: list[list[int]], title: str) -> Figure:
    """Row-normalised confusion matrix (true class per row) with counts."""
    counts = np.array(matrix)
    shares = counts / counts.sum(1, keepdims=True)
    fig, ax = plt.subplots(figsize=(7.5, 6.2))
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for t in range(len(counts)):
        for p in range(len(counts)):
            ax.text(p, t, counts[t, p], ha="center", va="center", fontsize=7,
                    color="white" if shares[t, p] > 0.5 else "black")
    ax.set_xticks(range(len(CLASS_NAMES)), CLASS_NAMES, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(CLASS_NAMES)), CLASS_NAMES, fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig
