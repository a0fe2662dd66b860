"""Tables, figures and the summary for synthetic groups that hold every outcome a run can have: learned,
reached the target in epoch 1, never reached it (stopped without gain), collapsed, diverged at step 1,
inside the first 100 traced steps, and late. No crash, no 'nan' or 'None', and a reason for every gap."""
import itertools
import json
import math

import matplotlib
import pytest

matplotlib.use("Agg")

from helpers import plotting, report, summary, tables  # noqa: E402
from helpers.config import get_profile  # noqa: E402
from helpers.training import History, Recipe  # noqa: E402

SIZES = {"train": 500, "validation": 10, "test": 10, "train_eval": 10}  # 50 steps per epoch at batch 10
LAYERS = ("linear_relu_stack.0", "linear_relu_stack.2", "linear_relu_stack.4")


def trace(steps: int, scale: float = 1.0, overflow: bool = False) -> dict:
    """A gradient trace of `steps` steps (the last values None when they overflowed), as fit() stores it."""
    def series(start: float) -> list:
        values = [scale * start * (1 + 0.01 * i) for i in range(steps)]
        return values[:-2] + [None, None] if overflow and steps > 2 else values
    every = {"signed_mean": series(-1e-5), "abs_mean": series(1e-3),
             "layers": {name: {"signed_mean": series(1e-6), "abs_mean": series(1e-3), "error": series(0.9),
                               "input": series(5.0), "product": series(4.0)} for name in LAYERS}}
    pick = lambda tree, f: {k: pick(v, f) if isinstance(v, dict) else f(v) for k, v in tree.items()}  # noqa: E731
    return {"steps": pick(every, lambda v: v[:100]), "block": 50, "layer_sizes": {n: 100 for n in LAYERS},
            "blocks": pick(every, lambda v: [x for x in v[::50]])}


STARTS = itertools.count()  # every run starts at its own time, as real runs do


def run(test, train=None, seed=0, lr=0.1, model="base", stop="epochs", diverged_step=None, epochs=None,
        traced=True, **extra) -> History:
    n = len(test)
    steps = (diverged_step - 1) if diverged_step else 50 * n
    return History(recipe=Recipe(model=model, lr=lr, epochs=epochs or max(n, 1), seed=seed, batch_size=10,
                                 gradient_epochs=max(n, 1) if traced else 0),
                   data_sizes=SIZES, parameters=669_706, machine={"device": "cpu", "name": "Test CPU",
                                                                   "kernels": "AVX2", "torch": "2.14.1",
                                                                   "matmul_gflops": 100, "side_by_side": 2},
                   train_loss=[1.0 / (i + 1) for i in range(n)], train_accuracy=train or test,
                   validation_loss=[1.1 / (i + 1) for i in range(n)], validation_accuracy=[a + 0.001 for a in test],
                   test_loss=[1.2 / (i + 1) for i in range(n)], test_accuracy=list(test), seconds=[1.0] * n,
                   eval_seconds=[0.1] * n, step_loss=[1.0] * steps,
                   gradients=trace(steps, overflow=diverged_step is not None) if traced else None,
                   dead_units=None if diverged_step else {"linear_relu_stack.1": [3, 512], "linear_relu_stack.3": [9, 512]},
                   confusion=None if diverged_step else [[5 if t == p else (2 if (t, p) == (6, 0) else 0)
                                                          for p in range(10)] for t in range(10)],
                   stop_reason="diverged" if diverged_step else stop, diverged_step=diverged_step,
                   started=(start := 1_000_000 + 10_000 * next(STARTS)), finished=start + 3300, peak_memory_mb=900.0,
                   **extra)


GOOD = run([0.8, 0.91, 0.93], [0.85, 0.92, 0.95], stop="target")
FIRST_EPOCH = run([0.92, 0.93, 0.94], [0.95, 0.96, 0.97], seed=1, stop="target")
NEVER = run([0.8, 0.85, 0.86], [0.8, 0.86, 0.88], seed=2, stop="stalled")
COLLAPSED = [run([0.3, 0.1, 0.1], lr=1.0, seed=s, stop="stalled") for s in (0, 1, 2)]
DIVERGED = [run([], lr=10.0, seed=0, diverged_step=1), run([], lr=10.0, seed=1, diverged_step=38),
            run([0.5, 0.6], lr=10.0, seed=2, diverged_step=130, epochs=3)]
RATES = {10.0: DIVERGED, 1.0: COLLAPSED, 0.1: [GOOD, FIRST_EPOCH, NEVER]}


def no_gaps_without_reason(table) -> None:
    text = table.to_string()
    assert "nan" not in text.lower() and "None" not in text, text
    for row in table.astype(str).itertuples():
        assert all(cell.strip() for cell in row[1:]), row


