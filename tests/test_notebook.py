"""The committed notebook is the deliverable: executed in order with the full profile, no errors, every
question answered, its shown numbers the ones in results/summary.json, and every hand-written claim in its
answers still supported by those numbers (each claim below quotes the sentence it pins)."""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "Assignment3_Q1.ipynb"
SUMMARY = ROOT / "results" / "summary.json"
QUESTIONS = ["Q1.1", "Q1.2", "Q1.3", "Q1.4", "Q1.5", "Q1.6", "Q1.7"]


@pytest.fixture(scope="module")
def notebook() -> dict:
    return json.loads(NOTEBOOK.read_text())


@pytest.fixture(scope="module")
def summary() -> dict:
    return json.loads(SUMMARY.read_text())


def outputs_text(notebook: dict) -> str:
    parts = []
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            for value in (output.get("text"), *(output.get("data", {}).get(k) for k in
                                                ("text/plain", "text/markdown", "text/html"))):
                if value:
                    parts.append("".join(value) if isinstance(value, list) else value)
    return "\n".join(parts).replace("\xa0", " ")


def answer(notebook: dict, question: str) -> str:
    """The hand-written markdown of a question's section (everything after its heading, before the next)."""
    cells = notebook["cells"]
    start = next(i for i, c in enumerate(cells) if "".join(c["source"]).startswith(f"## {question} "))
    end = next((i for i in range(start + 1, len(cells)) if "".join(cells[i]["source"]).startswith("## ")), len(cells))
    return "\n".join("".join(c["source"]) for c in cells[start:end] if c["cell_type"] == "markdown")


def test_executed_in_order_without_errors(notebook):
    code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    assert [c["execution_count"] for c in code] == list(range(1, len(code) + 1))
    assert not [o for c in code for o in c["outputs"] if o["output_type"] == "error"]
    assert not [o for c in code for o in c["outputs"] if o.get("name") == "stderr"], "warnings or progress debris"


def test_full_profile_and_every_question_answered(notebook, summary):
    text = outputs_text(notebook)
    assert "profile full:" in text and "profile quick" not in text
    assert summary["profile"] == "full" and summary["data_sizes"]["train"] == 55_000
    for question in QUESTIONS:
        section = answer(notebook, question)
        assert len(section) > 300, f"{question} has no written answer"
        assert "_ANSWER" not in section, f"{question}: placeholder left"
    images = sum("image/png" in o.get("data", {}) for c in notebook["cells"] for o in c.get("outputs", []))
    assert images >= 10


def test_no_run_log_is_left_untagged(notebook):
    """Run logs ('trained …', 'loaded from …') stay in the notebook but are tagged so the PDF leaves them out."""
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            text = "".join(output.get("text", "")) + "".join(output.get("data", {}).get("text/plain", ""))
            if re.search(r"loaded from results|^trained \d+ of", text):
                assert "tooling" in output.get("metadata", {}).get("tags", []), text


def test_summary_has_every_part(summary):
    assert {"torch", "device", "cores"} <= set(summary["environment"])
    assert summary["seconds_wall"] > 0 and summary["seconds_sequential"] >= summary["seconds_wall"] * 0.9
    assert [row["lr"] for row in summary["q1_2"]] == [1.0, 0.1, 0.01, 0.001]
    assert all(row["epochs"] == 10 and len(row["seeds"]) == 3 for row in summary["q1_2"])
    assert all(row["max_epochs"] >= 50 for row in summary["q1_3"])
    assert {row["structure"] for row in summary["q1_5"]} == {"base", "deeper", "wider"}
    assert all(len(row["seeds"]) == 3 for row in summary["q1_5"])
    assert summary["q1_6"]["steps"] == 100 and len(summary["q1_6"]["gradient_mean"]) == 100
    assert {row["lr"] for row in summary["q1_6_long"]} == {1.0, 0.1, 0.01, 0.001}
    assert all(len(row["abs_mean"]) == 3 and len(row["abs_mean"][0]) == 10 for row in summary["q1_6_long"])
    sweep = [row["lr"] for row in summary["q1_4_sweep"]]
    assert {1.0, 0.1, 0.01, 0.001} <= set(sweep) and len([lr for lr in sweep if 0.1 < lr < 1]) >= 3
    assert len(summary["q1_7_selection"]) >= 3 and all(r["parameters"] < 100_000 for r in summary["q1_7_selection"])
    best = max(summary["q1_7_selection"], key=lambda r: r["validation_accuracy"])
    assert summary["q1_7_selected"] == best["candidate"]  # chosen on validation accuracy
    cells = {(r["model"], r["scheme"]) for r in summary["q1_7_ablation"]}
    assert cells == {("mlp_base", "demo"), ("mlp_base", "cnn"), ("cnn", "demo"), ("cnn", "cnn")}
    assert all(len(r["seeds"]) == 3 for r in summary["q1_7_ablation"])


