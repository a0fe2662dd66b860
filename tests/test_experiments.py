"""Run-or-load: keys cover what was trained, one line says why a run trains again, atomic writes,
interrupts, and the same History whether runs train alone or side by side."""
import json
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import synthetic_data
from helpers import config, experiments, models
from helpers.experiments import run, write_json
from helpers.training import Recipe

TINY = Recipe(model="base", lr=0.1, epochs=1, batch_size=64)
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def profile(tmp_path, monkeypatch):
    """A profile writing to a temp folder, with synthetic data instead of Fashion-MNIST, trained in-process."""
    monkeypatch.setattr(experiments, "splits", lambda profile: synthetic_data())
    monkeypatch.setattr(experiments, "_names", {})
    monkeypatch.delenv("A3_RERUN", raising=False)
    monkeypatch.setenv("A3_WORKERS", "1")
    return replace(config.get_profile("quick"), results_dir=tmp_path / "results")


def count_fits(monkeypatch) -> list[str]:
    calls = []
    real = experiments.fit

    def counting_fit(model, data, recipe, **kwargs):
        calls.append(recipe.model)
        return real(model, data, recipe, **kwargs)
    monkeypatch.setattr(experiments, "fit", counting_fit)
    return calls


def test_second_run_loads_the_cache_without_training(profile, monkeypatch):
    calls = count_fits(monkeypatch)
    logs = []
    first = run({"tiny": TINY}, profile, log=logs.append)["tiny"]
    second = run({"tiny": TINY}, profile, log=logs.append)["tiny"]
    assert calls == ["base"]
    assert second.test_accuracy == first.test_accuracy  # fresh and cached runs read alike, to the last digit
    assert logs[0].startswith("trained 1 of 1 runs") and logs[1].startswith("all 1 runs loaded")
    assert not list(profile.results_dir.glob("*.tmp"))


def test_rerun_retrains_what_earlier_sessions_wrote_but_not_this_ones(profile, monkeypatch):
    calls = count_fits(monkeypatch)
    run({"tiny": TINY}, profile, log=lambda _: None)
    monkeypatch.setattr(experiments, "_written", set())  # a new session
    monkeypatch.setenv("A3_RERUN", "1")
    run({"tiny": TINY}, profile, log=lambda _: None)
    run({"tiny": TINY}, profile, log=lambda _: None)  # the same session asks again: trained already
    assert calls == ["base", "base"]


@pytest.mark.parametrize("content", ['{"key": {"version": 1', "", "not json at all", '{"history": {}}', "[1, 2]"])
def test_corrupt_cache_file_is_reported_in_one_line_and_retrained(profile, monkeypatch, content):
    calls = count_fits(monkeypatch)
    path = profile.results_dir / "tiny.json"
    path.parent.mkdir(parents=True)
    path.write_text(content)
    logs = []
    history = run({"tiny": TINY}, profile, log=logs.append)["tiny"]
    assert calls == ["base"] and history.epochs == 1
    assert "tiny.json is unreadable" in logs[0] and "training again" in logs[0] and "\n" not in logs[0]
    assert json.loads(path.read_text())["history"]["test_accuracy"]  # rewritten intact


def _retrain_reason(profile, monkeypatch, change) -> str:
    calls = count_fits(monkeypatch)
    run({"tiny": TINY}, profile, log=lambda _: None)
    experiments._names.clear()
    experiments._architecture.cache_clear()
    change()
    logs = []
    run({"tiny": TINY}, profile, log=logs.append)
    assert calls == ["base", "base"]
    return logs[0]


def test_an_edited_network_retrains_and_says_so(profile, monkeypatch):
    monkeypatch.setattr(models, "STRUCTURES", dict(models.STRUCTURES))  # restored after the test
    line = _retrain_reason(profile, monkeypatch, lambda: models.STRUCTURES.update(base=(512, 128)))
    assert "the network changed" in line and "training again" in line and "\n" not in line
    experiments._architecture.cache_clear()


def test_an_edited_cnn_width_retrains(profile, monkeypatch):
    monkeypatch.setattr(models, "CNN_CANDIDATES", dict(models.CNN_CANDIDATES))
    cnn = Recipe(model="cnn_8_16_32", lr=0.01, epochs=1, optimizer="adamw")
    calls = count_fits(monkeypatch)
    run({"cnn": cnn}, profile, log=lambda _: None)
    experiments._names.clear()
    experiments._architecture.cache_clear()
    models.CNN_CANDIDATES["cnn_8_16_32"] = (8, 16, 24)
    logs = []
    run({"cnn": cnn}, profile, log=logs.append)
    experiments._architecture.cache_clear()
    assert calls == ["cnn_8_16_32"] * 2 and "the network changed (21,634 -> 16,546 parameters)" in logs[0]


def test_an_edited_forward_retrains(profile, monkeypatch):
    def change():
        monkeypatch.setattr(models.MLP, "forward", lambda self, x: self.linear_relu_stack(self.flatten(2 * x)))
    assert "network's definition changed" in _retrain_reason(profile, monkeypatch, change)
    experiments._architecture.cache_clear()


