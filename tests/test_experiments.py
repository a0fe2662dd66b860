"""Run-or-load cache: hits, corrupt files, changed settings, interruptions, atomic writes, profiles."""
import json
from dataclasses import replace

import pytest

from conftest import synthetic_data
from helpers import config, experiments
from helpers.experiments import Experiment, load_cached, run, write_json

TINY = Experiment("base", lr=0.1, epochs=1, batch_size=64)


@pytest.fixture
def profile(tmp_path, monkeypatch):
    """A profile writing to a temp folder, with synthetic data instead of Fashion-MNIST."""
    monkeypatch.setattr(experiments, "load_fashion_mnist", lambda root: synthetic_data())
    monkeypatch.delenv("A3_RERUN", raising=False)
    return replace(config.get_profile("quick"), results_dir=tmp_path / "results", train_samples=None,
                   test_samples=None)


def count_fits(monkeypatch) -> list[str]:
    calls = []
    real_fit = experiments.fit

    def counting_fit(*args, **kwargs):
        calls.append(kwargs["description"])
        return real_fit(*args, **kwargs)
    monkeypatch.setattr(experiments, "fit", counting_fit)
    return calls


def test_second_run_loads_the_cache_without_training(profile, monkeypatch):
    calls = count_fits(monkeypatch)
    logs = []
    first = run("tiny", TINY, profile, log=logs.append)
    second = run("tiny", TINY, profile, log=logs.append)
    assert calls == ["tiny"]
    assert second.test_accuracy == pytest.approx(first.test_accuracy, rel=1e-5)
    assert logs[0].startswith("tiny: trained 1 epochs") and logs[1].startswith("tiny: loaded from")
    assert not list(profile.results_dir.glob("*.tmp"))


def test_rerun_retrains(profile, monkeypatch):
    calls = count_fits(monkeypatch)
    run("tiny", TINY, profile, log=lambda _: None)
    monkeypatch.setenv("A3_RERUN", "1")
    run("tiny", TINY, profile, log=lambda _: None)
    assert calls == ["tiny", "tiny"]


@pytest.mark.parametrize("content", ['{"key": {"version": 1', "", "not json at all", '{"history": {}}', "[1, 2]"])
def test_corrupt_cache_file_is_reported_in_one_line_and_retrained(profile, monkeypatch, content):
    calls = count_fits(monkeypatch)
    path = profile.results_dir / "tiny.json"
    path.parent.mkdir(parents=True)
    path.write_text(content)
    logs = []
    history = run("tiny", TINY, profile, log=logs.append)
    assert calls == ["tiny"] and history.epochs == 1
    assert "tiny.json is unreadable" in logs[0] and "training again" in logs[0] and "\n" not in logs[0]
    assert json.loads(path.read_text())["history"]["test_accuracy"]  # rewritten intact


def test_changed_settings_retrain(profile, monkeypatch):
    calls = count_fits(monkeypatch)
    logs = []
    run("tiny", TINY, profile, log=logs.append)
    run("tiny", replace(TINY, lr=0.05), profile, log=logs.append)
    assert calls == ["tiny", "tiny"] and "settings changed" in logs[1]


def test_interrupted_sequence_resumes_after_the_last_finished_experiment(profile, monkeypatch):
    names = ["a", "b", "c"]
    calls = count_fits(monkeypatch)
    real_fit = experiments.fit

    def interrupting_fit(*args, **kwargs):
        if kwargs["description"] == "b":
            raise KeyboardInterrupt
        return real_fit(*args, **kwargs)
    monkeypatch.setattr(experiments, "fit", interrupting_fit)
    with pytest.raises(KeyboardInterrupt):
        for name in names:
            run(name, TINY, profile, log=lambda _: None)
    assert sorted(p.name for p in profile.results_dir.iterdir()) == ["a.json"]
    calls.clear()
    monkeypatch.setattr(experiments, "fit", real_fit)
    calls = count_fits(monkeypatch)
    for name in names:
        run(name, TINY, profile, log=lambda _: None)
    assert calls == ["b", "c"]


def test_write_json_is_atomic(tmp_path):
    path = tmp_path / "x.json"
    write_json(path, {"ok": 1})
    with pytest.raises(TypeError):
        write_json(path, {"bad": object()})  # fails half-way through serialising
    assert json.loads(path.read_text()) == {"ok": 1}
    with pytest.raises(ValueError):
        write_json(path, {"nan": float("nan")})  # JSON has no NaN: refused, old file kept
    assert json.loads(path.read_text()) == {"ok": 1}


def test_bad_settings_fail_before_any_data_is_loaded(profile, monkeypatch):
    monkeypatch.setattr(experiments, "load_fashion_mnist", lambda root: pytest.fail("data loaded"))
    with pytest.raises(ValueError, match="model='mlp'"):
        run("x", replace(TINY, model="mlp"), profile)
    with pytest.raises(ValueError, match="lr=-0.1"):
        run("x", replace(TINY, lr=-0.1), profile)
    with pytest.raises(ValueError, match="optimizer='sgdm'"):
        run("x", replace(TINY, optimizer="sgdm"), profile)


def test_profiles_keep_their_results_apart(monkeypatch):
    assert config.get_profile("quick").results_dir != config.get_profile("full").results_dir
    assert config.get_profile("quick").results_dir.is_relative_to(config.get_profile("full").results_dir)
    monkeypatch.setenv("A3_PROFILE", "quick")
    assert config.get_profile().name == "quick"
    monkeypatch.setenv("A3_PROFILE", "fast")
    with pytest.raises(ValueError, match="A3_PROFILE='fast'"):
        config.get_profile()


def test_quick_and_full_cache_keys_differ():
    full, quick = config.get_profile("full"), config.get_profile("quick")
    assert experiments.cache_key(TINY, full) != experiments.cache_key(TINY, quick)
    assert load_cached.__doc__  # documented


def test_structure_runs_reuse_the_lr_run_for_base_seed_0(profile, monkeypatch):
    calls = count_fits(monkeypatch)
    small = replace(profile, learning_rates=(0.1,), max_epochs=2, epochs=1, seeds=(0, 1))
    lr_runs = experiments.learning_rate_runs(small)
    structures = experiments.structure_runs(small, lr_runs)
    assert "base_seed0" not in calls and "base_seed1" in calls
    assert structures["base"][0].step_loss == lr_runs[0.1].first_epochs(1).step_loss
