"""Where runs compute: A3_DEVICE, the CPU kernels chosen before torch loads, and the GPU path. Each
device-specific test runs where its device is present and is skipped, with the reason, where it is not."""
import itertools
import os
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from conftest import ROOT, needs_real_data, synthetic_data
from helpers import config, device, experiments, kernels, models
from helpers.gradients import GradientRecord
from helpers.splits import count_batches, minibatches, to_float
from helpers.training import Recipe, fit, train_epoch

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU (none here)")
needs_mps = pytest.mark.skipif(not device.mps_available(), reason="needs Apple's MPS (not this machine)")
GRADED_CNN = replace(experiments.CNN_SCHEME, epochs=1)


def test_auto_uses_cuda_when_present_else_the_cpu_and_mps_only_when_asked(monkeypatch):
    monkeypatch.delenv("A3_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device, "mps_available", lambda: True)
    assert device.pick().type == "cpu"
    monkeypatch.setenv("A3_DEVICE", "mps")
    assert device.pick().type == "mps"
    monkeypatch.setenv("A3_DEVICE", "auto")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert device.pick().type == "cuda"


def test_asking_for_a_device_that_is_absent_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("A3_DEVICE", "cuda")
    with pytest.raises(RuntimeError, match="A3_DEVICE=cuda, but PyTorch sees no CUDA GPU here"):
        device.pick()


def kernels_of_a_fresh_process(**env) -> str:
    script = "import helpers, torch, os; print(torch.backends.cpu.get_cpu_capability(), os.environ.get('ONEDNN_MAX_CPU_ISA'))"
    clean = {k: v for k, v in os.environ.items() if k not in kernels.PINNED and k != kernels.SWITCH}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                          env={**clean, **env}, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.skipif(not kernels.has_avx2(), reason="needs an x86-64 CPU with AVX2")
def test_importing_helpers_chooses_the_avx2_kernels_before_torch_loads_unless_asked_not_to():
    assert kernels_of_a_fresh_process() == "AVX2 AVX2"
    assert kernels_of_a_fresh_process(A3_CPU_KERNELS="native").split()[1] == "None"
    with pytest.raises(AssertionError, match="A3_CPU_KERNELS='fast'"):
        kernels_of_a_fresh_process(A3_CPU_KERNELS="fast")


@pytest.mark.skipif(not kernels.has_avx2(), reason="needs an x86-64 CPU with AVX2")
def test_importing_torch_before_helpers_warns_that_this_process_keeps_the_cpus_own_kernels():
    clean = {k: v for k, v in os.environ.items() if k not in kernels.PINNED and k != kernels.SWITCH}

    def stderr_of(script: str) -> str:
        done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, env=clean,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stderr
    assert "torch was imported before helpers" in stderr_of("import torch, helpers")
    assert stderr_of("import helpers, torch") == ""


def test_a_run_computes_deterministically_on_one_thread_and_restores_both_afterwards(monkeypatch):
    from helpers import training
    seen = []
    real = training.train_epoch

    def spy(*args, **kwargs):
        seen.append((torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()))
        return real(*args, **kwargs)
    monkeypatch.setattr(training, "train_epoch", spy)
    before = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled())
    with device.reproducible(torch.device("cuda")):  # the flags are set without a GPU as well
        inside = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic)
    assert inside == (1, True, True) and (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == before
    fit(models.build("base"), synthetic_data(), Recipe(model="base", lr=0.1, epochs=1), torch.device("cpu"))
    assert seen == [(1, False)]  # on the CPU one thread, and no flag a CPU op could trip on


def test_a_history_records_what_computed_it(data):
    history = fit(models.build("base"), data, Recipe(model="base", lr=0.1, epochs=1), torch.device("cpu"))
    assert history.machine["device"] == "cpu" and history.machine["kernels"] == torch.backends.cpu.get_cpu_capability()


@needs_cuda
def test_cuda_two_runs_of_one_seed_are_equal(tmp_path, monkeypatch):
    monkeypatch.setenv("A3_DEVICE", "cuda")
    profile = replace(config.get_profile("quick"), results_dir=tmp_path)
    recipes = {"mlp": Recipe(model="base", lr=0.1, epochs=1, gradient_steps=100, probe_images=128), "cnn": GRADED_CNN}
    first = experiments.run(recipes, profile, log=lambda line: None)
    again = experiments.run(recipes, profile, rerun=True, log=lambda line: None)
    for name in recipes:
        assert first[name].machine["device"] == "cuda"
        assert first[name].step_loss == again[name].step_loss and first[name].test_accuracy == again[name].test_accuracy


@needs_cuda
@needs_real_data
def test_cuda_the_graded_recipes_first_epoch_learns():
    from helpers import workers
    full = config.get_profile("full")
    data = workers.load_splits(tuple(sorted(full.data_sizes.items())), full.data_root)
    cuda = torch.device("cuda")
    mlp = fit(models.build("base"), data, Recipe(model="base", lr=0.1, epochs=1), cuda)
    cnn = fit(models.build(GRADED_CNN.model), data, GRADED_CNN, cuda)
    assert mlp.test_accuracy[0] > 0.78 and cnn.test_accuracy[0] > 0.85


@needs_cuda
def test_cuda_no_host_sync_inside_an_epochs_steps():
    """An epoch's steps as fit() makes them ask the GPU for nothing back: the minibatches come from minibatches()
    (its order and flips drawn on the CPU and copied to the GPU once, before the epoch's first minibatch: that one
    copy is the only sync allowed), and the GradientRecord keeps the first steps' gradient sums and probes at its
    checkpoints. With the sync debug mode at "error", any sync inside the steps raises."""
    cuda = torch.device("cuda")
    data = synthetic_data().to(cuda)
    model = models.build("base").to(cuda)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    record = GradientRecord(model, 100, to_float(data.train_images[:128]), data.train_labels[:128], [0, 5])
    steps = count_batches(len(data.train_labels), 64)
    batches = minibatches(data.train_images, data.train_labels, 64, torch.Generator().manual_seed(0), flip=True)
    first = next(batches)  # the epoch's one copy of its order and flips to the GPU happens here
    torch.cuda.set_sync_debug_mode("error")
    try:
        losses = train_epoch(model, itertools.chain([first], batches), steps, torch.nn.CrossEntropyLoss(), optimizer,
                             record=record)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert steps == 10 and record.updates == 10 and [s for s, _ in record.probes] == [0, 5]
    assert losses.device.type == "cuda" and bool(torch.isfinite(losses).all())


@needs_mps
def test_mps_one_epoch_learns():
    history = fit(models.build("base"), synthetic_data(), Recipe(model="base", lr=0.3, epochs=2, batch_size=32),
                  torch.device("mps"))
    assert history.test_accuracy[-1] > 0.9
