"""Tables, figures and the summary for synthetic groups that hold every outcome a run can have: learned,
reached the target in epoch 1, never reached it, collapsed, diverged at step 1, inside the first 100 traced steps,
and late. Tables hold numbers; what is shown has no 'nan' or 'None' and a reason for every gap; figures draw every
outcome, list only what they draw, cut off no curve and show at least 3 ticks, 0.14 in apart, on their value axes."""
import dataclasses
import importlib
import itertools
import json
import math
import subprocess

import matplotlib
import pytest

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from helpers import experiments, gradients, models, plotting, report, summary, tables  # noqa: E402
from helpers.config import get_profile  # noqa: E402
from helpers.training import History, Recipe  # noqa: E402

SIZES = {"train": 500, "validation": 10, "test": 10, "train_eval": 10}  # 50 steps per epoch at batch 10
LAYER_SIZES = [401_920, 262_656, 5_130]  # the base MLP's three linear layers: 669,706 parameters
PROBE_FLOPS = 3_000_000_000  # FLOPs of one probe (the loss, its gradient and the power iteration)


def per_layer(n: int, entry: float, last: float | None = None) -> list[list[float]]:
    """n rows (steps or checkpoints), a column per layer: the layer's size × `entry`, growing 1 % a row; the output
    layer's × `last` where given (its gradient sums to 0: softmax's gradient sums to 0 over the classes)."""
    return [[size * (entry if last is None or j < len(LAYER_SIZES) - 1 else last) * (1 + 0.01 * i)
             for j, size in enumerate(LAYER_SIZES)] for i in range(n)]


def record(steps: int, epochs: int, diverged: bool = False, dead: float = 0.01, learns: bool = True,
           scale: float = 1.0) -> dict:
    """A Q1.6 record as fit() stores it (GradientRecord.to_dict, through JSON: a number that overflowed is None):
    the sums of the first (up to 100) steps whose loss was finite, and the probe at its checkpoints before the
    divergence (none at all for a run that diverged at step 1). The gradient's entries are `scale` times as big."""
    first = min(steps, 100)
    sums = {"sum": per_layer(first, -1e-5 * scale, last=0.0), "abs": per_layer(first, 1e-3 * scale),
            "square": per_layer(first, 1e-6 * scale ** 2)}
    if diverged and 0 < steps <= 100:  # the gradient of the last finite loss overflowed
        for rows in sums.values():
            rows[-1] = [None] * len(LAYER_SIZES)
    at = [s for s in gradients.checkpoints(max(epochs, 1), 50) if s < steps or (s == steps and not diverged)]
    found = {"layer_sizes": list(LAYER_SIZES), "steps": sums}
    if at:
        k = len(at)
        found["probe"] = {"step": at, "images": 128, "loss": [2.3 * (0.5 if learns else 1) ** i for i in range(k)],
                          "sharpness": [10.0 * (1 + 0.5 * i) for i in range(k)],
                          "sum": [[v * 0.7 ** i for v in row] for i, row in enumerate(per_layer(k, -1e-6 * scale, last=0.0))],
                          "abs": per_layer(k, 1e-4 * scale),
                          "square": per_layer(k, 1e-8 * scale ** 2),
                          "dead": [[dead * (i + 1), 2 * dead * (i + 1)] for i in range(k)],  # per ReLU layer
                          "seconds": 0.5 * k, "flops": PROBE_FLOPS * k}
    return found


STARTS = itertools.count()  # every run starts at its own time, as real runs do


def run(test, train=None, seed=0, lr=0.1, model="base", diverged_step=None, epochs=None, traced=True,
        validation=None, schedule="constant", validation_loss=None) -> History:
    """A run with test accuracy `test` per epoch (validation 0.1 points higher unless given), traced as the notebook
    traces Q1.4's and Q1.6's runs (its gradient's entries sqrt(lr / 0.1) times as big); a run that diverged stopped
    at `diverged_step`."""
    n = len(test)
    steps = (diverged_step - 1) if diverged_step else 50 * n
    learns = not test or max(test) >= 0.5
    return History(recipe=Recipe(model=model, lr=lr, epochs=epochs or max(n, 1), seed=seed, batch_size=10,
                                 schedule=schedule, gradient_steps=100 if traced else 0,
                                 probe_images=128 if traced else 0),
                   data_sizes=SIZES, parameters=669_706, machine={"device": "cpu", "name": "Test CPU",
                                                                   "kernels": "AVX2", "torch": "2.14.1",
                                                                   "matmul_gflops": 100, "side_by_side": 2,
                                                                   "session": "a"},
                   train_loss=[1.0 / (i + 1) for i in range(n)], train_accuracy=train or list(test),
                   validation_loss=validation_loss or [1.1 / (i + 1) for i in range(n)],
                   validation_accuracy=validation or [a + 0.001 for a in test],
                   test_loss=[1.2 / (i + 1) for i in range(n)], test_accuracy=list(test), seconds=[1.0] * n,
                   eval_seconds=[0.1] * n, step_loss=[2.3 - 0.01 * (i % 100) for i in range(steps)],
                   gradients=record(steps, epochs or n, diverged_step is not None, dead=0.01 if learns else 0.3,
                                    learns=learns, scale=math.sqrt(lr / 0.1)) if traced else None,
                   confusion=None if diverged_step else [[5 if t == p else (2 if (t, p) == (6, 0) else 0)
                                                          for p in range(10)] for t in range(10)],
                   stop_reason="diverged" if diverged_step else "epochs", diverged_step=diverged_step,
                   multiply_adds=668_672, flops_per_image=4_000_000,
                   started=(start := 1_000_000 + 10_000 * next(STARTS)), finished=start + 3300, peak_memory_mb=900.0)


