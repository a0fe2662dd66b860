"""Q1.6: the mean of the loss gradients over all trainable parameters, read right after ``loss.backward()``."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


def gradient_means(model: nn.Module) -> tuple[float, float, dict[str, float]]:
    """Return (signed mean, mean |g|) over every trainable gradient entry, and the signed mean per layer."""
    total, total_abs, count = 0.0, 0.0, 0
    layer_sum: dict[str, float] = {}
    layer_count: dict[str, int] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad or parameter.grad is None:
            continue
        grad = parameter.grad.detach()
        layer = name.rpartition(".")[0]  # "linear_relu_stack.0.weight" -> "linear_relu_stack.0"
        grad_sum = float(grad.sum(dtype=torch.float64))  # float64 sums: the signed mean is a small difference
        total += grad_sum
        total_abs += float(grad.abs().sum(dtype=torch.float64))
        count += grad.numel()
        layer_sum[layer] = layer_sum.get(layer, 0.0) + grad_sum
        layer_count[layer] = layer_count.get(layer, 0) + grad.numel()
    if count == 0:
        raise RuntimeError("no gradients to average: call gradient_means() after loss.backward()")
    return total / count, total_abs / count, {k: layer_sum[k] / layer_count[k] for k in layer_sum}


@dataclass
class GradientMeanTracker:
    """Records gradient_means() for the first `steps` training steps."""

    steps: int
    mean: list[float] = field(default_factory=list)
    abs_mean: list[float] = field(default_factory=list)
    layer_mean: dict[str, list[float]] = field(default_factory=dict)

    def record(self, model: nn.Module) -> None:
        """Append this step's means, until `steps` have been recorded."""
        if len(self.mean) >= self.steps:
            return
        mean, abs_mean, per_layer = gradient_means(model)
        self.mean.append(mean)
        self.abs_mean.append(abs_mean)
        for layer, value in per_layer.items():
            self.layer_mean.setdefault(layer, []).append(value)