def test_summary_numbers_are_the_ones_the_notebook_shows(notebook, summary):
    text = outputs_text(notebook)
    for row in summary["q1_2"] + summary["q1_5"] + summary["q1_7_ablation"]:
        if row["test_accuracy_mean"] is not None:
            assert f"{100 * row['test_accuracy_mean']:.2f} ± {100 * row['test_accuracy_std']:.2f} %" in text
    for row in summary["q1_5"]:
        assert f"{row['parameters']:,}" in text
    for row in summary["q1_7_selection"]:
        assert f"{100 * row['validation_accuracy']:.2f} %" in text


def test_no_progress_bar_debris(notebook):
    text = outputs_text(notebook)
    assert not re.search(r"\d+%\|", text), "tqdm output saved in the notebook"
    assert not any("application/vnd.jupyter.widget-view+json" in o.get("data", {})
                   for c in notebook["cells"] for o in c.get("outputs", []))


# --- the hand-written claims, each pinned to the numbers that support it -------------------------------

def row(rows: list[dict], **match) -> dict:
    return next(r for r in rows if all(r[k] == v for k, v in match.items()))


def test_q1_2_claims(notebook, summary):
    text = answer(notebook, "Q1.2")
    q12 = summary["q1_2"]
    # "lr 1 is too large: no seed learned" ... "most at chance level"
    assert "no seed learned" in text
    assert not any(row(q12, lr=1.0)["learned"]) and row(q12, lr=1.0)["test_accuracy_mean"] < 0.45
    assert sum(a <= 0.15 for a in row(q12, lr=1.0)["per_seed"]) >= 2
    # "jumps around the loss of a uniform guess (ln 10 ≈ 2.30)": the last-epoch train loss of every seed is near it
    assert all(1.2 < loss < 2.6 for loss in row(q12, lr=1.0)["train_loss_last"])
    # "No loss became NaN or infinite"
    assert not row(q12, lr=1.0)["diverged"]
    # "most hidden ReLU units ... never firing ... predicting one or a few classes"
    for seed in summary["q1_6"]["largest_lr"]:
        assert seed["classes_predicted"] <= 5
        assert all(dead > units / 2 for dead, units in seed["dead_units"].values())
    # "lr 0.1 is the most accurate of the four ... ahead of lr 0.01 by several seed standard deviations"
    means = {r["lr"]: r["test_accuracy_mean"] for r in q12}
    assert max(means, key=means.get) == 0.1
    spread = max(row(q12, lr=0.1)["test_accuracy_std"], row(q12, lr=0.01)["test_accuracy_std"])
    assert means[0.1] - means[0.01] > 2 * spread
    # "their train loss is still falling in epoch 10, lr 0.001's most steeply"
    fall = {lr: row(summary["q1_3"], lr=lr)["train_loss"][8] - row(summary["q1_3"], lr=lr)["train_loss"][9]
            for lr in (0.01, 0.001)}
    assert fall[0.001] > fall[0.01] > 0


def test_q1_5_claims(notebook, summary):
    text = answer(notebook, "Q1.5")
    q15 = {r["structure"]: r for r in summary["q1_5"]}
    base = q15["base"]
    # "differ from the base by less than one seed standard deviation"
    assert "less than one seed standard deviation" in text
    for name in ("wider", "deeper"):
        difference = abs(q15[name]["test_accuracy_mean"] - base["test_accuracy_mean"])
        assert difference < max(q15[name]["test_accuracy_std"], base["test_accuracy_std"]), name
    # "final train loss, train accuracy and the train–test gap are nearly the same for all three"
    losses = [r["train_loss_mean"] for r in q15.values()]
    train = [r["train_accuracy_mean"] for r in q15.values()]
    assert max(losses) - min(losses) < 0.02 and max(train) - min(train) < 0.01
    # "more parameters and more time per epoch for both variants, most for the wider one"
    assert q15["wider"]["parameters"] > q15["deeper"]["parameters"] > base["parameters"]
    assert q15["wider"]["seconds_per_epoch"] > q15["deeper"]["seconds_per_epoch"] > base["seconds_per_epoch"]


