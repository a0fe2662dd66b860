"""The same numbers where the CPU's kernels agree, close numbers elsewhere: the first minibatch losses of a base-MLP
run and of a CNN run, trained afresh here, against the ones in reference_losses.json (made on another machine).

Which CPUs agree is measured, not assumed: `kernel_probe.py` (the probe of ../shared/xcpu) trains a small MLP and
CNN under the pinned kernels and prints a digest of their losses and weights. A CPU whose digests equal those of a
CPU listed in the file as having reproduced the reference bit for bit must reproduce it bit for bit; any other CPU
(an Intel one: its MKL and oneDNN sum in another order) must stay within the file's tolerance, measured on the
reference machine: at each step, MARGIN times the largest difference that another summation order has made up to
that step (never less than 1e-6 of the loss). It starts at a few parts in 10^7 and grows as training amplifies the
first rounding differences: slowly under SGD, fast under AdamW, whose steps have about the same size whatever the
gradient's.
`python tests/test_reference.py` writes the file again (after a change to what a run computes) and measures that.
"""
import itertools
import json
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from conftest import ROOT, needs_real_data
from helpers import experiments, kernels, models, training
from helpers.data import load_fashion_mnist
from helpers.splits import count_batches, make_splits

REFERENCE = Path(__file__).with_name("reference_losses.json")
PROBE = Path(__file__).with_name("kernel_probe.py")
SIZES = {"train": 10_000, "validation": 1_000, "test": 1_000, "train_eval": 1_000}
RUNS = {"base MLP, lr 0.1, seed 0": dict(lr=0.1, epochs=2),
        "CNN, the CNN's scheme, seed 1": dict(scheme="cnn", epochs=1, seed=1)}
# Other summation orders on the reference machine, as another vendor's kernels have: MKL's vendor-neutral code path,
# oneDNN's AVX (not AVX2) convolutions, ATen without vector instructions.
ORDERS = {"MKL_CBWR=COMPATIBLE": {"MKL_CBWR": "COMPATIBLE"}, "ONEDNN_MAX_CPU_ISA=AVX": {"ONEDNN_MAX_CPU_ISA": "AVX"},
          "ATEN_CPU_CAPABILITY=default": {"ATEN_CPU_CAPABILITY": "default"}}
MARGIN = 4
FLOOR = 1e-6  # of the loss: float32 rounding of the first forward pass

# A fresh process, so that importing helpers chooses the kernels before torch loads (as every worker does).
SCRIPT = f"""
import json, sys
from dataclasses import replace
sys.path.insert(0, {str(ROOT)!r})
import helpers, torch
from helpers import experiments, models
from helpers.data import load_fashion_mnist
from helpers.splits import make_splits
from helpers.training import fit
data = make_splits(load_fashion_mnist({str(ROOT / "data")!r}, download=False), **{SIZES!r})
losses = {{}}
for name, changes in {RUNS!r}.items():
    recipe = replace(experiments.SCHEMES[changes.pop("scheme", "demo")], **changes)
    losses[name] = [v.hex() for v in fit(models.build(recipe.model, recipe.seed), data, recipe,
                                         torch.device("cpu")).step_loss]
print(json.dumps({{"kernels": torch.backends.cpu.get_cpu_capability(), "losses": losses}}))
"""


def clean_environment(**changes: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if k not in kernels.PINNED and k != kernels.SWITCH}, **changes}


def fresh_losses(**changes: str) -> dict:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=900,
                          env=clean_environment(**changes))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def probe_digests() -> dict[str, str]:
    """This CPU's digests of the probe under the pinned kernels."""
    done = subprocess.run([sys.executable, str(PROBE)], capture_output=True, text=True, timeout=600,
                          env=clean_environment(**kernels.PINNED))
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    return {"mlp": found["mlp"], "cnn": found["cnn"]}


def differences(a: list[str], b: list[str]) -> list[float]:
    """Step by step, the absolute difference between two runs' losses (float.hex)."""
    return [abs(float.fromhex(x) - float.fromhex(y)) for x, y in zip(a, b)]