GOOD = run([0.8, 0.91, 0.93], [0.85, 0.92, 0.95])  # validation reaches 90 % at epoch 2
FIRST_EPOCH = run([0.92, 0.93, 0.94], [0.95, 0.96, 0.97], seed=1)  # ... at epoch 1
NEVER = run([0.8, 0.85, 0.86], [0.8, 0.86, 0.88], seed=2)  # ... never
COLLAPSED = [run([0.3, 0.1, 0.1], lr=1.0, seed=s) for s in (0, 1, 2)]  # learned nothing
DIVERGED = [run([], lr=10.0, seed=0, diverged_step=1, epochs=3), run([], lr=10.0, seed=1, diverged_step=38, epochs=3),
            run([0.5, 0.6], lr=10.0, seed=2, diverged_step=130, epochs=3)]  # at step 1, in the first 100, late
SLOW = [run([0.6 + 0.1 * e + 0.01 * s for e in range(3)], lr=0.01, seed=s) for s in (0, 1, 2)]
RATES = {10.0: DIVERGED, 1.0: COLLAPSED, 0.1: [GOOD, FIRST_EPOCH, NEVER], 0.01: SLOW}  # the notebook's 4 rates
STRUCTURES = {"base": [GOOD, NEVER], "wider": [run([0.85, 0.9, 0.92], model="wider", seed=s) for s in (0, 1)],
              "deeper": [run([0.3, 0.1, 0.1], lr=0.3, model="deeper", seed=0),
                         run([0.4, 0.2, 0.15], lr=0.3, model="deeper", seed=1),
                         run([0.5, 0.6], lr=0.3, model="deeper", seed=2, diverged_step=130, epochs=3)]}
CELLS = {("base", "demo"): [GOOD, NEVER], ("cnn", "demo"): [run([0.9, 0.91], model="cnn")],
         ("base", "cnn"): [DIVERGED[0], DIVERGED[2], GOOD], ("cnn", "cnn"): [run([0.91, 0.93], model="cnn")]}
CHANGES = {"CNN instead of MLP": (("cnn", "demo"), ("base", "demo")), "the CNN's scheme": (("base", "cnn"),
                                                                                          ("base", "demo"))}
SEARCHES = {"base": experiments.Search(Recipe(model="base", lr=0.1, epochs=3), {10.0: DIVERGED, 1.0: COLLAPSED,
                                                                                  0.1: [GOOD]}, 0.1)}


def after(groups: dict, epochs: int) -> dict:
    """Every run as it was after `epochs` epochs (a run that diverged before: as it ended), as the notebook cuts
    Q1.2's runs from Q1.3's."""
    return {key: [r.first_epochs(epochs) for r in runs] for key, runs in groups.items()}


REASONS = ("diverged", "did not learn", "> ")  # how a run ended badly, or that it never reached the target


def shown(table) -> str:
    """The table as the notebook shows it, checked for gaps without a reason: no 'nan' or 'None', no empty cell,
    and a value missing ('—') only with a reason in its row, or where a difference or a p-value has nothing to
    compare (the reference row, fewer than two seeds)."""
    view = tables.view(table)
    text = view.to_string()
    assert "nan" not in text.lower() and "None" not in text, text
    for row in view.itertuples(index=False):
        assert all(cell.strip() for cell in row), row
        for header, cell in zip(view.columns, row):
            if cell == "—" and header != "p" and not header.startswith("Δ") and "→" not in header:
                assert any(reason in other for other in row for reason in REASONS), (header, row)
    return text


def test_outcomes_of_every_kind():
    assert [report.outcome(r) for r in DIVERGED] == [f"diverged at step {s}" for s in (1, 38, 130)]
    assert report.outcome(COLLAPSED[0]) == "did not learn" and report.outcome(GOOD) == "learned"
    assert report.outcomes([GOOD, COLLAPSED[0], DIVERGED[1]]) == "1 learned, 1 did not learn, diverged at step 38"
    assert report.values(DIVERGED) == [None, None, None] and report.mean([None, 0.9, 0.8]) == pytest.approx(0.85)
    one_class = [[995 if p == 4 else 5 if p == 7 else 0 for p in range(10)] for _ in range(10)]  # class 7: 0.5 %
    assert report.predicted_classes(dataclasses.replace(GOOD, confusion=one_class)) == [4]
    assert report.predicted_classes(GOOD) == list(range(10)) and report.predicted_classes(DIVERGED[0]) == []


def differ(d: report.Difference) -> bool:
    """The report's rule for \"differ\": p < ALPHA."""
    return d.p is not None and d.p < report.ALPHA


def test_welch_between_settings_paired_within_runs_and_one_sample_for_a_change():
    a, b = [0.90, 0.91, 0.92], [0.80, 0.81, 0.82]
    d = report.compare(a, b)
    assert differ(d) and d.difference == pytest.approx(0.1) and d.ci == pytest.approx(0.0227, abs=1e-3)  # t(4)
    close = report.compare(a, [0.905, 0.92, 0.90])
    assert not differ(close) and close.ci > abs(close.difference)  # the interval holds 0: 3 seeds cannot tell
    assert report.compare([0.1] * 3, [0.1] * 3).p == 1.0 and differ(report.compare(a, [0.1] * 3))
    assert report.compare([None, None, 0.5], a).p is None  # too few seeds to test: never "significant"
    shift = report.paired([2.0, 3.1, 4.0], [1.0, 2.0, 3.0])  # every seed up by about 1: clearly real when paired
    assert differ(shift) and shift.difference == pytest.approx(1.0333, abs=1e-3)
    assert not differ(report.compare([2.0, 3.1, 4.0], [1.0, 2.0, 3.0]))  # the same numbers, unpaired: cannot tell
    up = report.change([1.0, 1.1, 0.9, float("nan"), None])  # a per-seed change against 0 (NaN, None left out)
    assert up.difference == pytest.approx(1.0) and up.p == pytest.approx(stats.ttest_1samp([1.0, 1.1, 0.9], 0).pvalue)
    assert report.change([0.5]).p is None and not differ(report.change([0.1, -0.1, 0.05]))