def test_spread_and_outcomes_of_every_kind():
    assert [report.outcome(r) for r in DIVERGED] == ["diverged at step 1", "diverged at step 38", "diverged at step 130"]
    assert report.outcome(COLLAPSED[0]) == "did not learn" and report.outcome(GOOD) == "learned"
    assert report.spread(DIVERGED).text() == "diverged (step 1, step 38, step 130)"
    mixed = report.spread([GOOD, DIVERGED[1]])
    assert mixed.text() == "93.00\xa0±\xa00.00\xa0% (1 of 2 diverged)" and mixed.values == [0.93, None]
    assert report.spread([GOOD, FIRST_EPOCH]).text() == "93.50\xa0±\xa00.71\xa0%"


def test_welch_is_the_one_rule_for_different():
    a, b = report.Spread([0.90, 0.91, 0.92], [0, 1, 2], []), report.Spread([0.80, 0.81, 0.82], [0, 1, 2], [])
    assert report.compare(a, b, "a", "b").real and report.compare(a, b, "a", "b").difference == pytest.approx(0.1)
    close = report.Spread([0.905, 0.92, 0.90], [0, 1, 2], [])
    assert not report.compare(a, close, "a", "c").real
    flat = report.Spread([0.1, 0.1, 0.1], [0, 1, 2], [])
    assert report.compare(flat, flat, "", "").p == 1.0 and report.compare(a, flat, "", "").real
    assert report.compare(report.spread(DIVERGED), a, "", "").p == 1.0  # too few seeds to test: never "real"
    assert report.compare(a, b, "", "").text() == "+10.00 points, p\xa0<\xa00.001"
    assert report.outcomes([GOOD, COLLAPSED[0], DIVERGED[1]]) == "1 learned, 1 did not learn, diverged at step 38"


def test_median_range_says_how_many_seeds_reached():
    assert report.median_range([12, 11, 14]) == "12 (11–14)"
    assert report.median_range([41, None, 44]) == "42.5 (41–44; 2 of 3)"
    assert report.median_range([None, None]) == "not reached" and report.median_range([3, None]) == "3 (1 of 2)"


def test_every_table_renders_every_outcome():
    after = {lr: [r.first_epochs(min(2, max(r.epochs, 1))) if not r.diverged else r for r in runs]
             for lr, runs in RATES.items()}
    table = tables.learning_rates(after)
    assert table.loc["10", "Accuracy"] == "diverged (step 1, step 38, step 130)"
    assert table.loc["10", "Runs"] == "diverged at steps 1, 38, 130"
    assert table.loc["1", "Runs"] == "3 did not learn" and table.loc["0.1", "Runs"] == "3 learned"
    finals = tables.final_models(RATES)
    assert finals.loc["10", "Classes predicted"] == "—, —, —" and finals.loc["0.1", "Classes predicted"] == "10, 10, 10"
    assert finals.loc["1", "Dead units, layer 2 (of 512)"] == "9, 9, 9"
    target = tables.epochs_to_target(RATES, 0.9)
    assert target.loc["0.1", "Epoch train ≥ 90\xa0%"] == "1.5 (1–2; 2 of 3)"
    assert target.loc["0.1", "Epoch test ≥ 90\xa0%"] == "1.5 (1–2; 2 of 3)"
    assert target.loc["10", "Epoch test ≥ 90\xa0%"] == "not reached"
    assert target.loc["10", "Epochs run"] == "0, 0, 2" and target.loc["10", "Stopped by"] == "diverging"
    assert target.loc["0.1", "Stopped by"] == "both reached, no gain"
    readings = tables.gradient_readings(RATES)
    layers = tables.gradient_layers(RATES)
    assert "10, layer 1" not in layers.index  # no run of lr 10 finished: nothing to compare
    cells = {("base", "demo"): [GOOD, NEVER], ("cnn_8_16_32", "demo"): [run([0.9, 0.91], model="cnn_8_16_32")],
             ("base", "cnn"): [DIVERGED[2], GOOD], ("cnn_8_16_32", "cnn"): [run([0.91, 0.93], model="cnn_8_16_32")]}
    for table in (table, finals, target, readings, layers, tables.ablation(cells, 0.9), tables.ablation_effects(cells),
                  tables.most_confused([GOOD, NEVER]), tables.structures({"base": [GOOD, NEVER], "wider": DIVERGED})):
        no_gaps_without_reason(table)
    assert tables.most_confused([GOOD]).iloc[0]["True class"] == "Shirt"


