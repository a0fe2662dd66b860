"""Every claim the answers make, recomputed from the numbers (results/summary.json) and the runs (results/):
a table of sentence -> predicate. A sentence that is no longer in the answer, or no longer true of the results
(after a re-run on another machine, say), fails naming the sentence to rewrite.

Qualitative words are claims too: "most", "still falling", "never", "same order", "cannot tell", "doubles"."""
from __future__ import annotations

import math
import statistics
from typing import Callable

import pandas as pd
import pytest

from conftest import ROOT
from deliverable import Deliverable

ALPHA = 0.05


def t(d: Deliverable, question: str, name: str):
    """A summary table of numbers, indexed by its first column."""
    return d.table(question, name)


def run(d: Deliverable, name: str) -> dict:
    return d.runs[name]


def seeds(d: Deliverable, lr: str) -> list[dict]:
    return [d.runs[f"lr{lr}_seed{seed}"] for seed in (0, 1, 2)]


def real(p: float | None) -> bool:
    return p is not None and p < ALPHA


def cannot_tell(row) -> bool:
    """p >= 0.05 and the 95 % interval holds 0."""
    return not real(row["p"]) and abs(row["diff"]) <= row["diff_ci"]


def q12(d):
    return t(d, "Q1.2", "accuracy")


def q14(d):
    return t(d, "Q1.4", "learning_rates")


def grad(d, windows: str):
    return t(d, "Q1.6", "first_steps" if windows == "steps" else "epochs")


def layers(d):
    table = t(d, "B", "layers")
    return {(row.Index, int(row.layer)): row._asdict() for row in table.itertuples()}


def nets(d):
    return t(d, "Q1.7", "networks")


def effect(d, change: str):
    return t(d, "Q1.7", "effects").loc[change]


def search(d):
    return pd.DataFrame(d.summary["B"]["searches"]).set_index(["search", "lr"])


def mean_curve(d, structure: str, series: str) -> list[float]:
    """A Q1.5 structure's per-epoch series at its chosen rate, mean over the seeds."""
    lr = t(d, "Q1.5", "costs").loc[structure, "lr"]
    runs = [d.runs[f"lr{lr:g}_seed{s}" if structure == "base" else f"{structure}_lr{lr:g}_seed{s}"] for s in (0, 1, 2)]
    return [statistics.fmean(values) for values in zip(*(r[series] for r in runs))]


