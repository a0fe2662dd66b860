"""Training: ``fit()`` trains a model on in-memory tensors and returns a ``History`` of what happened."""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from .data import CLASS_NAMES, FashionMNIST, minibatches
from .gradients import GradientMeanTracker
from .models import count_parameters

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "onecycle")
EVAL_BATCH_SIZE = 1000
CHANCE_ACCURACY = 0.15   # 10 balanced classes: guessing gives 0.10
CHANCE_PATIENCE = 5      # epochs at chance after which a run chasing a target is stopped


@dataclass
class History:
    """Everything one run produced: per-epoch metrics, per-step loss, gradient means and flags."""

    settings: dict[str, Any]
    parameters: int
    train_loss: list[float] = field(default_factory=list)      # mean over the epoch's minibatches
    train_accuracy: list[float] = field(default_factory=list)  # running accuracy over the epoch's minibatches
    test_loss: list[float] = field(default_factory=list)       # after each epoch, whole test set
    test_accuracy: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)         # training pass of each epoch
    eval_seconds: list[float] = field(default_factory=list)    # test-set evaluation after each epoch
    step_loss: list[float] = field(default_factory=list)       # every finite minibatch loss, in order
    gradient_mean: list[float] = field(default_factory=list)   # Q1.6, first tracked steps
    gradient_abs_mean: list[float] = field(default_factory=list)
    layer_gradient_mean: dict[str, list[float]] = field(default_factory=dict)
    diverged: bool = False
    diverged_step: int | None = None                           # 1-based step whose loss was not finite
    stop_reason: str = "epochs"                                # epochs | target | chance | diverged
    confusion: list[list[int]] | None = None                   # final model on the test set: [true][predicted]

    @property
    def epochs(self) -> int:
        """Number of completed epochs."""
        return len(self.test_accuracy)

    @property
    def epoch_train_target(self) -> int | None:
        """First epoch (1-based) whose train accuracy reached settings['target_accuracy'], or None."""
        return first_reaching(self.train_accuracy, self.settings.get("target_accuracy"))

    @property
    def epoch_test_target(self) -> int | None:
        """First epoch (1-based) whose test accuracy reached settings['target_accuracy'], or None."""
        return first_reaching(self.test_accuracy, self.settings.get("target_accuracy"))

    @property
    def final_test_accuracy(self) -> float | None:
        """Test accuracy after the last epoch, or None if the run diverged or completed no epoch."""
        return None if self.diverged or not self.test_accuracy else self.test_accuracy[-1]

    def at_chance_since(self) -> int | None:
        """First epoch (1-based) of the final streak of test accuracies at chance level, or None."""
        since = None
        for epoch, accuracy in enumerate(self.test_accuracy, start=1):
            since = (since or epoch) if accuracy <= CHANCE_ACCURACY else None
        return since

    def first_epochs(self, n: int) -> History:
        """The same run seen after `n` epochs (plain SGD has no schedule, so this equals an n-epoch run)."""
        if self.settings.get("schedule", "constant") != "constant":
            raise ValueError("first_epochs() is only meaningful for a constant learning rate")
        if n > self.epochs and not self.diverged:
            raise ValueError(f"run has {self.epochs} epochs, fewer than the {n} asked for")
        steps = math.ceil(self.settings["train_samples"] / self.settings["batch_size"]) * n
        return History(
            settings={**self.settings, "epochs": n, "cut_from_epochs": self.epochs}, parameters=self.parameters,
            train_loss=self.train_loss[:n], train_accuracy=self.train_accuracy[:n],
            test_loss=self.test_loss[:n], test_accuracy=self.test_accuracy[:n],
            seconds=self.seconds[:n], eval_seconds=self.eval_seconds[:n], step_loss=self.step_loss[:steps],
            gradient_mean=self.gradient_mean, gradient_abs_mean=self.gradient_abs_mean,
            layer_gradient_mean=self.layer_gradient_mean,
            diverged=self.diverged and (self.diverged_step or 0) <= steps,
            diverged_step=self.diverged_step if (self.diverged_step or 0) <= steps else None,
            stop_reason="diverged" if self.diverged and (self.diverged_step or 0) <= steps else "epochs",
            confusion=self.confusion if n == self.epochs else None)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (floats kept to 6 significant digits)."""
        return _round_floats(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> History:
        """Rebuild a History written by to_dict() (target epochs, once stored, are derived now)."""
        derived = {"epoch_train_target", "epoch_test_target"}
        return cls(**{k: v for k, v in data.items() if k not in derived})


def pick_device() -> torch.device:
    """CUDA if available, then Apple's MPS, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def check_settings(*, epochs: int, lr: float, batch_size: int, optimizer: str, schedule: str,
                   target_accuracy: float | None) -> None:
    """Raise ValueError naming the first bad training setting."""
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs={epochs!r}: must be a whole number >= 1")
    if not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr={lr!r}: the learning rate must be a finite number > 0")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}: must be a whole number >= 1")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer={optimizer!r} is unknown; choose one of {OPTIMIZERS}")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule={schedule!r} is unknown; choose one of {SCHEDULES}")
    if target_accuracy is not None and not 0 < target_accuracy <= 1:
        raise ValueError(f"target_accuracy={target_accuracy!r}: must be in (0, 1]")


