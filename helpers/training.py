"""Training: a ``Recipe`` says how a network is trained; ``fit()`` trains it and returns a ``History``.

What a run computes is defined by the code a worker imports (this module, `splits`, `gradients`, `models`, ...):
that code (comments and docstrings aside) is part of every stored result's key, so editing it retrains.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from numbers import Real
from typing import Any, Callable, Iterator

import torch
from torch import nn

from .device import describe, reproducible
from .gradients import GradientTrace, dead_units, gradient_means, map_series
from .models import count_parameters, flops, spec
from .splits import Splits, minibatches, to_float

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "onecycle")
GRADIENT_STEPS = 100   # Q1.6: the first 100 steps one by one ...
GRADIENT_BLOCK = 50    # ... and means over blocks of 50 steps after that
NUM_CLASSES = 10


@dataclass(frozen=True)
class Recipe:
    """How one network is trained, as plain data; checked on construction (one line names a wrong field).

    With `target_accuracy`, training stops once train and validation accuracy have both reached it, or once
    those still short of it have brought no new best for `patience` epochs, but never before `min_epochs`;
    `epochs` is the cap. The test set never decides anything.
    """

    model: str                          # "base", "deeper", "wider" (models.STRUCTURES) or "cnn"
    lr: float
    epochs: int
    optimizer: str = "sgd"
    batch_size: int = 64
    momentum: float = 0.0               # SGD only
    weight_decay: float = 0.0
    schedule: str = "constant"          # "onecycle": warm up to lr, then anneal to ~0 over the run
    flip: bool = False                  # mirror a random half of the training images each epoch
    seed: int = 0                       # initial weights, shuffling and flips
    target_accuracy: float | None = None
    min_epochs: int = 1                 # with target_accuracy only
    patience: int = 10                  # with target_accuracy only
    gradient_epochs: int = 0            # Q1.6: trace the gradient means over this many first epochs

    def __post_init__(self) -> None:
        problem = self.problem()
        if problem:
            raise ValueError(problem)

    def problem(self) -> str | None:
        """What is wrong with this recipe, in one line naming the field and the fix; None when nothing is."""
        spec(self.model)  # raises for an unknown network, naming it
        for name, least in (("epochs", 1), ("batch_size", 1), ("seed", 0), ("min_epochs", 1), ("patience", 1),
                            ("gradient_epochs", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                return f"{name}={value!r}: must be a whole number >= {least}"
        for name, low, high in (("lr", 0, math.inf), ("momentum", 0, 1), ("weight_decay", 0, math.inf)):
            value = getattr(self, name)
            if (not isinstance(value, Real) or isinstance(value, bool) or not math.isfinite(value)
                    or not low <= value < high or (name == "lr" and value == 0)):
                bounds = "> 0" if name == "lr" else f">= 0 and < {high:g}" if high < math.inf else ">= 0"
                return f"{name}={value!r}: must be a finite number {bounds}"
        if self.optimizer not in OPTIMIZERS:
            return f"optimizer={self.optimizer!r} is unknown; choose one of {OPTIMIZERS}"
        if self.schedule not in SCHEDULES:
            return f"schedule={self.schedule!r} is unknown; choose one of {SCHEDULES}"
        if not isinstance(self.flip, bool):
            return f"flip={self.flip!r}: must be True or False"
        if self.momentum and self.optimizer != "sgd":
            return f"momentum={self.momentum!r} applies to optimizer='sgd' only: drop it or use sgd"
        if self.target_accuracy is not None:
            if not isinstance(self.target_accuracy, Real) or not 0 < self.target_accuracy <= 1:
                return f"target_accuracy={self.target_accuracy!r}: must be a fraction in (0, 1], e.g. 0.9"
            if self.min_epochs > self.epochs:
                return f"min_epochs={self.min_epochs} > epochs={self.epochs}: lower min_epochs or raise epochs"
            if self.schedule != "constant":
                return (f"target_accuracy={self.target_accuracy!r} stops a run early, but schedule={self.schedule!r} "
                        f"anneals over all {self.epochs} epochs: use one or the other")
        else:
            for name, default in (("min_epochs", 1), ("patience", 10)):
                if getattr(self, name) != default:
                    return (f"{name}={getattr(self, name)!r} applies only with target_accuracy: set "
                            f"target_accuracy or leave {name} at {default}")
        if self.gradient_epochs > self.epochs:
            return f"gradient_epochs={self.gradient_epochs} > epochs={self.epochs}: trace at most every epoch"
        return None


@dataclass
class History:
    """Everything one run produced: its recipe, per-epoch metrics, per-step losses, the Q1.6 trace."""

    recipe: Recipe
    data_sizes: dict[str, int]
    parameters: int
    machine: dict[str, str]                                         # device.describe(): what computed it
    train_loss: list[float] = field(default_factory=list)           # mean minibatch loss of the epoch (weights moving)
    train_accuracy: list[float] = field(default_factory=list)       # after the epoch, eval mode, fixed train sample
    validation_loss: list[float] = field(default_factory=list)
    validation_accuracy: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)              # training pass of each epoch
    eval_seconds: list[float] = field(default_factory=list)         # the three evaluations after each epoch
    step_loss: list[float] = field(default_factory=list)            # every minibatch loss, in order
    gradients: dict[str, Any] | None = None                         # GradientTrace.to_dict()
    dead_units: dict[str, list[int]] | None = None                  # per ReLU layer, on the test set
    confusion: list[list[int]] | None = None                        # final model, test set: [true][predicted]
    stop_reason: str = "epochs"                                     # epochs | target | stalled | diverged
    diverged_step: int | None = None                                # 1-based step whose loss was not finite
    multiply_adds: int = 0                                          # of one forward pass of one image
    flops_per_image: int = 0                                        # of one training step, per image
    started: int = 0                                                # wall-clock start and end, ms since 1970
    finished: int = 0
    peak_memory_mb: float | None = None                             # of the process that trained it

    @property
    def epochs(self) -> int:
        """Number of completed epochs."""
        return len(self.test_accuracy)

    @property
    def diverged(self) -> bool:
        """True if a minibatch loss became NaN or infinite."""
        return self.stop_reason == "diverged"

    @property
    def steps_per_epoch(self) -> int:
        """Minibatches per epoch."""
        return math.ceil(self.data_sizes["train"] / self.recipe.batch_size)

    def first_epochs(self, n: int) -> History:
        """The run as it was after `n` epochs (exact for a constant learning rate: nothing depends on the cap)."""
        if self.recipe.schedule != "constant":
            raise ValueError("first_epochs() is only meaningful for a constant learning rate")
        if n > self.epochs and self.stop_reason not in ("diverged", "stalled", "target"):
            raise ValueError(f"run has {self.epochs} epochs, fewer than the {n} asked for")
        steps = self.steps_per_epoch * n
        cut = {name: getattr(self, name)[:n] for name in EPOCH_SERIES}
        diverged_here = self.diverged and (self.diverged_step or 0) <= steps
        whole = n >= self.epochs
        reason = "diverged" if diverged_here else self.stop_reason if whole and not self.diverged else "epochs"
        recipe = replace(self.recipe, epochs=n, target_accuracy=None, min_epochs=1, patience=10,
                         gradient_epochs=min(n, self.recipe.gradient_epochs))
        return History(**{**vars(self), **cut, "recipe": recipe,
                          "step_loss": self.step_loss[:steps], "gradients": _cut_trace(self.gradients, steps),
                          "confusion": self.confusion if whole else None,
                          "dead_units": self.dead_units if whole else None,
                          "stop_reason": reason,
                          "diverged_step": self.diverged_step if diverged_here else None})

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (floats kept to 6 significant digits, non-finite ones as None)."""
        return round_floats({**vars(self), "recipe": asdict(self.recipe)})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> History:
        """Rebuild a History written by to_dict()."""
        return cls(**{**data, "recipe": Recipe(**data["recipe"])})