def test_one_of_m_tests_multiplies_p_by_m_and_widens_the_interval_to_1_minus_alpha_over_m():
    a, b = [0.90, 0.91, 0.93], [0.88, 0.90, 0.905]
    one, three = report.compare(a, b), report.compare(a, b, tests=3)
    assert three.p == pytest.approx(min(1.0, 3 * one.p)) and three.difference == one.difference
    assert three.ci == pytest.approx(stats.ttest_ind(a, b, equal_var=False).confidence_interval(1 - 0.05 / 3)
                                     .high - three.difference)
    for tests in (1, 2, 3, 5, 10):  # the interval excludes 0 exactly when p < 0.05: one rule for "differ"
        d = report.compare(a, b, tests)
        assert differ(d) == (abs(d.difference) > d.ci)
    assert report.compare([0.5, 0.9], [0.1, 0.1], tests=100).p == 1.0  # capped at 1


def test_tables_are_numbers_and_show_every_outcome():
    after_2 = after(RATES, 2)
    accuracy = tables.accuracy(after_2)
    assert accuracy.loc[10.0, "accuracy"] == pytest.approx(0.6)  # seed 2 diverged only in epoch 3
    assert accuracy.loc[10.0, "accuracy_note"] == "1 learned, diverged at steps 1, 38"
    assert "60.00 (1 learned, diverged at steps 1, 38)" in shown(accuracy)
    assert list(tables.view(accuracy).columns) == ["Accuracy (%)"]
    rates = tables.learning_rates(after_2, reference=0.1)
    assert rates.loc[1.0, "diff"] == pytest.approx(0.1 - (0.91 + 0.93 + 0.85) / 3)
    raw = [report.compare(report.values(after_2[lr]), report.values(after_2[0.1])).p for lr in (1.0, 0.01)]
    assert list(rates.loc[[1.0, 0.01], "p"]) == pytest.approx([min(1.0, 3 * p) for p in raw])  # 3 rates against 0.1
    assert math.isnan(rates.loc[10.0, "p"])  # lr 10 has one seed: no test
    assert "Δ vs lr 0.1 (points, CI)" in shown(rates) and list(tables.view(rates).columns)[-2] == "p"
    assert list(rates.loc[[1.0, 0.01], "p_note"]) == ["apart", "apart"] and not isinstance(rates.loc[10.0, "p_note"], str)  # 1 seed
    assert "(apart)" in tables.view(rates).loc["0.01", "p"]
    assert tables._cells([0.90, 0.80, 0.85], [0.86, 0.70, 0.75], 1)["p_note"] is None  # overlapping seeds
    crossings = tables.crossings(RATES, 0.9)
    assert crossings.loc[0.1, "validation_epoch"] == [2, 1, "> 3"] and crossings.loc[0.1, "train_epoch"] == [2, 1, "> 3"]
    assert crossings.loc[0.1, "best_validation"] == [0.931, 0.941, 0.861]
    assert crossings.loc[0.1, "best_epoch"] == [3] * 3
    assert crossings.loc[0.1, "test_there"] == [r.test_accuracy[2] for r in RATES[0.1]]  # at the best validation epoch
    assert crossings.loc[10.0, "best_epoch"] == [None, None, 2] and "test_epoch" not in crossings
    peaked = run([0.8, 0.91, 0.93], validation=[0.9, 0.8, 0.9])  # the best validation: its first epoch
    assert tables.crossings({0.1: [peaked]}, 0.9).loc[0.1, "best_epoch"] == [1]
    assert tables.crossings({0.1: [peaked]}, 0.9).loc[0.1, "test_there"] == [0.8]  # then, not at the end
    loop = tables.quickstart({0.1: [GOOD, NEVER]}, {0.1: [FIRST_EPOCH, NEVER]})
    assert loop.loc[0.1, "diff"] == pytest.approx((0.93 + 0.86) / 2 - (0.94 + 0.86) / 2)
    labels = {key: plotting.label(key) for key in CELLS}
    cells = tables.networks(CELLS, 0.9, labels)
    assert list(cells.index) == ["MLP, demo scheme", "CNN, demo scheme", "MLP, CNN scheme", "CNN, CNN scheme"]
    assert cells.loc["MLP, demo scheme", "epoch"] == [2, None]
    assert cells.loc["MLP, demo scheme", "loss_train"] == pytest.approx(np.mean(
        [r.train_loss[-1] for r in CELLS["base", "demo"]]))
    assert cells.loc["MLP, CNN scheme", "loss_train"] == pytest.approx(GOOD.train_loss[-1])  # a diverged seed: none
    assert cells.loc["MLP, demo scheme", "tflop"] == pytest.approx(3 * 500 * 4_000_000 / 1e12)
    assert cells.loc["MLP, CNN scheme", "tflop"] == pytest.approx(3 * 500 * 4_000_000 / 1e12)  # seed 0 diverged
    searched = tables.search(SEARCHES)
    assert searched.loc["base", "lr"] == [10.0, 1.0, 0.1] and searched.loc["base", "chosen"] == 0.1
    assert searched.loc["base", "score"] == pytest.approx([0.0, (0.301 + 0.101 + 0.101) / 3,  # the last 3 epochs
                                                           (0.801 + 0.911 + 0.931) / 3])
    for table in (crossings, loop, cells, searched, tables.epochs_to_target(RATES, 0.9),
                  tables.two_tables(after(RATES, 1), RATES, 0.9), tables.first_steps(RATES),
                  tables.layer_sums(RATES[0.1]), tables.structures(after(STRUCTURES, 1)),
                  tables.capacity(after(STRUCTURES, 1), STRUCTURES), tables.effects(CELLS, CHANGES)):
        shown(table)


