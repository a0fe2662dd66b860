"""Tables, generated sentences, the summary and figures, read from synthetic Histories (normal, stuck, diverged)."""
import json
import math

import matplotlib
import pytest

matplotlib.use("Agg")

from helpers import findings, plotting, stats, summary, tables  # noqa: E402
from helpers.config import get_profile  # noqa: E402
from helpers.training import History, Recipe  # noqa: E402

SIZES = {"train": 20, "validation": 10, "test": 10, "train_eval": 10}
STEPS, BLOCKS = 4, 6  # per-step values kept, 50-step blocks over 3 epochs of 100 steps


def trace(scale: float = 1.0) -> dict:
    per_step = {"signed_mean": [scale * v for v in (1e-5, -2e-5, 3e-6, -1e-6)],
                "abs_mean": [scale * v for v in (1e-3, 8e-4, 5e-4, 4e-4)],
                "layer_signed_mean": {"l.0": [1e-5, -2e-5, 3e-6, -1e-6], "l.2": [0.0, 1e-12, -1e-12, 0.0]},
                "error_norm": [0.9, 0.8, 0.7, 0.6], "activation_norm": {"l.1": [5.0, 6.0, 7.0, 8.0]}}
    blocks = {"signed_mean": [-1e-5] * BLOCKS, "abs_mean": [1e-3, 9e-4, 8e-4, 6e-4, 5e-4, 4e-4],
              "layer_signed_mean": {"l.0": [0.0] * BLOCKS, "l.2": [0.0] * BLOCKS},
              "error_norm": [0.9, 0.7, 0.5, 0.4, 0.3, 0.3], "activation_norm": {"l.1": [5.0, 6, 7, 8, 9, 10]}}
    return {"layer_sizes": {"l.0": 90, "l.2": 10}, "steps": per_step, "block": 50, "blocks": blocks}


def history(test_accuracy, train_accuracy=None, seed=0, lr=0.1, model="base", parameters=100, **extra) -> History:
    n = len(test_accuracy)
    return History(recipe=Recipe(model=model, lr=lr, epochs=n, seed=seed, batch_size=10), data_sizes=SIZES,
                   parameters=parameters, device="cpu", train_loss=[1.0 / (i + 1) for i in range(n)],
                   train_accuracy=train_accuracy or test_accuracy, validation_loss=[1.1 / (i + 1) for i in range(n)],
                   validation_accuracy=[a + 0.001 * seed for a in test_accuracy],
                   test_loss=[1.2 / (i + 1) for i in range(n)], test_accuracy=test_accuracy,
                   seconds=[1.0] * n, eval_seconds=[0.1] * n, step_loss=[1.0] * (2 * n), gradients=trace(),
                   dead_units={"l.1": [3, 512]},
                   confusion=[[5 if t == p else (2 if (t, p) == (6, 0) else 0) for p in range(10)] for t in range(10)],
                   started=1_000_000, finished=1_000_000 + 3300 * (seed + 1), **extra)


DIVERGED = History(recipe=Recipe(model="base", lr=1.0, epochs=3, batch_size=10), data_sizes=SIZES, parameters=100,
                   device="cpu", step_loss=[2.3, 50.0], stop_reason="diverged", diverged_step=3)
STUCK = history([0.3, 0.1, 0.12], lr=1.0)
GOOD = history([0.8, 0.88, 0.91], [0.85, 0.92, 0.95])


def test_recipe_table_merges_rates_and_seeds_into_one_row_per_scheme():
    base = Recipe(model="base", lr=0.1, epochs=10)
    declared = {f"lr{lr}_seed{s}": Recipe(model="base", lr=lr, epochs=10, seed=s) for lr in (1, 0.1) for s in (1, 2)}
    declared["chase"] = Recipe(model="base", lr=0.1, epochs=50, target_accuracy=0.9, min_epochs=10)
    table = tables.recipes(declared, get_profile("full"))
    assert len(table) == 2 and table.iloc[0]["Lr"] == "1, 0.1" and table.iloc[0]["Seeds"] == "1, 2"
    assert table.iloc[1]["Epochs"] == "until train and test ≥ 90\xa0% (≥ 10, ≤ 50)"
    assert table.iloc[0]["Images train / val / test"] == "55,000 / 5,000 / 10,000" and base.optimizer == "sgd"


