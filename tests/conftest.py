"""Shared fixtures: small synthetic Fashion-MNIST-shaped data, no dataset needed."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import helpers  # noqa: E402,F401  -- first: it chooses the CPU kernels before torch loads
import pytest  # noqa: E402
import torch  # noqa: E402

from helpers.splits import Splits  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
REAL_DATA = ROOT / "data" / "FashionMNIST" / "raw" / "train-images-idx3-ubyte"
needs_real_data = pytest.mark.skipif(not REAL_DATA.exists(), reason="needs Fashion-MNIST in data/: run `python -m helpers.data`")


def synthetic_data(train: int = 640, test: int = 200, validation: int = 100, seed: int = 0) -> Splits:
    """A learnable 10-class problem as uint8 images: class c lights a 4x4 patch at its own place, plus noise."""
    generator = torch.Generator().manual_seed(seed)

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.arange(n) % 10
        images = torch.rand(n, 1, 28, 28, generator=generator) * 0.3
        for c in range(10):
            row, col = 2 + 6 * (c // 4), 2 + 6 * (c % 4)
            images[labels == c, 0, row:row + 4, col:col + 4] += 0.7
        return (images * 255).round().to(torch.uint8), labels

    places = torch.randperm(train + validation, generator=generator)  # where each image sits in the "file"
    return Splits(*make(train), *make(validation), *make(test), train_eval=min(train, 200),
                  train_index=places[validation:], validation_index=places[:validation])


@pytest.fixture(autouse=True)
def no_progress_bars(monkeypatch):
    monkeypatch.setenv("A3_PROGRESS", "0")


@pytest.fixture
def data() -> Splits:
    return synthetic_data()


CPU = torch.device("cpu")


def hang(name: str) -> dict:
    """A job for a worker that starts its run, then never reports again (a hung worker)."""
    import time

    from helpers import workers
    workers.report("start", name)
    time.sleep(600)
    return {}
