"""The networks: the demo MLP and its wider and deeper variants (Q1.5), the MLP with BatchNorm and the small CNN
(Q1.7).

A run names its network: a key of STRUCTURES ("base", "deeper", "wider"), the same with "+bn" (BatchNorm after
each hidden layer), or "cnn". `spec` turns the name into plain data read from this file as it is on disk now, so
an edit of STRUCTURES or CNN_CHANNELS applies without a kernel restart.
"""
from __future__ import annotations

import copy
import functools
import json
import sys
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from . import sourcecode
from .data import CLASS_NAMES, IMAGE_SIZE

INPUT_SIZE = IMAGE_SIZE * IMAGE_SIZE
NUM_CLASSES = len(CLASS_NAMES)
BATCHNORM = "+bn"  # "base+bn": the base MLP with BatchNorm after each hidden layer (Q1.7)

# Q1.5: hidden layer sizes. "base" is the PyTorch quickstart network (784-512-512-10).
STRUCTURES = {
    "base": (512, 512),
    "deeper": (512, 512, 512, 512),
    "wider": (1024, 1024),
    "narrow": (64, 64),  # about the small CNN's parameter count (Q1.7)
}

# Q1.7: channels of the small CNN's three convolution blocks (the network "cnn").
CNN_CHANNELS = (16, 32, 64)
TABLES = ("STRUCTURES", "CNN_CHANNELS")  # what a network spec carries (so the key holds it as data)


class MLP(nn.Module):
    """Flatten, then per hidden layer Linear (+ BatchNorm) + ReLU, then Linear to the 10 logits."""

    def __init__(self, hidden_sizes: tuple[int, ...], batchnorm: bool = False):
        super().__init__()
        layers: list[nn.Module] = []
        width = INPUT_SIZE
        for size in hidden_sizes:
            layers += [nn.Linear(width, size, bias=not batchnorm), *([nn.BatchNorm1d(size)] if batchnorm else []),
                       nn.ReLU()]
            width = size
        layers.append(nn.Linear(width, NUM_CLASSES))
        self.flatten = nn.Flatten()
        self.linear_relu_stack = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_relu_stack(self.flatten(x))


class SmallCNN(nn.Module):
    """Three 3x3 conv blocks (conv, 2x2 max-pool on the first two, BatchNorm, ReLU), then Linear to 10 logits.
    Pooling first (it commutes with ReLU) and the channels-last layout make it fast on a CPU."""

    def __init__(self, channels: tuple[int, int, int]):
        super().__init__()
        c1, c2, c3 = channels
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(c1), nn.ReLU(),   # out: 14x14
            nn.Conv2d(c1, c2, 3, padding=1, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(c2), nn.ReLU(),  # out: 7x7
            nn.Conv2d(c2, c3, 3, padding=1, bias=False), nn.BatchNorm2d(c3), nn.ReLU(),                   # out: 7x7
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(c3 * 7 * 7, NUM_CLASSES))
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def structures() -> dict[str, tuple[int, ...]]:
    """STRUCTURES as this file on disk has it now."""
    return dict(sourcecode.constant(sys.modules[__name__], "STRUCTURES"))


def spec(name: str) -> dict[str, Any]:
    """What network `name` is, as plain data read from this file on disk (sent to the process that trains it
    and part of the key of its stored result). Raises ValueError for an unknown name."""
    mlps = structures()
    if name == "cnn":
        return {"network": "SmallCNN", "channels": list(sourcecode.constant(sys.modules[__name__], "CNN_CHANNELS"))}
    structure = name.removesuffix(BATCHNORM)
    if structure not in mlps:
        raise ValueError(f"model={name!r} is unknown; choose one of {[*mlps, 'cnn']}, or a structure with "
                         f"{BATCHNORM!r} (STRUCTURES in helpers/models.py)")
    return {"network": "MLP", "hidden_sizes": list(mlps[structure]),
            **({"batchnorm": True} if name.endswith(BATCHNORM) else {})}


def from_spec(network: dict[str, Any], seed: int = 0) -> nn.Module:
    """A freshly initialised network from its spec, seeded (the global random state is left alone)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if network["network"] == "SmallCNN":
            return SmallCNN(tuple(network["channels"]))
        return MLP(tuple(network["hidden_sizes"]), network.get("batchnorm", False))


def build(name: str, seed: int = 0) -> nn.Module:
    """The network `name`, freshly initialised and seeded."""
    return from_spec(spec(name), seed)


def count_parameters(model: nn.Module) -> int:
    """Return the number of trainable parameters (entries of tensors with requires_grad)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def is_cnn(name: str) -> bool:
    """True for the Q1.7 convolutional network."""
    return name == "cnn"


def layer_sizes(name: str) -> str:
    """'784-512-512-10' for an MLP, the channels '16-32-64' for the CNN: how tables and figures name a network."""
    network = spec(name)
    sizes = network.get("channels") or (INPUT_SIZE, *network["hidden_sizes"], NUM_CLASSES)
    return "-".join(map(str, sizes))


def flops(model: nn.Module, batch: int = 64) -> tuple[int, int]:
    """(multiply-adds of one forward pass of one image, FLOPs of one training step per image), counted by
    torch.utils.flop_counter on a copy of `model` (its weights, statistics and the random state stay as they were)."""
    model = copy.deepcopy(model).cpu()
    images = torch.rand(batch, 1, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(batch) % NUM_CLASSES
    with FlopCounterMode(display=False) as forward:
        logits = model(images)
    with FlopCounterMode(display=False) as backward:
        nn.functional.cross_entropy(logits, labels).backward()
    return forward.get_total_flops() // (2 * batch), (forward.get_total_flops() + backward.get_total_flops()) // batch


def run_flops(trained: int, evaluated: int, flops_per_image: int, multiply_adds: int) -> int:
    """The compute of training on `trained` images and evaluating `evaluated` (a multiply-add is 2 FLOPs)."""
    return trained * flops_per_image + 2 * evaluated * multiply_adds


@functools.lru_cache(maxsize=None)
def _flops(network: str) -> tuple[int, int]:
    return flops(from_spec(json.loads(network)))


def training_flops(name: str) -> int:
    """FLOPs of one training step per image of network `name` (to train the longest runs first)."""
    return _flops(json.dumps(spec(name)))[1]


def multiply_adds(name: str) -> int:
    """Multiply-adds of one forward pass of one image of network `name`."""
    return _flops(json.dumps(spec(name)))[0]
