"""`make bench`: the project's training against the PyTorch-quickstart loop and against the compute floor, the
pinned CPU kernels against the machine's own, and runs side by side. Exits 1 if the accuracy check fails.

- quickstart: its train()/test() with DataLoader + ToTensor, 2 threads, base MLP, SGD lr 1e-3, batch 64, on
  the project's 55,000 training images; the project's fit() the same, on one thread. Their test accuracy after 2
  epochs must agree within ACCURACY_LIMIT (they differ in shuffle order only).
- floor: the FLOPs of one epoch (training and the three evaluations, counted by torch.utils.flop_counter) at the
  machine's measured large-matrix rate on one core; "x floor" is the measured time over that.
- kernels: one epoch of the base MLP and of the CNN in a fresh process with A3_CPU_KERNELS=avx2 (the default:
  the same numbers on every x86-64 CPU) and =native (the machine's fastest kernels).
- profile (also alone: `python benchmarks/bench.py profile`): where one epoch of the MLP's training step goes, by
  torch.profiler on one thread: the matrix products (aten::mm/addmm, the only work the floor counts) against the
  floor, the optimizer, the minibatch indexing and the rest; then the top operators by self CPU time.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import helpers  # noqa: E402,F401  -- chooses the CPU kernels before torch loads
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, Subset  # noqa: E402
from torchvision import datasets  # noqa: E402
from torchvision.transforms import ToTensor  # noqa: E402

from helpers import models, workers  # noqa: E402
from helpers.experiments import CNN_SCHEME, epoch_seconds  # noqa: E402
from helpers.experiments import DEMO as DEMO_SCHEME  # noqa: E402
from helpers.config import get_profile  # noqa: E402
from helpers.device import matmul_gflops  # noqa: E402
from helpers.kernels import PINNED  # noqa: E402
from helpers.splits import split_order  # noqa: E402
from helpers.splits import minibatches  # noqa: E402
from helpers.training import Recipe, fit, make_optimizer, train_epoch  # noqa: E402

PROFILE = get_profile("full")
ACCURACY_LIMIT = 0.015
DEMO = replace(DEMO_SCHEME, epochs=3)
CNN = replace(CNN_SCHEME, epochs=2)
CPU = torch.device("cpu")
MATRIX_PRODUCTS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::addmv", "aten::mv")  # what the floor counts


def quickstart() -> tuple[float, float]:
    """The quickstart's loop: (median s/epoch after a warm-up epoch, test accuracy after 2 epochs)."""
    root = str(PROFILE.data_root)
    train = datasets.FashionMNIST(root=root, train=True, download=False, transform=ToTensor())
    test = datasets.FashionMNIST(root=root, train=False, download=False, transform=ToTensor())
    kept = split_order(len(train))[PROFILE.validation_samples:].tolist()
    loader = DataLoader(Subset(train, kept), batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0))
    model, loss_fn = models.build("base"), nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=DEMO.lr)
    seconds, accuracies = [], []
    for _ in range(DEMO.epochs):
        start = time.perf_counter()
        model.train()
        for X, y in loader:
            loss = loss_fn(model(X), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        seconds.append(time.perf_counter() - start)
        model.eval()
        with torch.no_grad():
            correct = sum((model(X).argmax(1) == y).sum().item() for X, y in DataLoader(test, batch_size=64))
        accuracies.append(correct / len(test))
    return statistics.median(seconds[1:]), accuracies[1]


def splits():
    """The graded profile's images, as a worker holds them."""
    return workers.load_splits(tuple(sorted(PROFILE.data_sizes.items())), PROFILE.data_root)


def one_epoch(kernels: str) -> dict[str, float]:
    """s/epoch (training + evaluation, one thread) of the base MLP and the CNN in a fresh process."""
    script = (f"import sys, json; sys.path.insert(0, {str(ROOT)!r}); import benchmarks.bench as b; "
              "print(json.dumps(b.timed()))")
    clean = {k: v for k, v in os.environ.items() if k not in PINNED}  # this process's choice is not inherited
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT,
                          env={**clean, "A3_CPU_KERNELS": kernels}, timeout=1200)
    if done.returncode != 0:
        sys.exit(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def timed() -> dict[str, float]:
    """In this process: the second epoch's seconds (training + evaluation) of the base MLP and of the CNN."""
    data = splits()
    result = {"kernels": torch.backends.cpu.get_cpu_capability()}
    for name, recipe in (("mlp", replace(DEMO, epochs=2)), ("cnn", CNN)):
        history = fit(models.build(recipe.model), data, recipe, CPU)
        result[name] = history.seconds[-1] + history.eval_seconds[-1]
    return result


def profile_step() -> None:
    """One epoch of the MLP's training step (the project's train_epoch, DEMO's batch 64 and SGD, one thread), timed
    plainly and then under torch.profiler: the share of the matrix products, the optimizer, the minibatch indexing
    and the rest, each against the floor (the step's FLOPs at the measured large-matrix rate on one core)."""
    os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # no log lines from the profiler's library
    from torch.profiler import ProfilerActivity, profile, record_function
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    data, model, loss_fn = splits(), models.build("base"), nn.CrossEntropyLoss()
    optimizer = make_optimizer(model, DEMO)
    steps = -(-len(data.train_labels) // DEMO.batch_size)

    def epoch(seed: int, label: bool = False) -> float:
        def labelled(batches):  # the minibatch's indexing and conversion to float, as a region of its own
            batches = iter(batches)
            while True:
                with record_function("minibatch"):
                    batch = next(batches, None)
                if batch is None:
                    return
                yield batch
        batches = minibatches(data.train_images, data.train_labels, DEMO.batch_size, torch.Generator().manual_seed(seed))
        start = time.perf_counter()
        train_epoch(model, labelled(batches) if label else batches, steps, loss_fn, optimizer)
        return time.perf_counter() - start

    rate = matmul_gflops()
    floor = models.run_flops(len(data.train_labels), 0, models.training_flops("base"), 0) / (rate * 1e9)
    epoch(0)  # warm-up
    plain = epoch(1)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        profiled = epoch(2, label=True)
    torch.set_num_threads(threads)
    events = prof.key_averages()
    products = sum(e.self_cpu_time_total for e in events if e.key in MATRIX_PRODUCTS) / 1e6
    optimizer_s = sum(e.cpu_time_total for e in events if e.key.startswith("Optimizer.")) / 1e6
    indexing = sum(e.cpu_time_total for e in events if e.key == "minibatch") / 1e6
    rest = profiled - products - optimizer_s - indexing
    print(f"MLP training step, one epoch of {steps} steps on 1 thread: {plain:.2f} s ({plain / floor:.2f}x its floor "
          f"of {floor:.2f} s at {rate:.0f} GFLOP/s); under the profiler {profiled:.2f} s, of which")
    for what, seconds in (("matrix products (mm/addmm)", products), ("optimizer (step, zero_grad)", optimizer_s),
                          ("minibatch indexing + to float", indexing), ("the rest (elementwise, autograd, Python)", rest)):
        print(f"  {what:<42} {seconds:6.2f} s  {100 * seconds / profiled:5.1f} %  {seconds / floor:5.2f}x floor")
    print(events.table(sort_by="self_cpu_time_total", row_limit=12))


def main() -> int:
    cores = torch.get_num_threads()
    print(f"torch {torch.__version__}, {cores} cores, {torch.backends.cpu.get_cpu_capability()} kernels; "
          f"{PROFILE.train_samples:,} training images")
    tutorial, tutorial_accuracy = quickstart()
    history = fit(models.build("base"), splits(), DEMO, CPU)
    project, project_accuracy = statistics.median(history.seconds[1:]), history.test_accuracy[1]
    gap = abs(tutorial_accuracy - project_accuracy)
    print(f"quickstart loop ({cores} threads): {tutorial:.2f} s/epoch, accuracy after 2 epochs {tutorial_accuracy:.4f}")
    print(f"project fit() (1 thread):    {project:.2f} s/epoch, accuracy after 2 epochs {project_accuracy:.4f} "
          f"({'OK' if gap <= ACCURACY_LIMIT else 'TOO FAR APART'}: {100 * gap:.2f} points, limit {100 * ACCURACY_LIMIT:.1f})")

    torch.set_num_threads(1)
    rate = matmul_gflops()
    torch.set_num_threads(cores)
    print(f"floor: float32 matrix multiply {rate:.0f} GFLOP/s on one core")
    pinned, native = one_epoch("avx2"), one_epoch("native")
    for name, recipe in (("mlp", DEMO), ("cnn", CNN)):
        floor = epoch_seconds(recipe, PROFILE, rate)
        print(f"{name.upper()} epoch (train + evaluate, 1 thread): {pinned[name]:.2f} s with {pinned['kernels']} "
              f"kernels, {native[name]:.2f} s with {native['kernels']} ({pinned[name] / native[name]:.2f}x); "
              f"floor {floor:.2f} s -> {pinned[name] / floor:.2f}x floor")
    profile_step()

    recipes = {f"bench{i}": replace(DEMO, seed=i) for i in range(cores)}
    start = time.time()
    runs = workers_run(recipes)
    first = min(r.started for r in runs) / 1000
    wall = max(r.finished for r in runs) / 1000 - first
    print(f"{cores} base-MLP runs side by side (1 thread each): {wall / sum(r.epochs for r in runs):.2f} s per epoch "
          f"of machine time (+{first - start:.1f} s to start the workers)")
    print(f"speedup {tutorial / (wall / sum(r.epochs for r in runs)):.1f}x over the quickstart loop")
    return 0 if gap <= ACCURACY_LIMIT else 1


def workers_run(recipes: dict[str, Recipe]) -> list:
    """Train the recipes in the pool, one worker per core, results in a throw-away folder."""
    import tempfile
    from helpers import experiments
    profile = replace(PROFILE, results_dir=Path(tempfile.mkdtemp(prefix="bench-")))
    return list(experiments.run(recipes, profile, rerun=True, log=lambda line: None).values())


if __name__ == "__main__":
    sys.exit(profile_step() if sys.argv[1:] == ["profile"] else main())