def test_q1_3_counts_epochs_until_the_test_accuracy_reaches_the_target_and_reports_it_then():
    """The first epoch whose TEST accuracy (the one the quickstart prints) reached the target, the test accuracy AT
    that epoch ('not reached' where no seed did); '> N' for a run that never reached it; the reason for a run that
    diverged first; then, in a column of its own, the test accuracy after the last epoch."""
    crossing = run([0.8, 0.92, 0.89], validation=[0.95, 0.95, 0.95])  # validation crossed first; test dips after
    table = tables.epochs_to_target({0.1: [crossing], 0.01: [NEVER]}, 0.9)
    assert table.loc[0.1, "epoch"] == [2] and table.loc[0.1, "accuracy"] == pytest.approx(0.92)
    assert table.loc[0.01, "epoch"] == ["> 3"] and table.loc[0.01, "test_end"] == pytest.approx(0.86)
    assert table.loc[0.1, "test_end"] == pytest.approx(0.89)  # the crossing's accuracy and the end's apart
    assert tables.view(table).iloc[1, 0] == "not reached" and "86.00" in shown(table) and "92.00" in shown(table)
    everything = tables.epochs_to_target(RATES, 0.9)
    assert everything.loc[0.1, "epoch"] == [2, 1, "> 3"]
    assert everything.loc[0.1, "accuracy"] == pytest.approx((0.91 + 0.92) / 2)  # the seeds that reached it
    assert everything.loc[0.1, "accuracy_note"] == "2 of 3 seeds"
    assert everything.loc[10.0, "epoch"] == ["diverged at step 1", "diverged at step 38", "diverged at step 130"]
    assert everything.loc[1.0, "epoch"] == ["> 3"] * 3 and everything.loc[1.0, "test_end"] == pytest.approx(0.1)
    text = shown(everything)
    assert "2, 1, > 3" in text and list(tables.view(everything).columns) == [
        "Accuracy (test at Epoch, %)", "Epoch (test ≥ 90 %)", "Accuracy at epoch 3 (%)", "Rank"]
    assert "diverged at step 1, diverged at step 38, diverged at step 130" in text  # why lr 10 has no accuracy
    def at(epoch, value, seed):  # test accuracy `value` from `epoch` on (4: only the last, below the target)
        return run([0.5] * (min(epoch, 3) - 1) + [value] * (4 - min(epoch, 3)), seed=seed)
    ranked = tables.epochs_to_target({0.01: [at(3, 0.9, 0), at(3, 0.9, 1)], 0.1: [at(2, 0.91, 0), at(2, 0.91, 1)],
                                      0.3: [at(2, 0.95, 0), at(2, 0.95, 1)], 1.0: [at(1, 0.95, 0), at(4, 0.5, 1)],
                                      0.001: [at(4, 0.6, 0), at(4, 0.6, 1)], 0.003: [at(4, 0.8, 0), at(4, 0.8, 1)]},
                                     0.9)
    # fewest seeds short of the target first (lr 1 after lr 0.01, though one seed crossed at epoch 1), then the
    # earliest mean epoch, then the higher test accuracy after the last epoch (lr 0.3's 0.95 before 0.1's 0.91;
    # where none crossed: 0.003 before 0.001)
    assert dict(ranked["rank"]) == {0.3: 1, 0.1: 2, 0.01: 3, 1.0: 4, 0.003: 5, 0.001: 6}
    dips = run([0.5, 0.95, 0.85])  # crosses higher than `stays`, ends lower: ranked by the end
    stays = run([0.5, 0.91, 0.91])
    assert dict(tables.epochs_to_target({0.1: [dips], 0.3: [stays]}, 0.9)["rank"]) == {0.3: 1, 0.1: 2}


def test_q1_4_puts_both_tables_side_by_side_with_the_gain_of_the_later_epochs_paired_by_seed():
    table = tables.two_tables(after(RATES, 1), RATES, 0.9)  # lr 10 comes first, its seed 0 has no epoch at all
    gain = report.paired([0.93, 0.94, 0.86], [0.8, 0.92, 0.8], tests=4)  # the last epoch against epoch 1, by seed
    assert table.loc[0.1, "gain"] == pytest.approx(gain.difference) and table.loc[0.1, "gain_ci"] == pytest.approx(gain.ci)
    assert table.loc[0.1, "gain_ci"] != pytest.approx(report.compare([0.93, 0.94, 0.86], [0.8, 0.92, 0.8], 4).ci)
    assert table.loc[1.0, "gain"] == pytest.approx(-0.2) and math.isnan(table.loc[10.0, "gain"])  # none ran 3 epochs
    assert table.loc[0.1, "after_10"] == pytest.approx((0.8 + 0.92 + 0.8) / 3)  # Q1.2, after the first epoch
    assert table.loc[0.1, "test_end"] == pytest.approx((0.93 + 0.94 + 0.86) / 3)  # after the last epoch
    assert table.loc[0.1, "epoch"] == [2, 1, "> 3"]  # Q1.3's
    assert table.loc[0.1, "edge"] == pytest.approx(35 * 0.1 / 2)  # the peak sharpness (10 × 3.5) against 2 / lr
    assert table.loc[10.0, "lowest_loss"] == [None, None, 2]
    bent = run([0.8, 0.91, 0.93], validation_loss=[0.5, 0.3, 0.4])  # overfits after epoch 2
    assert tables.two_tables(after({0.1: [bent]}, 1), {0.1: [bent]}, 0.9).loc[0.1, "lowest_loss"] == [2]
    text = shown(table)
    assert "Q1.2: epoch 1 (%)" in text and "Epoch 3 (%)" in text and "3 − 1 (points, CI)" in text
    assert "+7.00 ± " in text


def test_q1_5_capacity_against_budget():
    table = tables.capacity(after(STRUCTURES, 1), STRUCTURES)
    assert list(table.index) == ["base", "wider", "deeper"]
    assert dict(table["lr"]) == {"base": 0.1, "wider": 0.1, "deeper": 0.3}  # each structure at its own rate
    assert table.loc["base", "train_10"] == pytest.approx((0.85 + 0.8) / 2)
    assert table.loc["base", "train_end"] == pytest.approx((0.95 + 0.88) / 2)  # at the best validation epoch
    assert table.loc["base", "test_end"] == pytest.approx((0.93 + 0.86) / 2)
    assert table.loc["deeper", "lowest_loss"] == [3, 3, 2]  # the diverged seed: its last epoch
    at_best = {"base": [0.93, 0.86], "wider": [0.92, 0.92], "deeper": [0.3, 0.4, 0.6]}  # test at best validation
    found = {name: report.compare(at_best[name], at_best["base"], tests=2) for name in ("wider", "deeper")}
    assert table.loc["wider", "diff"] == pytest.approx(found["wider"].difference)
    assert list(table.loc[["wider", "deeper"], "p"]) == pytest.approx([f.p for f in found.values()])
    assert math.isnan(table.loc["base", "diff"])  # the base network is what the others are compared with
    headers = list(tables.view(table).columns)
    assert headers[1:5] == ["Train, 1 ep. (%)", "Lowest val. loss at", "Best val. acc. at", "Train, best val. epoch (%)"]
    assert table.loc["base", "best_epoch"] == [3, 3]


