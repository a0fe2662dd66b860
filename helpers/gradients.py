"""Q1.6: the mean of the loss gradients over all trainable parameters, read right after ``loss.backward()``,
and, per linear layer, the two factors its weight gradient is made of.

For one image, the gradient of a linear layer's weights is the outer product of the error reaching the
layer's output (delta = dLoss/d output) and the layer's input a, whose norm is ||delta|| * ||a||; a minibatch's
gradient is the mean of 64 such products, which partly cancel. The probe records, per layer and step, the
batch means of ||delta|| and ||a|| beside the layer's mean |gradient|. Everything stays on the device, in
float32, until the end of an epoch (``flush``).
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

LAYER_SERIES = ("abs_mean", "error", "input")


def gradient_means(model: nn.Module) -> torch.Tensor:
    """[mean of all gradient entries, mean of their absolute values] over every trainable parameter.
    Call it after loss.backward(), before optimizer.step()."""
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    if not grads:
        raise RuntimeError("no gradients to average: call gradient_means() after loss.backward()")
    count = sum(g.numel() for g in grads)
    return torch.stack([sum(g.sum() for g in grads), sum(g.abs().sum() for g in grads)]) / count


class GradientTrace:
    """Collects what `append` is given after every loss.backward() (the two means), plus the layer probe:
    each step one by one for the first `steps` steps, and block means of `block` steps over the whole run."""

    def __init__(self, model: nn.Module, steps: int, block: int):
        self.steps, self.block = steps, block
        self.layers = {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear)}
        self._norms: dict[str, list[torch.Tensor]] = {}
        self._hooks = [m.register_forward_hook(self._probe(name)) for name, m in self.layers.items()]
        self._pending: list[torch.Tensor] = []   # this epoch's per-step rows, still on the device
        self._rows: list[torch.Tensor] = []      # earlier epochs', on the CPU

    def _probe(self, name: str):
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            if not output.requires_grad:  # evaluation: nothing to probe
                return
            norms = self._norms[name] = [inputs[0].detach().flatten(1).norm(dim=1)]
            # the loss is a batch mean: scale dLoss/d output back to one image's error
            output.register_hook(lambda grad: norms.append(grad.flatten(1).norm(dim=1) * len(grad)))
        return hook

    def append(self, means: torch.Tensor) -> None:
        """Record one step: `means` from gradient_means(), and each layer's probe (call before optimizer.step())."""
        row = [means]
        for name, layer in self.layers.items():
            grads = [p.grad for p in layer.parameters()]
            size = sum(g.numel() for g in grads)
            activation, error = self._norms[name]
            row.append(torch.stack([sum(g.abs().sum() for g in grads) / size, error.mean(), activation.mean()]))
        self._pending.append(torch.cat(row))

    def flush(self) -> None:
        """Bring this epoch's rows back from the device (once per epoch)."""
        if self._pending:
            self._rows.append(torch.stack(self._pending).float().cpu())
            self._pending = []

    def close(self, keep_steps: int | None = None) -> None:
        """Remove the hooks; keep only the first `keep_steps` steps (a diverged run's finite ones)."""
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        self.flush()
        if keep_steps is not None and self._rows:
            self._rows = [torch.cat(self._rows)[:keep_steps]]

    def series(self) -> dict[str, object]:
        """Every recorded step: signed_mean, abs_mean, and per layer the LAYER_SERIES."""
        width = 2 + len(LAYER_SERIES) * len(self.layers)
        rows = torch.cat(self._rows) if self._rows else torch.zeros(0, width)
        columns = iter(rows.T.tolist())
        every: dict[str, object] = {"signed_mean": next(columns, []), "abs_mean": next(columns, [])}
        every["layers"] = {name: {series: next(columns, []) for series in LAYER_SERIES} for name in self.layers}
        return every

    def to_dict(self) -> dict[str, object]:
        """The first `steps` steps one by one and block means over the whole run, ready for JSON."""
        every = self.series()
        return {"steps": map_series(every, lambda v: v[:self.steps]), "block": self.block,
                "blocks": map_series(every, lambda v: block_means(v, self.block)),
                "layer_sizes": {name: sum(p.numel() for p in m.parameters()) for name, m in self.layers.items()}}


def block_means(values: list[float], block: int) -> list[float]:
    """Means of consecutive blocks of `block` values (a last, shorter block included)."""
    return [sum(values[i:i + block]) / len(values[i:i + block]) for i in range(0, len(values), block)]


def map_series(series: dict, f) -> dict:
    """Apply `f` to every series of a trace, however deeply nested."""
    return {k: map_series(v, f) if isinstance(v, dict) else f(v) for k, v in series.items()}


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