def envelope(measured: list[list[float]], losses: list[str]) -> list[float]:
    """At each step: MARGIN times the largest difference measured up to it, never less than FLOOR of the loss."""
    allowed, running = [], 0.0
    for step, loss in enumerate(losses):
        running = max([running, *(m[step] for m in measured)])
        allowed.append(max(MARGIN * running, FLOOR * abs(float.fromhex(loss))))
    return allowed


def parting(reference: dict, fresh: dict, agreeing: list[str]) -> list[str]:
    """Where a fresh run parts from the reference: at any bit where this CPU's kernels agree with a CPU that reproduced
    it (`agreeing`), else beyond the measured tolerance."""
    problems = []
    for name, losses in reference["losses"].items():
        ours = fresh["losses"][name]
        if len(ours) != len(losses) or not all(math.isfinite(float.fromhex(v)) for v in ours):
            problems.append(f"{name}: {len(ours)} finite losses, not the reference's {len(losses)}")
        elif agreeing:  # this CPU's kernels compute as the reference machine's: the same bits
            first = next((i for i, (a, b) in enumerate(zip(ours, losses)) if a != b), None)
            if first is not None:
                problems.append(f"{name}: the minibatch losses part at step {first}, though this CPU's kernels agree "
                                f"with {agreeing[0]}'s")
        else:  # another vendor's kernels: close, within the measured tolerance at every step
            beyond = [(i, d) for i, (d, limit) in enumerate(zip(differences(ours, losses), reference["tolerance"][name]))
                      if d > limit]
            if beyond:
                problems.append(f"{name}: at step {beyond[0][0]} the loss differs by {beyond[0][1]:.2e}, more than the "
                                f"{reference['tolerance'][name][beyond[0][0]]:.2e} other summation orders allow")
    return problems


ON_AVX2 = pytest.mark.skipif(not kernels.has_avx2() or os.environ.get(kernels.SWITCH) == "native",
                             reason="the pinned kernels are the AVX2 ones of x86-64 CPUs; nothing is promised elsewhere")


@needs_real_data
@ON_AVX2
def test_a_fresh_run_equals_the_reference_bit_for_bit_where_the_kernels_agree_and_stays_close_elsewhere():
    reference, fresh, digests = json.loads(REFERENCE.read_text(encoding="utf-8")), fresh_losses(), probe_digests()
    assert fresh["kernels"] == "AVX2"
    agreeing = [cpu for cpu in reference["reproduced_bit_for_bit_on"] if reference["probe_digests"][cpu] == digests]
    assert not parting(reference, fresh, agreeing)
    assert sum(map(len, reference["losses"].values())) >= 300


@needs_real_data
@ON_AVX2
def test_another_vendors_summation_order_passes_within_the_tolerance_and_nothing_looser_does():
    """The path an Intel CPU takes, exercised here: losses summed in another order (MKL's vendor-neutral path) part
    from the reference's bits, stay within its tolerance, and a loss moved beyond it at one step is caught."""
    reference = json.loads(REFERENCE.read_text(encoding="utf-8"))
    other = fresh_losses(**{**kernels.PINNED, "MKL_CBWR": "COMPATIBLE"})
    assert parting(reference, other, agreeing=["this CPU"])  # not the same bits: the bit-for-bit check would fail
    assert not parting(reference, other, agreeing=[])  # but within the tolerance
    name = next(iter(reference["losses"]))
    moved = json.loads(json.dumps(other))
    step = len(moved["losses"][name]) // 2
    moved["losses"][name][step] = (float.fromhex(reference["losses"][name][step])
                                   + 1.01 * reference["tolerance"][name][step]).hex()
    assert any(f"at step {step} " in p for p in parting(reference, moved, agreeing=[]))


def reference_recipes() -> dict:
    """The recipe of each reference run, as the code has it now."""
    return {name: replace(experiments.SCHEMES[changes.get("scheme", "demo")],
                          **{k: v for k, v in changes.items() if k != "scheme"}) for name, changes in RUNS.items()}