def traced(signed: tuple[float, float], norm: tuple[float, float], loss: tuple[float, float], seed: int) -> History:
    """A run whose first 100 steps have the signed mean of the gradients, their norm and the loss on straight lines
    (value at step 1, change per step)."""
    i = np.arange(100)
    total = sum(LAYER_SIZES)
    mean_g, size, losses = signed[0] + signed[1] * i, norm[0] + norm[1] * i, loss[0] + loss[1] * i
    assert (size > 0).all()  # a norm: its squares give it back
    steps = {"sum": [[total * m, 0.0, 0.0] for m in mean_g], "abs": [[total * abs(m), 0.0, 0.0] for m in mean_g],
             "square": [[s ** 2, 0.0, 0.0] for s in size]}
    base = run([0.9, 0.9], seed=seed)
    return dataclasses.replace(base, gradients={**base.gradients, "steps": steps},
                               step_loss=list(losses) + base.step_loss[100:])


def test_q1_6_first_steps_measures_the_change_over_100_steps_and_adjusts_for_the_tables_tests():
    lines = {0.1: [traced((1e-5, b), (5.0, d), (2.3, e), s)
                   for s, (b, d, e) in enumerate([(1e-8, 0.01, -0.001), (2e-8, 0.02, -0.002), (4e-8, 0.03, -0.004)])],
             0.01: [traced((1e-5, b), (5.0, d), (2.3, e), s)
                    for s, (b, d, e) in enumerate([(1e-8, 0.01, 0.001), (-2e-8, 0.0, -0.002), (0.5e-8, -0.02, 0.0)])]}
    diverged = traced((1e-5, 1.0), (5.0, 1.0), (2.3, 1.0), 3)  # its record stops at step 40 of the 100 asked
    diverged = dataclasses.replace(diverged, recipe=dataclasses.replace(diverged.recipe, gradient_steps=100),
                                   gradients={**diverged.gradients, "steps": {k: v[:40] for k, v in
                                                                             diverged.gradients["steps"].items()}})
    table = tables.first_steps({0.1: [*lines[0.1], diverged], 0.01: lines[0.01]})
    assert table.loc[0.1, "seeds"] == 3  # the diverged run is left out
    assert list(tables.view(table).columns) == ["Seeds", "Δ mean g", "p", "Δ ‖g‖", "p", "Δ mean |g|", "p"]
    plt.close(plotting.first_steps({0.1: lines[0.1], 10.0: [diverged]}))  # a rate with no run left: an empty panel
    assert table.loc[0.1, "signed_change"] == pytest.approx(90 * 7e-8 / 3)  # last 10 − first 10 of a line: 90 steps
    assert table.loc[0.1, "norm_change"] == pytest.approx(90 * 0.02)
    assert table.loc[0.1, "abs_change"] == pytest.approx(90 * 7e-8 / 3)  # every entry positive: |g| is g
    raw = [stats.ttest_1samp([90 * x for x in per_step], 0).pvalue  # mean g, ‖g‖ and mean |g| (the loss: not tested)
           for per_step in ([1e-8, 2e-8, 4e-8], [0.01, 0.02, 0.03], [1e-8, 2e-8, 4e-8],
                          [1e-8, -2e-8, 0.5e-8], [0.01, 0.0, -0.02], [1e-8, -2e-8, 0.5e-8])]
    adjusted = [min(1.0, 6 * p) for p in raw]  # one family: the table's 6 tests
    assert list(table.loc[0.1, ["signed_p", "norm_p", "abs_p"]]) == pytest.approx(adjusted[:3])
    assert list(table.loc[0.01, ["signed_p", "norm_p", "abs_p"]]) == pytest.approx(adjusted[3:])
    assert not [c for c in table if c.startswith("loss")]  # the loss is drawn, not tested
    rise_and_fall = np.where((np.arange(100) >= 10) & (np.arange(100) < 30), 5.0, 0.0)  # a fitted line would fall
    assert report.ends_change(rise_and_fall) == 0.0 and report.ends_change(np.arange(100.0)) == pytest.approx(90.0)
    shown(table)


def test_q1_6_layer_sums_show_the_output_layer_cancelling():
    """Softmax's gradient sums to 0 over the classes, so the output layer's gradient sums to 0: |Σg| / Σ|g| ≈ 0."""
    table = tables.layer_sums(RATES[0.1])
    assert list(table.index) == ["1", "2", "3", "all"] and list(table["params"]) == [*LAYER_SIZES, sum(LAYER_SIZES)]
    assert table.loc["3", "cancel"] == pytest.approx(0, abs=1e-12) and table.loc["3", "share"] == pytest.approx(0)
    assert list(table.loc[["1", "2"], "cancel"]) == pytest.approx([1e-2, 1e-2])  # |Σg| / Σ|g| = 1e-5 / 1e-3
    assert table.loc["all", "cancel"] == pytest.approx(1e-2 * (LAYER_SIZES[0] + LAYER_SIZES[1]) / sum(LAYER_SIZES))
    growth = np.mean(1 + 0.01 * np.arange(100))
    assert table.loc["1", "share"] == pytest.approx(LAYER_SIZES[0] * 1e-5 * growth / sum(LAYER_SIZES))
    shown(table)


