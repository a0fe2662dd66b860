"""Run-or-load: results found by what was trained, one line says why a run trains again, atomic writes,
interrupts, the code of a run in its key, workers side by side, and a worker that dies."""
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import types
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import ROOT, needs_real_data, synthetic_data
from helpers import code, config, experiments, models, workers
from helpers.experiments import run, write_json
from helpers.training import Recipe

TINY = Recipe(model="base", lr=0.1, epochs=1, batch_size=64)


@pytest.fixture
def profile(tmp_path, monkeypatch):
    """A profile writing to a temp folder, with synthetic data instead of Fashion-MNIST."""
    monkeypatch.setattr(workers, "splits", lambda profile: synthetic_data())
    monkeypatch.delenv("A3_RERUN", raising=False)
    monkeypatch.setattr(experiments, "_written", set())
    return replace(config.get_profile("quick"), results_dir=tmp_path / "results")


def quiet_run(recipes, profile, logs=None, **kwargs):
    """Train in this process (workers_=0), collecting the log lines."""
    return run(recipes, profile, workers_=0, log=(logs if logs is not None else []).append, **kwargs)


def count_fits(monkeypatch) -> list[str]:
    calls = []
    real = workers.fit

    def counting_fit(model, data, recipe, *args, **kwargs):
        calls.append(f"{recipe.model} lr {recipe.lr:g}")
        return real(model, data, recipe, *args, **kwargs)
    monkeypatch.setattr(workers, "fit", counting_fit)
    return calls


def test_second_run_loads_the_stored_result_without_training(profile, monkeypatch):
    calls, logs = count_fits(monkeypatch), []
    first = quiet_run({"tiny": TINY}, profile, logs)["tiny"]
    second = quiet_run({"tiny": TINY}, profile, logs)["tiny"]
    assert calls == ["base lr 0.1"]
    assert second.test_accuracy == first.test_accuracy  # fresh and stored runs read alike, to the last digit
    assert logs[0].startswith("trained 1 of 1 runs") and logs[1].startswith("all 1 runs loaded")
    assert not list(profile.results_dir.glob("*.tmp"))


def test_an_edited_recipe_trains_again_saying_why_and_undoing_the_edit_finds_the_earlier_result(profile, monkeypatch):
    calls, logs = count_fits(monkeypatch), []
    quiet_run({"probe_seed0": TINY}, profile)
    quiet_run({"probe_seed0": replace(TINY, lr=0.05)}, profile, logs)
    assert logs[0] == "probe_seed0: the recipe changed (lr 0.1 -> 0.05); training it"
    quiet_run({"probe_seed0": TINY}, profile, logs)  # the edit undone
    assert calls == ["base lr 0.1", "base lr 0.05"] and logs[-1].startswith("all 1 runs loaded")


def test_results_are_found_by_what_was_trained_not_by_name(profile, monkeypatch):
    calls = count_fits(monkeypatch)
    same = quiet_run({"lr0.5_seed0": replace(TINY, lr=0.5), "sweep_0.5": replace(TINY, lr=0.5)}, profile)
    assert calls == ["base lr 0.5"] and same["lr0.5_seed0"].step_loss == same["sweep_0.5"].step_loss
    quiet_run({"lr0.5_seed0": replace(TINY, lr=0.5, seed=1)}, profile)  # one name, another recipe: no clash
    again = quiet_run({"sweep_0.5": replace(TINY, lr=0.5)}, profile)
    assert len(calls) == 2 and again["sweep_0.5"].step_loss == same["sweep_0.5"].step_loss


def test_rerun_retrains_what_earlier_sessions_wrote_but_not_this_ones(profile, monkeypatch):
    calls = count_fits(monkeypatch)
    quiet_run({"tiny": TINY}, profile)
    monkeypatch.setattr(experiments, "_written", set())  # a new session
    quiet_run({"tiny": TINY}, profile, rerun=True)
    quiet_run({"tiny": TINY}, profile, rerun=True)  # the same session asks again: trained already
    assert len(calls) == 2


