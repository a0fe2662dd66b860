"""Models for Q1: the demo MLP and its wider/deeper variants (Q1.5), and a small CNN (Q1.7)."""
from __future__ import annotations

import torch
from torch import nn

INPUT_SIZE = 28 * 28
NUM_CLASSES = 10
# Q1.5 structures: hidden layer sizes. "base" is the PyTorch quickstart network.
STRUCTURES: dict[str, tuple[int, ...]] = {
    "base": (512, 512),
    "deeper": (512, 512, 512, 512),
    "wider": (1024, 1024),
}


class MLP(nn.Module):
    """Flatten, then Linear+ReLU per hidden layer, then Linear to 10 logits (the demo network by default)."""

    def __init__(self, hidden_sizes: tuple[int, ...] = (512, 512)):
        super().__init__()
        self.hidden_sizes = tuple(hidden_sizes)
        layers: list[nn.Module] = []
        width = INPUT_SIZE
        for size in self.hidden_sizes:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        layers.append(nn.Linear(width, NUM_CLASSES))
        self.flatten = nn.Flatten()
        self.linear_relu_stack = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_relu_stack(self.flatten(x))


class SmallCNN(nn.Module):
    """Three 3x3 conv blocks (conv, 2x2 max-pool on the first two, BatchNorm, ReLU), then Linear to 10 logits.

    Pooling before BatchNorm/ReLU (max-pool commutes with ReLU) keeps the elementwise work on 4x fewer
    activations; that, and the channels-last layout, is what makes it fast on a CPU.
    """

    def __init__(self, channels: tuple[int, int, int] = (16, 32, 64)):
        super().__init__()
        c1, c2, c3 = channels
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(c1), nn.ReLU(),   # 14x14
            nn.Conv2d(c1, c2, 3, padding=1, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(c2), nn.ReLU(),  # 7x7
            nn.Conv2d(c2, c3, 3, padding=1, bias=False), nn.BatchNorm2d(c3), nn.ReLU(),                   # 7x7
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(c3 * 7 * 7, NUM_CLASSES))
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def build(name: str, seed: int = 0) -> nn.Module:
    """Return a freshly initialised model by name ('base', 'deeper', 'wider' or 'cnn'), seeded for repeatability."""
    if name not in STRUCTURES and name != "cnn":
        raise ValueError(f"model={name!r} is unknown; choose one of {sorted([*STRUCTURES, 'cnn'])}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return SmallCNN() if name == "cnn" else MLP(STRUCTURES[name])


def count_parameters(model: nn.Module) -> int:
    """Return the number of trainable parameters (entries of tensors with requires_grad)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