def test_the_selection_score_averages_the_last_3_epochs_under_a_constant_rate_and_takes_the_last_otherwise():
    accuracy, losses = [0.5, 0.9, 0.8, 0.85, 0.95], [1.0, 0.5, 0.4, 0.3, 0.2]
    constant = run(accuracy, validation=accuracy, validation_loss=losses)
    cycled = run(accuracy, validation=accuracy, validation_loss=losses, schedule="onecycle")
    assert report.selection_score(constant) == pytest.approx(((0.8 + 0.85 + 0.95) / 3, -(0.4 + 0.3 + 0.2) / 3))
    assert report.selection_score(cycled) == pytest.approx((0.95, -0.2))
    assert report.selection_score(DIVERGED[2]) == (0.0, -math.inf)
    steady = run([0.9] * 5, validation=[0.5, 0.5, 0.9, 0.9, 0.9])  # 0.9 on average: above the noisy run's 0.867
    assert experiments.best_on_validation({0.3: [constant], 0.1: [steady]}) == 0.1


def test_the_one_formatter():
    assert tables.number("accuracy", 0.87404) == "87.40" and tables.number("diff", -0.0023) == "−0.23"
    assert tables.number("diff_ci", 0.019) == "1.90" and tables.number("p", 0.0004) == "< 0.001"
    assert tables.number("p", 0.0062) == "0.006" and tables.number("p", 0.0312) == "0.031" and tables.number("p", 0.12) == "0.12"
    assert tables.number("signed_p", 0.0312) == "0.031" and tables.number("gain", 0.07) == "+7.00"
    assert tables.number("params", 669706) == "669,706" and tables.number("signed_start", 0.00036) == "3.6e−04"
    assert tables.number("norm_change", -0.01234) == "−0.012" and tables.number("cancel", 0.0) == "0.0e+00"
    assert tables.number("lr", 0.001) == "0.001" and tables.number("lowest_loss", [50, 38, None]) == "50, 38, —"
    assert tables.number("epoch", [2, "> 50"]) == "2, > 50" and tables.number("accuracy", float("nan")) == "—"


def test_the_choice_on_validation_and_the_ladder_of_rates():
    assert experiments.best_on_validation({0.1: [GOOD], 1.0: COLLAPSED, 10.0: DIVERGED}) == 0.1
    low, high = run([0.8], validation=[0.9]), run([0.9], validation=[0.9])
    high.validation_loss = [0.5]  # a tie on accuracy goes to the lower validation loss, never to the test set
    assert experiments.best_on_validation({0.3: [low], 0.1: [high]}) == 0.1
    assert [experiments.neighbour(lr, up=True) for lr in (0.03, 0.3, 1.0)] == [0.1, 1.0, 3.0]
    assert [experiments.neighbour(lr, up=False) for lr in (0.03, 0.001)] == [0.01, 0.0003]
    recipe = Recipe(model="base", lr=0.1, epochs=1)
    found = experiments.Search(recipe, {0.3: [GOOD], 0.1: [GOOD]}, 0.3)
    assert not found.inside and experiments.Search(recipe, {1.0: [GOOD], 0.3: [GOOD], 0.1: [GOOD]}, 0.3).inside


def test_a_search_extends_its_grid_until_the_choice_is_inside(monkeypatch):
    """Validation accuracy peaks at lr 1 (a made-up curve): the grid 0.3, 0.1, 0.03 grows to 1 and 3."""
    trained = []

    def fake_run(recipes, profile):
        trained.extend(r.lr for r in recipes.values())
        return {name: run([0.8], validation=[1 - abs(math.log10(r.lr)) / 10], lr=r.lr, seed=r.seed)
                for name, r in recipes.items()}
    monkeypatch.setattr(experiments, "run", fake_run)
    found = experiments.tune({"base": (Recipe(model="base", lr=0.1, epochs=1), [0.3, 0.1, 0.03])}, (0, 1), None)
    assert found["base"].chosen == 1.0 and sorted(found["base"].runs) == [0.03, 0.1, 0.3, 1.0, 3.0]
    assert found["base"].inside and len(found["base"].runs[1.0]) == 2


def samples():
    import torch
    return plotting.show_samples(torch.zeros(5, 1, 28, 28, dtype=torch.uint8), torch.arange(5), [0, 2, 4])


def figures() -> list:
    return [plotting.loss_curves(RATES, "t"), plotting.loss_panels(STRUCTURES, "t"),
            plotting.error_curves(RATES, 0.9, "t"), plotting.sharpness(RATES, "t"),
            plotting.first_steps(RATES), plotting.networks(CELLS, 0.9, "t")]


def visible_ticks(axis, low: float, high: float) -> int:
    return sum(low - 1e-12 <= v <= high + 1e-12 for v in axis.get_majorticklocs())


STYLES = ("test loss (b)", "train loss (b)", "test loss", "train loss", "test", "validation (a)", "train (b)", "minibatch loss (right axes)")