@pytest.mark.parametrize("content", ['{"key": {"recipe": 1', "", "not json at all", '{"history": {}}', "[1, 2]"])
def test_a_damaged_result_is_reported_in_one_line_and_retrained(profile, monkeypatch, content):
    quiet_run({"tiny": TINY}, profile)
    path = next(profile.results_dir.glob("tiny-*.json"))
    path.write_text(content)
    calls, logs = count_fits(monkeypatch), []
    history = quiet_run({"tiny": TINY}, profile, logs)["tiny"]
    assert calls == ["base lr 0.1"] and history.epochs == 1
    assert f"{path.name}: unreadable" in logs[0] and "training it again" in logs[0] and "\n" not in logs[0]
    assert json.loads(path.read_text())["history"]["test_accuracy"]  # rewritten intact


def test_an_edited_network_trains_again_and_says_so(profile, monkeypatch):
    quiet_run({"tiny": TINY}, profile)
    monkeypatch.setitem(models.STRUCTURES, "base", (512, 128))
    logs = []
    history = quiet_run({"tiny": TINY}, profile, logs)["tiny"]
    assert logs[0] == "tiny: the network changed (669,706 -> 468,874 parameters); training it"
    assert history.parameters == 468_874  # the edited network is what trained


def test_an_edited_cnn_width_trains_again(profile, monkeypatch):
    cnn = Recipe(model="cnn_8_16_32", lr=0.01, epochs=1, optimizer="adamw")
    quiet_run({"cnn": cnn}, profile)
    monkeypatch.setitem(models.CNN_CANDIDATES, "cnn_8_16_32", (8, 16, 24))
    logs = []
    quiet_run({"cnn": cnn}, profile, logs)
    assert "the network changed (21,634 -> 16,546 parameters)" in logs[0]


def fake_module(tmp_path: Path, name: str, text: str) -> types.ModuleType:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(text))
    module = types.ModuleType(f"helpers.{name}")
    module.__file__ = str(path)
    return module


TRAINING = '''
    """The training step."""
    def train_epoch(model, batches, loss_fn, optimizer):
        """One pass."""
        for images, labels in batches:
            loss = loss_fn(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
'''


def test_the_key_follows_the_code_of_a_run_but_not_its_comments_or_docstrings(profile, tmp_path, monkeypatch):
    module = fake_module(tmp_path, "training", TRAINING)
    monkeypatch.setattr(experiments, "RUN_CODE", (module,))
    key = experiments.cache_key(TINY, profile)
    time.sleep(0.01)
    fake_module(tmp_path, "training", TRAINING.replace('"""One pass."""', '"""One pass over the data."""')
                .replace("loss.backward()", "loss.backward()  # the gradients"))
    assert experiments.cache_key(TINY, profile) == key
    fake_module(tmp_path, "training", TRAINING.replace(
        "loss.backward()\n", "loss.backward()\n            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)\n"))
    edited = experiments.cache_key(TINY, profile)
    assert edited != key and experiments.what_changed(key, edited) == "the training code changed (training.py)"


def test_code_is_shown_as_the_file_has_it_and_fingerprinted_without_comments(tmp_path):
    module = fake_module(tmp_path, "training", TRAINING)
    assert code.source(module, "train_epoch").startswith("def train_epoch(model, batches, loss_fn, optimizer):")
    bare = code.source(module, "train_epoch", bare=True)
    assert '"""' not in bare and bare.splitlines()[1].strip() == "for images, labels in batches:"
    with pytest.raises(ValueError, match="no top-level evaluate"):
        code.source(module, "evaluate")


def test_interrupted_sequence_resumes_after_the_last_finished_run(profile, monkeypatch):
    recipes = {name: replace(TINY, seed=i) for i, name in enumerate("abc")}
    real = workers.fit

    def interrupting_fit(model, data, recipe, *args, **kwargs):
        if recipe.seed == 1:
            raise KeyboardInterrupt
        return real(model, data, recipe, *args, **kwargs)
    monkeypatch.setattr(workers, "fit", interrupting_fit)
    with pytest.raises(KeyboardInterrupt):
        quiet_run(recipes, profile)
    assert [p.name.split("-")[0] for p in profile.results_dir.iterdir()] == ["a"]  # finished runs only, no .tmp
    seeds = []
    monkeypatch.setattr(workers, "fit", lambda m, d, r, *a, **k: (seeds.append(r.seed), real(m, d, r, *a, **k))[1])
    quiet_run(recipes, profile)
    assert sorted(seeds) == [1, 2]


