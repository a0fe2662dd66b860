"""Run-or-load: results found by what was trained, one line says why a run trains again, atomic writes,
interrupts, the code of a run in its key, workers side by side, and a worker that dies."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import asdict, replace
from pathlib import Path

import psutil
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import ROOT, needs_real_data, synthetic_data
from helpers import config, sourcecode, device, experiments, models, pool, summary, workers
from helpers.experiments import run, write_json
from helpers.training import Recipe

TINY = Recipe(model="base", lr=0.1, epochs=1, batch_size=64)


@pytest.fixture
def profile(tmp_path, monkeypatch):
    """A profile writing to a temp folder, with synthetic data instead of Fashion-MNIST."""
    monkeypatch.setattr(workers, "load_splits", lambda sizes, root: synthetic_data())
    monkeypatch.delenv("A3_RERUN", raising=False)
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


def test_lr_1_and_lr_1_0_are_one_recipe_with_one_key(profile):
    one, one_point_zero = (experiments.cache_key(replace(TINY, lr=lr, momentum=0), profile) for lr in (1, 1.0))
    assert experiments.digest(one) == experiments.digest(one_point_zero)


def test_an_int_where_an_old_stored_key_has_a_float_is_named_in_the_line_that_retrains(profile, monkeypatch):
    """A result stored before Recipe made its numbers floats: its key says lr 1, the recipe's says lr 1.0. Python
    finds 1 == 1.0, the stored JSON does not: the run trains again and the line says so, in those digits."""
    recipe = replace(TINY, lr=1.0)
    quiet_run({"probe": recipe}, profile)
    path = next(profile.results_dir.glob("probe-*.json"))
    content = json.loads(path.read_text(encoding="utf-8"))
    content["key"]["recipe"]["lr"] = 1
    path.unlink()
    write_json(experiments.path_for(profile, "probe", content["key"]), content)
    calls, logs = count_fits(monkeypatch), []
    quiet_run({"probe": recipe}, profile, logs)
    assert calls == ["base lr 1"] and logs[0] == "probe: the recipe changed (lr 1 -> 1.0); training it"


JSON_NAMES = st.text("abcdefghij_", min_size=1, max_size=5)
JSON_SCALARS = (st.none() | st.booleans() | st.integers(-3, 3) | st.floats(-3, 3, allow_nan=False)
                | st.text("abc xyz", max_size=4))
JSON_VALUES = st.recursive(JSON_SCALARS | st.lists(JSON_SCALARS, max_size=3),
                           lambda inner: st.dictionaries(JSON_NAMES, inner, min_size=1, max_size=3), max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_a_retrain_message_names_in_words_every_part_and_entry_that_differs(data):
    """Against any older key (a part missing, edited, added to, or not a table at all; entries that differ only as 1
    and 1.0 do): the line names each part that differs in words and each entry that differs by its name: never
    '()', never a value without the name of its entry."""
    new = {"recipe": asdict(TINY), "data": {"train": 4000, "validation": 500, "test": 1000, "train_eval": 1000},
           "network": {"network": "MLP", "hidden_sizes": [512, 512]}, "code": {"training.py": "ab12", "models.py": "cd"}}
    old = {}
    for part, value in new.items():
        how = data.draw(st.sampled_from(["same", "absent", "other", "edited"]))
        if how == "same":
            old[part] = value
        elif how == "other":
            old[part] = data.draw(JSON_VALUES)
        elif how == "edited":
            old[part] = {**value, **data.draw(st.dictionaries(st.sampled_from(sorted(value)) | JSON_NAMES, JSON_VALUES,
                                                              min_size=1, max_size=2))}
    old.update(data.draw(st.dictionaries(st.sampled_from(["torch", "format"]), JSON_VALUES, max_size=1)))
    message = experiments.what_changed(old, new)
    assert message and "\n" not in message
    assert not re.search(r"\((\s|,|\))|, (,|\))", message), message  # no '()', no entry without its name

    def text(value):
        return json.dumps(value, sort_keys=True)
    for part, words in experiments.PARTS.items():
        assert (words in message) == (text(old.get(part)) != text(new[part])), (part, message)
        if isinstance(old.get(part), dict):
            for entry in old[part].keys() | new[part].keys():
                if text(old[part].get(entry)) != text(new[part].get(entry)):
                    assert entry in message, (entry, message)


def test_results_are_found_by_what_was_trained_not_by_name(profile, monkeypatch):
    calls = count_fits(monkeypatch)
    same = quiet_run({"lr0.5_seed0": replace(TINY, lr=0.5), "sweep_0.5": replace(TINY, lr=0.5)}, profile)
    assert calls == ["base lr 0.5"] and same["lr0.5_seed0"].step_loss == same["sweep_0.5"].step_loss
    quiet_run({"lr0.5_seed0": replace(TINY, lr=0.5, seed=1)}, profile)  # one name, another recipe: no clash
    again = quiet_run({"sweep_0.5": replace(TINY, lr=0.5)}, profile)
    assert len(calls) == 2 and again["sweep_0.5"].step_loss == same["sweep_0.5"].step_loss


def test_a_retrain_retrains_what_was_stored_before_it_began_and_resumes_after_a_cut(profile, monkeypatch):
    calls = count_fits(monkeypatch)
    quiet_run({"tiny": TINY}, profile)
    quiet_run({"tiny": TINY, "other": replace(TINY, lr=0.5)}, profile, rerun=True)  # both stored before: retrained
    assert len(calls) == 3 and profile.rerun_mark.is_file()
    quiet_run({"tiny": TINY, "other": replace(TINY, lr=0.5)}, profile, rerun=True)  # cut off and started again,
    assert len(calls) == 3  # in this process or another: what the retrain stored is kept
    summary.save({"runs": {"count": 2, "epochs": 2, "seconds_wall": 1, "side_by_side": 1, "machines": ["CPU"]}},
                 profile)  # the notebook's end: the retrain is over
    assert not profile.rerun_mark.exists()
    quiet_run({"tiny": TINY}, profile, rerun=True)  # a new retrain
    assert len(calls) == 4


@pytest.mark.parametrize("content", ['{"key": {"recipe": 1', "", "not json at all", '{"history": {}}', "[1, 2]"])
def test_a_damaged_result_is_reported_in_one_line_and_retrained(profile, monkeypatch, content):
    quiet_run({"tiny": TINY}, profile)
    path = next(profile.results_dir.glob("tiny-*.json"))
    path.write_text(content, encoding="utf-8")
    calls, logs = count_fits(monkeypatch), []
    history = quiet_run({"tiny": TINY}, profile, logs)["tiny"]
    assert calls == ["base lr 0.1"] and history.epochs == 1
    assert f"{path.name}: unreadable" in logs[0] and "training it again" in logs[0] and "\n" not in logs[0]
    assert json.loads(path.read_text(encoding="utf-8"))["history"]["test_accuracy"]  # rewritten intact


def test_an_edited_network_trains_again_and_says_so(profile, monkeypatch):
    quiet_run({"tiny": TINY}, profile)
    monkeypatch.setattr(models, "structures", lambda: {"base": (512, 128)})
    logs = []
    history = quiet_run({"tiny": TINY}, profile, logs)["tiny"]
    assert logs[0] == "tiny: the network changed (hidden_sizes [512, 512] -> [512, 128]); training it"
    assert history.parameters == 468_874  # the edited network is what trained


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A copy of helpers/ that code_key and the network spec read instead of the real one."""
    copy = tmp_path / "helpers"
    shutil.copytree(ROOT / "helpers", copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(sourcecode, "PACKAGE", copy)
    monkeypatch.setattr(workers, "__file__", str(copy / "workers.py"))
    monkeypatch.setattr(models, "__file__", str(copy / "models.py"))
    return copy


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    time.sleep(0.01)  # a new modification time, as a real edit has
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


PARENT_SIDE = ("config.py", "experiments.py", "pool.py", "report.py", "tables.py", "summary.py", "plotting.py")


def test_the_key_holds_the_code_of_every_file_a_worker_imports_found_from_the_imports(project):
    assert sorted(experiments.code_key(models.spec("base"))) == sorted(
        p.name for p in project.glob("*.py") if p.name not in PARENT_SIDE)
    edit(project / "training.py", "from .splits import", "from .augment import flip_images\nfrom .splits import")
    (project / "augment.py").write_text("def flip_images(x):\n    return x.flip(-1)\n", encoding="utf-8")
    assert "augment.py" in experiments.code_key(models.spec("base"))  # a new module the training step imports


def test_an_edit_of_one_network_retrains_only_that_networks_runs(project):
    mlp, cnn = (experiments.code_key(models.spec(name)) for name in ("base", "cnn"))
    edit(project / "models.py", "nn.BatchNorm2d(c3), nn.ReLU(),", "nn.BatchNorm2d(c3), nn.GELU(),")
    assert experiments.code_key(models.spec("base")) == mlp and experiments.code_key(models.spec("cnn")) != cnn
    edit(project / "models.py", '"wider": (1024, 1024)', '"wider": (1536, 1536)')  # a table: in the spec, not the code
    assert experiments.code_key(models.spec("wider")) == mlp and models.spec("wider")["hidden_sizes"] == [1536, 1536]
    edit(project / "models.py", "layers.append(nn.Linear(width, NUM_CLASSES))",
         "layers.append(nn.Linear(width, NUM_CLASSES, bias=False))")
    assert experiments.code_key(models.spec("base")) != mlp


def test_the_key_of_a_network_holds_the_blocks_and_functions_it_uses(project):
    """A block class and a helper function that only the CNN uses: editing either retrains the CNN's runs and no
    MLP's; a constant both use retrains both."""
    edit(project / "models.py", "class SmallCNN(nn.Module):", textwrap.dedent('''
        def conv(c_in: int, c_out: int) -> nn.Conv2d:
            return nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)


        class ConvBlock(nn.Sequential):
            def __init__(self, c_in: int, c_out: int):
                super().__init__(conv(c_in, c_out), nn.BatchNorm2d(c_out), nn.ReLU())


        class SmallCNN(nn.Module):'''))
    edit(project / "models.py", "nn.Conv2d(c2, c3, 3, padding=1, bias=False), nn.BatchNorm2d(c3), nn.ReLU(),",
         "ConvBlock(c2, c3),")
    mlp, cnn = (experiments.code_key(models.spec(name)) for name in ("base", "cnn"))
    edit(project / "models.py", "super().__init__(conv(c_in, c_out), nn.BatchNorm2d(c_out), nn.ReLU())",
         "super().__init__(conv(c_in, c_out), nn.BatchNorm2d(c_out), nn.GELU())")
    block = experiments.code_key(models.spec("cnn"))
    assert block != cnn and experiments.code_key(models.spec("base")) == mlp
    edit(project / "models.py", "return nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)",
         "return nn.Conv2d(c_in, c_out, 3, padding=1, bias=True)")
    assert experiments.code_key(models.spec("cnn")) != block and experiments.code_key(models.spec("base")) == mlp
    edit(project / "models.py", "NUM_CLASSES = len(CLASS_NAMES)", "NUM_CLASSES = 0 + len(CLASS_NAMES)")
    assert experiments.code_key(models.spec("base")) != mlp


def test_comments_and_docstrings_do_not_change_the_key_but_code_does(project, profile):
    key = experiments.cache_key(TINY, profile)
    edit(project / "training.py", "        loss.backward()\n", "        loss.backward()  # the gradients\n")
    edit(project / "splits.py", '"""uint8 pixels', '"""The uint8 pixels')
    assert experiments.cache_key(TINY, profile) == key
    edit(project / "device.py", "torch.set_num_threads(1)", "torch.set_num_threads(2)")  # the thread count
    edited = experiments.cache_key(TINY, profile)
    assert edited != key and experiments.what_changed(key, edited) == "the code of a run changed (device.py)"


def test_the_closure_is_what_a_worker_loads():
    """The files code_key fingerprints are exactly the helpers modules a fresh process has loaded after it imported
    the worker module and trained a run."""
    script = ("import sys; sys.path.insert(0, 'tests'); import helpers.workers as w; from conftest import synthetic_data;"
              "from helpers.training import Recipe; import torch;"
              "w.fit(w.models.build('base'), synthetic_data(), Recipe(model='base', lr=0.1, epochs=1, gradient_steps=100, probe_images=128),"
              " torch.device('cpu')); w.peak_memory_mb();"
              "print(sorted(m.split('.')[-1] for m in sys.modules if m.startswith('helpers.')))")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    loaded = eval(done.stdout.strip().splitlines()[-1])  # noqa: S307 -- our own printout
    assert sorted(p.stem for p in sourcecode.closure(ROOT / "helpers" / "workers.py") if p.stem != "__init__") == loaded


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


def test_code_is_shown_as_the_file_has_it_and_fingerprinted_without_comments(tmp_path):
    path = tmp_path / "training.py"
    path.write_text(textwrap.dedent(TRAINING), encoding="utf-8")
    assert sourcecode.source(path, "train_epoch").startswith("def train_epoch(model, batches, loss_fn, optimizer):")
    bare = sourcecode.source(path, "train_epoch", bare=True)
    assert '"""' not in bare and bare.splitlines()[1].strip() == "for images, labels in batches:"
    with pytest.raises(ValueError, match="no top-level evaluate"):
        sourcecode.source(path, "evaluate")


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


def test_write_json_is_atomic_and_leaves_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "x.json"
    write_json(path, {"ok": 1})
    with pytest.raises(TypeError):
        write_json(path, {"bad": object()})  # fails half-way through serialising
    assert json.loads(path.read_text(encoding="utf-8")) == {"ok": 1}
    with pytest.raises(ValueError):
        write_json(path, {"nan": float("nan")})  # JSON has no NaN: refused, old file kept
    assert json.loads(path.read_text(encoding="utf-8")) == {"ok": 1}

    def refuse(*args: object) -> None:
        raise OSError("the rename failed")
    monkeypatch.setattr(experiments.os, "replace", refuse)  # written, not yet renamed: the old file is whole
    with pytest.raises(OSError):
        write_json(path, {"new": 2})
    assert json.loads(path.read_text(encoding="utf-8")) == {"ok": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]


def test_bad_recipes_fail_before_any_data_is_loaded(profile, monkeypatch):
    monkeypatch.setattr(workers, "load_splits", lambda sizes, root: pytest.fail("data loaded"))
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
        device.requested()


def test_the_pool_is_sized_by_cores_and_by_memory(monkeypatch):
    import torch
    monkeypatch.delenv("A3_WORKERS", raising=False)
    monkeypatch.setattr(experiments, "cores", lambda: 8)
    monkeypatch.setattr(experiments, "free_memory_mb", lambda: 4000)  # a laptop with 8 GB, half of it in use
    assert experiments.worker_count(torch.device("cpu"), jobs=20) == 3
    monkeypatch.setattr(experiments, "free_memory_mb", lambda: 64000)
    assert experiments.worker_count(torch.device("cpu"), jobs=20) == 8
    assert experiments.worker_count(torch.device("cpu"), jobs=2) == 2
    assert experiments.worker_count(torch.device("cuda"), jobs=20) == experiments.GPU_RUNS
    assert experiments.worker_count(torch.device("mps"), jobs=20) == 1
    monkeypatch.setattr(experiments, "free_memory_mb", lambda: 500)
    assert experiments.worker_count(torch.device("cpu"), jobs=20) == 1  # never fewer than one


REAL = replace(config.get_profile("quick"), train_samples=1_500, validation_samples=300, test_samples=300,
               train_eval_samples=300)


def timeless(values):
    """A History's values (vars(history)) without what measures time or the machine, at any depth (the probe of
    Q1.6 times itself too)."""
    if isinstance(values, dict):
        return {k: timeless(v) for k, v in values.items()
                if k not in ("seconds", "eval_seconds", "started", "finished", "peak_memory_mb", "machine")}
    return values


@needs_real_data
def test_side_by_side_and_in_this_process_give_the_same_histories(tmp_path, monkeypatch):
    """Real data, spawned workers: two recipes trained by 2 workers equal the same two trained in this process."""
    monkeypatch.delenv("A3_RERUN", raising=False)
    recipes = {"mlp": Recipe(model="base", lr=0.1, epochs=2, gradient_steps=100, probe_images=128),
               "cnn": Recipe(model="cnn", lr=0.01, epochs=1, optimizer="adamw", flip=True)}
    results = {}
    for count in (0, 2):
        results[count] = run(recipes, replace(REAL, results_dir=tmp_path / f"w{count}"), workers_=count,
                             log=lambda _: None)
    for name in recipes:
        assert timeless(vars(results[0][name])) == timeless(vars(results[2][name])), name
    assert results[2]["mlp"].peak_memory_mb > 100 and results[2]["mlp"].machine["side_by_side"] == 2


def test_an_error_in_a_worker_reaches_the_caller_and_finished_runs_are_kept(tmp_path, monkeypatch):
    monkeypatch.delenv("A3_RERUN", raising=False)
    profile = replace(REAL, results_dir=tmp_path / "results", data_root=tmp_path / "no-data-here")
    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(Exception, match="FASHION_MNIST_DIR"):
        run({"a": TINY, "b": replace(TINY, seed=1)}, profile, workers_=2, log=lambda _: None)
    assert not (profile.results_dir.exists() and list(profile.results_dir.glob("*.tmp")))


@needs_real_data
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="SIGKILL is POSIX only (Windows has no such signal)")
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
    with pytest.raises(experiments.WorkerDied) as stop:
        run(recipes, profile, workers_=2, log=lambda _: None)
    assert time.time() - killed["at"] < 5
    message = str(stop.value)
    assert message.startswith("run long: its worker process ended") and "out of memory" in message
    assert "\n" not in message
    assert [p.name.split("-")[0] for p in profile.results_dir.glob("*.json")] == ["short"]