def test_the_reference_lists_the_cpus_it_has_seen_and_a_measured_tolerance_for_every_step_the_code_makes():
    """The file's structure, and as many losses per run as the code's recipes make steps on SIZES (an edit of a
    scheme's batch size or of RUNS' epochs calls for writing the file again)."""
    reference = json.loads(REFERENCE.read_text(encoding="utf-8"))
    assert set(reference["reproduced_bit_for_bit_on"]) <= set(reference["probe_digests"])
    assert len(reference["probe_digests"]) >= 2 and set(reference["tolerance"]) == set(reference["losses"])
    for name, recipe in reference_recipes().items():
        assert len(reference["losses"][name]) == recipe.epochs * count_batches(SIZES["train"], recipe.batch_size), name
    for name, tolerance in reference["tolerance"].items():
        losses = [abs(float.fromhex(v)) for v in reference["losses"][name]]
        assert len(tolerance) == len(losses) and all(t >= FLOOR * loss for t, loss in zip(tolerance, losses))
        assert tolerance[0] < 1e-5 < tolerance[-1]  # a few float32 roundings at first; far more after training


FIRST_STEPS = 10


@needs_real_data
@ON_AVX2
def test_the_code_as_it_is_now_still_computes_the_references_first_steps(monkeypatch):
    """Fast, in this process (whose kernels importing helpers chose, as in a worker): fit() as the code has it now,
    stopped after the first FIRST_STEPS minibatches of each epoch, gives each reference run's first losses within
    the file's tolerance. A change to what a run computes (the split, the network or its initialisation, the
    minibatch order or flips, the pixels' scaling, the loss, the optimizer or its schedule, the step) fails here in
    seconds, where the tests above take minutes."""
    assert torch.backends.cpu.get_cpu_capability() == "AVX2"
    reference = json.loads(REFERENCE.read_text(encoding="utf-8"))
    real = training.minibatches
    monkeypatch.setattr(training, "minibatches", lambda *args, **kwargs: itertools.islice(real(*args, **kwargs),
                                                                                           FIRST_STEPS))
    data = make_splits(load_fashion_mnist(ROOT / "data", download=False), **SIZES)
    for name, recipe in reference_recipes().items():
        recipe = replace(recipe, epochs=1) if recipe.schedule == "constant" else recipe  # the first steps alike
        history = training.fit(models.build(recipe.model, recipe.seed), data, recipe, torch.device("cpu"))
        ours, theirs = history.step_loss[:FIRST_STEPS], reference["losses"][name][:FIRST_STEPS]
        assert len(ours) == FIRST_STEPS and all(loss > 0 for loss in ours), name
        beyond = [(step, difference) for step, (difference, limit) in enumerate(zip(
            differences([v.hex() for v in ours], theirs), reference["tolerance"][name])) if difference > limit]
        assert not beyond, f"{name}: at step {beyond[0][0]} the loss differs from the reference's by {beyond[0][1]:.2e}"


if __name__ == "__main__":
    from helpers.device import cpu_name
    machine = cpu_name() + (" with AVX-512" if " avx512f" in open("/proc/cpuinfo").read() else " (AVX2, no AVX-512)")
    base = fresh_losses()
    measured = {order: {name: differences(losses, base["losses"][name])
                        for name, losses in fresh_losses(**changes)["losses"].items()} for order, changes in ORDERS.items()}
    old = json.loads(REFERENCE.read_text(encoding="utf-8")) if REFERENCE.exists() else {}
    REFERENCE.write_text(json.dumps({
        "machine": machine, "kernels": base["kernels"],
        "reproduced_bit_for_bit_on": [machine] + sys.argv[1:],  # further CPUs seen to agree, named on the command line
        "probe_digests": {**old.get("probe_digests", {}), machine: probe_digests()},
        "largest_difference_measured": {order: {name: max(d) for name, d in m.items()} for order, m in measured.items()},
        "tolerance": {name: envelope([m[name] for m in measured.values()], losses) for name, losses in base["losses"].items()},
        "losses": base["losses"]}, indent=1) + "\n")
    print(f"wrote {REFERENCE}: {json.dumps(measured)}")
