"""Training: a ``Recipe`` says how a network is trained; ``fit()`` trains it and returns a ``History``."""
from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Iterator

import torch
from torch import nn

from . import models
from .data import CLASS_NAMES, Splits, minibatches
from .gradients import GradientTrace, dead_units, map_series

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "onecycle")
EVAL_BATCH_SIZE = 1000
TREND_EPOCHS = 10      # a target is "out of reach" when the trend of the last 10 epochs, continued to the cap,
REACH_MARGIN = 0.02    # stays more than 2 points below it: the run is stuck far from the target
GRADIENT_BLOCK = 50    # Q1.6 over whole runs: means over blocks of 50 steps


@dataclass(frozen=True)
class Recipe:
    """How one network is trained, as plain data; validated on construction.

    With `target_accuracy`, training stops once train and test accuracy have both reached it, or once
    the target is out of reach (see `out_of_reach`), but never before `min_epochs`; `epochs` is the cap.
    """

    model: str                          # a models.build() name
    lr: float
    epochs: int
    optimizer: str = "sgd"
    batch_size: int = 64
    momentum: float = 0.0
    weight_decay: float = 0.0
    schedule: str = "constant"          # "onecycle": warm up to lr, then anneal to ~0 over the run
    flip: bool = False                  # mirror a random half of each training minibatch
    seed: int = 0                       # initial weights, shuffling and flips
    target_accuracy: float | None = None
    min_epochs: int = 1
    gradient_steps: int = 0             # Q1.6: record this many steps one by one, and block means throughout

    def __post_init__(self) -> None:
        models.check_name(self.model)
        if not isinstance(self.lr, (int, float)) or not math.isfinite(self.lr) or self.lr <= 0:
            raise ValueError(f"lr={self.lr!r}: the learning rate must be a finite number > 0")
        for name, least in (("epochs", 1), ("batch_size", 1), ("min_epochs", 1), ("gradient_steps", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ValueError(f"{name}={value!r}: must be a whole number >= {least}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer={self.optimizer!r} is unknown; choose one of {OPTIMIZERS}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule={self.schedule!r} is unknown; choose one of {SCHEDULES}")
        if self.target_accuracy is not None and not 0 < self.target_accuracy <= 1:
            raise ValueError(f"target_accuracy={self.target_accuracy!r}: must be in (0, 1]")
        if self.momentum < 0 or self.weight_decay < 0:
            raise ValueError(f"momentum={self.momentum!r}, weight_decay={self.weight_decay!r}: must be >= 0")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Recipe:
        """The Recipe stored in a results file (validated again)."""
        return cls(**values)


@dataclass
class History:
    """Everything one run produced: its recipe, per-epoch metrics, per-step losses, the Q1.6 trace."""

    recipe: Recipe
    data_sizes: dict[str, int]
    parameters: int
    device: str
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
    stop_reason: str = "epochs"                                     # epochs | target | out_of_reach | diverged
    diverged_step: int | None = None                                # 1-based step whose loss was not finite
    started: int = 0                                                # wall-clock start and end, ms since 1970
    finished: int = 0

    @property
    def epochs(self) -> int:
        """Number of completed epochs."""
        return len(self.test_accuracy)

    @property
    def diverged(self) -> bool:
        """True if a minibatch loss became NaN or infinite."""
        return self.stop_reason == "diverged"

    @property
    def final_test_accuracy(self) -> float | None:
        """Test accuracy after the last epoch, or None if the run diverged or completed no epoch."""
        return None if self.diverged or not self.test_accuracy else self.test_accuracy[-1]

    @property
    def steps_per_epoch(self) -> int:
        """Minibatches per epoch."""
        return math.ceil(self.data_sizes["train"] / self.recipe.batch_size)

    @property
    def seconds_total(self) -> float:
        """This run's own training and evaluation time."""
        return sum(self.seconds) + sum(self.eval_seconds)

    def first_epochs(self, n: int) -> History:
        """The run as it was after `n` epochs (exact for a constant learning rate: nothing depends on the cap)."""
        if self.recipe.schedule != "constant":
            raise ValueError("first_epochs() is only meaningful for a constant learning rate")
        if n > self.epochs and not self.diverged:
            raise ValueError(f"run has {self.epochs} epochs, fewer than the {n} asked for")
        steps = self.steps_per_epoch * n
        cut = {name: getattr(self, name)[:n] for name in EPOCH_SERIES}
        diverged_here = self.diverged and (self.diverged_step or 0) <= steps
        return History(**{**vars(self), **cut, "recipe": replace(self.recipe, epochs=n, target_accuracy=None),
                          "step_loss": self.step_loss[:steps], "gradients": _cut_trace(self.gradients, steps),
                          "confusion": self.confusion if n == self.epochs else None,
                          "dead_units": self.dead_units if n == self.epochs else None,
                          "stop_reason": "diverged" if diverged_here else "epochs",
                          "diverged_step": self.diverged_step if diverged_here else None})

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (floats kept to 6 significant digits, non-finite ones as None)."""
        return round_floats({**vars(self), "recipe": asdict(self.recipe)})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> History:
        """Rebuild a History written by to_dict()."""
        return cls(**{**data, "recipe": Recipe.from_dict(data["recipe"])})


EPOCH_SERIES = ("train_loss", "train_accuracy", "validation_loss", "validation_accuracy", "test_loss",
                "test_accuracy", "seconds", "eval_seconds")


def pick_device() -> torch.device:
    """CUDA if available, then Apple's MPS, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@contextmanager
def one_thread(device: torch.device) -> Iterator[None]:
    """On the CPU, compute with one thread: the thread count changes the order of floating-point sums,
    so a fixed count makes a run's numbers the same on a 2-core and a 16-core machine."""
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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
        logits = model(images)
        loss = loss_fn(logits, labels)
        optimizer.zero_grad()
        loss.backward()
        if trace:
            trace.record(logits, labels)  # Q1.6: the gradients, read after loss.backward()
        optimizer.step()
        if scheduler:
            scheduler.step()
        losses.append(loss.detach())
    return torch.stack(losses)


@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """Return (mean cross-entropy loss, accuracy) of the model on the given set, in eval mode."""
    model.eval()
    loss_sum, correct = torch.zeros((), device=images.device), torch.zeros((), device=images.device)
    for start in range(0, len(labels), EVAL_BATCH_SIZE):
        x, y = images[start:start + EVAL_BATCH_SIZE], labels[start:start + EVAL_BATCH_SIZE]
        logits = model(x)
        loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
    return float(loss_sum) / len(labels), float(correct) / len(labels)


@torch.no_grad()
def confusion_matrix(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Return the 10x10 count matrix [true class][predicted class] on the given set."""
    model.eval()
    predicted = torch.cat([model(images[i:i + EVAL_BATCH_SIZE]).argmax(1)
                           for i in range(0, len(labels), EVAL_BATCH_SIZE)])
    n = len(CLASS_NAMES)
    return torch.bincount(labels.cpu() * n + predicted.cpu(), minlength=n * n).reshape(n, n)


def trend(values: list[float], epochs: int = TREND_EPOCHS) -> float:
    """Least-squares slope (per epoch) of the last `epochs` values."""
    tail = values[-epochs:]
    if len(tail) < 2:
        return 0.0
    mean_x, mean_y = (len(tail) - 1) / 2, sum(tail) / len(tail)
    return (sum((x - mean_x) * (y - mean_y) for x, y in enumerate(tail))
            / sum((x - mean_x) ** 2 for x in range(len(tail))))


def out_of_reach(accuracies: list[float], target: float, epochs_left: int) -> bool:
    """True when the best accuracy so far plus the trend of the last TREND_EPOCHS epochs, continued to the
    cap, stays more than REACH_MARGIN below `target`.

    A straight line is optimistic for a flattening learning curve, and the margin absorbs the epoch-to-epoch
    noise, so this stops only a run stuck far from its target (a collapsed run, slope ~0, stops at once);
    a run close to the target or still climbing goes on to the cap.
    """
    return max(accuracies) + max(trend(accuracies), 0.0) * epochs_left < target - REACH_MARGIN


def stop_reason(history: History, recipe: Recipe) -> str | None:
    """Why a run chasing its target stops after this epoch ('target', 'out_of_reach'), or None to go on."""
    target = recipe.target_accuracy
    if target is None or history.epochs < recipe.min_epochs:
        return None
    left = recipe.epochs - history.epochs
    # The trend of test accuracy is read on the validation images: the test set only reports.
    pending = []
    if max(history.train_accuracy) < target:
        pending.append(history.train_accuracy)
    if max(history.test_accuracy) < target:
        pending.append(history.validation_accuracy)
    if not pending:
        return "target"
    if all(out_of_reach(curve, target, left) for curve in pending):
        return "out_of_reach"
    return None


def fit(model: nn.Module, data: Splits, recipe: Recipe, *, device: torch.device | None = None,
        on_epoch: Callable[[int], None] | None = None) -> History:
    """Train `model` as the recipe says; after every epoch measure train (eval mode), validation and test
    accuracy; return the History. A non-finite loss stops the run and marks it diverged."""
    device = device or pick_device()
    with one_thread(device):
        return _fit(model.to(device), data, recipe, device, on_epoch or (lambda epoch: None))


def _fit(model: nn.Module, data: Splits, recipe: Recipe, device: torch.device,
         on_epoch: Callable[[int], None]) -> History:
    moved = [t.to(device) for t in (data.train_images, data.train_labels, data.validation_images,
                                    data.validation_labels, data.test_images, data.test_labels)]
    train_x, train_y, validation_x, validation_y, test_x, test_y = moved
    if isinstance(model, models.SmallCNN):
        train_x, validation_x, test_x = (x.contiguous(memory_format=torch.channels_last)
                                         for x in (train_x, validation_x, test_x))
    history = History(recipe, data.sizes, models.count_parameters(model), str(device), started=_now())
    optimizer = make_optimizer(model, recipe)
    scheduler = (torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe.lr,
                                                     total_steps=recipe.epochs * history.steps_per_epoch)
                 if recipe.schedule == "onecycle" else None)
    trace = GradientTrace(model, recipe.gradient_steps, GRADIENT_BLOCK) if recipe.gradient_steps else None
    generator = torch.Generator().manual_seed(recipe.seed)
    loss_fn = nn.CrossEntropyLoss()

    for epoch in range(1, recipe.epochs + 1):
        start = time.perf_counter()
        batches = minibatches(train_x, train_y, recipe.batch_size, generator, flip=recipe.flip)
        losses = train_epoch(model, batches, loss_fn, optimizer, scheduler, trace).cpu()
        if trace:
            trace.flush()
        finite = torch.isfinite(losses)
        if not finite.all():
            good = int(finite.long().cumprod(0).sum())
            history.step_loss += losses[:good].tolist()
            history.diverged_step, history.stop_reason = len(history.step_loss) + 1, "diverged"
            break
        history.step_loss += losses.tolist()
        history.train_loss.append(float(losses.mean()))
        history.seconds.append(time.perf_counter() - start)
        start = time.perf_counter()
        for split, x, y in (("train", train_x[:data.train_eval], train_y[:data.train_eval]),
                            ("validation", validation_x, validation_y), ("test", test_x, test_y)):
            loss, accuracy = evaluate(model, x, y)
            if split != "train":
                getattr(history, f"{split}_loss").append(loss)
            getattr(history, f"{split}_accuracy").append(accuracy)
        history.eval_seconds.append(time.perf_counter() - start)
        on_epoch(epoch)
        reason = stop_reason(history, recipe)
        if reason:
            history.stop_reason = reason
            break

    if trace:
        trace.close(keep_steps=len(history.step_loss))
        history.gradients = trace.to_dict()
    if not history.diverged:
        history.confusion = confusion_matrix(model, test_x, test_y).tolist()
        history.dead_units = dead_units(model, test_x)
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
