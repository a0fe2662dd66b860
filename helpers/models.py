"""The networks: the demo MLP and its wider/deeper variants (Q1.5), and the small CNN candidates (Q1.7)."""
from __future__ import annotations

import hashlib
import inspect

import torch
from torch import nn

INPUT_SIZE = 28 * 28
NUM_CLASSES = 10

# Q1.5: hidden layer sizes. "base" is the PyTorch quickstart network (784-512-512-10).
STRUCTURES: dict[str, tuple[int, ...]] = {
    "base": (512, 512),
    "deeper": (512, 512, 512, 512),
    "wider": (1024, 1024),
}

# Q1.7: channels of the three convolution blocks; one of these is chosen on validation accuracy.
CNN_CANDIDATES: dict[str, tuple[int, int, int]] = {
    "cnn_8_16_32": (8, 16, 32),
    "cnn_12_24_48": (12, 24, 48),
    "cnn_16_32_64": (16, 32, 64),
}


class MLP(nn.Module):
    """Flatten, then Linear+ReLU per hidden layer, then Linear to 10 logits (the demo network by default)."""

    def __init__(self, hidden_sizes: tuple[int, ...] = (512, 512)):
        super().__init__()
        layers: list[nn.Module] = []
        width = INPUT_SIZE
        for size in hidden_sizes:
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


MODEL_NAMES = (*STRUCTURES, *CNN_CANDIDATES)


def check_name(name: str) -> None:
    """Raise ValueError unless `name` is a model build() knows."""
    if name not in MODEL_NAMES:
        raise ValueError(f"model={name!r} is unknown; choose one of {list(MODEL_NAMES)}")


def build(name: str, seed: int = 0) -> nn.Module:
    """Return a freshly initialised model by name (a STRUCTURES or CNN_CANDIDATES key), seeded for repeatability."""
    check_name(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return SmallCNN(CNN_CANDIDATES[name]) if name in CNN_CANDIDATES else MLP(STRUCTURES[name])


def count_parameters(model: nn.Module) -> int:
    """Return the number of trainable parameters (entries of tensors with requires_grad)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def architecture(name: str) -> dict[str, object]:
    """What the network `name` is, for cache keys: its modules, parameter count and a fingerprint of forward()."""
    model = build(name)
    forward = inspect.getsource(type(model).forward)
    return {"modules": repr(model), "parameters": count_parameters(model),
            "forward": hashlib.sha256(forward.encode()).hexdigest()[:16]}


def is_cnn(name: str) -> bool:
    """True for the Q1.7 convolutional candidates."""
    return name in CNN_CANDIDATES


def layer_sizes(name: str) -> str:
    """'784-512-512-10' for an MLP, the channels '16-32-64' for a CNN: how tables and figures name a network."""
    check_name(name)
    sizes = CNN_CANDIDATES[name] if name in CNN_CANDIDATES else (INPUT_SIZE, *STRUCTURES[name], NUM_CLASSES)
    return "-".join(map(str, sizes))


def multiply_adds(name: str) -> int:
    """Multiply-adds of one forward pass of one image (the convolutions and linear layers)."""
    check_name(name)
    if name in CNN_CANDIDATES:
        c1, c2, c3 = CNN_CANDIDATES[name]
        return 9 * (c1 * 28 * 28 + c1 * c2 * 14 * 14 + c2 * c3 * 7 * 7) + c3 * 7 * 7 * NUM_CLASSES
    sizes = [INPUT_SIZE, *STRUCTURES[name], NUM_CLASSES]
    return sum(a * b for a, b in zip(sizes, sizes[1:]))


def relative_cost(name: str) -> float:
    """Rough training cost per epoch relative to the base MLP (used to start the longest runs first)."""
    return multiply_adds(name) / multiply_adds("base")