def test_every_figure_draws_every_outcome():
    figures = [plotting.loss_curves(RATES, "t"), plotting.accuracy_curves(RATES, 0.9),
               plotting.accuracy_vs_lr(RATES, [1.0, 0.1]), plotting.gradient_means(RATES),
               plotting.ablation_curves({("base", "demo"): DIVERGED,
                                                                         ("cnn_8_16_32", "cnn"): [GOOD]})]
    text = " ".join(t.get_text() for fig in figures for ax in fig.axes for t in ax.texts)
    assert "seed 0 diverged at step 1" in text and "seed 1 diverged at step 38" in text
    for fig in figures:
        for ax in fig.axes:
            for line in ax.lines:
                assert not any(isinstance(v, float) and math.isinf(v) for v in line.get_ydata())
    matplotlib.pyplot.close("all")


def test_figures_print_at_8_points_or_more_at_the_width_of_a_page():
    fig = plotting.gradient_means(RATES)
    assert fig.get_figwidth() <= plotting.WIDTH
    sizes = [t.get_fontsize() for t in fig.findobj(matplotlib.text.Text) if t.get_text()]
    assert min(sizes) >= 8
    matplotlib.pyplot.close("all")


def summary_of(groups):
    """The summary of a notebook that showed every table of the graded notebook for these groups."""
    summary._shown.clear()
    search = {f"{n}_lr{lr:g}": GOOD for n in ("base", "deeper", "wider") for lr in (0.3, 0.1)}
    cells = {("base", "demo"): [GOOD, NEVER], ("base", "cnn"): [GOOD], ("cnn_8_16_32", "demo"): [GOOD],
             ("cnn_8_16_32", "cnn"): [run([0.9, 0.93], model="cnn_8_16_32")]}
    scheme = {f"{m}_adamw_lr{lr:g}": GOOD for m, rates in {"cnn_8_16_32": [0.01], "base": [0.001]}.items()
              for lr in rates}
    for question, make, *args in [
            ("Q1.2", tables.learning_rates, groups), ("Q1.2", tables.final_models, groups),
            ("Q1.3", tables.epochs_to_target, groups, 0.9), ("Q1.4", tables.learning_rates, groups),
            ("Q1.5", tables.structure_search, search, [0.3, 0.1], {"base": 0.1, "deeper": 0.3, "wider": 0.1}),
            ("Q1.5", tables.structures, {"base": [GOOD], "wider": [NEVER]}), ("Q1.6", tables.gradient_readings, groups),
            ("Q1.6", tables.gradient_layers, groups),
            ("Q1.7", tables.cnn_search, {"cnn_8_16_32": GOOD}, scheme, "cnn_8_16_32",
             {"cnn_8_16_32": [0.01], "base": [0.001]}, {"cnn_8_16_32": 0.01, "base": 0.001}),
            ("Q1.7", tables.ablation, cells, 0.9), ("Q1.7", tables.ablation_effects, cells),
            ("Q1.7", tables.most_confused, cells[("cnn_8_16_32", "cnn")])]:
        summary.show_table(question, make, *args)
    return summary.build(get_profile("quick"), groups, search, cells, scheme,
                         {lr: [r.first_epochs(1) for r in runs if r.epochs] for lr, runs in groups.items()})


def test_summary_is_strict_json_with_every_question_and_the_floor():
    result = summary_of(RATES)
    text = json.dumps(result, allow_nan=False)
    assert "NaN" not in text and all(f"Q1.{i}" in result for i in range(2, 8))
    assert list(result["Q1.7"]) == ["cnn_search", "ablation", "ablation_effects", "most_confused"]
    made = result["runs"]
    assert made["count"] == 10 and made["epochs"] == 22  # cut runs (first_epochs) count once, whole
    assert made["matmul_gflops"] == 100 and made["floor_ratio"] > 0 and made["peak_memory_mb_per_worker"] == 900
    assert made["machines"] == ["CPU Test CPU (AVX2 kernels), torch 2.14.1"]


def test_a_rerun_that_disagrees_names_the_questions_whose_numbers_changed(tmp_path, capsys, monkeypatch):
    from dataclasses import replace
    profile = replace(get_profile("quick"), results_dir=tmp_path)
    monkeypatch.setattr(summary, "_answered", {})
    first = summary_of(RATES)
    summary.save(first, profile)
    assert "differ" not in capsys.readouterr().out  # nothing to compare with yet, nothing changed
    summary.save(first, profile)
    assert "differ" not in capsys.readouterr().out
    other = summary_of({**RATES, 0.1: [GOOD, FIRST_EPOCH, run([0.8, 0.85, 0.87], seed=2, stop="stalled")]})
    summary.save(other, profile)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("Note: these numbers differ from the ones my answers quote in Q1.2, Q1.3, Q1.4")
    summary.save(other, profile)  # run again: still compared with what the answers were written from
    assert "differ" in capsys.readouterr().out
    slower = json.loads(json.dumps(first))
    slower["Q1.5"]["structures"][0]["s/epoch"] = "99.0"
    assert summary.changed(first, slower) == []  # timings differ on every run: not a changed answer
