"""What a run measures besides training (Q1.4, Q1.6), all read off the loss gradient:

- for each of its first minibatches, right after ``loss.backward()``: per layer, the sum of the gradient entries,
  of their absolute values and of their squares (`gradient_sums`);
- at checkpoints through the whole run, on a fixed *probe batch* (the first training images, the same at every
  checkpoint): its loss, the same sums of its gradient, the share of each ReLU layer's units that output 0 on
  every probe image, and the *sharpness*: the largest eigenvalue of the loss's Hessian, by power iteration with
  Hessian-vector products. Plain gradient descent is stable only while the sharpness stays below 2 / lr.
"""
from __future__ import annotations

import time
from contextlib import nullcontext

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

FIRST_STEPS = 100       # Q1.6: the gradient of each of the first 100 minibatches
POWER_STEPS = 20        # power iterations per sharpness estimate, each started from the last estimate's vector
SUMS = ("sum", "abs", "square")  # the columns of gradient_sums
EARLY_CHECKPOINTS = (0, 10, 30, 100, 300)  # steps; then the end of epochs 1, 2, 3, 5, 7, 10, every 5th, the last


def layers(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """The trainable parameters of each module that holds some (linear, convolution, BatchNorm), by layer: '1', ..."""
    held = [[p for p in m.parameters(recurse=False) if p.requires_grad] for m in model.modules()]
    return {str(i): params for i, params in enumerate((h for h in held if h), start=1)}


def sums(grads: list[list[torch.Tensor]]) -> torch.Tensor:
    """Per layer (a list of gradient tensors): [sum of the entries, sum of their absolute values, sum of squares]."""
    return torch.stack([torch.stack([sum(g.sum() for g in layer), sum(g.abs().sum() for g in layer),
                                     sum(g.square().sum() for g in layer)]) for layer in grads])


def gradient_sums(model: nn.Module) -> torch.Tensor:
    """Per layer, [sum, sum of |g|, sum of g²] of the gradients left in .grad by loss.backward(). The mean of the
    gradients over all trainable parameters is the first column's total over the number of parameters."""
    return sums([[p.grad for p in params] for params in layers(model).values()])


def checkpoints(epochs: int, steps_per_epoch: int) -> list[int]:
    """The steps (updates made so far) at which the probe batch is measured: a few early ones, then the end of
    epochs 1, 2, 3, 5, 7, 10, of every 5th epoch and of the last."""
    ends = {e for e in range(1, epochs + 1) if e in (1, 2, 3, 5, 7) or e % 5 == 0 or e == epochs}
    return sorted({s for s in EARLY_CHECKPOINTS if s < epochs * steps_per_epoch} | {e * steps_per_epoch for e in ends})


def sharpness(grads: tuple[torch.Tensor, ...], params: list[nn.Parameter],
              start: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The largest Hessian eigenvalue of the loss whose gradient `grads` was made with create_graph=True, by
    POWER_STEPS power iterations from the vector `start`: (v·Hv for the last unit vector v, that v)."""
    norm = torch.sqrt(sum(v.square().sum() for v in start))
    vector = [v / norm for v in start]
    value = torch.zeros(())
    for _ in range(POWER_STEPS):
        product = torch.autograd.grad(grads, params, grad_outputs=vector, retain_graph=True)
        value = sum((v * h).sum() for v, h in zip(vector, product))
        norm = torch.sqrt(sum(h.square().sum() for h in product))
        vector = [h / norm for h in product]
    return value.detach(), vector


def probe(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
          start: list[torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
    """The probe batch (float `images`) at a checkpoint, in eval mode, leaving .grad alone: {'loss', 'sharpness',
    'sums' (gradient_sums' layout), 'dead' (per ReLU layer, the share of units that output 0 on every image)},
    and the sharpness vector to start from next time."""
    was_training = model.training
    model.eval()
    fired: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda m, i, out: fired.append((out.flatten(1) > 0).any(0).float()))
             for m in model.modules() if isinstance(m, nn.ReLU)]
    try:
        loss = nn.functional.cross_entropy(model(images), labels)
    finally:
        for hook in hooks:
            hook.remove()
    grouped = layers(model)
    params = [p for layer in grouped.values() for p in layer]
    grads = torch.autograd.grad(loss, params, create_graph=True)
    per_layer, at = [], 0
    for layer in grouped.values():
        per_layer.append([g.detach() for g in grads[at:at + len(layer)]])
        at += len(layer)
    value, vector = sharpness(grads, params, start)
    model.train(was_training)
    dead = torch.stack([1 - f.mean() for f in fired]) if fired else torch.zeros(0)
    return {"loss": loss.detach(), "sharpness": value, "sums": sums(per_layer), "dead": dead}, vector


class GradientRecord:
    """What a run records (Q1.4, Q1.6): gradient_sums of each of its first `first_steps` minibatches, and the probe
    batch at the `at` checkpoints. Call `checkpoint()` before every update and once after the last, and
    `after_backward()` after every loss.backward(). Kept on the device until `to_dict`. The probe's time and FLOPs
    are counted apart from training's."""

    def __init__(self, model: nn.Module, first_steps: int, images: torch.Tensor, labels: torch.Tensor, at: list[int]):
        self.model, self.images, self.labels, self.at = model, images, labels, set(at)
        self.updates, self.seconds, self.flops_per_probe = 0, 0.0, 0
        device = next(model.parameters()).device
        self.steps = torch.zeros(first_steps, len(layers(model)), len(SUMS), device=device)
        generator = torch.Generator().manual_seed(0)  # the power iteration's first vector, the same in every run
        self.vector = [torch.randn(p.shape, generator=generator).to(device) for p in model.parameters() if p.requires_grad]
        self.probes: list[tuple[int, dict[str, torch.Tensor]]] = []

    def checkpoint(self) -> None:
        """Before an update (and after the last): measure the probe batch if this is one of the checkpoints."""
        if self.updates in self.at and len(self.images):
            start = time.perf_counter()
            counter = FlopCounterMode(display=False) if not self.probes else nullcontext()
            with counter:  # counted once: every probe computes the same
                row, self.vector = probe(self.model, self.images, self.labels, self.vector)
            if not self.probes:
                self.flops_per_probe = counter.get_total_flops()
            self.probes.append((self.updates, row))
            self.seconds += time.perf_counter() - start

    def after_backward(self) -> None:
        """After loss.backward(): keep gradient_sums while among the first steps; count the update."""
        if self.updates < len(self.steps):
            self.steps[self.updates] = gradient_sums(self.model)
        self.updates += 1

    def to_dict(self, finite_steps: int, diverged: bool) -> dict[str, object]:
        """For JSON: the first steps (of the `finite_steps` whose loss was finite), the probes of finite weights, the
        layers' sizes, and the probes' seconds and FLOPs."""
        sizes = [sum(p.numel() for p in params) for params in layers(self.model).values()]
        kept = self.steps[:min(finite_steps, len(self.steps))].cpu()
        record: dict[str, object] = {"layer_sizes": sizes,
                                     "steps": {name: kept[:, :, i].tolist() for i, name in enumerate(SUMS)}}
        probes = [(s, row) for s, row in self.probes if s < finite_steps or (s == finite_steps and not diverged)]
        if probes:
            stacked = {key: torch.stack([row[key] for _, row in probes]).cpu() for key in probes[0][1]}
            record["probe"] = {"step": [s for s, _ in probes], "images": len(self.images),
                               "loss": stacked["loss"].tolist(), "sharpness": stacked["sharpness"].tolist(),
                               **{name: stacked["sums"][:, :, i].tolist() for i, name in enumerate(SUMS)},
                               "dead": stacked["dead"].tolist(), "seconds": self.seconds,
                               "flops": self.flops_per_probe * len(self.probes)}
        return record
