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
from .gradients import GradientRecord, checkpoints
from .models import NUM_CLASSES, count_parameters, flops
from .splits import Splits, count_batches, minibatches, to_float

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "onecycle")


@dataclass(frozen=True)
class Recipe:
    """How one network is trained, as plain data; checked on construction (one line names a wrong field), without
    reading anything (the network's name is checked when the run's key is made). A run trains all its epochs;
    only a loss that is not finite stops it early."""

    model: str                          # "base", "deeper", "wider" (models.STRUCTURES), "base+bn" or "cnn"
    lr: float
    epochs: int
    optimizer: str = "sgd"
    batch_size: int = 64
    momentum: float = 0.0               # SGD only; a one-cycle schedule keeps it as it is
    weight_decay: float = 0.0
    schedule: str = "constant"          # "onecycle": warm up to lr, then anneal to ~0 over the run
    flip: bool = False                  # mirror a random half of the training images each epoch
    shuffle: bool = True                # a new order each epoch (False: the stored order, as the quickstart)
    hold_out: bool = True               # hold out the validation images (False: train on them too, as the quickstart)
    seed: int = 0                       # initial weights, shuffling and flips
    gradient_steps: int = 0             # Q1.6: the mean gradient of each of the first N minibatches
    probe_images: int = 0               # Q1.6: the gradient of the first N training images, at checkpoints

    def __post_init__(self) -> None:
        problem = self.problem()
        if problem:
            raise ValueError(problem)
        for name in ("lr", "momentum", "weight_decay"):  # lr=1 and lr=1.0 are one recipe (and one stored run)
            object.__setattr__(self, name, float(getattr(self, name)))

    def problem(self) -> str | None:
        """What is wrong with this recipe, in one line naming the field and the fix; None when nothing is."""
        if not isinstance(self.model, str) or not self.model:
            return f"model={self.model!r}: must be the name of a network, e.g. 'base' or 'cnn'"
        for name, least in (("epochs", 1), ("batch_size", 1), ("seed", 0), ("gradient_steps", 0),
                            ("probe_images", 0)):
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
        for name in ("flip", "shuffle", "hold_out"):
            if not isinstance(getattr(self, name), bool):
                return f"{name}={getattr(self, name)!r}: must be True or False"
        if self.momentum and self.optimizer != "sgd":
            return f"momentum={self.momentum!r} applies to optimizer='sgd' only: drop it or use sgd"
        return None