EPOCH_SERIES = ("train_loss", "train_accuracy", "validation_loss", "validation_accuracy", "test_loss",
                "test_accuracy", "seconds", "eval_seconds")


def make_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    """The recipe's optimizer over the model's trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    return torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)


def train_epoch(model: nn.Module, batches, loss_fn: nn.Module, optimizer: torch.optim.Optimizer,
                scheduler=None, trace: GradientTrace | None = None) -> torch.Tensor:
    """One pass over the training minibatches; returns their losses (left on the device)."""
    model.train()
    losses = []
    for images, labels in batches:
        loss = loss_fn(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        if trace is not None:
            trace.append(gradient_means(model))  # Q1.6: the mean gradient, read after loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        losses.append(loss.detach())
    return torch.stack(losses)


def eval_batches(images: torch.Tensor) -> Iterator[torch.Tensor]:
    """The uint8 `images` as float batches (250 on the CPU, where they stay in cache; 5,000 on a GPU)."""
    size = 250 if images.device.type == "cpu" else 5000
    for start in range(0, len(images), size):
        yield to_float(images[start:start + size])


@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """(mean cross-entropy loss, accuracy) of the model on uint8 `images`, in eval mode."""
    model.eval()
    loss_sum, correct, start = torch.zeros((), device=labels.device), torch.zeros((), device=labels.device), 0
    for x in eval_batches(images):
        y = labels[start:start + len(x)]
        logits = model(x)
        loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
        start += len(x)
    return float(loss_sum) / len(labels), float(correct) / len(labels)


@torch.no_grad()
def confusion_matrix(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The 10x10 count matrix [true class][predicted class] on uint8 `images`."""
    model.eval()
    predicted = torch.cat([model(x).argmax(1) for x in eval_batches(images)])
    return torch.bincount(labels.cpu() * NUM_CLASSES + predicted.cpu(),
                          minlength=NUM_CLASSES ** 2).reshape(NUM_CLASSES, NUM_CLASSES)


