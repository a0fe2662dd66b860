"""Tables, figures and the summary for synthetic groups that hold every outcome a run can have: learned,
reached the target in epoch 1, never reached it, collapsed, diverged at step 1, inside the first 100 traced steps,
and late. Tables hold numbers; what is shown has no 'nan' or 'None' and a reason for every gap; figures cut off
no curve and show at least 4 ticks."""
import dataclasses
import itertools
import json
import subprocess
import math

import matplotlib
import pytest

matplotlib.use("Agg")

import numpy as np  # noqa: E402

from helpers import experiments, gradients, plotting, report, summary, tables  # noqa: E402
from helpers.config import get_profile  # noqa: E402
from helpers.training import History, Recipe  # noqa: E402

SIZES = {"train": 500, "validation": 10, "test": 10, "train_eval": 10}  # 50 steps per epoch at batch 10
LAYERS = ("1", "2", "3")


def record(steps: int, epochs: int, scale: float = 1.0, overflow: bool = False) -> dict:
    """A Q1.6 record as fit() stores it: the first (up to 100) steps, and the probe at its checkpoints."""
    def series(start: float, n: int) -> list:
        values = [scale * start * (1 + 0.01 * i) for i in range(n)]
        return values[:-2] + [None, None] if overflow and n > 2 else values
    at = [s for s in gradients.checkpoints(max(epochs, 1), 50) if s < steps or (s == steps and not overflow)]
    first = min(steps, 100)
    probe = {name: series(start, len(at)) for name, start in zip(gradients.PROBE_SERIES, (2.0, -1e-6, 1e-3, 2e-3, 1e-4,
                                                                                          1e-6))}
    return {"steps": {"signed_mean": series(-1e-5, first), "abs_mean": series(1e-3, first)},
            "probe": {"step": at, "images": 128, **probe, "layers": {n: series(1e-3, len(at)) for n in LAYERS},
                      "layer_sizes": {n: 100 for n in LAYERS}}}


STARTS = itertools.count()  # every run starts at its own time, as real runs do


def run(test, train=None, seed=0, lr=0.1, model="base", diverged_step=None, epochs=None, traced=True,
        validation=None) -> History:
    n = len(test)
    steps = (diverged_step - 1) if diverged_step else 50 * n
    return History(recipe=Recipe(model=model, lr=lr, epochs=epochs or max(n, 1), seed=seed, batch_size=10,
                                 gradient_steps=100 if traced else 0, probe_images=128 if traced else 0),
                   data_sizes=SIZES, parameters=669_706, machine={"device": "cpu", "name": "Test CPU",
                                                                   "kernels": "AVX2", "torch": "2.14.1",
                                                                   "matmul_gflops": 100, "side_by_side": 2,
                                                                   "session": "a"},
                   train_loss=[1.0 / (i + 1) for i in range(n)], train_accuracy=train or test,
                   validation_loss=[1.1 / (i + 1) for i in range(n)],
                   validation_accuracy=validation or [a + 0.001 for a in test],
                   test_loss=[1.2 / (i + 1) for i in range(n)], test_accuracy=list(test), seconds=[1.0] * n,
                   eval_seconds=[0.1] * n, step_loss=[1.0] * steps,
                   gradients=record(steps, epochs or n, overflow=diverged_step is not None) if traced else None,
                   dead_units=None if diverged_step else {"linear_relu_stack.1": [3, 512], "linear_relu_stack.3": [9, 512]},
                   confusion=None if diverged_step else [[5 if t == p else (2 if (t, p) == (6, 0) else 0)
                                                          for p in range(10)] for t in range(10)],
                   stop_reason="diverged" if diverged_step else "epochs", diverged_step=diverged_step,
                   multiply_adds=668_672, flops_per_image=4_000_000,
                   started=(start := 1_000_000 + 10_000 * next(STARTS)), finished=start + 3300, peak_memory_mb=900.0)


