"""Benchmark: the PyTorch-quickstart training loop against the project's fit(), and the matmul floor.

Run with `make bench`. All loops train the base MLP (784-512-512-10), SGD, batch 64, the same lr and
initial weights, on the same data; each reports the median training-pass seconds per epoch after a
warm-up epoch and the test accuracy after 2 epochs.
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets
from torchvision.transforms import ToTensor

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from helpers.config import get_profile  # noqa: E402
from helpers.data import load_fashion_mnist  # noqa: E402
from helpers.models import MLP, build  # noqa: E402
from helpers.training import fit  # noqa: E402

# The quickstart's own settings. lr 1e-3 also keeps the accuracy comparison meaningful: at lr 0.1 the
# test accuracy jumps by 1-2 points from one shuffle order to another after 2 epochs.
EPOCHS, LR, BATCH = 3, 1e-3, 64  # epoch 1 is the warm-up; accuracy compared after epoch 2


def tutorial_loop(root: Path) -> tuple[float, float]:
    """The quickstart's train()/test() with DataLoader + ToTensor; returns (median s/epoch, accuracy after 2)."""
    train_data = datasets.FashionMNIST(root=str(root), train=True, download=False, transform=ToTensor())
    test_data = datasets.FashionMNIST(root=str(root), train=False, download=False, transform=ToTensor())
    train_loader = DataLoader(train_data, batch_size=BATCH, shuffle=True,
                              generator=torch.Generator().manual_seed(0))
    test_loader = DataLoader(test_data, batch_size=BATCH)
    model, loss_fn = build("base", seed=0), nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    seconds, accuracies = [], []
    for _ in range(EPOCHS):
        start = time.perf_counter()
        model.train()
        for batch, (X, y) in enumerate(train_loader):
            loss = loss_fn(model(X), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            if batch % 100 == 0:
                loss.item()  # the quickstart prints the loss every 100 batches
        seconds.append(time.perf_counter() - start)
        model.eval()
        correct = 0
        with torch.no_grad():
            for X, y in test_loader:
                correct += (model(X).argmax(1) == y).type(torch.float).sum().item()
        accuracies.append(correct / len(test_data))
    return statistics.median(seconds[1:]), accuracies[1]


def project_loop(model_name: str = "base", **settings) -> tuple[float, float, int]:
    """fit() on the in-memory tensors; returns (median s/epoch after warm-up, accuracy after 2, epochs)."""
    data = load_fashion_mnist(get_profile("full").data_root)
    history = fit(build(model_name, seed=0), data, seed=0, progress=False, **settings)
    return statistics.median(history.seconds[1:]), history.test_accuracy[1], history.epochs


def sgemm_gflops(n: int = 2048, repeats: int = 10) -> float:
    """Best measured float32 matmul throughput (GFLOP/s) on square n x n matrices."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best / 1e9


def mlp_flops_per_epoch(model: MLP, samples: int = 60000) -> float:
    """FLOPs one training epoch must do: forward (2 per MAC), weight gradients (2 per MAC) and input
    gradients (2 per MAC) of every layer but the first, whose input needs no gradient."""
    macs = [layer.in_features * layer.out_features for layer in model.modules() if isinstance(layer, nn.Linear)]
    return samples * (2 * sum(macs) + 2 * sum(macs) + 2 * sum(macs[1:]))


def main() -> None:
    root = get_profile("full").data_root
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu; "
          f"base MLP, SGD lr {LR:g}, batch {BATCH}, {EPOCHS} epochs (first is warm-up)")
    tutorial, tutorial_accuracy = tutorial_loop(root)
    print(f"tutorial loop (DataLoader + ToTensor): {tutorial:.2f} s/epoch, "
          f"test accuracy after 2 epochs {tutorial_accuracy:.4f}")
    project, project_accuracy, _ = project_loop(epochs=EPOCHS, lr=LR, batch_size=BATCH)
    print(f"project fit() (in-memory tensors):    {project:.2f} s/epoch, "
          f"test accuracy after 2 epochs {project_accuracy:.4f}")
    gap = abs(tutorial_accuracy - project_accuracy)
    print(f"accuracy difference after 2 epochs: {100 * gap:.2f} points "
          f"({'OK' if gap <= 0.015 else 'TOO LARGE'}: limit 1.5)")
    gflops, flops = sgemm_gflops(), mlp_flops_per_epoch(build("base"))
    floor = flops / (gflops * 1e9)
    print(f"floor: sgemm {gflops:.0f} GFLOP/s, base MLP {flops / 1e9:.0f} GFLOP per training epoch "
          f"-> {floor:.2f} s/epoch; project is {project / floor:.2f}x the floor")
    p = get_profile("full")
    cnn, cnn_accuracy, _ = project_loop("cnn", epochs=2, lr=p.cnn_lr, batch_size=p.cnn_batch_size,
                                        optimizer=p.cnn_optimizer, weight_decay=p.cnn_weight_decay,
                                        schedule=p.cnn_schedule, flip=p.cnn_flip)
    print(f"Q1.7 CNN (batch {p.cnn_batch_size}): {cnn:.2f} s/epoch (epoch 2 of 2)")
    print(f"speedup {tutorial / project:.1f}x (tutorial {tutorial:.2f} s/epoch, project {project:.2f} s/epoch, "
          f"floor {floor:.2f} s/epoch)")


if __name__ == "__main__":
    main()