def copy_project(tmp_path: Path, body: str, guard: bool = True) -> Path:
    """A copy of helpers/ beside a script go.py that trains with `body` (under the __main__ guard, or not); the
    data is read from this project's data/ folder."""
    project = tmp_path / "project"
    shutil.copytree(ROOT / "helpers", project / "helpers", ignore=shutil.ignore_patterns("__pycache__"))
    setup = textwrap.dedent(f'''
        from dataclasses import replace
        from pathlib import Path
        from helpers import config, experiments
        from helpers.training import Recipe
        profile = replace(config.get_profile("quick"), train_samples=1000, validation_samples=200, test_samples=200,
                          train_eval_samples=200, results_dir=Path("results"), data_root=Path({str(ROOT / "data")!r}))
    ''')
    body = textwrap.dedent(body)
    main = "if __name__ == \"__main__\":\n" + textwrap.indent(body, "    ") if guard else body
    (project / "go.py").write_text(setup + main, encoding="utf-8")
    return project


def go(project: Path, *args: str, stdin: bool = False) -> subprocess.CompletedProcess:
    script = project / "go.py"
    return subprocess.run([sys.executable, *(["-"] if stdin else [str(script)]), *args], cwd=project, text=True,
                          capture_output=True, timeout=300, env={**os.environ, "A3_PROGRESS": "0"},
                          stdin=open(script, encoding="utf-8") if stdin else None)