CLAIMS: list[tuple[str, str, Callable[[Deliverable], bool]]] = [
    # Q1.2
    ("Q1.2", "lr 0.1 is the most accurate (87.40 ± 0.99 %), then lr 0.01 (83.82 ± 0.37 %) and lr 0.001",
     lambda d: q12(d)["accuracy"].idxmax() == 0.1 and q12(d).loc[0.01, "accuracy"] > q12(d).loc[0.001, "accuracy"]),
    ("Q1.2", "at lr 0.001 it is still falling at epoch 10, though more slowly than in its first epochs",
     lambda d: all(r["train_loss"][9] < r["train_loss"][8] and r["train_loss"][8] - r["train_loss"][9]
                   < r["train_loss"][3] - r["train_loss"][4] for r in seeds(d, "0.001"))),
    ("Q1.2", "lr 1 did not learn in any seed", lambda d: t(d, "Q1.2", "final_models").loc[1, "runs"] == "3 did not learn"),
    ("Q1.2", "Its loss stayed finite — no overflow",
     lambda d: all(r["stop_reason"] != "diverged" for r in seeds(d, "1"))),
    ("Q1.2", "in seed 0 it first falls, then jumps up and down (figure a)",
     lambda d: (lambda losses: statistics.fmean(losses[:50]) > statistics.fmean(losses[400:900]) + 0.3
                and max(losses[2000:]) - min(losses[2000:]) > 1)(run(d, "lr1_seed0")["step_loss"])),
    ("Q1.2", "two seeds end at ln 10, a uniform guess's loss",
     lambda d: sum(abs(r["train_loss"][9] - math.log(10)) < 0.01 for r in seeds(d, "1")) == 2),
    ("Q1.2", "the large steps pushed most ReLU units to output 0 for every input",
     lambda d: all(n > 256 for n in t(d, "Q1.2", "final_models").loc[1, "dead_1"])
     and all(n > 256 for n in t(d, "Q1.2", "final_models").loc[1, "dead_2"])),
    # Q1.3
    ("Q1.3", "Held-out accuracy reaches 90 % once:",
     lambda d: sum(any(v >= 0.9 for v in r["validation_accuracy"]) for lr in ("1", "0.1", "0.01", "0.001")
                   for r in seeds(d, lr)) == 1 and t(d, "Q1.3", "epochs").loc[0.1, "epoch"] == 38),
    ("Q1.3", "stopped after 29 and 28 epochs without gain",
     lambda d: [r["stop_reason"] for r in seeds(d, "0.1")] == ["stalled", "target", "stalled"]),
    ("Q1.3", "lr 0.01 and 0.001 ran into the 50-epoch cap with their best epoch at 42 to 50, still improving",
     lambda d: all(r["stop_reason"] == "epochs" and r["validation_accuracy"].index(max(r["validation_accuracy"])) >= 41
                   and max(r["validation_accuracy"][-10:]) > max(r["validation_accuracy"][:-10])
                   for lr in ("0.01", "0.001") for r in seeds(d, lr))),
    ("Q1.3", "lr 1 never got near (best 44.44 %)",
     lambda d: max(max(r["validation_accuracy"]) for r in seeds(d, "1")) < 0.5),
    ("Q1.3", "a rate 10 times smaller needs more than four times as many epochs (medians 42 and 9)",
     lambda d: statistics.median(t(d, "Q1.3", "stopping").loc[0.01, "train_epoch"])
     > 4 * statistics.median(t(d, "Q1.3", "stopping").loc[0.1, "train_epoch"])),
    ("Q1.3", "lr 0.001 had not reached it at the cap",
     lambda d: all(e is None for e in t(d, "Q1.3", "stopping").loc[0.001, "train_epoch"])),
    ("Q1.3", "its validation loss is lowest well before the run stops and then rises while its train loss keeps falling",
     lambda d: all(r["validation_loss"].index(min(r["validation_loss"])) < len(r["validation_loss"]) - 8
                   and r["validation_loss"][-1] > min(r["validation_loss"])
                   and r["train_loss"][-1] < r["train_loss"][r["validation_loss"].index(min(r["validation_loss"]))]
                   for r in seeds(d, "0.1"))),
    ("Q1.3", "its train accuracy climbs well past 90 %, validation accuracy stays near it",
     lambda d: all(r["train_accuracy"][-1] > 0.94 and abs(r["validation_accuracy"][-1] - 0.9) < 0.01
                   for r in seeds(d, "0.1"))),
    # Q1.4
    ("Q1.4", "Both tables order the four rates the same way:",
     lambda d: list(q12(d)["accuracy"].sort_values(ascending=False).index) == [0.1, 0.01, 0.001, 1]
     and all(min(max(r["validation_accuracy"]) for r in seeds(d, a)) > max(max(r["validation_accuracy"]) for r in seeds(d, b))
             for a, b in (("0.1", "0.01"), ("0.01", "0.001"), ("0.001", "1")))),
    ("Q1.4", "lr 0.3 has the best validation accuracy (88.50 ± 0.40 %)", lambda d: q14(d)["validation"].idxmax() == 0.3),
    ("Q1.4", "cannot tell lr 0.5, 0.2 and 0.1 apart", lambda d: all(cannot_tell(q14(d).loc[lr]) for lr in (0.5, 0.2, 0.1))),
    ("Q1.4", "intervals that hold 0 and are up to 2 points wide",
     lambda d: 0.019 < max(q14(d).loc[lr, "diff_ci"] for lr in (0.5, 0.2, 0.1)) < 0.021),
    ("Q1.4", "Below the plateau accuracy falls with the rate:",
     lambda d: all(real(q14(d).loc[lr, "p"]) and q14(d).loc[lr, "diff"] < 0 for lr in (0.03, 0.01, 0.001))
     and q14(d).loc[0.03, "diff"] > q14(d).loc[0.01, "diff"] > q14(d).loc[0.001, "diff"]),
    ("Q1.4", "between 0.5, where every seed learned, and 1, where none did",
     lambda d: q14(d).loc[0.5, "runs"] == "3 learned" and q14(d).loc[1, "runs"] == "3 did not learn"
     and not any(0.5 < lr < 1 for lr in q14(d).index)),
    ("Q1.4", "lr 0.01's best validation accuracy (88.42 to 89.02 %) stayed below lr 0.1's (89.78 to 90.30 %)",
     lambda d: max(t(d, "Q1.3", "stopping").loc[0.01, "best_validation"])
     < min(t(d, "Q1.3", "stopping").loc[0.1, "best_validation"])),
    # Q1.5
    ("Q1.5", "Each structure gets its own rate (column Lr): the best mean validation accuracy over 3 seeds",
     lambda d: all(search(d).loc[(name, slice(None)), "validation"].idxmax()[1] == t(d, "Q1.5", "costs").loc[name, "lr"]
                   for name in ("base", "deeper", "wider"))),
    ("Q1.5", "Neither change helps measurably in 10 epochs",
     lambda d: all(cannot_tell(t(d, "Q1.5", "costs").loc[name]) for name in ("deeper", "wider"))),
    ("Q1.5", "a gain of 2 points or more would have shown",
     lambda d: all(row["diff"] + row["diff_ci"] < 0.02 for _, row in t(d, "Q1.5", "costs").drop("base").iterrows())),
    ("Q1.5", "Their test loss curves come together by epoch 10; the deeper network, at its lower rate, starts more slowly",
     lambda d: all(abs(mean_curve(d, name, "test_loss")[-1] - mean_curve(d, "base", "test_loss")[-1]) < 0.01
                   for name in ("deeper", "wider"))
     and mean_curve(d, "deeper", "train_loss")[0] > mean_curve(d, "base", "train_loss")[0] + 0.1),
    ("Q1.5", "Nor do they fit the training set better",
     lambda d: all(t(d, "Q1.5", "costs").loc[name, "train"] <= t(d, "Q1.5", "costs").loc["base", "train"]
                   for name in ("deeper", "wider"))),
    ("Q1.5", "They cost more:",
     lambda d: all((t(d, "Q1.5", "costs").loc[name, column] > t(d, "Q1.5", "costs").loc["base", column])
                   for name in ("deeper", "wider") for column in ("multiply_adds", "s_per_epoch"))
     and all(t(d, "Q1.5", "structures").loc[name, "params"] > t(d, "Q1.5", "structures").loc["base", "params"]
             for name in ("deeper", "wider"))),
    # Q1.6
    ("Q1.6", "The signed mean decreases in the first 100 steps at three rates:",
     lambda d: all(real(grad(d, "steps").loc[lr, "signed_p"]) and grad(d, "steps").loc[lr, "signed_change"] < 0
                   for lr in (0.001, 0.01, 1)) and grad(d, "steps").loc[0.001, "seeds"] == 10),
    ("Q1.6", "from about zero to negative",
     lambda d: all(abs(grad(d, "steps").loc[lr, "signed_early"]) < 0.2 * abs(grad(d, "steps").loc[lr, "signed_change"])
                   for lr in (0.001, 0.01))),
    ("Q1.6", "At lr 0.1, 3 seeds cannot tell",
     lambda d: not real(grad(d, "steps").loc[0.1, "signed_p"])
     and abs(grad(d, "steps").loc[0.1, "signed_change"]) <= grad(d, "steps").loc[0.1, "signed_change_ci"]),
    ("Q1.6", "Over the 10 epochs it then returns towards zero at every rate",
     lambda d: all(real(grad(d, "epochs").loc[lr, "signed_p"]) and abs(row["signed_early"] + row["signed_change"])
                   < abs(row["signed_early"]) for lr, row in grad(d, "epochs").iterrows())),
    ("Q1.6", "The size of the gradients falls at two rates and grows at two.",
     lambda d: [real(grad(d, "steps").loc[lr, "abs_p"]) and grad(d, "steps").loc[lr, "abs_change"] < 0
                for lr in (0.001, 1, 0.1, 0.01)] == [True, True, False, False]
     and real(grad(d, "steps").loc[0.1, "abs_p"]) and grad(d, "steps").loc[0.1, "abs_change"] > 0
     and not real(grad(d, "steps").loc[0.01, "abs_p"])),
    ("Q1.6", "From epoch 1 to epoch 10 it falls at lr 1 and lr 0.1 (p = 0.02 and 0.002) and more than doubles at lr "
             "0.01 and 0.001 (both p < 0.001)",
     lambda d: all(real(grad(d, "epochs").loc[lr, "abs_p"]) and grad(d, "epochs").loc[lr, "abs_change"] < 0 for lr in (1, 0.1))
     and all(grad(d, "epochs").loc[lr, "abs_p"] < 0.001 and grad(d, "epochs").loc[lr, "abs_change"]
             >= grad(d, "epochs").loc[lr, "abs_early"] for lr in (0.01, 0.001))),
    ("Q1.6", "Layer 1 holds most of the weights (784 × 512 of them)",
     lambda d: 784 * 512 > run(d, "lr0.1_seed0")["parameters"] / 2),
    ("Q1.6", "image, whose norm stays 12.1",
     lambda d: all(round(layers(d)[(lr, 1)]["input_first"], 1) == round(layers(d)[(lr, 1)]["input_last"], 1) == 12.1
                   for lr in (1, 0.1, 0.01, 0.001))),
    ("Q1.6", "At lr 0.01 that error grows from 0.276 to 0.513 and the layer's mean |g| from 5.3e−04 to 1.4e−03, while "
             "the error at the output (layer 3) falls from 0.737 to 0.285",
     lambda d: layers(d)[(0.01, 1)]["error_last"] > 1.5 * layers(d)[(0.01, 1)]["error_first"]
     and layers(d)[(0.01, 1)]["abs_mean_last"] > 1.5 * layers(d)[(0.01, 1)]["abs_mean_first"]
     and layers(d)[(0.01, 3)]["error_last"] < 0.5 * layers(d)[(0.01, 3)]["error_first"]),
    ("Q1.6", "on its way back the error is amplified more and more (lr 0.001 alike)",
     lambda d: all(layers(d)[(lr, 1)]["error_last"] / layers(d)[(lr, 3)]["error_last"]
                   > 2 * layers(d)[(lr, 1)]["error_first"] / layers(d)[(lr, 3)]["error_first"] for lr in (0.01, 0.001))
     and layers(d)[(0.001, 1)]["error_last"] > 1.5 * layers(d)[(0.001, 1)]["error_first"]),
    ("Q1.6", "At lr 1 it falls from 0.11 to 0.0099",
     lambda d: layers(d)[(1, 1)]["error_last"] < 0.1 * layers(d)[(1, 1)]["error_first"]),
    ("Q1.6", "at layer 3 (lr 0.01) ‖δ‖ falls and ‖a‖ doubles, so their product falls, while the mean |g| rises",
     lambda d: layers(d)[(0.01, 3)]["error_last"] < layers(d)[(0.01, 3)]["error_first"]
     and 1.8 < layers(d)[(0.01, 3)]["input_last"] / layers(d)[(0.01, 3)]["input_first"] < 2.2
     and layers(d)[(0.01, 3)]["abs_mean_last"] > layers(d)[(0.01, 3)]["abs_mean_first"]
     and layers(d)[(0.01, 3)]["error_last"] * layers(d)[(0.01, 3)]["input_last"]
     < layers(d)[(0.01, 3)]["error_first"] * layers(d)[(0.01, 3)]["input_first"]),
    ("Q1.6", "in the runs that learn slowly the gradients grow over these 10 epochs",
     lambda d: all(grad(d, "epochs").loc[lr, "abs_change"] > 0 for lr in (0.01, 0.001))),
    # Q1.7
    ("Q1.7", "With its own scheme the CNN reaches 92.65 ± 0.24 %, the best in this notebook",
     lambda d: nets(d)["accuracy"].idxmax() == "CNN, CNN's scheme"
     and nets(d)["accuracy"].max() > max(q14(d)["accuracy"].max(), t(d, "Q1.5", "structures")["accuracy"].max())),
    ("Q1.7", "about a twelfth of the base MLP's",
     lambda d: 11.5 < nets(d).loc["base MLP, demo scheme", "params"] / nets(d).loc["CNN, CNN's scheme", "params"] < 12.5),
    ("Q1.7", "With the CNN's scheme the CNN beats the MLP by 3.79 ± 0.51 points (p < 0.001)",
     lambda d: real(effect(d, "CNN instead of MLP, CNN's scheme")["p"])
     and effect(d, "CNN instead of MLP, CNN's scheme")["diff"] > 0),
    ("Q1.7", "With the demo scheme, 1.87 ± 3.23 points (p = 0.15): 3 seeds cannot tell",
     lambda d: cannot_tell(effect(d, "CNN instead of MLP, demo scheme"))),
    ("Q1.7", "under SGD the CNN's seeds vary (89.43 ± 1.45 %)",
     lambda d: nets(d).loc["CNN, demo scheme", "accuracy_std"] > 2 * nets(d).loc["CNN, CNN's scheme", "accuracy_std"]),
    ("Q1.7", "The CNN's scheme helps the MLP by 1.31 ± 1.08 points (p = 0.03)",
     lambda d: real(effect(d, "CNN's scheme instead of the demo's, MLP")["p"])
     and effect(d, "CNN's scheme instead of the demo's, MLP")["diff"] > 0),
    ("Q1.7", "for the CNN, +3.23 ± 3.47 points (p = 0.06), 3 seeds cannot tell",
     lambda d: cannot_tell(effect(d, "CNN's scheme instead of the demo's, CNN"))),
    ("Q1.7", "Every CNN run passes 90 % validation accuracy by epoch 3 to 5, under either scheme; no MLP run does "
             "within 10 epochs",
     lambda d: all(e is not None and 3 <= e <= 5 for name in ("CNN, demo scheme", "CNN, CNN's scheme")
                   for e in nets(d).loc[name, "epoch"])
     and all(e is None for name in nets(d).index if not name.startswith("CNN") for e in nets(d).loc[name, "epoch"])),
    ("Q1.7", "about three times the base MLP's 668,672",
     lambda d: 2.5 < nets(d).loc["CNN, CNN's scheme", "multiply_adds"] / nets(d).loc["base MLP, demo scheme", "multiply_adds"] < 3.5),
]


