"""Tables, sentences, summary and figures from Histories, including diverged and collapsed runs."""
import json
import math

import matplotlib
import pytest

matplotlib.use("Agg")

from helpers import plotting, reporting  # noqa: E402
from helpers.training import History  # noqa: E402

SETTINGS = dict(epochs=3, lr=0.1, batch_size=10, train_samples=20, test_samples=10, seed=0,
                target_accuracy=0.9, schedule="constant", device="cpu")


def history(test_accuracy, train_accuracy=None, seed=0, parameters=100, **extra) -> History:
    n = len(test_accuracy)
    train_accuracy = train_accuracy or test_accuracy
    return History(settings={**SETTINGS, "seed": seed}, parameters=parameters,
                   train_loss=[1.0 / (i + 1) for i in range(n)], train_accuracy=train_accuracy,
                   test_loss=[1.2 / (i + 1) for i in range(n)], test_accuracy=test_accuracy,
                   seconds=[1.0] * n, eval_seconds=[0.1] * n, step_loss=[1.0] * (2 * n),
                   gradient_mean=[1e-5, -2e-5, 3e-6], gradient_abs_mean=[1e-3, 8e-4, 5e-4],
                   layer_gradient_mean={"stack.0": [1e-5, -2e-5, 3e-6], "stack.2": [0.0, 1e-12, -1e-12]},
                   confusion=[[5 if t == p else (2 if (t, p) == (6, 0) else 0) for p in range(10)] for t in range(10)],
                   **extra)


DIVERGED = History(settings=SETTINGS, parameters=100, step_loss=[2.3, 50.0], diverged=True, diverged_step=3,
                   stop_reason="diverged")
COLLAPSED = history([0.3, 0.1, 0.1], stop_reason="epochs")
GOOD = history([0.8, 0.88, 0.91], [0.85, 0.92, 0.95])


def test_lr_table_marks_diverged_and_collapsed_runs():
    table = reporting.lr_table({1.0: DIVERGED, 0.5: COLLAPSED, 0.1: GOOD}, epochs=3)
    assert table.loc["1", "Accuracy"] == "diverged" and "step 3" in table.loc["1", "Outcome"]
    assert table.loc["0.5", "Accuracy"] == "10.00 %" and table.loc["0.5", "Outcome"].startswith("collapsed")
    assert table.loc["0.1", "Accuracy"] == "91.00 %" and table.loc["0.1", "Outcome"] == "trained"
    assert "nan" not in table.to_string().lower()


def test_target_table_reports_epochs_or_why_not():
    table = reporting.target_table({1.0: DIVERGED, 0.1: GOOD, 0.01: history([0.5, 0.6, 0.7])}, 0.9)
    assert table.loc["0.1", "Epoch (test ≥ 90 %)"] == "3" and table.loc["0.1", "Epoch (train ≥ 90 %)"] == "2"
    assert table.loc["0.01", "Epoch (test ≥ 90 %)"] == "not reached in 3"
    assert table.loc["1", "Epoch (test ≥ 90 %)"] == "not reached (diverged)"
    assert table.loc["0.1", "Accuracy"] == "91.00 % (epoch 3)" and table.loc["1", "Accuracy"] == "—"


def test_structure_table_gives_mean_and_sample_std():
    runs = {"base": [history([0.8, 0.85, a], seed=s) for s, a in enumerate([0.88, 0.89, 0.90])]}
    table = reporting.structure_table(runs)
    assert table.loc["base: 784-512-512-10", "Accuracy"] == "89.00 ± 1.00 %"  # sample std of 88, 89, 90
    assert table.loc["base: 784-512-512-10", "Seeds"] == 3


def test_most_confused_lists_off_diagonal_cells():
    table = reporting.most_confused(GOOD.confusion, top=1)
    assert table.iloc[0].to_dict() == {"True class": "Shirt", "Predicted as": "T-shirt/top", "Count": 2,
                                       "Share of class": "28.6 %"}


def test_summary_is_strict_json_with_diverged_runs():
    structures = {name: [GOOD, GOOD] for name in ("base", "deeper", "wider")}
    summary = reporting.summary("full", {"torch": "x", "device": "cpu", "threads": 2}, 12.0,
                                {1.0: DIVERGED, 0.1: GOOD}, 3, 0.1, structures, [GOOD, GOOD])
    json.dumps(summary, allow_nan=False)
    assert summary["q1_2"][0] == {"lr": 1.0, "epochs": 0, "test_accuracy": None, "diverged": True,
                                  "collapsed_to_chance": False}
    assert summary["q1_6"]["steps"] == 3 and summary["q1_7"][0]["model"] == "cnn"


def test_generated_sentences_quote_the_numbers():
    text = reporting.lr_findings({1.0: DIVERGED, 0.5: COLLAPSED, 0.1: GOOD}, epochs=3)
    assert "91.00 %" in text and "**lr 0.1**" in text and "diverged" in text
    assert "collapsed to chance from epoch 2" in text
    text = reporting.gradient_findings(GOOD, 0.1)
    assert "negative in 1 of the 3 steps" in text and "1.00e-03 at step 1" in text and "(0.5x the start)" in text
    table = reporting.gradient_table({"lr 0.1": GOOD})
    assert table.loc["signed mean: steps > 0", "lr 0.1"] == 2
    assert table.loc["output layer: max |signed mean|", "lr 0.1"] == "1e-12"


def test_size_and_accuracy_lists_every_model_once_and_names_what_it_leaves_out():
    structures = {name: [GOOD, GOOD] for name in ("base", "deeper", "wider")}
    points, note = reporting.size_and_accuracy([GOOD], structures, {1.0: COLLAPSED, 0.1: GOOD, 0.01: GOOD}, 3, 0.1)
    assert list(points) == ["small CNN", "MLP base: 784-512-512-10", "MLP deeper: 784-512-512-512-512-10",
                            "MLP wider: 784-1024-1024-10", "base MLP at lr 0.01"]
    assert points["base MLP at lr 0.01"] == (100, [0.91])
    assert note == "not shown: base MLP at lr 1, collapsed to chance from epoch 2"


def test_target_epochs_are_derived_from_the_accuracies():
    assert (GOOD.epoch_test_target, GOOD.epoch_train_target) == (3, 2)
    stored = {**GOOD.to_dict(), "epoch_test_target": 99}  # results files written before it was derived
    assert History.from_dict(stored).epoch_test_target == 3


def test_training_seconds_counts_a_cut_run_once():
    cut = GOOD.first_epochs(2)
    assert reporting.training_seconds([GOOD, cut]) == pytest.approx(3 * 1.1)


def test_figures_draw_diverged_and_collapsed_runs_without_error():
    fig = plotting.loss_curves({"diverged": DIVERGED, "collapsed": COLLAPSED, "good": GOOD}, "t")
    titles = [ax.get_title() for ax in fig.axes]
    assert any("diverged" in t for t in titles) and any("collapsed" in t for t in titles)
    for line in (l for ax in fig.axes for l in ax.lines):
        assert all(math.isfinite(v) for v in line.get_ydata())
    plotting.accuracy_curves({"good": GOOD, "diverged": DIVERGED}, 0.9, "t")
    plotting.gradient_means({"good": GOOD})
    plotting.layer_gradient_means(GOOD, "t")
    plotting.compare_convergence({"a": [GOOD, GOOD]})
    plotting.accuracy_vs_parameters({"a": (100, [0.9, 0.91])})
    plotting.confusion(GOOD.confusion, "t")
    matplotlib.pyplot.close("all")