@dataclass
class History:
    """Everything one run produced: its recipe, per-epoch metrics, per-step losses, the Q1.6 records."""

    recipe: Recipe
    data_sizes: dict[str, int]
    parameters: int
    machine: dict[str, Any]                                         # device.describe(): what computed it
    train_loss: list[float] = field(default_factory=list)           # mean minibatch loss of the epoch (weights moving)
    train_accuracy: list[float] = field(default_factory=list)       # after the epoch, eval mode, fixed train sample
    validation_loss: list[float] = field(default_factory=list)      # (empty without a hold-out)
    validation_accuracy: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)              # training pass of each epoch
    eval_seconds: list[float] = field(default_factory=list)         # the evaluations after each epoch
    step_loss: list[float] = field(default_factory=list)            # every minibatch loss, in order
    gradients: dict[str, Any] | None = None                         # GradientRecord.to_dict()
    confusion: list[list[int]] | None = None                        # final model, test set: [true][predicted]
    stop_reason: str = "epochs"                                     # epochs | diverged
    diverged_step: int | None = None                                # 1-based step whose loss was not finite
    multiply_adds: int = 0                                          # of one forward pass of one image
    flops_per_image: int = 0                                        # of one training step, per image
    started: int = 0                                                # wall-clock start and end, ms since 1970
    finished: int = 0
    peak_memory_mb: float | None = None                             # of this run, in the process that trained it

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
        return count_batches(self.data_sizes["train"], self.recipe.batch_size)

    def first_epochs(self, n: int) -> History:
        """The run as it was after `n` epochs (exact for a constant learning rate: nothing depends on the cap)."""
        if self.recipe.schedule != "constant":
            raise ValueError("first_epochs() is only meaningful for a constant learning rate")
        if n > self.epochs and not self.diverged:
            raise ValueError(f"run has {self.epochs} epochs, fewer than the {n} asked for")
        steps = self.steps_per_epoch * n
        cut = {name: getattr(self, name)[:n] for name in EPOCH_SERIES}
        diverged_here = self.diverged and (self.diverged_step or 0) <= steps
        whole = n >= self.epochs
        recipe = replace(self.recipe, epochs=n, gradient_steps=min(steps, self.recipe.gradient_steps))
        return History(**{**vars(self), **cut, "recipe": recipe, "step_loss": self.step_loss[:steps],
                          "gradients": _cut_record(self.gradients, steps, recipe.gradient_steps),
                          "confusion": self.confusion if whole else None,
                          "stop_reason": "diverged" if diverged_here else "epochs",
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


def make_scheduler(optimizer: torch.optim.Optimizer, recipe: Recipe, total_steps: int):
    """The recipe's schedule: None (a constant rate), or one cycle up to `lr` and down over the run. Only the rate
    cycles: the momentum (SGD) and betas (Adam) stay as the recipe has them."""
    if recipe.schedule == "constant":
        return None
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe.lr, total_steps=total_steps,
                                               cycle_momentum=False)


def train_epoch(model: nn.Module, batches, steps: int, loss_fn: nn.Module, optimizer: torch.optim.Optimizer,
                scheduler=None, record: GradientRecord | None = None) -> torch.Tensor:
    """One pass over the `steps` training minibatches; returns their losses (left on the device)."""
    model.train()
    losses = torch.zeros(steps, device=next(model.parameters()).device)
    for step, (images, labels) in enumerate(batches):
        if record is not None:
            record.checkpoint()  # the probe batch, at its checkpoints (Q1.4, Q1.6)
        loss = loss_fn(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        if record is not None:
            record.after_backward()  # Q1.6: gradient_sums of this minibatch, while among the first steps
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        losses[step] = loss.detach()
    return losses


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


def check_fits(model: nn.Module, data: Splits, recipe: Recipe) -> None:
    """Raise one ValueError when the recipe asks for what these data cannot give."""
    if recipe.probe_images > len(data.train_labels):
        raise ValueError(f"probe_images={recipe.probe_images} is more than the {len(data.train_labels)} training "
                         f"images: lower it")
    if (any(isinstance(m, nn.BatchNorm1d) for m in model.modules())
            and 1 in (recipe.batch_size, len(data.train_labels) % recipe.batch_size)):
        raise ValueError(f"batch_size={recipe.batch_size}: a minibatch of one image (of the {len(data.train_labels)}) "
                         f"has no batch statistics for BatchNorm: choose another size")


def fit(model: nn.Module, data: Splits, recipe: Recipe, device: torch.device,
        on_epoch: Callable[[int], None] = lambda epoch: None) -> History:
    """Train `model` for all the recipe's epochs; after each, measure train (eval mode, a fixed sample),
    validation and test accuracy; return the History. A loss that is not finite stops the run: diverged."""
    with reproducible(device):
        data = data if recipe.hold_out else data.without_hold_out()
        model, data = model.to(device), data.to(device)
        history = History(recipe, data.sizes, count_parameters(model), describe(device), started=_now())
        history.multiply_adds, history.flops_per_image = flops(model)
        per_epoch = count_batches(len(data.train_labels), recipe.batch_size)
        optimizer = make_optimizer(model, recipe)
        scheduler = make_scheduler(optimizer, recipe, recipe.epochs * per_epoch)
        generator = torch.Generator().manual_seed(recipe.seed)  # each epoch's minibatch order (and flips)
        loss_fn = nn.CrossEntropyLoss()
        check_fits(model, data, recipe)
        record = (GradientRecord(model, recipe.gradient_steps, to_float(data.train_images[:recipe.probe_images]),
                                 data.train_labels[:recipe.probe_images],
                                 checkpoints(recipe.epochs, per_epoch) if recipe.probe_images else [])
                  if recipe.gradient_steps or recipe.probe_images else None)  # Q1.4, Q1.6
        evaluated = {"train": (data.train_images[:data.train_eval], data.train_labels[:data.train_eval]),
                     "validation": (data.validation_images, data.validation_labels),
                     "test": (data.test_images, data.test_labels)}

        for epoch in range(1, recipe.epochs + 1):
            start, probing = time.perf_counter(), record.seconds if record else 0.0
            batches = minibatches(data.train_images, data.train_labels, recipe.batch_size, generator, recipe.flip,
                                  recipe.shuffle)
            losses = train_epoch(model, batches, per_epoch, loss_fn, optimizer, scheduler, record).cpu()
            finite = torch.isfinite(losses)
            if not finite.all():
                history.step_loss += losses[:int(finite.long().cumprod(0).sum())].tolist()
                history.diverged_step, history.stop_reason = len(history.step_loss) + 1, "diverged"
                break
            history.step_loss += losses.tolist()
            history.train_loss.append(float(losses.mean()))
            history.seconds.append(time.perf_counter() - start - ((record.seconds if record else 0.0) - probing))
            start = time.perf_counter()
            for split, (images, labels) in evaluated.items():
                if len(labels):
                    loss, accuracy = evaluate(model, images, labels)
                    if split != "train":
                        getattr(history, f"{split}_loss").append(loss)
                    getattr(history, f"{split}_accuracy").append(accuracy)
            history.eval_seconds.append(time.perf_counter() - start)
            on_epoch(epoch)

        if record is not None:
            if not history.diverged:
                record.checkpoint()  # the probe after the last update
            history.gradients = record.to_dict(len(history.step_loss), history.diverged)
        if not history.diverged:
            history.confusion = confusion_matrix(model, data.test_images, data.test_labels).tolist()
        history.finished = _now()
        return history


def _now() -> int:
    """Wall-clock time in milliseconds, an int (so it is stored exactly, unlike the floats' 6 digits)."""
    return round(time.time() * 1000)


def first_reaching(values: list[float], target: float) -> int | None:
    """1-based index (epoch) of the first value >= target, or None."""
    return next((i + 1 for i, v in enumerate(values) if v >= target), None)


def _cut_record(record: dict[str, Any] | None, steps: int, first: int) -> dict[str, Any] | None:
    """A GradientRecord's dict keeping the first `first` steps and the probe checkpoints within the first `steps`."""
    if record is None:
        return None
    cut = {**record, "steps": {k: v[:first] for k, v in record["steps"].items()}}
    if "probe" in record:
        n = sum(s <= steps for s in record["probe"]["step"])
        cut["probe"] = {k: v[:n] if isinstance(v, list) else v for k, v in record["probe"].items()}
    return cut


def round_floats(value: Any) -> Any:
    """Floats to 6 significant digits, non-finite floats to None (JSON has no NaN)."""
    if isinstance(value, float):
        return float(f"{value:.6g}") if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: round_floats(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [round_floats(v) for v in value]
    return value