def stalled(values: list[float], patience: int) -> bool:
    """True when the last `patience` values brought no new best."""
    return len(values) > patience and max(values[-patience:]) <= max(values[:-patience])


def stop_reason(history: History, recipe: Recipe) -> str | None:
    """After an epoch, why a run chasing its target stops: 'target' once train and validation accuracy have both
    reached it, 'stalled' once those still short of it brought no new best for `patience` epochs; else None
    (go on). Never before `min_epochs`. Test accuracy is not looked at: the test set only reports."""
    target = recipe.target_accuracy
    if target is None or history.epochs < recipe.min_epochs:
        return None
    short = [curve for curve in (history.train_accuracy, history.validation_accuracy) if max(curve) < target]
    if not short:
        return "target"
    return "stalled" if all(stalled(curve, recipe.patience) for curve in short) else None


def fit(model: nn.Module, data: Splits, recipe: Recipe, device: torch.device,
        on_epoch: Callable[[int], None] = lambda epoch: None) -> History:
    """Train `model` as the recipe says; after every epoch measure train (eval mode, a fixed sample), validation
    and test accuracy, then apply the stopping rule; return the History. A loss that is not finite stops the
    run and marks it diverged."""
    with reproducible(device):
        model, data = model.to(device), data.to(device)
        history = History(recipe, data.sizes, count_parameters(model), describe(device), started=_now())
        history.multiply_adds, history.flops_per_image = flops(model)
        optimizer = make_optimizer(model, recipe)
        scheduler = (torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe.lr,
                                                         total_steps=recipe.epochs * history.steps_per_epoch)
                     if recipe.schedule == "onecycle" else None)
        trace = GradientTrace(model, GRADIENT_STEPS, GRADIENT_BLOCK) if recipe.gradient_epochs else None
        generator = torch.Generator().manual_seed(recipe.seed)  # each epoch's minibatch order (and flips)
        loss_fn = nn.CrossEntropyLoss()
        evaluated = {"train": (data.train_images[:data.train_eval], data.train_labels[:data.train_eval]),
                     "validation": (data.validation_images, data.validation_labels),
                     "test": (data.test_images, data.test_labels)}

        for epoch in range(1, recipe.epochs + 1):
            start = time.perf_counter()
            batches = minibatches(data.train_images, data.train_labels, recipe.batch_size, generator, recipe.flip)
            tracing = trace if epoch <= recipe.gradient_epochs else None
            losses = train_epoch(model, batches, loss_fn, optimizer, scheduler, tracing).cpu()
            if tracing is not None and epoch == recipe.gradient_epochs:
                trace.close()  # the hooks come off: the rest of the run trains untraced
            elif tracing is not None:
                trace.flush()
            finite = torch.isfinite(losses)
            if not finite.all():
                history.step_loss += losses[:int(finite.long().cumprod(0).sum())].tolist()
                history.diverged_step, history.stop_reason = len(history.step_loss) + 1, "diverged"
                break
            history.step_loss += losses.tolist()
            history.train_loss.append(float(losses.mean()))
            history.seconds.append(time.perf_counter() - start)
            start = time.perf_counter()
            for split, (images, labels) in evaluated.items():
                loss, accuracy = evaluate(model, images, labels)
                if split != "train":
                    getattr(history, f"{split}_loss").append(loss)
                getattr(history, f"{split}_accuracy").append(accuracy)
            history.eval_seconds.append(time.perf_counter() - start)
            on_epoch(epoch)
            if reason := stop_reason(history, recipe):
                history.stop_reason = reason
                break

        if trace is not None:
            trace.close(keep_steps=min(len(history.step_loss), recipe.gradient_epochs * history.steps_per_epoch))
            history.gradients = trace.to_dict()
        if not history.diverged:
            history.confusion = confusion_matrix(model, data.test_images, data.test_labels).tolist()
            history.dead_units = dead_units(model, eval_batches(data.test_images))
        history.finished = _now()
        return history


def _now() -> int:
    """Wall-clock time in milliseconds, an int (so it is stored exactly, unlike the floats' 6 digits)."""
    return round(time.time() * 1000)


def first_reaching(values: list[float], target: float | None) -> int | None:
    """1-based index (epoch) of the first value >= target, or None."""
    if target is None:
        return None
    return next((i + 1 for i, v in enumerate(values) if v >= target), None)


def _cut_trace(trace: dict[str, Any] | None, steps: int) -> dict[str, Any] | None:
    """A gradient trace keeping only the blocks that end within the first `steps` steps."""
    if trace is None:
        return None
    n = steps // trace["block"]
    return {**trace, "blocks": map_series(trace["blocks"], lambda values: values[:n])}


def round_floats(value: Any) -> Any:
    """Floats to 6 significant digits, non-finite floats to None (JSON has no NaN)."""
    if isinstance(value, float):
        return float(f"{value:.6g}") if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: round_floats(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [round_floats(v) for v in value]
    return value