def test_write_json_is_atomic_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "x.json"
    write_json(path, {"ok": 1})
    with pytest.raises(TypeError):
        write_json(path, {"bad": object()})  # fails half-way through serialising
    assert json.loads(path.read_text()) == {"ok": 1}
    with pytest.raises(ValueError):
        write_json(path, {"nan": float("nan")})  # JSON has no NaN: refused, old file kept
    assert json.loads(path.read_text()) == {"ok": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]


def test_bad_recipes_fail_before_any_data_is_loaded(profile, monkeypatch):
    monkeypatch.setattr(workers, "splits", lambda profile: pytest.fail("data loaded"))
    with pytest.raises(ValueError, match="model='mlp'"):
        quiet_run({"x": replace(TINY, model="mlp")}, profile)


def test_profiles_and_switches(monkeypatch):
    assert config.get_profile("quick").results_dir.is_relative_to(config.get_profile("full").results_dir)
    monkeypatch.setenv("A3_PROFILE", "fast")
    with pytest.raises(ValueError, match="A3_PROFILE='fast'"):
        config.get_profile()
    monkeypatch.setenv("A3_WORKERS", "two")
    with pytest.raises(ValueError, match="A3_WORKERS='two'"):
        config.workers_requested()
    monkeypatch.setenv("A3_DEVICE", "tpu")
    with pytest.raises(ValueError, match="A3_DEVICE='tpu'"):
        config.device_requested()


def test_the_pool_is_sized_by_cores_and_by_memory(monkeypatch):
    import torch
    monkeypatch.delenv("A3_WORKERS", raising=False)
    monkeypatch.setattr(workers, "cores", lambda: 8)
    monkeypatch.setattr(workers, "free_memory_mb", lambda: 4000)  # a laptop with 8 GB, half of it in use
    assert workers.worker_count(torch.device("cpu"), jobs=20) == 3
    monkeypatch.setattr(workers, "free_memory_mb", lambda: 64000)
    assert workers.worker_count(torch.device("cpu"), jobs=20) == 8
    assert workers.worker_count(torch.device("cpu"), jobs=2) == 2
    assert workers.worker_count(torch.device("cuda"), jobs=20) == workers.GPU_RUNS
    assert workers.worker_count(torch.device("mps"), jobs=20) == 1
    monkeypatch.setattr(workers, "free_memory_mb", lambda: 500)
    assert workers.worker_count(torch.device("cpu"), jobs=20) == 1  # never fewer than one


REAL = replace(config.get_profile("quick"), train_samples=1_500, validation_samples=300, test_samples=300,
               train_eval_samples=300)


def timeless(history) -> dict:
    values = {k: v for k, v in vars(history).items() if k not in ("seconds", "eval_seconds", "started", "finished",
                                                                   "peak_memory_mb", "machine")}
    return values


@needs_real_data
def test_side_by_side_and_in_this_process_give_the_same_histories(tmp_path, monkeypatch):
    """Real data, spawned workers: two recipes trained by 2 workers equal the same two trained in this process."""
    monkeypatch.delenv("A3_RERUN", raising=False)
    recipes = {"mlp": Recipe(model="base", lr=0.1, epochs=2, gradient_epochs=1),
               "cnn": Recipe(model="cnn_8_16_32", lr=0.01, epochs=1, optimizer="adamw", flip=True)}
    results = {}
    for count in (0, 2):
        results[count] = run(recipes, replace(REAL, results_dir=tmp_path / f"w{count}"), workers_=count,
                             log=lambda _: None)
    for name in recipes:
        assert timeless(results[0][name]) == timeless(results[2][name]), name
    assert results[2]["mlp"].peak_memory_mb > 100 and results[2]["mlp"].machine["side_by_side"] == 2


