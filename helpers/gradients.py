"""Q1.6: the mean of the loss gradients over all trainable parameters, read right after ``loss.backward()``,
and the two factors a weight gradient is made of (the error term and the activations), measured alongside.

Every reduction runs on the model's device in the gradients' own dtype: Apple's MPS has no float64, and
reading a number back after every step would stall a GPU, so the per-step values stay on the device and
come back once per epoch (``flush``).
"""
from __future__ import annotations

import torch
from torch import nn


def gradient_mean(model: nn.Module) -> torch.Tensor:
    """Q1.6's quantity: the mean of all gradient entries of all trainable parameters (call after loss.backward())."""
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    if not grads:
        raise RuntimeError("no gradients to average: call gradient_mean() after loss.backward()")
    return sum(g.sum() for g in grads) / sum(g.numel() for g in grads)


def parameter_layers(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """Trainable parameters grouped by the module that owns them ('linear_relu_stack.0': [weight, bias])."""
    layers: dict[str, list[nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            layers.setdefault(name.rpartition(".")[0], []).append(parameter)
    return layers


class GradientTrace:
    """Records Q1.6's numbers after every loss.backward(): each step for the first `steps`, block means of
    `block` steps over the whole run.

    Per step: the signed mean and the mean |g| over all trainable entries, the signed mean per layer, the
    batch-mean error term ||softmax(logits) - one_hot(label)|| and each ReLU layer's batch-mean activation
    norm (a weight gradient of layer l is the error term back-propagated to l times l's input activations).
    """

    def __init__(self, model: nn.Module, steps: int, block: int):
        self.steps, self.block = steps, block
        self.layers = parameter_layers(model)
        self.layer_sizes = {name: sum(p.numel() for p in ps) for name, ps in self.layers.items()}
        relus = [(name, module) for name, module in model.named_modules() if isinstance(module, nn.ReLU)]
        self.relus = [name for name, _ in relus]
        self._activation: dict[str, torch.Tensor] = {}
        self._hooks = [module.register_forward_hook(self._keep_norm(name)) for name, module in relus]
        self._pending: list[torch.Tensor] = []   # this epoch's per-step vectors, still on the device
        self._rows: list[torch.Tensor] = []      # earlier epochs', on the CPU

    def _keep_norm(self, name: str):
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            self._activation[name] = output.detach().flatten(1).norm(dim=1).mean()
        return hook

    def record(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Call right after loss.backward(), before optimizer.step()."""
        sums = [sum(p.grad.sum() for p in ps) for ps in self.layers.values()]
        abs_sums = [sum(p.grad.abs().sum() for p in ps) for ps in self.layers.values()]
        probabilities = torch.softmax(logits.detach(), dim=1)
        error = (probabilities - nn.functional.one_hot(labels, probabilities.shape[1])).norm(dim=1).mean()
        activations = [self._activation[name] for name in self.relus]
        self._pending.append(torch.stack([*sums, *abs_sums, error, *activations]))

    def flush(self) -> None:
        """Bring this epoch's values back from the device (once per epoch)."""
        if self._pending:
            self._rows.append(torch.stack(self._pending).float().cpu())
            self._pending = []

    def close(self, keep_steps: int | None = None) -> None:
        """Remove the hooks; keep only the first `keep_steps` steps (a diverged run's finite ones)."""
        for hook in self._hooks:
            hook.remove()
        self.flush()
        if keep_steps is not None and self._rows:
            self._rows = [torch.cat(self._rows)[:keep_steps]]

    def series(self) -> dict[str, object]:
        """Every recorded step as named series: signed_mean, abs_mean, layer_signed_mean, error_norm, activation_norm."""
        rows = torch.cat(self._rows) if self._rows else torch.zeros(0, 2 * len(self.layers) + 1 + len(self.relus))
        n = len(self.layers)
        sums, abs_sums = rows[:, :n].double(), rows[:, n:2 * n].double()
        total = sum(self.layer_sizes.values())
        return {"signed_mean": (sums.sum(1) / total).tolist(),
                "abs_mean": (abs_sums.sum(1) / total).tolist(),
                "layer_signed_mean": {name: (sums[:, i] / size).tolist()
                                      for i, (name, size) in enumerate(self.layer_sizes.items())},
                "error_norm": rows[:, 2 * n].tolist(),
                "activation_norm": {name: rows[:, 2 * n + 1 + i].tolist() for i, name in enumerate(self.relus)}}

    def to_dict(self) -> dict[str, object]:
        """The first `steps` steps one by one, and block means over the whole run, ready for JSON."""
        every = self.series()
        return {"layer_sizes": self.layer_sizes, "steps": map_series(every, lambda v: v[:self.steps]),
                "block": self.block, "blocks": map_series(every, lambda v: block_means(v, self.block))}


def block_means(values: list[float], block: int) -> list[float]:
    """Means of consecutive blocks of `block` values (a last, shorter block included)."""
    return [sum(values[i:i + block]) / len(values[i:i + block]) for i in range(0, len(values), block)]


def map_series(series: dict[str, object], f) -> dict[str, object]:
    """Apply `f` to every series of a trace, including the per-layer ones."""
    return {k: ({name: f(v) for name, v in value.items()} if isinstance(value, dict) else f(value))
            for k, value in series.items()}


@torch.no_grad()
def dead_units(model: nn.Module, images: torch.Tensor, batch_size: int = 1000) -> dict[str, list[int]]:
    """Per ReLU layer: [units that output 0 for every one of `images`, units in the layer]."""
    fired: dict[str, torch.Tensor] = {}

    def keep(name: str):
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            active = (output.flatten(1) > 0).any(0)
            fired[name] = active if name not in fired else fired[name] | active
        return hook

    hooks = [m.register_forward_hook(keep(n)) for n, m in model.named_modules() if isinstance(m, nn.ReLU)]
    model.eval()
    try:
        for start in range(0, len(images), batch_size):
            model(images[start:start + batch_size])
    finally:
        for hook in hooks:
            hook.remove()
    return {name: [int((~active).sum()), active.numel()] for name, active in fired.items()}