def test_a_changed_recipe_retrains_and_names_the_change(profile, monkeypatch):
    calls = count_fits(monkeypatch)
    run({"tiny": TINY}, profile, log=lambda _: None)
    experiments._names.clear()
    logs = []
    run({"tiny": replace(TINY, lr=0.05)}, profile, log=logs.append)
    assert calls == ["base", "base"] and "the recipe changed (lr 0.1 -> 0.05)" in logs[0]


def test_a_new_cache_version_retrains(profile, monkeypatch):
    line = _retrain_reason(profile, monkeypatch, lambda: monkeypatch.setattr(experiments, "CACHE_VERSION", 99))
    assert "the training code changed" in line


def test_one_name_cannot_hold_two_recipes(profile):
    run({"tiny": TINY}, profile, log=lambda _: None)
    with pytest.raises(ValueError, match="'tiny' is already used for another recipe"):
        run({"tiny": replace(TINY, seed=1)}, profile, log=lambda _: None)


def test_interrupted_sequence_resumes_after_the_last_finished_run(profile, monkeypatch):
    recipes = {name: replace(TINY, seed=i) for i, name in enumerate("abc")}
    real = experiments.fit

    def interrupting_fit(model, data, recipe, **kwargs):
        if recipe.seed == 1:
            raise KeyboardInterrupt
        return real(model, data, recipe, **kwargs)
    monkeypatch.setattr(experiments, "fit", interrupting_fit)
    with pytest.raises(KeyboardInterrupt):
        run(recipes, profile, log=lambda _: None)
    assert sorted(p.name for p in profile.results_dir.iterdir()) == ["a.json"]  # only finished runs, no .tmp
    seeds = []
    monkeypatch.setattr(experiments, "fit", lambda m, d, r, **k: (seeds.append(r.seed), real(m, d, r, **k))[1])
    run(recipes, profile, log=lambda _: None)
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
    monkeypatch.setattr(experiments, "splits", lambda profile: pytest.fail("data loaded"))
    with pytest.raises(ValueError, match="model='mlp'"):
        run({"x": replace(TINY, model="mlp")}, profile)


def test_profiles_keep_their_results_apart(monkeypatch):
    assert config.get_profile("quick").results_dir != config.get_profile("full").results_dir
    assert config.get_profile("quick").results_dir.is_relative_to(config.get_profile("full").results_dir)
    monkeypatch.setenv("A3_PROFILE", "quick")
    assert config.get_profile().name == "quick"
    monkeypatch.setenv("A3_PROFILE", "fast")
    with pytest.raises(ValueError, match="A3_PROFILE='fast'"):
        config.get_profile()
    monkeypatch.setenv("A3_WORKERS", "two")
    with pytest.raises(ValueError, match="A3_WORKERS='two'"):
        config.worker_count()


def test_quick_and_full_cache_keys_differ_in_their_data_sizes():
    full, quick = config.get_profile("full"), config.get_profile("quick")
    key_full, key_quick = experiments.cache_key(TINY, full), experiments.cache_key(TINY, quick)
    assert key_full["data"]["train"] == 55_000 and key_quick["data"]["train"] == 4_000
    assert {k for k in key_full if key_full[k] != key_quick[k]} == {"data"}


REAL = replace(config.get_profile("quick"), train_samples=1_500, validation_samples=300, test_samples=300,
               train_eval_samples=300)


def test_side_by_side_and_one_after_another_give_the_same_histories(tmp_path, monkeypatch):
    """Real data, spawned workers: two recipes trained with 2 workers equal the same two trained in turn."""
    monkeypatch.delenv("A3_RERUN", raising=False)
    recipes = {"mlp": Recipe(model="base", lr=0.1, epochs=2, gradient_steps=10),
               "cnn": Recipe(model="cnn_8_16_32", lr=0.01, epochs=1, optimizer="adamw", flip=True)}
    results = {}
    for workers in (1, 2):
        monkeypatch.setattr(experiments, "_names", {})
        profile = replace(REAL, results_dir=tmp_path / f"workers{workers}")
        results[workers] = run(recipes, profile, workers=workers, log=lambda _: None)
    for name in recipes:
        one, two = (vars(results[w][name]).copy() for w in (1, 2))
        for timing in ("seconds", "eval_seconds", "started", "finished"):
            one.pop(timing), two.pop(timing)
        assert one == two, name


def test_an_error_in_a_worker_reaches_the_caller_and_finished_runs_are_kept(tmp_path, monkeypatch):
    monkeypatch.delenv("A3_RERUN", raising=False)
    monkeypatch.setattr(experiments, "_names", {})
    profile = replace(REAL, results_dir=tmp_path / "results", data_root=tmp_path / "no-data-here")
    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(Exception, match="FASHION_MNIST_DIR"):
        run({"a": TINY, "b": replace(TINY, seed=1)}, profile, workers=2, log=lambda _: None)
    assert not (profile.results_dir.exists() and list(profile.results_dir.glob("*.tmp")))
