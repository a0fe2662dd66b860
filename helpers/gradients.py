"""Q1.6: the mean of the loss gradients over all trainable parameters, read right after ``loss.backward()``, for
each of a run's first minibatches; and the gradient of one fixed *probe batch* (the same training images at every
checkpoint) through the whole run, which separates the gradient's trend from the noise of single minibatches.
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

FIRST_STEPS = 100       # Q1.6: the mean gradient of each of the first 100 minibatches
WINDOW = 10             # ... compared between steps 1-10 and 91-100
PROBE_CHUNK = 64        # the probe batch is evaluated as minibatches of the demo's size
EARLY_CHECKPOINTS = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500)  # steps; then epochs 1-10, every 5th and the last
PROBE_SERIES = ("loss", "signed_mean", "abs_mean", "minibatch_abs_mean", "minibatch_abs_std", "minibatch_signed_std")


def gradient_means(model: nn.Module) -> torch.Tensor:
    """[mean of all gradient entries, mean of their absolute values] over every trainable parameter.
    Call it after loss.backward(), before optimizer.step()."""
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    if not grads:
        raise RuntimeError("no gradients to average: call gradient_means() after loss.backward()")
    count = sum(g.numel() for g in grads)
    return torch.stack([sum(g.sum() for g in grads), sum(g.abs().sum() for g in grads)]) / count


def checkpoints(epochs: int, steps_per_epoch: int) -> list[int]:
    """The steps (updates made so far) at which the probe batch is measured: a few early ones, then the end of
    epochs 1 to 10, of every 5th epoch and of the last."""
    ends = {e for e in range(1, epochs + 1) if e <= 10 or e % 5 == 0 or e == epochs}
    return sorted({s for s in EARLY_CHECKPOINTS if s < epochs * steps_per_epoch} | {e * steps_per_epoch for e in ends})


def layers(model: nn.Module) -> dict[str, nn.Module]:
    """The modules that hold trainable parameters of their own (linear, convolution and BatchNorm layers), 1, 2, ..."""
    held = [m for m in model.modules() if any(p.requires_grad for p in m.parameters(recurse=False))]
    return {str(i): m for i, m in enumerate(held, start=1)}


def probe(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, loss_fn: nn.Module) -> torch.Tensor:
    """The gradient of the mean loss over the probe batch (float `images`, a whole number of PROBE_CHUNKs), in eval
    mode and without touching the model's .grad: [loss, signed mean, mean |g|, then over its minibatches of
    PROBE_CHUNK: the mean and the std of their mean |g|, the std of their signed mean, then per layer mean |g|]."""
    params = [p for p in model.parameters() if p.requires_grad]
    owner = {id(p): name for name, m in layers(model).items() for p in m.parameters(recurse=False)}
    was_training = model.training
    model.eval()
    total = [torch.zeros_like(p) for p in params]
    losses, signed, sizes = [], [], []
    for x, y in zip(images.split(PROBE_CHUNK), labels.split(PROBE_CHUNK)):
        loss = loss_fn(model(x), y)
        grads = torch.autograd.grad(loss, params)
        for t, g in zip(total, grads):
            t += g
        count = sum(g.numel() for g in grads)
        losses.append(loss.detach())
        signed.append(sum(g.sum() for g in grads) / count)
        sizes.append(sum(g.abs().sum() for g in grads) / count)
    model.train(was_training)
    total = [t / len(losses) for t in total]  # the mean of equal-sized minibatch gradients: the batch's gradient
    count = sum(t.numel() for t in total)
    per_layer = {}
    for p, t in zip(params, total):
        name = owner[id(p)]
        abs_sum, numel = per_layer.get(name, (0, 0))
        per_layer[name] = (abs_sum + t.abs().sum(), numel + t.numel())
    signed, sizes = torch.stack(signed), torch.stack(sizes)
    return torch.stack([torch.stack(losses).mean(), sum(t.sum() for t in total) / count,
                        sum(t.abs().sum() for t in total) / count, sizes.mean(), sizes.std(), signed.std(),
                        *(s / n for s, n in per_layer.values())])


class GradientRecord:
    """What Q1.6 records during a run: the mean gradient of each of the first `first_steps` minibatches, and the
    probe batch's gradient at the `at` checkpoints (call `step()` before every update and once after the last).
    Everything stays on the device until `to_dict`."""

    def __init__(self, model: nn.Module, first_steps: int, images: torch.Tensor, labels: torch.Tensor,
                 at: list[int], loss_fn: nn.Module):
        self.model, self.images, self.labels, self.loss_fn = model, images, labels, loss_fn
        self.at, self.done = set(at), 0
        device = next(model.parameters()).device
        self.means = torch.zeros(first_steps, 2, device=device)
        self.probes: list[tuple[int, torch.Tensor]] = []

    def step(self) -> None:
        """Before an update (and after the last): measure the probe batch at a checkpoint; count the update."""
        if self.done in self.at and len(self.images):
            self.probes.append((self.done, probe(self.model, self.images, self.labels, self.loss_fn)))
        self.done += 1

    def mean(self, means: torch.Tensor) -> None:
        """Keep gradient_means() of the current minibatch, while among the first steps."""
        if self.done - 1 < len(self.means):
            self.means[self.done - 1] = means

    def to_dict(self, finite_steps: int, diverged: bool) -> dict[str, object]:
        """The first steps (of the `finite_steps` whose loss was finite) and the probes of finite weights, for JSON."""
        kept = self.means[:min(finite_steps, len(self.means))].cpu().T.tolist() or [[], []]
        record: dict[str, object] = {"steps": dict(zip(("signed_mean", "abs_mean"), kept))}
        probes = [(s, row) for s, row in self.probes if s < finite_steps or (s == finite_steps and not diverged)]
        if probes:
            rows = torch.stack([row for _, row in probes]).cpu().T.tolist()
            names = list(layers(self.model))
            record["probe"] = {"step": [s for s, _ in probes], "images": len(self.images),
                               **dict(zip(PROBE_SERIES, rows)), "layers": dict(zip(names, rows[len(PROBE_SERIES):])),
                               "layer_sizes": {n: sum(p.numel() for p in m.parameters(recurse=False))
                                               for n, m in layers(self.model).items()}}
        return record


@torch.no_grad()
def dead_units(model: nn.Module, batches: Iterable[torch.Tensor]) -> dict[str, list[int]]:
    """Per ReLU layer: [units that output 0 for every image of `batches`, units in the layer]."""
    fired: dict[str, torch.Tensor] = {}

    def keep(name: str):
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            active = (output.flatten(1) > 0).any(0)
            fired[name] = active if name not in fired else fired[name] | active
        return hook

    hooks = [m.register_forward_hook(keep(n)) for n, m in model.named_modules() if isinstance(m, nn.ReLU)]
    model.eval()
    try:
        for images in batches:
            model(images)
    finally:
        for hook in hooks:
            hook.remove()
    return {name: [int((~active).sum()), active.numel()] for name, active in fired.items()}