def test_learning_rate_table_marks_stuck_and_diverged_seeds():
    table = tables.learning_rates({1.0: [DIVERGED, STUCK], 0.1: [GOOD, history([0.8, 0.85, 0.89], seed=1)]}, 0.9)
    assert table.loc["1", "Accuracy"] == "diverged"
    assert table.loc["1", "Outcome"] == "2 of 2: diverged at step 3, did not learn"
    assert table.loc["0.1", "Accuracy"] == "90.00\xa0±\xa01.41\xa0%" and table.loc["0.1", "Outcome"] == "trained"
    assert "nan" not in table.to_string().lower()


def test_epochs_to_target_pairs_each_epoch_with_its_accuracy():
    table = tables.epochs_to_target({0.1: GOOD, 0.01: history([0.5, 0.6, 0.7], stop_reason="out_of_reach")}, 0.9)
    assert table.loc["0.1", "Epoch train ≥ 90\xa0%"] == "2" and table.loc["0.1", "Train accuracy then"] == "92.00\xa0%"
    assert table.loc["0.1", "Epoch test ≥ 90\xa0%"] == "3" and table.loc["0.1", "Test accuracy then"] == "91.00\xa0%"
    assert table.loc["0.01", "Epoch test ≥ 90\xa0%"] == "not reached"
    assert table.loc["0.01", "Test accuracy then"] == "best 70.00\xa0% (epoch 3)"
    assert table.loc["0.01", "Epochs run"] == "3 (out of reach)"


def test_percent_never_breaks_a_number_from_its_unit():
    assert stats.percent(0.8976) == "89.76\xa0%" and stats.percent(None) == "—"
    assert stats.accuracy_text([GOOD, history([0.8, 0.85, 0.89], seed=1)]) == "90.00\xa0±\xa01.41\xa0%"


def test_best_on_validation_chooses_by_validation_not_test():
    worse_test_better_validation = history([0.5, 0.6, 0.7], seed=0)
    worse_test_better_validation.validation_accuracy = [0.5, 0.6, 0.99]
    assert stats.best_on_validation({"a": [GOOD], "b": [worse_test_better_validation]}) == "b"
    assert stats.best_on_validation({"a": [GOOD], "d": [DIVERGED]}) == "a"


def test_structure_findings_compare_the_difference_with_the_seed_spread():
    groups = {"base": [history([0.8, 0.88], seed=s) for s in (0, 1)],
              "wider": [history([0.8, a], seed=s, parameters=250) for s, a in ((0, 0.885), (1, 0.895))]}
    text = findings.structures(groups)
    assert "wider − base: +1.00 points, larger than the larger seed standard deviation (0.71)" in text
    assert "2.50× the parameters" in text


def test_learning_rate_findings_report_stuck_runs_as_ranges():
    text = findings.learning_rates({1.0: [STUCK, history([0.2, 0.1, 0.2], lr=1.0, seed=1)], 0.1: [GOOD]}, 0.9)
    assert "lr 1: 2 of 2 seeds did not learn" in text and "12.0\xa0% to 20.0\xa0%" in text
    assert "no loss became NaN or infinite" in text and "**lr 0.1**" in text


def test_epoch_findings_give_the_trend_when_the_target_was_missed():
    climbing = history([0.5 + 0.02 * i for i in range(12)], [0.5 + 0.02 * i for i in range(12)])
    text = findings.epochs_to_target({0.01: climbing}, 0.9)
    assert "train trend of the last 10 epochs +2.00 points/epoch, so 90\xa0% in about 9 more epochs" in text  # (0.90 - 0.72) / 0.02
    assert "test trend of the last 10 epochs +2.00 points/epoch (on validation)" in text
    assert "Largest fall" not in text  # it never fell