def test_every_figure_draws_every_outcome_lists_only_what_it_draws_and_cuts_off_nothing():
    """Every outcome drawn; every legend entry drawn; every axis titled, with at least 3 ticks on its value axis,
    labelled ticks at least 0.14 in apart (8 pt labels never touch), and every finite point of every curve inside its limits (a panel titled 'zoomed' may cut off below, and names a
    rate that lies wholly below)."""
    drawn_figures = figures()
    notes = [t for fig in drawn_figures for ax in fig.axes for t in ax.texts]
    text = " ".join(t.get_text() for t in notes)
    assert "seed 0 diverged at step 1" in text and "seed 1 diverged at step 38" in text
    for fig in drawn_figures:
        fig.canvas.draw()
        drawn = {line.get_label() for ax in fig.axes for line in ax.lines}
        listed = {entry.get_text() for legend in fig.legends + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
                  for entry in legend.get_texts()}
        assert listed <= drawn | set(STYLES), listed - drawn  # a legend entry is drawn, or names a line style
        assert {name for name in drawn if not name.startswith("_")} <= listed, drawn - listed  # what is drawn is named
        for ax in fig.axes:
            assert ax.get_title() or ax.get_shared_x_axes().get_siblings(ax) != [ax], "an untitled panel"
            assert fig._suptitle is not None, "an untitled figure"
            low, high = ax.get_ylim()
            assert visible_ticks(ax.yaxis, low, high) >= 3, (ax.get_title(), ax.yaxis.get_majorticklocs(), low, high)
            ys = sorted(ax.transData.transform([(ax.get_xlim()[0], v) for v in ax.yaxis.get_majorticklocs()
                                                if low - 1e-12 <= v <= high + 1e-12])[:, 1] / fig.dpi)
            assert min(np.diff(ys)) >= 0.14, (ax.get_title(), "labelled ticks closer than 0.14 in", ys)
            (x0, x1), (y0, y1) = sorted(ax.get_xlim()), sorted(ax.get_ylim())
            for line in (line for line in ax.lines if line.get_transform() == ax.transData):  # not a reference line
                x, y = (np.asarray(v, float) for v in line.get_data())
                kept = np.isfinite(x) & np.isfinite(y)
                low_ok = y[kept] >= y0 if "zoomed" not in ax.get_title() else True
                assert ((x[kept] >= x0) & (x[kept] <= x1) & low_ok & (y[kept] <= y1)).all(), ax.get_title()
            for note in (t for t in ax.texts if hasattr(t, "xy")):  # a note where a run diverged: inside the panel
                assert x0 <= note.xy[0] <= x1, (note.get_text(), note.xy, (x0, x1))
            below = {line.get_label() for line in ax.lines if line.get_label()[:1] != "_" and len(line.get_ydata())
                     and np.nanmax(np.asarray(line.get_ydata(), float)) < y0}
            assert all(name in " ".join(t.get_text() for t in ax.texts) for name in below), below
    plt.close("all")


@pytest.mark.parametrize("scale, values", [("log", (2.287, 2.307)), ("linear", (0.1, 0.1004)), ("log", (1e-3, 30))])
def test_tick_labels_are_distinct_however_narrow_the_range(scale, values):
    """A loss that barely moves (2.287 to 2.307) gets labels with enough digits to tell its ticks apart."""
    fig, ax = plt.subplots()
    ax.plot([0, 1], values)
    ax.set_yscale(scale)
    plotting._ticks(ax)
    fig.canvas.draw()
    low, high = ax.get_ylim()
    labels = [t.get_text() for t in ax.yaxis.get_ticklabels() if low <= t.get_position()[1] <= high]
    assert len(labels) >= 4 and len(set(labels)) == len(labels), labels
    plt.close(fig)


def test_a_mean_is_drawn_only_while_every_seed_runs():
    fig, ax = plt.subplots()
    plotting.seeds(ax, [[1, 2, 3, 4], [1, 2], [1, 2, 3]], "red", "three seeds")
    mean, *rest = ax.lines
    assert list(mean.get_xdata()) == [1, 2] and mean.get_label() == "three seeds"
    ends = [line for line in rest if line.get_marker() == "o"]
    assert sorted(float(line.get_xdata()[0]) for line in ends) == [3.0, 4.0]  # the seeds that ran on end in a dot
    plt.close("all")


def test_figures_print_at_8_points_or_more_at_the_width_of_a_page():
    for fig in figures() + [samples()]:
        assert fig.get_figwidth() <= plotting.WIDTH
        fig.canvas.draw()  # nothing drawn outside the figure: "tight" saving would make it wider than the page
        assert fig.get_tightbbox().width <= plotting.WIDTH + 0.01, fig.get_tightbbox()
        sizes = [t.get_fontsize() for t in fig.findobj(matplotlib.text.Text) if t.get_text()]
        assert min(sizes) >= 8
    plt.close("all")


def test_the_style_applies_inside_the_kits_figures_only():
    """Importing helpers.plotting and drawing a figure leaves matplotlib's settings as they were (no global rcParams
    change): the notebook's own plots, and other code's, look as they would without the kit."""
    def styled() -> dict:
        return {key: matplotlib.rcParams[key] for key in plotting.STYLE}
    unstyled = {key: matplotlib.rcParamsOrig[key] for key in plotting.STYLE}  # as matplotlib started
    assert styled() == unstyled  # helpers.plotting was imported above
    before = dict(matplotlib.rcParams)
    importlib.reload(plotting)  # what importing it does
    fig = plotting.networks(CELLS, 0.9, "t")
    assert dict(matplotlib.rcParams) == before and styled() == unstyled
    assert min(t.get_fontsize() for t in fig.findobj(matplotlib.text.Text) if t.get_text()) >= 8  # styled inside
    assert any(ax.xaxis._major_tick_kw.get("gridOn") for ax in fig.axes)  # STYLE's grid, inside the figure
    plt.close("all")


def test_in_a_notebook_a_figure_is_shown_once_at_its_own_size_and_closed(monkeypatch):
    import IPython
    import IPython.display
    shown_images = []
    monkeypatch.setattr(IPython, "get_ipython", lambda: object())
    monkeypatch.setattr(IPython.display, "display", shown_images.append)
    fig = plotting.networks(CELLS, 0.9, "t")
    assert len(shown_images) == 1 and shown_images[0].width == round(fig.get_figwidth() * fig.dpi)
    assert not plt.fignum_exists(fig.number)  # closed: the notebook does not show it a second time


def summary_of(groups):
    """The summary of a notebook that showed tables for these groups."""
    summary._shown.clear()
    summary._shown.update({"Q1.2": {}, "Q1.3": {}})
    summary._shown["Q1.2"]["accuracy"] = summary.records(tables.accuracy(after(groups, 1)))
    summary._shown["Q1.3"]["epochs"] = summary.records(tables.epochs_to_target(groups, 0.9))
    summary._shown["Q1.7"] = {"networks": summary.records(tables.networks(CELLS, 0.9, {}))}
    return summary.build(get_profile("quick"), groups, after(groups, 1), CELLS)