GOOD = run([0.8, 0.91, 0.93], [0.85, 0.92, 0.95])
FIRST_EPOCH = run([0.92, 0.93, 0.94], [0.95, 0.96, 0.97], seed=1)
NEVER = run([0.8, 0.85, 0.86], [0.8, 0.86, 0.88], seed=2)
COLLAPSED = [run([0.3, 0.1, 0.1], lr=1.0, seed=s) for s in (0, 1, 2)]
DIVERGED = [run([], lr=10.0, seed=0, diverged_step=1), run([], lr=10.0, seed=1, diverged_step=38),
            run([0.5, 0.6], lr=10.0, seed=2, diverged_step=130, epochs=3)]
RATES = {10.0: DIVERGED, 1.0: COLLAPSED, 0.1: [GOOD, FIRST_EPOCH, NEVER]}
CELLS = {("base", "demo"): [GOOD, NEVER], ("cnn", "demo"): [run([0.9, 0.91], model="cnn")],
         ("base", "cnn"): [DIVERGED[2], GOOD], ("cnn", "cnn"): [run([0.91, 0.93], model="cnn")]}


def shown(table) -> str:
    """The table as the notebook shows it, checked for gaps without a reason."""
    view = tables.view(table)
    text = view.to_string()
    assert "nan" not in text.lower() and "None" not in text, text
    for row in view.itertuples():
        assert all(cell.strip() for cell in row[1:]), row
    return text


def test_outcomes_of_every_kind():
    assert [report.outcome(r) for r in DIVERGED] == ["diverged at step 1", "diverged at step 38", "diverged at step 130"]
    assert report.outcome(COLLAPSED[0]) == "did not learn" and report.outcome(GOOD) == "learned"
    assert report.outcomes([GOOD, COLLAPSED[0], DIVERGED[1]]) == "1 learned, 1 did not learn, diverged at step 38"
    assert report.values(DIVERGED) == [None, None, None] and report.mean([None, 0.9, 0.8]) == pytest.approx(0.85)


def test_welch_between_settings_and_paired_within_runs():
    a, b = [0.90, 0.91, 0.92], [0.80, 0.81, 0.82]
    d = report.compare(a, b)
    assert d.real and d.difference == pytest.approx(0.1) and d.ci == pytest.approx(0.0227, abs=1e-3)  # t(4) 2.776
    close = report.compare(a, [0.905, 0.92, 0.90])
    assert not close.real and close.ci > abs(close.difference)  # the interval holds 0: 3 seeds cannot tell
    assert report.compare([0.1] * 3, [0.1] * 3).p == 1.0 and report.compare(a, [0.1] * 3).real
    assert report.compare([None, None, 0.5], a).p is None  # too few seeds to test: never "real"
    shift = report.paired([2.0, 3.1, 4.0], [1.0, 2.0, 3.0])  # every seed up by about 1: clearly real when paired
    assert shift.real and shift.difference == pytest.approx(1.0333, abs=1e-3)
    assert not report.compare([2.0, 3.1, 4.0], [1.0, 2.0, 3.0]).real  # the same numbers, unpaired, cannot tell


def test_holm_adjusts_a_family_of_p_values():
    assert report.holm([0.01, 0.04, None, 0.03]) == pytest.approx([0.03, 0.06, None, 0.06])
    assert report.holm([0.5, 0.9]) == [1.0, 1.0] and report.holm([]) == []