def check_claims(d: Deliverable) -> list[str]:
    """The claims that are missing from their answer, or that the results no longer bear out."""
    problems = []
    for question, sentence, holds in CLAIMS:
        if sentence not in d.prose(question):
            problems.append(f"{question}: '{sentence}' is not in the answer: update tests/test_claims.py")
            continue
        try:
            ok = holds(d)
        except (KeyError, IndexError, TypeError, ValueError, ZeroDivisionError) as error:
            ok, sentence = False, f"{sentence}' ({type(error).__name__}: {error})"
        if not ok:
            problems.append(f"{question}: '{sentence}' does not hold for these results: rewrite it")
    return problems


@pytest.fixture(scope="module")
def committed() -> Deliverable:
    return Deliverable.read(ROOT)


@pytest.mark.parametrize("index", range(len(CLAIMS)), ids=[f"{q}-{i}" for i, (q, _, _) in enumerate(CLAIMS)])
def test_each_claim_is_in_its_answer_and_holds(committed, index):
    question, sentence, _ = CLAIMS[index]
    problems = [p for p in check_claims_of(committed, [CLAIMS[index]])]
    assert not problems, problems[0]


def check_claims_of(d: Deliverable, claims) -> list[str]:
    saved = CLAIMS[:]
    CLAIMS[:] = claims
    try:
        return check_claims(d)
    finally:
        CLAIMS[:] = saved


def test_the_hint_is_named_and_both_readings_answered(committed):
    prose = committed.prose("Q1.6")
    assert '"the mean of the gradients decrease"' in prose and "signed mean" in prose and "mean |g|" in prose
