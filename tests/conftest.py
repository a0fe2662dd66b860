"""Shared fixtures: small synthetic Fashion-MNIST-shaped data, no dataset needed."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from helpers.data import Splits  # noqa: E402


def synthetic_data(train: int = 640, test: int = 200, validation: int = 100, seed: int = 0) -> Splits:
    """A learnable 10-class problem: class c lights a 4x4 patch at a class-specific place, plus noise."""
    generator = torch.Generator().manual_seed(seed)

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.arange(n) % 10
        images = torch.rand(n, 1, 28, 28, generator=generator) * 0.3
        for c in range(10):
            row, col = 2 + 6 * (c // 4), 2 + 6 * (c % 4)
            images[labels == c, 0, row:row + 4, col:col + 4] += 0.7
        return images, labels

    return Splits(*make(train), *make(validation), *make(test), train_eval=min(train, 200))


@pytest.fixture(autouse=True)
def no_progress_bars(monkeypatch):
    monkeypatch.setenv("A3_PROGRESS", "0")


@pytest.fixture
def data() -> Splits:
    return synthetic_data()
