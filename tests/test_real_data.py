"""The real Fashion-MNIST, as `make test` prepares it in data/: shapes, dtypes, balance, the CLI line."""
import subprocess
import sys
from pathlib import Path

import torch

from conftest import CPU, needs_real_data
from helpers.data import CLASS_NAMES, load_fashion_mnist
from helpers.models import build
from helpers.splits import make_splits
from helpers.training import Recipe, fit

ROOT = Path(__file__).resolve().parent.parent


@needs_real_data
def test_real_data_shapes_dtypes_and_classes():
    data = load_fashion_mnist(ROOT / "data", download=False)
    assert data.train_images.shape == (60000, 1, 28, 28) and data.test_images.shape == (10000, 1, 28, 28)
    assert data.train_images.dtype == torch.uint8 and data.train_labels.dtype == torch.int64
    assert int(data.train_images.min()) == 0 and int(data.train_images.max()) == 255
    assert torch.bincount(data.train_labels).tolist() == [6000] * 10
    assert torch.bincount(data.test_labels).tolist() == [1000] * 10
    assert len(CLASS_NAMES) == 10 and CLASS_NAMES[9] == "Ankle boot"
    assert data.train_labels[:3].tolist() == [9, 0, 0]  # the published file order (ankle boot first)


@needs_real_data
def test_cli_prints_the_ok_line_on_real_data():
    result = subprocess.run([sys.executable, "-m", "helpers.data", "--no-download"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Fashion-MNIST OK: 60000 train, 10000 test, 10 classes (source: ")


@needs_real_data
def test_the_base_mlp_learns_the_real_data():
    """One epoch of the demo scheme at lr 0.1 on 30,000 real images: at least 75 % test accuracy (chance is 10 %;
    seeds 0, 1, 2 gave 77.8, 81.2 and 79.6 %: at lr 0.1 the first epoch is noisy, so the bar leaves room)."""
    data = make_splits(load_fashion_mnist(ROOT / "data", download=False), train=30_000, validation=1_000, test=2_000,
                 train_eval=1_000)
    history = fit(build("base", seed=0), data, Recipe(model="base", lr=0.1, epochs=1), CPU)
    assert history.test_accuracy[0] >= 0.75 and history.validation_accuracy[0] >= 0.72


@needs_real_data
def test_the_quickstarts_own_loop_and_fit_without_hold_out_and_shuffle_give_the_same_losses():
    """The PyTorch quickstart's train() as published (DataLoader over torchvision's FashionMNIST with ToTensor,
    batch 64, no shuffling; its network class; SGD lr 1e-3) and fit() with hold_out=False, shuffle=False on the
    same images: the same minibatch losses, bit for bit. So Q1.2's 'quickstart loop' runs are that loop."""
    from torch import nn
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets
    from torchvision.transforms import ToTensor

    from helpers.device import reproducible
    from helpers.splits import Splits

    class NeuralNetwork(nn.Module):  # the quickstart's, verbatim
        def __init__(self):
            super().__init__()
            self.flatten = nn.Flatten()
            self.linear_relu_stack = nn.Sequential(nn.Linear(28 * 28, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                                                   nn.Linear(512, 10))

        def forward(self, x):
            return self.linear_relu_stack(self.flatten(x))

    n = 1280
    training_data = Subset(datasets.FashionMNIST(root=str(ROOT / "data"), train=True, download=False,
                                                 transform=ToTensor()), range(n))
    torch.manual_seed(0)
    model, loss_fn, losses = NeuralNetwork(), nn.CrossEntropyLoss(), []
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    with reproducible(CPU):
        for X, y in DataLoader(training_data, batch_size=64):  # train(), as the quickstart has it
            pred = model(X)
            loss = loss_fn(pred, y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())
    data = load_fashion_mnist(ROOT / "data", download=False)
    first = Splits(data.train_images[:n], data.train_labels[:n], data.train_images[:0], data.train_labels[:0],
                   data.test_images[:500], data.test_labels[:500], 100, torch.arange(n), torch.arange(0))
    history = fit(build("base", seed=0), first, Recipe(model="base", lr=1e-3, epochs=1, shuffle=False, hold_out=False),
                  CPU)
    assert history.step_loss == losses and len(losses) == n // 64