def test_an_error_in_a_worker_reaches_the_caller_and_finished_runs_are_kept(tmp_path, monkeypatch):
    monkeypatch.delenv("A3_RERUN", raising=False)
    profile = replace(REAL, results_dir=tmp_path / "results", data_root=tmp_path / "no-data-here")
    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(Exception, match="FASHION_MNIST_DIR"):
        run({"a": TINY, "b": replace(TINY, seed=1)}, profile, workers_=2, log=lambda _: None)
    assert not (profile.results_dir.exists() and list(profile.results_dir.glob("*.tmp")))


@needs_real_data
def test_a_killed_worker_stops_the_call_at_once_naming_its_run_and_keeps_the_finished_ones(tmp_path, monkeypatch):
    import psutil
    monkeypatch.delenv("A3_RERUN", raising=False)
    profile = replace(REAL, results_dir=tmp_path / "results")
    recipes = {"short": TINY, "long": replace(TINY, epochs=500)}  # side by side: the short one finishes first
    killed = {}

    def kill_the_long_run():
        deadline = time.time() + 120
        while time.time() < deadline and not list(profile.results_dir.glob("short-*.json")):
            time.sleep(0.1)
        time.sleep(1.0)
        for child in psutil.Process().children(recursive=True):
            try:
                worker = "spawn_main" in " ".join(child.cmdline())
            except psutil.Error:  # a process that has ended meanwhile (a zombie)
                continue
            if worker:  # kill the workers, as the out-of-memory killer would
                killed["at"] = time.time()
                os.kill(child.pid, signal.SIGKILL)
    threading.Thread(target=kill_the_long_run, daemon=True).start()
    with pytest.raises(workers.WorkerDied) as stop:
        run(recipes, profile, workers_=2, log=lambda _: None)
    assert time.time() - killed["at"] < 5
    message = str(stop.value)
    assert "run long" in message and "out of memory" in message and "\n" not in message
    assert [p.name.split("-")[0] for p in profile.results_dir.glob("*.json")] == ["short"]


@needs_real_data
def test_editing_the_training_step_on_disk_retrains_with_the_edited_code(tmp_path):
    """A copy of the project: train, add gradient clipping after loss.backward() in helpers/training.py, run
    again (it trains again, saying why, and the numbers change), then edit only a comment (it loads)."""
    project = tmp_path / "project"
    shutil.copytree(ROOT / "helpers", project / "helpers", ignore=shutil.ignore_patterns("__pycache__"))
    (project / "data").symlink_to(ROOT / "data")
    script = project / "go.py"
    script.write_text(textwrap.dedent('''
        from dataclasses import replace
        from helpers import config, experiments
        from helpers.training import Recipe
        if __name__ == "__main__":
            profile = replace(config.get_profile("quick"), train_samples=1000, validation_samples=200, test_samples=200,
                              train_eval_samples=200, results_dir=config.ROOT / "results", data_root=config.ROOT / "data")
            history = experiments.run({"probe": Recipe(model="base", lr=1.0, epochs=1)}, profile, workers_=1)["probe"]
            print("losses", history.step_loss[-3:])
    '''))

    def go() -> str:
        done = subprocess.run([sys.executable, str(script)], cwd=project, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "A3_PROGRESS": "0"})
        assert done.returncode == 0, done.stderr
        return done.stdout
    first = go()
    training = project / "helpers" / "training.py"
    text = training.read_text()
    training.write_text(text.replace("        loss.backward()\n", "        loss.backward()\n"
                                     "        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)\n", 1))
    clipped = go()
    assert "probe: the training code changed (training.py); training it" in clipped
    assert clipped.splitlines()[-1] != first.splitlines()[-1]  # the clipping changed the losses
    training.write_text(training.read_text().replace("# Q1.6: the mean gradient", "# Q1.6: the mean of the gradients"))
    assert "all 1 runs loaded" in go()