def epoch_means(summary: dict, lr: float, key: str) -> list[float]:
    """Mean over seeds of the per-epoch means of a Q1.6 quantity."""
    seeds = row(summary["q1_6_long"], lr=lr)[key]
    return [sum(values) / len(values) for values in zip(*seeds)]


def test_q1_6_claims(notebook, summary):
    text = answer(notebook, "Q1.6")
    assert '"the mean of the gradients decrease"' in text  # the hint is quoted
    g = {float(lr): stats for lr, stats in summary["q1_6"]["per_lr"].items()}
    healthy = (0.1, 0.01, 0.001)
    # "Step 1 is identical for every rate"
    assert len({round(s["signed_step1"], 12) for s in g.values()}) == 1 and len({s["abs_step1"] for s in g.values()}) == 1
    # "its share of the signed mean is zero up to rounding"
    assert all(s["output_max"] < 1e-8 for s in g.values())
    # "(a) ... starts small and positive, turns negative within the first 100 steps at lr 0.1, 0.01 and 0.001"
    assert g[0.1]["signed_step1"] > 0 and all(g[lr]["signed_91_100"] < 0 for lr in healthy)
    # "at lr 0.1 and 0.01 it peaks in the first epoch and is close to zero a few epochs later; at lr 0.001 it
    # peaks later and is still on its way back in epoch 10"
    for lr in healthy:
        signed = [abs(v) for v in epoch_means(summary, lr, "signed_mean")]
        peak = max(signed)
        if lr == 0.001:
            assert signed.index(peak) > 0 and signed[-1] > 0.2 * peak
        else:
            assert signed.index(peak) == 0 and signed[-1] < 0.2 * peak
    # "always only a fraction of the mean |gradient| - at most about a third, at lr 0.001 early in training,
    # and mostly far less"
    share = {lr: [abs(s) / a for s, a in zip(epoch_means(summary, lr, "signed_mean"), epoch_means(summary, lr, "abs_mean"))]
             for lr in healthy}
    largest = max(healthy, key=lambda lr: max(share[lr]))
    assert largest == 0.001 and 0.2 < max(share[0.001]) < 0.4 and share[0.001].index(max(share[0.001])) < 4
    assert all(g[lr]["ratio"] < 0.2 for lr in healthy)  # the first 100 steps
    assert sorted(v for values in share.values() for v in values)[len(healthy) * 10 // 2] < 0.05  # the median epoch
    # "(b) In the first 100 steps the mean |gradient| grows at lr 0.1 and stays level at lr 0.01 and 0.001"
    assert g[0.1]["abs_91_100"] > 1.5 * g[0.1]["abs_step1"]
    assert all(0.8 < g[lr]["abs_91_100"] / g[lr]["abs_step1"] < 1.3 for lr in (0.01, 0.001))
    # "over 10 epochs it falls only slightly at lr 0.1 and grows at lr 0.01 and 0.001"
    assert 0.7 < g[0.1]["abs_last"] / g[0.1]["abs_epoch1"] < 1.0
    assert all(g[lr]["abs_last"] > 1.2 * g[lr]["abs_epoch1"] for lr in (0.01, 0.001))
    # "Only at lr 1 does it fall steeply, within the first 100 steps"
    assert g[1.0]["abs_91_100"] < 0.5 * g[1.0]["abs_step1"]
    # "The error term ||p - y|| falls steadily" (healthy rates)
    for lr in healthy:
        error = epoch_means(summary, lr, "error_norm")
        assert error[-1] < 0.7 * error[0] and all(b < a + 0.02 for a, b in zip(error, error[1:])), lr
    # "hidden activations grow ... at lr 0.1 within the first 100 steps, after which they level off;
    # at lr 0.01 and 0.001 throughout the 10 epochs"
    for i in (1, 2):
        assert g[0.1][f"activation{i}_91_100"] > 1.5 * g[0.1][f"activation{i}_step1"]
        assert g[0.1][f"activation{i}_last"] < 1.05 * g[0.1][f"activation{i}_epoch1"]
        assert all(g[lr][f"activation{i}_last"] > 1.2 * g[lr][f"activation{i}_epoch1"] for lr in (0.01, 0.001))
        # "At lr 1 the activations shrink"
        assert g[1.0][f"activation{i}_last"] < g[1.0][f"activation{i}_epoch1"]


def test_q1_7_claims(notebook, summary):
    text = answer(notebook, "Q1.7")
    cells = {(r["model"], r["scheme"]): r for r in summary["q1_7_ablation"]}
    cnn, mlp = cells[("cnn", "cnn")], cells[("mlp_base", "demo")]
    mlps = {r["structure"]: r for r in summary["q1_5"]}
    # "ahead of every MLP by many seed standard deviations, with more than ten times fewer parameters than the smallest MLP"
    for other in mlps.values():
        assert cnn["test_accuracy_mean"] - other["test_accuracy_mean"] > 3 * max(cnn["test_accuracy_std"],
                                                                                 other["test_accuracy_std"])
    assert 10 * cnn["parameters"] < min(r["parameters"] for r in mlps.values())
    # "The goal of 93 % ... is not met"
    assert "**not\n  met**" in text or "**not met**" in text
    assert cnn["test_accuracy_mean"] < 0.93 and all(r["parameters"] < 100_000 for r in summary["q1_7_selection"])
    # "with the demo's own scheme the CNN already beats the base MLP by several points"
    assert cells[("cnn", "demo")]["test_accuracy_mean"] - mlp["test_accuracy_mean"] > 0.02
    # "The CNN's scheme adds more on top for the CNN, but not for the MLP, which is less accurate with it"
    assert cnn["test_accuracy_mean"] - cells[("cnn", "demo")]["test_accuracy_mean"] > 0.01
    assert cells[("mlp_base", "cnn")]["test_accuracy_mean"] < mlp["test_accuracy_mean"]
    # "Every CNN run passes 90 % test accuracy within 10 epochs; no MLP run does, here or (Q1.3) in its longer runs"
    assert all(e is not None for key in (("cnn", "demo"), ("cnn", "cnn")) for e in cells[key]["first_epoch_test_90"])
    assert all(e is None for key in (("mlp_base", "demo"), ("mlp_base", "cnn")) for e in cells[key]["first_epoch_test_90"])
    assert all(row["epoch_test_90"] is None for row in summary["q1_3"])
    # "With the demo's constant rate the CNN gets there first but ends lower and varies more"
    demo = cells[("cnn", "demo")]
    assert all(a < b for a, b in zip(demo["first_epoch_test_90"], cnn["first_epoch_test_90"]))
    assert demo["test_accuracy_mean"] < cnn["test_accuracy_mean"] and demo["test_accuracy_std"] > cnn["test_accuracy_std"]
    # "a CNN epoch costs several times a base-MLP epoch, the same order as the wider MLP's (whose epoch also
    # costs several times the base's)"
    assert cnn["seconds_per_epoch"] > 2 * mlp["seconds_per_epoch"]
    assert mlps["wider"]["seconds_per_epoch"] > 1.8 * mlp["seconds_per_epoch"]
    assert 0.5 < cnn["seconds_per_epoch"] / mlps["wider"]["seconds_per_epoch"] < 2
    # "Per accuracy gained, it is by far the cheaper way to grow": more accuracy per extra second than the wider MLP
    gain = lambda r: (r["test_accuracy_mean"] - mlp["test_accuracy_mean"]) / (r["seconds_per_epoch"] - mlp["seconds_per_epoch"])
    assert gain(cnn) > 5 * max(gain(mlps["wider"]), 1e-9)


def test_q1_7_remaining_errors_are_the_upper_body_garments(notebook):
    upper = {"Shirt", "T-shirt/top", "Pullover", "Coat"}
    table = next("".join(o["data"]["text/plain"]) for c in notebook["cells"] for o in c.get("outputs", [])
                 if "Predicted as" in "".join(o.get("data", {}).get("text/plain", "")))
    rows = [line.split() for line in table.splitlines()[1:4]]
    for cells in rows:  # the three most frequent confusions
        words = " ".join(cells[1:])
        assert sum(name in words for name in upper) >= 2, words


def test_q1_3_claims(notebook, summary):
    q13 = {r["lr"]: r for r in summary["q1_3"]}
    # "Train accuracy reaches 90 % only at the two middle rates, and the 10x smaller rate needs several times as many epochs"
    assert q13[0.1]["epoch_train_90"] and q13[0.01]["epoch_train_90"]
    assert q13[0.001]["epoch_train_90"] is None and q13[1.0]["epoch_train_90"] is None
    assert q13[0.01]["epoch_train_90"] >= 2 * q13[0.1]["epoch_train_90"]
    # "lr 0.001 was stopped with 90 % out of reach: still climbing, but ... far more epochs than the cap allows"
    slow = q13[0.001]
    assert slow["stop_reason"] == "out_of_reach" and slow["train_trend_per_epoch"] > 0
    assert slow["final_train_accuracy"] + slow["train_trend_per_epoch"] * (slow["max_epochs"] - slow["epochs_run"]) < 0.9
    # "lr 1 never learned and stopped at epoch 10"
    assert q13[1.0]["stop_reason"] == "out_of_reach" and q13[1.0]["epochs_run"] == 10
    assert q13[1.0]["best_test_accuracy"] < 0.5
    # "Test accuracy never reaches 90 %, at any rate. The closest is lr 0.1, whose best epoch comes within a point"
    assert all(r["epoch_test_90"] is None for r in q13.values())
    assert max(q13, key=lambda lr: q13[lr]["best_test_accuracy"]) == 0.1
    assert 0.9 - q13[0.1]["best_test_accuracy"] < 0.01
    # "its test accuracy swings from epoch to epoch, by several points at times ... train accuracy climbs far past 90 %"
    test = q13[0.1]["test_accuracy"]
    assert max(a - b for a, b in zip(test, test[1:])) > 0.02
    assert q13[0.1]["best_train_accuracy"] > 0.95
    # "at lr 0.1 the test loss is lowest early in the run and then rises, while the train loss keeps falling and
    # the train-test gap widens"
    r = q13[0.1]
    low = r["test_loss_min_epoch"]
    assert low < r["epochs_run"] / 2 and max(r["test_loss"][low:]) > 1.5 * min(r["test_loss"])
    assert r["train_loss"][-1] < 0.7 * r["train_loss"][low - 1]
    gap = [a - b for a, b in zip(r["train_accuracy"], r["test_accuracy"])]
    assert sum(gap[-10:]) / 10 > 2 * sum(gap[:10]) / 10


def epochs_to(series: list[float], level: float) -> int | None:
    return next((i + 1 for i, v in enumerate(series) if v >= level), None)


def test_q1_4_claims(notebook, summary):
    q12 = {r["lr"]: r for r in summary["q1_2"]}
    q13 = {r["lr"]: r for r in summary["q1_3"]}
    sweep = {r["lr"]: r for r in summary["q1_4_sweep"]}
    # "Both tables rank the rates alike: lr 0.1, then 0.01, then 0.001 ... Both put lr 1 last"
    assert q12[0.1]["test_accuracy_mean"] > q12[0.01]["test_accuracy_mean"] > q12[0.001]["test_accuracy_mean"] \
        > q12[1.0]["test_accuracy_mean"]
    assert q13[0.1]["epoch_train_90"] < q13[0.01]["epoch_train_90"] and q13[0.001]["epoch_train_90"] is None
    # "lr 0.001 is still improving when its run ends"
    assert q13[0.001]["train_trend_per_epoch"] > 0 and q13[0.001]["validation_trend_per_epoch"] > 0
    # "Every seed learned at 0.2, 0.3 and 0.5, and reached the same accuracy as lr 0.1 within the seed spread;
    # at lr 1 no seed did"
    for lr in (0.2, 0.3, 0.5):
        assert all(sweep[lr]["learned"])
        spread = max(sweep[lr]["test_accuracy_std"], sweep[0.1]["test_accuracy_std"])
        assert abs(sweep[lr]["test_accuracy_mean"] - sweep[0.1]["test_accuracy_mean"]) < spread, lr
    assert not any(sweep[1.0]["learned"])
    # "a 10x smaller rate needed between two and six times the epochs to reach the same accuracy"
    ratios = []
    for series, level in (("test_accuracy", 0.80), ("test_accuracy", 0.85), ("train_accuracy", 0.90)):
        for fast, slow in ((0.1, 0.01), (0.01, 0.001)):
            a, b = epochs_to(q13[fast][series], level), epochs_to(q13[slow][series], level)
            if a and b:
                ratios.append(b / a)
    assert len(ratios) >= 3 and all(2 <= r <= 6 for r in ratios), ratios