def test_gradient_stats_read_both_readings_at_every_horizon():
    g = findings.gradient_stats([GOOD])
    assert g["signed_step1"] == pytest.approx(1e-5) and g["abs_91_100"] != g["abs_91_100"]  # fewer than 91 steps
    assert g["abs_epoch1"] == pytest.approx(9.5e-4) and g["abs_last"] == pytest.approx(4.5e-4)  # 2 blocks per epoch
    assert g["negative_share"] == 0.5 and g["output_max"] == pytest.approx(1e-12)


def test_summary_is_strict_json_and_times_the_runs():
    groups = {1.0: [DIVERGED, STUCK], 0.1: [GOOD, history([0.8, 0.85, 0.89], seed=1)]}
    structures = {"base": groups[0.1], "deeper": [GOOD], "wider": [GOOD]}
    cnn = [history([0.85, 0.9, 0.93], model="cnn_8_16_32", seed=s) for s in (0, 1)]
    ablation = {("base", "demo"): groups[0.1], ("base", "cnn"): [GOOD], ("cnn_8_16_32", "demo"): [GOOD],
                ("cnn_8_16_32", "cnn"): cnn}
    every = {"a": GOOD, "b": groups[0.1][1], "c": cnn[1]}
    result = summary.build(get_profile("quick"), {"torch": "x"}, every, groups, {0.1: GOOD, 1.0: STUCK}, groups, 0.1,
                           structures, {"cnn_8_16_32": cnn[:1]}, "cnn_8_16_32", ablation)
    json.dumps(result, allow_nan=False)
    assert result["seconds_sequential"] == pytest.approx(3 * 3.3) and result["seconds_wall"] == pytest.approx(6.6)
    assert result["q1_2"][0]["diverged"] and result["q1_2"][0]["test_accuracy"] is None
    assert [row["scheme"] for row in result["q1_7_ablation"]] == ["demo", "cnn", "demo", "cnn"]
    assert result["q1_7_selected"] == "cnn_8_16_32" and result["q1_7_selection"][0]["validation_accuracy"]
    assert "runs at a time" in summary.timing_line(result)


def test_figures_draw_diverged_and_stuck_runs_without_error():
    fig = plotting.loss_curves({1.0: [DIVERGED, STUCK], 0.1: [GOOD]}, "t")
    for line in (line for ax in fig.axes for line in ax.lines):
        assert all(math.isfinite(v) for v in line.get_ydata())
    plotting.accuracy_curves({0.1: GOOD, 1.0: STUCK}, 0.9)
    plotting.accuracy_vs_lr({1.0: [STUCK], 0.1: [GOOD]}, [1.0, 0.1])
    plotting.gradient_readings({1.0: [STUCK], 0.1: [GOOD, history([0.8, 0.9, 0.9], seed=1)]}, 4)
    plotting.gradient_factors({0.1: [GOOD]})
    plotting.ablation_curves({("base", "demo"): [GOOD], ("cnn_8_16_32", "cnn"): [GOOD]})
    plotting.errors_by_class([GOOD], [GOOD.first_epochs(2), STUCK], "t")  # a cut run has no confusion matrix
    matplotlib.pyplot.close("all")


def test_colours_are_one_per_rate_and_network_everywhere():
    assert plotting.color(0.1) != plotting.color(0.01) and plotting.color("wider") != plotting.color("deeper")
    assert plotting.color("cnn_8_16_32") == plotting.color("cnn_16_32_64")
    fig = plotting.accuracy_curves({0.1: GOOD}, 0.9)
    assert {line.get_color() for line in fig.axes[0].lines if line.get_label().startswith("lr 0.1")} == {plotting.color(0.1)}
    matplotlib.pyplot.close("all")


def test_most_confused_lists_off_diagonal_cells_true_by_predicted():
    table = tables.most_confused(GOOD.confusion, top=1)
    assert table.iloc[0].to_dict() == {"True class": "Shirt", "Predicted as": "T-shirt/top", "Count": 2,
                                       "Share of class": "28.6\xa0%"}