@needs_real_data
def test_editing_the_training_step_on_disk_retrains_with_the_edited_code(tmp_path):
    """A copy of the project: train, add gradient clipping after loss.backward() in helpers/training.py, run
    again (it trains again, saying why, and the numbers change), then edit only a comment (it loads)."""
    project = copy_project(tmp_path, '''
        history = experiments.run({"probe": Recipe(model="base", lr=1.0, epochs=1)}, profile, workers_=1)["probe"]
        print("losses", history.step_loss[-3:])
    ''')

    def output() -> str:
        done = go(project)
        assert done.returncode == 0, done.stderr
        return done.stdout
    first = output()
    training = project / "helpers" / "training.py"
    edit(training, "        loss.backward()\n", "        loss.backward()\n"
         "        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)\n")
    clipped = output()
    assert "probe: the code of a run changed (training.py); training it" in clipped
    assert clipped.splitlines()[-1] != first.splitlines()[-1]  # the clipping changed the losses
    edit(training, "# Q1.6: the mean gradient", "# Q1.6: the mean of the gradients")
    assert "all 1 runs loaded" in output()


RUN_TWO = '''
    experiments.run({"a": Recipe(model="base", lr=0.1, epochs=1), "b": Recipe(model="base", lr=0.1, epochs=1, seed=1)},
                    profile, workers_=2)
'''


