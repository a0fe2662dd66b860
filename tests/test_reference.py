"""The same numbers on every x86-64 CPU with AVX2: the first minibatch losses of a base-MLP run and of a CNN
run, trained afresh here, equal bit for bit the ones committed in reference_losses.json (made on another
machine). Run `python tests/test_reference.py` to write the file again after changing what a run computes."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, needs_real_data
from helpers import kernels

REFERENCE = Path(__file__).with_name("reference_losses.json")
SIZES = {"train": 10_000, "validation": 1_000, "test": 1_000, "train_eval": 1_000}
RUNS = {"base MLP, lr 0.1, seed 0": dict(model="base", lr=0.1, epochs=2),
        "CNN 16-32-64, AdamW one-cycle, seed 1": dict(model="cnn", lr=0.01, epochs=1, optimizer="adamw",
                                                      weight_decay=0.05, schedule="onecycle", batch_size=128,
                                                      flip=True, seed=1)}

# A fresh process, so that importing helpers chooses the kernels before torch loads (as every worker does).
SCRIPT = f"""
import json, sys
sys.path.insert(0, {str(ROOT)!r})
import helpers, torch
from helpers import models, workers
from helpers.data import load_fashion_mnist
from helpers.splits import split
from helpers.training import Recipe, fit
data = split(load_fashion_mnist({str(ROOT / "data")!r}, download=False), **{SIZES!r})
losses = {{name: [v.hex() for v in fit(models.build(recipe["model"], recipe.get("seed", 0)), data, Recipe(**recipe),
                                       torch.device("cpu")).step_loss]
          for name, recipe in {RUNS!r}.items()}}
print(json.dumps({{"kernels": torch.backends.cpu.get_cpu_capability(), "losses": losses}}))
"""


def fresh_losses() -> dict:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600,
                          env={k: v for k, v in os.environ.items() if k not in kernels.PINNED})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@needs_real_data
@pytest.mark.skipif(not kernels.has_avx2() or os.environ.get(kernels.SWITCH) == "native",
                    reason="the same numbers are promised on x86-64 CPUs with AVX2 and the pinned kernels only")
def test_a_fresh_run_equals_the_committed_reference_bit_for_bit():
    reference, fresh = json.loads(REFERENCE.read_text(encoding="utf-8")), fresh_losses()
    assert fresh["kernels"] == "AVX2"
    for name, losses in reference["losses"].items():
        first_difference = next((i for i, (a, b) in enumerate(zip(fresh["losses"][name], losses)) if a != b), None)
        assert first_difference is None and len(fresh["losses"][name]) == len(losses), \
            f"{name}: the minibatch losses part at step {first_difference} (reference made on {reference['machine']})"
    assert sum(map(len, reference["losses"].values())) >= 300


if __name__ == "__main__":
    from helpers.device import cpu_name
    REFERENCE.write_text(json.dumps({"machine": cpu_name() + (" with AVX-512" if " avx512f" in open("/proc/cpuinfo").read() else ""),
                                     **fresh_losses()}, indent=1) + "\n")
    print(f"wrote {REFERENCE}")