def test_tables_are_numbers_and_show_every_outcome():
    after = {lr: [r.first_epochs(min(2, max(r.epochs, 1))) if not r.diverged else r for r in runs]
             for lr, runs in RATES.items()}
    accuracy = tables.accuracy(after)
    assert accuracy.loc[10.0, "accuracy"] is None or math.isnan(accuracy.loc[10.0, "accuracy"])
    assert accuracy.loc[10.0, "accuracy_note"] == "diverged at steps 1, 38, 130"
    assert "diverged at steps 1, 38, 130" in shown(accuracy) and list(tables.view(accuracy).columns) == ["Accuracy (%)"]
    rates = tables.learning_rates(after, reference=0.1)
    assert rates.loc[1.0, "diff"] == pytest.approx(0.1 - (0.91 + 0.93 + 0.85) / 3)
    assert rates.loc[1.0, "p"] == pytest.approx(report.compare(report.values(after[1.0]), report.values(after[0.1])).p)
    assert "Δ vs lr 0.1 (points, 95 % CI)" in shown(rates) and "p (Holm)" in shown(rates)
    finals = tables.final_models(RATES)
    assert finals.loc[10.0, "classes"] == [None, None, None] and finals.loc[0.1, "classes"] == [10, 10, 10]
    assert finals.loc[1.0, "dead_2"] == [9, 9, 9] and "—, —, —" in shown(finals)
    target = tables.epochs_to_target(RATES, 0.9)  # test accuracy: seed 0 at epoch 2, seed 1 at 1, seed 2 never
    assert target.loc[0.1, "epoch"] == 1.5 and target.loc[0.1, "epoch_note"] == "2 of 3 seeds"
    assert target.loc[0.1, "accuracy"] == pytest.approx((0.91 + 0.92) / 2)
    assert target.loc[1.0, "epoch_note"] == "> 3" and target.loc[1.0, "accuracy"] == pytest.approx(0.3)
    assert list(tables.view(target).columns) == ["Accuracy (%)", "Epoch"] and "30.00 ± 0.00 (best validation epoch)" in shown(target)
    crossings = tables.crossings(RATES, 0.9)
    assert crossings.loc[0.1, "train_epoch"] == [2, 1, None] and crossings.loc[0.1, "best_validation"] == [0.931, 0.941, 0.861]
    assert crossings.loc[10.0, "test_epoch"] == [None, None, None]
    loop = tables.quickstart({0.1: [GOOD, NEVER]}, {0.1: [FIRST_EPOCH, NEVER]})
    assert loop.loc[0.1, "diff"] == pytest.approx((0.93 + 0.86) / 2 - (0.94 + 0.86) / 2)
    budget = tables.networks({"MLP": [GOOD, NEVER]}, 0.9, 2 * 500 * 4_000_000 / 1e12)  # 2 epochs' compute
    assert budget.loc["MLP", "validation"] == pytest.approx((0.911 + 0.851) / 2)
    between = tables.networks({"MLP": [GOOD, NEVER]}, 0.9, 1.5 * 500 * 4_000_000 / 1e12)  # halfway through epoch 2
    assert between.loc["MLP", "validation"] == pytest.approx(((0.801 + 0.911) / 2 + (0.801 + 0.851) / 2) / 2)
    assert tables.networks({"MLP": [GOOD]}, 0.9, 4 * 500 * 4_000_000 / 1e12).loc["MLP", "validation"] is None
    chosen = run([0.8, 0.91, 0.93], validation=[0.9, 0.8, 0.85])  # validation chooses epoch 1, whatever test says
    assert tables.crossings({0.1: [chosen, GOOD]}, 0.9).loc[0.1, "test_at_best_validation"] == [0.8, 0.93]
    bent = dataclasses.replace(GOOD, test_loss=[0.5, 0.3, 0.4])  # overfits after epoch 2
    bends = tables.final_models({0.1: [bent, GOOD], 10.0: DIVERGED[:1]})
    assert bends.loc[0.1, "lowest_loss_epoch"] == [2, 3] and bends.loc[0.1, "loss_rise"] == pytest.approx([0.1, 0.0])
    assert bends.loc[10.0, "lowest_loss_epoch"] == [None]
    per_class = tables.classes([GOOD], [FIRST_EPOCH])
    assert per_class.loc["Shirt", "mlp"] == pytest.approx(5 / 7) and per_class.loc["Coat", "diff"] == 0
    for table in (finals, target, crossings, loop, per_class, tables.first_steps(RATES), tables.probe(RATES),
                  tables.probe_layers(RATES[0.1]), tables.structures({"base": [GOOD, NEVER], "wider": DIVERGED}),
                  tables.structure_costs({"base": [GOOD, NEVER], "wider": DIVERGED}),
                  tables.networks({"MLP": [GOOD, NEVER], "CNN": CELLS[("cnn", "cnn")]}, 0.9, 0.05),
                  tables.effects(CELLS, {"CNN instead of MLP": (("cnn", "demo"), ("base", "demo"))})):
        shown(table)
    assert 10.0 not in tables.probe(RATES).index  # no run of lr 10 finished: its probe is not compared