def last_line(done: subprocess.CompletedProcess) -> str:
    return done.stderr.strip().splitlines()[-1]


def test_a_script_without_the_main_guard_gets_one_line_naming_the_fix(tmp_path):
    done = go(copy_project(tmp_path, RUN_TWO, guard=False))
    assert done.returncode != 0
    assert last_line(done).startswith("helpers.pool.WorkerDied: the worker processes ended while starting")
    assert 'if __name__ == "__main__":' in last_line(done) and "go.py" in last_line(done)


def test_a_script_read_from_standard_input_gets_one_line_naming_the_fix(tmp_path):
    done = go(copy_project(tmp_path, RUN_TWO), stdin=True)
    assert done.returncode != 0 and "'<stdin>', not a file" in last_line(done) and "A3_WORKERS=0" in last_line(done)


@needs_real_data
def test_a_worker_holds_the_images_once():
    """The full profile's splits in a fresh process: the uint8 images alive afterwards are the 70,000 of the splits
    (55,000 + 5,000 + 10,000), not the 70,000 read from the files as well."""
    script = ("import gc, helpers, torch; from helpers import config, workers; p = config.get_profile('full');"
              "s = workers.load_splits(tuple(sorted(p.data_sizes.items())), p.data_root); gc.collect();"
              "print(sum({t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in gc.get_objects()"
              " if isinstance(t, torch.Tensor) and t.dtype == torch.uint8}.values()))")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.strip().splitlines()[-1]) == 70_000 * 28 * 28


