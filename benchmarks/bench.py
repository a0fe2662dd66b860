"""Benchmark: the PyTorch-quickstart loop against the project's training, runs side by side against one after
another, and the matmul floor. Run with `make bench`; it exits 1 if a check fails.

All MLP loops train the base network (784-512-512-10), SGD, batch 64, lr 1e-3 (the quickstart's), the same
initial weights and the same 55,000 training images. Reported per loop: the median training pass per epoch
after a warm-up epoch, and the test accuracy after 2 epochs (the check: the two loops must agree).
"project" in the last line is the machine's throughput as the notebook uses it: N runs side by side, one
thread each (N = cores), wall time divided by the epochs they trained.
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset
from torchvision import datasets
from torchvision.transforms import ToTensor

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from helpers import experiments, training  # noqa: E402
from helpers.config import get_profile, worker_count  # noqa: E402
from helpers.data import split_order  # noqa: E402
from helpers.models import MLP, build  # noqa: E402
from helpers.training import Recipe, fit  # noqa: E402

EPOCHS, LR, BATCH = 3, 1e-3, 64  # epoch 1 is the warm-up; accuracy compared after epoch 2
ACCURACY_LIMIT = 0.015           # the two loops may differ by shuffle order only
PROFILE = get_profile("full")


def tutorial_loop() -> tuple[float, float]:
    """The quickstart's train()/test() with DataLoader + ToTensor; returns (median s/epoch, accuracy after 2)."""
    root = str(PROFILE.data_root)
    train_data = datasets.FashionMNIST(root=root, train=True, download=False, transform=ToTensor())
    test_data = datasets.FashionMNIST(root=root, train=False, download=False, transform=ToTensor())
    kept = split_order(len(train_data))[PROFILE.validation_samples:].tolist()  # the project's 55,000 images
    train_loader = DataLoader(Subset(train_data, kept), batch_size=BATCH, shuffle=True,
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


def project_run(recipe: Recipe) -> tuple[float, float]:
    """One fit() as the notebook trains it (1 thread); returns (median s/epoch after warm-up, accuracy after 2)."""
    history = fit(build(recipe.model, seed=0), experiments.splits(PROFILE), recipe)
    return statistics.median(history.seconds[1:] or history.seconds), history.test_accuracy[min(1, history.epochs - 1)]


def side_by_side(recipes: dict[str, Recipe], workers: int) -> tuple[float, float]:
    """Train the recipes in `workers` spawned processes, one thread each; return (seconds from the first run's
    start to the last run's end, seconds before the first run started: spawning workers, loading data)."""
    start = time.time()
    keys = {name: experiments.cache_key(recipe, PROFILE) for name, recipe in recipes.items()}
    runs = experiments.train(recipes, keys, _scratch(), workers=workers).values()
    first, last = min(r.started for r in runs) / 1000, max(r.finished for r in runs) / 1000
    return last - first, first - start


def one_after_another(recipes: dict[str, Recipe], threads: int) -> float:
    """Wall seconds to train the recipes in turn in this process, each with `threads` threads (the old way)."""
    data = experiments.splits(PROFILE)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        start = time.perf_counter()
        for recipe in recipes.values():
            training._fit(build(recipe.model, recipe.seed), data, recipe, torch.device("cpu"), lambda epoch: None)
        return time.perf_counter() - start
    finally:
        torch.set_num_threads(before)


def _scratch():
    """A profile like the full one whose results go to a throw-away folder."""
    return replace(PROFILE, results_dir=Path(tempfile.mkdtemp(prefix="bench-")))


def sgemm_gflops(n: int = 2048, repeats: int = 10) -> float:
    """Best measured float32 matmul throughput (GFLOP/s) on square n x n matrices, all threads."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best / 1e9


def mlp_flops_per_epoch(model: MLP, samples: int) -> float:
    """FLOPs one training epoch must do: forward (2 per MAC), weight gradients (2 per MAC) and input
    gradients (2 per MAC) of every layer but the first, whose input needs no gradient."""
    macs = [layer.in_features * layer.out_features for layer in model.modules() if isinstance(layer, nn.Linear)]
    return samples * (2 * sum(macs) + 2 * sum(macs) + 2 * sum(macs[1:]))


def main() -> int:
    cores = worker_count()
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               "unknown CPU") if Path("/proc/cpuinfo").exists() else "unknown CPU"
    print(f"torch {torch.__version__}, {cores} cores ({cpu}), device cpu; base MLP, SGD lr {LR:g}, batch {BATCH}, "
          f"{PROFILE.train_samples:,} training images, {EPOCHS} epochs (first is warm-up)")
    tutorial, tutorial_accuracy = tutorial_loop()
    print(f"tutorial loop (DataLoader + ToTensor, {torch.get_num_threads()} threads): {tutorial:.2f} s/epoch, "
          f"test accuracy after 2 epochs {tutorial_accuracy:.4f}")
    demo = Recipe(model="base", lr=LR, epochs=EPOCHS, batch_size=BATCH)
    single, project_accuracy = project_run(demo)
    print(f"project fit() (in-memory tensors, 1 thread):       {single:.2f} s/epoch, "
          f"test accuracy after 2 epochs {project_accuracy:.4f}")
    gap = abs(tutorial_accuracy - project_accuracy)
    accuracy_ok = gap <= ACCURACY_LIMIT
    print(f"accuracy difference after 2 epochs: {100 * gap:.2f} points "
          f"({'OK' if accuracy_ok else 'TOO LARGE'}: limit {100 * ACCURACY_LIMIT:.1f})")

    throughput = {}
    for label, recipe in (("base MLP", replace(demo, epochs=3)),
                          ("CNN", Recipe(model="cnn_16_32_64", lr=0.02, epochs=2, optimizer="adamw", weight_decay=0.05,
                                         schedule="onecycle", batch_size=128, flip=True))):
        recipes = {f"bench{i}": replace(recipe, seed=i) for i in range(cores)}
        parallel, startup = side_by_side(recipes, cores)
        serial = one_after_another(recipes, cores)
        epochs = sum(r.epochs for r in recipes.values())
        throughput[label] = parallel / epochs
        print(f"{label}: {cores} runs x {recipe.epochs} epochs side by side (1 thread each) {parallel:.1f} s "
              f"(+{startup:.1f} s to start the workers), one after another ({cores} threads each) {serial:.1f} s: "
              f"{serial / parallel:.2f}x the throughput")
    project = throughput["base MLP"]
    gflops, flops = sgemm_gflops(), mlp_flops_per_epoch(build("base"), PROFILE.train_samples)
    floor = flops / (gflops * 1e9)
    print(f"floor: sgemm {gflops:.0f} GFLOP/s ({cores} threads), base MLP {flops / 1e9:.0f} GFLOP per training epoch "
          f"-> {floor:.2f} s/epoch; project (side by side) is {project / floor:.2f}x the floor")
    cnn_single, _ = project_run(Recipe(model="cnn_16_32_64", lr=0.02, epochs=2, optimizer="adamw", weight_decay=0.05,
                                       schedule="onecycle", batch_size=128, flip=True))
    print(f"Q1.7 CNN 16-32-64 (batch 128, 1 thread): {cnn_single:.2f} s/epoch; side by side: "
          f"{throughput['CNN']:.2f} s per epoch of machine time")
    print(f"speedup {tutorial / project:.1f}x (tutorial {tutorial:.2f} s/epoch, project {project:.2f} s/epoch, "
          f"floor {floor:.2f} s/epoch)")
    return 0 if accuracy_ok else 1


if __name__ == "__main__":
    sys.exit(main())