def test_summary_is_strict_json_of_numbers_and_the_floor():
    result = summary_of(RATES)
    text = json.dumps(result, allow_nan=False)
    assert "NaN" not in text
    row = next(r for r in result["Q1.3"]["epochs"] if r["lr"] == 0.1)
    assert row["accuracy"] == pytest.approx((0.91 + 0.92) / 2) and isinstance(row["accuracy_std"], float)
    assert row["epoch"] == [2, 1, "> 3"]
    assert next(r for r in result["Q1.3"]["epochs"] if r["lr"] == 10.0)["accuracy"] is None
    made = result["runs"]
    unique = {(r.started, r.finished): r for runs in [*RATES.values(), *CELLS.values()] for r in runs}.values()
    assert made["count"] == len(unique) == 14  # a run cut to its first epochs counts once, whole
    assert made["epochs"] == sum(r.epochs for r in unique)
    checkpoints = sum(len(r.gradients["probe"]["step"]) for r in unique if "probe" in r.gradients)
    assert summary.probe_flops(GOOD) == 6 * PROBE_FLOPS and summary.probe_flops(DIVERGED[0]) == 0  # no probe
    assert summary.probe_flops(run([0.9], traced=False)) == 0
    flops = made["epochs"] * models.run_flops(500, 30, 4_000_000, 668_672) + checkpoints * PROBE_FLOPS
    assert made["tflop"] == pytest.approx(flops / 1e12)  # the floor counts the probes' FLOPs too
    assert made["matmul_gflops"] == 100 and made["floor_ratio"] == pytest.approx(
        made["seconds_wall"] / (flops / 100e9))
    assert made["peak_memory_mb_per_run"] == {"max": 900, "median": 900} and made["sessions"] == 1
    assert made["machines"] == ["CPU Test CPU (AVX2 kernels), torch 2.14.1"]


def test_a_rerun_that_disagrees_names_the_questions_whose_numbers_changed(tmp_path, capsys, monkeypatch):
    profile = dataclasses.replace(get_profile("quick"), results_dir=tmp_path)
    monkeypatch.setattr(summary, "_answered", {})
    monkeypatch.setenv("PATH", str(tmp_path / "no-git-here"))  # no git: the file as first found is the reference
    first = summary_of(RATES)
    summary.save(first, profile)
    assert "differ" not in capsys.readouterr().out  # nothing to compare with yet, nothing changed
    monkeypatch.setattr(summary, "_answered", {})  # a new session, still without git
    summary.save(first, profile)
    assert "differ" not in capsys.readouterr().out
    other = summary_of({**RATES, 0.1: [GOOD, FIRST_EPOCH, run([0.81, 0.85, 0.91], seed=2)]})
    summary.save(other, profile)
    assert capsys.readouterr().out.strip().splitlines()[-1] == \
        "Note: these numbers differ from the ones my answers quote in Q1.2, Q1.3."
    summary.save(other, profile)  # run again: still compared with what the answers were written from
    assert "differ" in capsys.readouterr().out
    appendix = json.loads(json.dumps(first))
    appendix["B"] = {"quickstart": [{"lr": 0.1, "quickstart": 0.5}]}  # the answers quote the appendix's tables too
    assert summary.changed(first, appendix) == ["B"]


def test_the_wall_time_adds_up_sessions_not_the_gap_between_them():
    first = [run([0.9], seed=s) for s in range(2)]
    later = [run([0.9], seed=s) for s in range(2, 4)]
    for r in later:
        r.machine = {**r.machine, "session": "b"}
        r.started, r.finished = r.started + 10 ** 9, r.finished + 10 ** 9  # a day later
    made = summary.runs_made(first + later)
    spans = [max(r.finished for r in rs) - min(r.started for r in rs) for rs in (first, later)]
    assert made["sessions"] == 2 and made["seconds_wall"] == pytest.approx(sum(spans) / 1000)


def git_in(path):
    def git(*args: str) -> str:
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false", *args],
                              cwd=path, check=True, capture_output=True, text=True).stdout.strip()
    return git


def committed(path) -> str:
    """A repository with code and results committed, then a later commit of the notebook only: the code's commit."""
    git = git_in(path)
    git("init", "-q")
    assert "not committed yet" in summary.commit_line(path)
    for name in ("helpers/a.py", "results/summary.json", "notebook.ipynb"):
        (path / name).parent.mkdir(exist_ok=True)
        (path / name).write_text("1")
    git("add", "-A")
    git("commit", "-qm", "code and results")
    code = git("rev-parse", "--short=12", "HEAD")
    (path / "notebook.ipynb").write_text("2")
    git("commit", "-qam", "the notebook, executed")
    return code


def test_the_commit_line_names_the_last_commit_of_the_code_and_results_not_a_later_notebook_commit(tmp_path):
    code = committed(tmp_path)
    assert summary.commit_line(tmp_path) == f"Code (helpers/) and results (results/) as in git commit {code}."
    (tmp_path / "results/summary.json").write_text("3")
    assert summary.commit_line(tmp_path).endswith(f"{code}, with uncommitted changes.")


def test_the_commit_line_names_the_repository_where_there_is_one(tmp_path):
    code = committed(tmp_path)
    git_in(tmp_path)("remote", "add", "origin", "https://example.org/someone/assignment3.git")
    assert summary.commit_line(tmp_path) == (f"Code (helpers/) and results (results/) as in git commit {code} of "
                                             f"https://example.org/someone/assignment3.git.")
    git_in(tmp_path)("remote", "set-url", "origin", "https://someone:ghp_secret@example.org/someone/assignment3.git")
    assert "secret" not in summary.commit_line(tmp_path)  # a token in the URL is not printed into the PDF
    assert "https://example.org/someone/assignment3.git" in summary.commit_line(tmp_path)


def test_the_reporting_modules_import_no_runner():
    """Tables, figures, statistics and the summary read Histories; they never import what trains them."""
    from helpers import sourcecode
    runners = {"experiments.py", "pool.py", "workers.py"}
    for module in (plotting, report, summary, tables):
        imported = {path.name for path in sourcecode.closure(module)}  # directly or through another module
        assert not imported & runners, (module.__name__, imported & runners)