def test_a_death_and_a_finish_in_one_poll_save_the_finished_run_before_the_death_is_reported():
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool
    finished, broken = Future(), Future()
    finished.set_result({"test_accuracy": [0.9]})
    broken.set_exception(BrokenProcessPool("a child process terminated abruptly"))
    for order in ([finished, broken], [broken, finished]):  # whichever the poll lists first
        saved = []
        reports = pool.Reports(ready={1, 2}, running={1: "short", 2: "long"})
        with pytest.raises(pool.WorkerDied, match="^run long: its worker process ended abruptly") as error:
            pool.collect(dict.fromkeys(order), {finished: "short", broken: "long"},
                         lambda name, result: saved.append(name), reports)
        assert saved == ["short"] and "\n" not in str(error.value)


def test_a_worker_that_goes_silent_is_stopped_and_named(tmp_path):
    from conftest import hang
    started = time.time()
    with pytest.raises(pool.WorkerDied, match=r"^run stuck: its worker has sent nothing for 0\.\d min") as error:
        pool.train({"stuck": ("stuck",)}, 1, lambda name, result: None, lambda: None, {"stuck": 3.0}, function=hang)
    assert time.time() - started < 60 and "run the cell again" in str(error.value)
    assert not [c for c in psutil.Process().children(recursive=True) if "spawn_main" in " ".join(c.cmdline())]  # the
    # worker was ended, not left sleeping