def test_the_one_formatter():
    assert tables.number("accuracy", 0.87404) == "87.40" and tables.number("diff", -0.0023) == "−0.23"
    assert tables.number("diff_ci", 0.019) == "1.90" and tables.number("p", 0.0004) == "< 0.001"
    assert tables.number("p", 0.0062) == "0.006" and tables.number("p", 0.0312) == "0.03"
    assert tables.number("params", 669706) == "669,706" and tables.number("abs_early", 0.00036) == "3.6e−04"
    assert tables.number("lr", 0.001) == "0.001" and tables.number("lowest_loss_epoch", [50, 38, None]) == "50, 38, —"


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
        return {name: run([0.8], validation=[1 - abs(math.log10(r.lr))  / 10], lr=r.lr, seed=r.seed)
                for name, r in recipes.items()}
    monkeypatch.setattr(experiments, "run", fake_run)
    found = experiments.tune({"base": (Recipe(model="base", lr=0.1, epochs=1), [0.3, 0.1, 0.03])}, (0, 1), None)
    assert found["base"].chosen == 1.0 and sorted(found["base"].runs) == [0.03, 0.1, 0.3, 1.0, 3.0]
    assert found["base"].inside and len(found["base"].runs[1.0]) == 2


def figures() -> list:
    return [plotting.loss_curves(RATES, "t"), plotting.error_curves(RATES, 0.9, "t"), plotting.first_steps(RATES),
            plotting.probe(RATES, 0.1, "t"), plotting.networks({("base", "demo"): DIVERGED, ("cnn", "cnn"): [GOOD]}, 0.9, "t")]


def visible_ticks(axis, low: float, high: float) -> int:
    return sum(low - 1e-12 <= v <= high + 1e-12 for v in axis.get_majorticklocs())


def test_every_figure_draws_every_outcome_lists_only_what_it_draws_and_cuts_off_nothing():
    """Every outcome drawn; every legend entry drawn; every axis titled, with at least 4 ticks on its value axis
    and every finite point of every curve inside its limits."""
    drawn_figures = figures()
    text = " ".join(t.get_text() for fig in drawn_figures for ax in fig.axes for t in ax.texts)
    assert "seed 0 diverged at step 1" in text and "seed 1 diverged at step 38" in text
    for fig in drawn_figures:
        fig.canvas.draw()
        drawn = {line.get_label() for ax in fig.axes for line in ax.lines}
        for legend in fig.legends + [ax.get_legend() for ax in fig.axes if ax.get_legend()]:
            for entry in legend.get_texts():
                name = entry.get_text()
                assert name in drawn or name in ("test loss (b)", "train loss (b)", "test (a, b)", "train (a)",
                                                 "train (b)", "probe batch", "(b) a minibatch"), name  # line styles
        for ax in fig.axes:
            assert ax.get_title() and fig._suptitle is not None, "an untitled panel or figure"
            low, high = ax.get_ylim()
            assert visible_ticks(ax.yaxis, low, high) >= 4, (ax.get_title(), ax.yaxis.get_majorticklocs(), low, high)
            (x0, x1), (y0, y1) = sorted(ax.get_xlim()), sorted(ax.get_ylim())
            for line in (line for line in ax.lines if line.get_transform() == ax.transData):  # not a reference line
                x, y = (np.asarray(v, float) for v in line.get_data())
                kept = np.isfinite(x) & np.isfinite(y)
                assert ((x[kept] >= x0) & (x[kept] <= x1) & (y[kept] >= y0) & (y[kept] <= y1)).all(), ax.get_title()
    matplotlib.pyplot.close("all")


def test_a_mean_is_drawn_only_while_every_seed_runs():
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    plotting.seeds(ax, [[1, 2, 3, 4], [1, 2], [1, 2, 3]], "red", "three seeds")
    mean, *rest = ax.lines
    assert list(mean.get_xdata()) == [1, 2] and mean.get_label() == "three seeds"
    ends = [line for line in rest if line.get_marker() == "o"]
    assert sorted(float(line.get_xdata()[0]) for line in ends) == [3.0, 4.0]  # the seeds that ran on end in a dot
    plt.close("all")


def test_figures_print_at_8_points_or_more_at_the_width_of_a_page():
    for fig in figures():
        assert fig.get_figwidth() <= plotting.WIDTH
        fig.canvas.draw()  # nothing drawn outside the figure: "tight" saving would make it wider than the page
        assert fig.get_tightbbox().width <= plotting.WIDTH + 0.01, fig.get_tightbbox()
        sizes = [t.get_fontsize() for t in fig.findobj(matplotlib.text.Text) if t.get_text()]
        assert min(sizes) >= 8
    matplotlib.pyplot.close("all")


