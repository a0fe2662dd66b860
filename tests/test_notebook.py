"""The committed notebook is the deliverable: executed in order with the full profile, no errors,
every question answered, and results/summary.json consistent with what it shows."""
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
            text = output.get("text") or output.get("data", {}).get("text/plain", "")
            markdown = output.get("data", {}).get("text/markdown", "")
            html = output.get("data", {}).get("text/html", "")
            for value in (text, markdown, html):
                parts.append("".join(value) if isinstance(value, list) else value)
    return "\n".join(parts)


def test_executed_in_order_without_errors(notebook):
    code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    assert [c["execution_count"] for c in code] == list(range(1, len(code) + 1))
    assert not [o for c in code for o in c["outputs"] if o["output_type"] == "error"]
    assert not [o for c in code for o in c["outputs"] if o.get("name") == "stderr"], "warnings or progress debris"


def test_full_profile_and_every_question_answered(notebook, summary):
    text = outputs_text(notebook)
    assert "profile: full" in text and "profile: quick" not in text
    assert summary["profile"] == "full"
    headings = [line for c in notebook["cells"] if c["cell_type"] == "markdown"
                for line in "".join(c["source"]).splitlines() if line.startswith("## ")]
    for question in QUESTIONS:
        assert any(h.startswith(f"## {question} ") for h in headings), question
        index = next(i for i, c in enumerate(notebook["cells"])
                     if "".join(c["source"]).startswith(f"## {question} "))
        following = notebook["cells"][index + 1:]
        nxt = next((i for i, c in enumerate(following) if "".join(c["source"]).startswith("## ")), len(following))
        section = following[:nxt]
        answer = [c for c in section if c["cell_type"] == "markdown" and len("".join(c["source"])) > 300]
        assert answer, f"{question} has no written answer"
    images = sum("image/png" in o.get("data", {}) for c in notebook["cells"] for o in c.get("outputs", []))
    assert images >= 10


def test_summary_has_every_part(summary):
    assert {"torch", "device", "threads"} <= set(summary["environment"])
    assert summary["seconds_total"] > 0
    assert [row["lr"] for row in summary["q1_2"]] == [1.0, 0.1, 0.01, 0.001]
    assert all(row["epochs"] == 10 for row in summary["q1_2"] if not row["diverged"])
    assert all(row["max_epochs"] >= 50 for row in summary["q1_3"])
    assert {row["structure"] for row in summary["q1_5"]} == {"base", "deeper", "wider"}
    assert all(len(row["seeds"]) == 3 for row in summary["q1_5"])
    assert summary["q1_6"]["steps"] == 100 and len(summary["q1_6"]["gradient_mean"]) == 100
    assert len(summary["q1_6"]["gradient_abs_mean"]) == 100
    cnn = next(row for row in summary["q1_7"] if row["model"] == "cnn")
    base = next(row for row in summary["q1_5"] if row["structure"] == "base")
    assert base["parameters"] == 669_706 and cnn["parameters"] < base["parameters"]


def test_summary_numbers_are_the_ones_the_notebook_shows(notebook, summary):
    text = outputs_text(notebook)
    for row in summary["q1_2"]:
        if row["test_accuracy"] is not None:
            assert f"{100 * row['test_accuracy']:.2f} %" in text
    for row in summary["q1_5"]:
        shown = f"{100 * row['test_accuracy_mean']:.2f} ± {100 * row['test_accuracy_std']:.2f} %"
        assert shown in text and f"{row['parameters']:,}" in text
    for row in summary["q1_3"]:
        if row["epoch_test_90"] is None and row["stop_reason"] != "chance":
            assert f"not reached in {row['epochs_run']}" in text


def test_no_progress_bar_debris(notebook):
    text = outputs_text(notebook)
    assert not re.search(r"\d+%\|", text), "tqdm output saved in the notebook"
    assert not any("application/vnd.jupyter.widget-view+json" in o.get("data", {})
                   for c in notebook["cells"] for o in c.get("outputs", []))