def test_a_worker_that_cannot_import_helpers_says_so_with_the_path(tmp_path):
    """A helpers file edited into one that cannot be imported (here: a module that does not exist), after the
    script imported helpers: the workers cannot import it, and the one line says so, with the folder they tried."""
    project = copy_project(tmp_path, '''
        splits = Path("helpers") / "splits.py"
        splits.write_text(splits.read_text(encoding="utf-8") + "\\nimport no_such_module_here\\n", encoding="utf-8")
        experiments.run({"a": Recipe(model="base", lr=0.1, epochs=1)}, profile, workers_=1)
    ''')
    done = go(project)
    assert done.returncode != 0
    assert last_line(done) == (f"helpers.pool.WorkerDied: a worker could not import helpers from {project} "
                               f"(ModuleNotFoundError: No module named 'no_such_module_here')")


def test_a_worker_that_cannot_import_helpers_in_a_kernel_says_so_with_the_path(tmp_path, monkeypatch):
    """As in a notebook, whose main module imports nothing of the project: helpers was imported, then a file of it
    was broken on disk. The workers fail in their first code (pool.BOOT), and the one line says why, with the folder."""
    from conftest import hang
    copy = tmp_path / "helpers"
    shutil.copytree(ROOT / "helpers", copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "splits.py").write_text((copy / "splits.py").read_text(encoding="utf-8") + "\nimport no_such_module_here\n",
                                    encoding="utf-8")
    monkeypatch.setattr(pool, "PACKAGE", copy)
    with pytest.raises(pool.WorkerDied) as error:
        pool.train({"a": ("a",)}, 1, lambda name, result: None, lambda: None, {"a": 600.0}, function=hang)
    assert str(error.value) == (f"a worker could not import helpers from {tmp_path} "
                                f"(ModuleNotFoundError: No module named 'no_such_module_here')")