def summary_of(groups):
    """The summary of a notebook that showed tables for these groups."""
    summary._shown.clear()
    summary._shown.update({"Q1.2": {}, "Q1.3": {}})
    summary._shown["Q1.2"]["accuracy"] = summary.records(tables.accuracy(groups))
    summary._shown["Q1.3"]["epochs"] = summary.records(tables.epochs_to_target(groups, 0.9))
    summary._shown["Q1.5"] = {"costs": summary.records(tables.structure_costs({"base": [GOOD], "wider": [NEVER]}))}
    return summary.build(get_profile("quick"), groups, {lr: [r.first_epochs(1) for r in runs if r.epochs]
                                                         for lr, runs in groups.items()})


def test_summary_is_strict_json_of_numbers_and_the_floor():
    result = summary_of(RATES)
    text = json.dumps(result, allow_nan=False)
    assert "NaN" not in text
    row = next(r for r in result["Q1.2"]["accuracy"] if r["lr"] == 0.1)
    assert row["accuracy"] == pytest.approx((0.93 + 0.94 + 0.86) / 3) and isinstance(row["accuracy_std"], float)
    assert next(r for r in result["Q1.2"]["accuracy"] if r["lr"] == 10.0)["accuracy"] is None
    made = result["runs"]
    assert made["count"] == 9 and made["epochs"] == 20  # cut runs (first_epochs) count once, whole
    assert made["matmul_gflops"] == 100 and made["floor_ratio"] > 0
    assert made["peak_memory_mb_per_run"] == {"max": 900, "median": 900} and made["sessions"] == 1
    assert made["machines"] == ["CPU Test CPU (AVX2 kernels), torch 2.14.1"]


def test_a_rerun_that_disagrees_names_the_questions_whose_numbers_changed(tmp_path, capsys, monkeypatch):
    from dataclasses import replace
    profile = replace(get_profile("quick"), results_dir=tmp_path)
    monkeypatch.setattr(summary, "_answered", {})
    monkeypatch.setenv("PATH", str(tmp_path / "no-git-here"))  # no git: the file as first found is the reference
    first = summary_of(RATES)
    summary.save(first, profile)
    assert "differ" not in capsys.readouterr().out  # nothing to compare with yet, nothing changed
    monkeypatch.setattr(summary, "_answered", {})  # a new session, still without git
    summary.save(first, profile)
    assert "differ" not in capsys.readouterr().out
    other = summary_of({**RATES, 0.1: [GOOD, FIRST_EPOCH, run([0.8, 0.85, 0.87], seed=2)]})
    summary.save(other, profile)
    assert capsys.readouterr().out.strip().splitlines()[-1] == \
        "Note: these numbers differ from the ones my answers quote in Q1.2."
    summary.save(other, profile)  # run again: still compared with what the answers were written from
    assert "differ" in capsys.readouterr().out
    slower = json.loads(json.dumps(first))
    slower["Q1.5"]["costs"][0]["s_per_epoch"] = 99.0
    assert summary.changed(first, slower) == []  # timings differ on every run: not a changed answer
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


def test_the_commit_line_names_the_last_commit_of_the_code_and_results_not_a_later_notebook_commit(tmp_path):
    def git(*args: str) -> str:
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false", *args], cwd=tmp_path, check=True,
                              capture_output=True, text=True).stdout.strip()
    git("init", "-q")
    assert "not committed yet" in summary.commit_line(tmp_path)
    for name in ("helpers/a.py", "results/summary.json", "notebook.ipynb"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("1")
    git("add", "-A")
    git("commit", "-qm", "code and results")
    code = git("rev-parse", "--short=12", "HEAD")
    (tmp_path / "notebook.ipynb").write_text("2")
    git("commit", "-qam", "the notebook, executed")
    assert summary.commit_line(tmp_path) == f"Code (helpers/) and results (results/) as in git commit {code}."
    (tmp_path / "results/summary.json").write_text("3")
    assert summary.commit_line(tmp_path).endswith(f"{code}, with uncommitted changes.")