def make_optimizer(model: nn.Module, name: str, lr: float, momentum: float,
                   weight_decay: float) -> torch.optim.Optimizer:
    """Return the optimizer called `name` over the model's trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def fit(model: nn.Module, data: FashionMNIST, *, epochs: int, lr: float, batch_size: int = 64,
        optimizer: str = "sgd", momentum: float = 0.0, weight_decay: float = 0.0,
        schedule: str = "constant", flip: bool = False, seed: int = 0,
        target_accuracy: float | None = None, stop_at_target: bool = False, min_epochs: int = 1,
        track_gradient_steps: int = 0, progress: bool = True, device: torch.device | None = None,
        description: str = "") -> History:
    """Train with cross-entropy on minibatches, test after every epoch, and return the History.

    `flip` mirrors a random half of each training minibatch left-right (data augmentation).
    A non-finite loss stops the run and marks it diverged. With `stop_at_target`, training stops once
    both train and test accuracy have reached `target_accuracy`, or once test accuracy has stayed at
    chance level for CHANCE_PATIENCE epochs (a collapsed network), but not before `min_epochs`.
    """
    check_settings(epochs=epochs, lr=lr, batch_size=batch_size, optimizer=optimizer, schedule=schedule,
                   target_accuracy=target_accuracy)
    device = device or pick_device()
    model.to(device)
    train_x, train_y = data.train_images.to(device), data.train_labels.to(device)
    test_x, test_y = data.test_images.to(device), data.test_labels.to(device)
    steps_per_epoch = math.ceil(len(train_y) / batch_size)
    settings = dict(epochs=epochs, lr=lr, batch_size=batch_size, optimizer=optimizer, momentum=momentum,
                    weight_decay=weight_decay, schedule=schedule, flip=flip, seed=seed, target_accuracy=target_accuracy, stop_at_target=stop_at_target,
                    min_epochs=min_epochs, train_samples=len(train_y), test_samples=len(test_y),
                    device=str(device))
    history = History(settings=settings, parameters=count_parameters(model))
    loss_fn = nn.CrossEntropyLoss()
    opt = make_optimizer(model, optimizer, lr, momentum, weight_decay)
    scheduler = (torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
                 if schedule == "onecycle" else None)
    tracker = GradientMeanTracker(track_gradient_steps)
    generator = torch.Generator().manual_seed(seed)
    bar = tqdm(total=epochs * steps_per_epoch, desc=description, leave=False, disable=not progress,
               mininterval=0.5)

    for epoch in range(1, epochs + 1):
        model.train()
        start, loss_sum, correct = time.perf_counter(), 0.0, 0
        for images, labels in minibatches(train_x, train_y, batch_size, generator):
            if flip:
                mirrored = (torch.rand(len(labels), generator=generator) < 0.5).to(device)
                images = torch.where(mirrored.view(-1, 1, 1, 1), images.flip(-1), images)
            logits = model(images)
            loss = loss_fn(logits, labels)
            opt.zero_grad()
            loss.backward()
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                history.diverged, history.diverged_step = True, len(history.step_loss) + 1
                history.stop_reason = "diverged"
                break
            tracker.record(model)
            opt.step()
            if scheduler:
                scheduler.step()
            history.step_loss.append(loss_value)
            loss_sum += loss_value * len(labels)
            correct += int((logits.argmax(1) == labels).sum())
            bar.update()
        if history.diverged:
            break
        history.seconds.append(time.perf_counter() - start)
        history.train_loss.append(loss_sum / len(train_y))
        history.train_accuracy.append(correct / len(train_y))
        start = time.perf_counter()
        test_loss, test_accuracy = evaluate(model, test_x, test_y)
        history.eval_seconds.append(time.perf_counter() - start)
        history.test_loss.append(test_loss)
        history.test_accuracy.append(test_accuracy)
        bar.set_postfix(epoch=epoch, test_acc=f"{test_accuracy:.3f}")
        if stop_at_target and epoch >= min_epochs:
            if history.epoch_train_target and history.epoch_test_target:
                history.stop_reason = "target"
                break
            if history.at_chance_since() and epoch - history.at_chance_since() + 1 >= CHANCE_PATIENCE:
                history.stop_reason = "chance"
                break
    bar.close()

    history.gradient_mean, history.gradient_abs_mean = tracker.mean, tracker.abs_mean
    history.layer_gradient_mean = tracker.layer_mean
    if not history.diverged:
        history.confusion = confusion_matrix(model, test_x, test_y).tolist()
    return history


@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """Return (mean cross-entropy loss, accuracy) of the model on the given set."""
    model.eval()
    loss_sum, correct = 0.0, 0
    for start in range(0, len(labels), EVAL_BATCH_SIZE):
        x, y = images[start:start + EVAL_BATCH_SIZE], labels[start:start + EVAL_BATCH_SIZE]
        logits = model(x)
        loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
    return loss_sum / len(labels), correct / len(labels)


@torch.no_grad()
def confusion_matrix(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Return the 10x10 count matrix [true class][predicted class] on the given set."""
    model.eval()
    predicted = torch.cat([model(images[i:i + EVAL_BATCH_SIZE]).argmax(1)
                           for i in range(0, len(labels), EVAL_BATCH_SIZE)])
    n = len(CLASS_NAMES)
    return torch.bincount(labels.cpu() * n + predicted.cpu(), minlength=n * n).reshape(n, n)


def first_reaching(values: list[float], target: float | None) -> int | None:
    """1-based index (epoch) of the first value >= target, or None."""
    if target is None:
        return None
    return next((i + 1 for i, v in enumerate(values) if v >= target), None)


def _round_floats(value: Any) -> Any:
    """Floats to 6 significant digits, non-finite floats to None (JSON has no NaN)."""
    if isinstance(value, float):
        return float(f"{value:.6g}") if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _round_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_round_floats(v) for v in value]
    return value