def test_training_in_this_process_refuses_helpers_that_changed_on_disk_since_they_were_imported(profile, monkeypatch):
    """A3_WORKERS=0 trains with the modules this process imported: when a file has changed since (its code, not a
    comment or a table), one line refuses instead of storing the old code's numbers under the new code's key."""
    training = Path(sourcecode.PACKAGE) / "training.py"
    imported = sourcecode.IMPORTED[training.resolve()]
    quiet_run({"tiny": TINY}, profile)  # unchanged: trains
    monkeypatch.setitem(sourcecode.IMPORTED, training.resolve(), imported.replace("# Q1.6: the mean gradient", "# edited"))
    quiet_run({"tiny": replace(TINY, seed=1)}, profile)  # a comment differs: still the same code
    monkeypatch.setitem(sourcecode.IMPORTED, training.resolve(),
                        imported.replace("        loss.backward()\n", "        loss.backward()\n        pass\n"))
    with pytest.raises(RuntimeError, match="^A3_WORKERS=0 trains with the helpers this kernel imported, but "
                                           "training.py changed on disk since: restart the kernel"):
        quiet_run({"tiny": replace(TINY, seed=2)}, profile)
    models_py = Path(sourcecode.PACKAGE) / "models.py"
    monkeypatch.setitem(sourcecode.IMPORTED, training.resolve(), imported)
    monkeypatch.setitem(sourcecode.IMPORTED, models_py.resolve(), sourcecode.IMPORTED[models_py.resolve()].replace(
        '"wider": (1024, 1024)', '"wider": (1536, 1536)'))  # a table is data, sent with the run: no refusal
    quiet_run({"tiny": replace(TINY, seed=3)}, profile)


def test_every_helpers_module_imported_is_kept_as_it_was_imported():
    assert {p.name for p in sourcecode.IMPORTED} >= {p.name for p in sourcecode.closure(ROOT / "helpers" / "workers.py")}
    assert all(text == p.read_text(encoding="utf-8") for p, text in sourcecode.IMPORTED.items() if p.parent == sourcecode.PACKAGE)


def test_a_run_that_fails_by_itself_lets_the_others_finish_and_be_saved_first():
    from concurrent.futures import Future
    finished, failed = Future(), Future()
    finished.set_result({"test_accuracy": [0.9]})
    failed.set_exception(ValueError("probe_images=4096 is more than the 4000 training images: lower it"))
    saved, reports = [], pool.Reports(ready={1, 2}, running={1: "a", 2: "b"})
    errors = pool.collect({failed: None, finished: None}, {finished: "a", failed: "b"},
                          lambda name, result: saved.append(name), reports)
    assert saved == ["a"] and [str(e) for e in errors] == [str(failed.exception())] and reports.running == {}


def test_a_death_among_several_runs_names_them_all_as_the_ones_one_of_which_died():
    from concurrent.futures import Future
    broken = Future()
    from concurrent.futures.process import BrokenProcessPool
    broken.set_exception(BrokenProcessPool("gone"))
    reports = pool.Reports(ready={1, 2, 3}, running={1: "a", 2: "b", 3: "c"})
    with pytest.raises(pool.WorkerDied, match="^a worker process ended abruptly while training one of a, b, c "
                                              r"\(killed by the system"):
        pool.collect({broken: None}, {broken: "a"}, lambda name, result: None, reports)
    waiting, finished = Future(), Future()  # no worker had said which run it took: the runs not finished are named
    finished.set_result({})
    with pytest.raises(pool.WorkerDied, match="^a worker process ended abruptly while training one of a, c "):
        pool.collect({broken: None}, {broken: "a", finished: "b", waiting: "c"}, lambda name, result: None,
                     pool.Reports(ready={1}))
