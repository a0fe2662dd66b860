"""The Jupyter habits, with a real kernel (nbclient): edit a cell and run it again in the same kernel, undo the
edit, let two cells ask for one rate; and the whole notebook's report path with a rate that diverges."""
import json
import re
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from conftest import ROOT, needs_real_data

NOTEBOOK = ROOT / "Assignment3_Q1.ipynb"


def kernel(cells: list[str], tmp_path: Path) -> tuple[NotebookClient, nbformat.NotebookNode]:
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
    client = NotebookClient(notebook, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(ROOT)}})
    return client, notebook


def run_cell(client: NotebookClient, notebook: nbformat.NotebookNode, index: int, source: str | None = None) -> str:
    """Execute cell `index` (after replacing its source, as a student's edit) and return its text output."""
    cell = notebook.cells[index]
    if source is not None:
        cell.source = source
    client.execute_cell(cell, index)
    return "\n".join("".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", ""))
                     for o in cell.outputs)


SETUP = """
from dataclasses import replace
from pathlib import Path
from helpers import config, experiments
from helpers.training import Recipe
profile = replace(config.get_profile("quick"), train_samples=1000, validation_samples=200, test_samples=200,
                  train_eval_samples=200, results_dir=Path({results!r}))
demo = Recipe(model="base", lr=0.1, epochs=1)
"""
PROBE = 'runs = experiments.run({{"probe_seed0": replace(demo, lr={lr})}}, profile); print(runs["probe_seed0"].recipe.lr)'


@needs_real_data
def test_edit_a_recipe_run_the_cell_again_then_undo_the_edit(tmp_path, monkeypatch):
    monkeypatch.delenv("A3_RERUN", raising=False)
    client, notebook = kernel([SETUP.format(results=str(tmp_path)), PROBE.format(lr=0.1)], tmp_path)
    with client.setup_kernel():
        run_cell(client, notebook, 0)
        first = run_cell(client, notebook, 1)
        assert "trained 1 of 1 runs" in first and first.strip().endswith("0.1")
        edited = run_cell(client, notebook, 1, PROBE.format(lr=0.05))
        assert "probe_seed0: the recipe changed (lr 0.1 -> 0.05); training it" in edited
        assert edited.strip().endswith("0.05")
        undone = run_cell(client, notebook, 1, PROBE.format(lr=0.1))
        assert "all 1 runs loaded" in undone and undone.strip().endswith("0.1")


CHASE = """rates = [0.1, 0.5]
chase = experiments.run({f"lr{lr:g}_seed0": replace(demo, lr=lr, epochs=3, min_epochs=1, target_accuracy=0.99, patience=1)
                         for lr in rates}, profile)
print({name: run.recipe.epochs for name, run in chase.items()})"""
SWEEP = """sweep = experiments.run({f"lr{lr:g}_seed0": replace(demo, lr=lr) for lr in [0.5, 0.3]}, profile)
print({name: run.recipe.epochs for name, run in sweep.items()})"""


@needs_real_data
def test_two_cells_may_ask_for_the_same_rate_under_the_same_name(tmp_path, monkeypatch):
    monkeypatch.delenv("A3_RERUN", raising=False)
    client, notebook = kernel([SETUP.format(results=str(tmp_path)), CHASE, SWEEP], tmp_path)
    with client.setup_kernel():
        run_cell(client, notebook, 0)
        chase = run_cell(client, notebook, 1)
        sweep = run_cell(client, notebook, 2)
        assert "{'lr0.1_seed0': 3, 'lr0.5_seed0': 3}" in chase and "{'lr0.5_seed0': 1, 'lr0.3_seed0': 1}" in sweep
        again = run_cell(client, notebook, 1)
        assert "all 2 runs loaded" in again  # each cell finds its own runs, nothing was overwritten
    assert len(list(tmp_path.glob("lr0.5_seed0-*.json"))) == 2


@needs_real_data
def test_the_whole_notebook_reports_a_rate_that_diverges(tmp_path, monkeypatch):
    """The graded notebook (quick profile) with lr 100, which diverges within a few steps on every CPU, in
    Q1.2's list: every table, figure, the summary and the text run through and show 'diverged at step'."""
    monkeypatch.setenv("A3_PROFILE", "quick")
    monkeypatch.delenv("A3_RERUN", raising=False)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    edits = {"profile = config.get_profile()": f"profile = replace(config.get_profile(), results_dir=Path({str(tmp_path)!r}))",
             "learning_rates = [1, 0.1, 0.01, 0.001]": "learning_rates = [100, 0.1, 0.01, 0.001]"}
    for cell in notebook.cells:
        for old, new in edits.items():
            if new is not None and old in cell.source:
                cell.source = cell.source.replace(old, new)
                edits[old] = None
    assert not [old for old, new in edits.items() if new is not None], "the notebook's cells changed: update the test"
    notebook.cells[0:0] = [nbformat.v4.new_code_cell("from pathlib import Path")]
    NotebookClient(notebook, kernel_name="python3", timeout=900, resources={"metadata": {"path": str(ROOT)}}).execute()
    outputs = json.dumps([cell.get("outputs", []) for cell in notebook.cells])
    assert '"output_type": "error"' not in outputs
    assert len(re.findall(r"diverged at steps? \d+", outputs)) >= 3
    assert not re.search(r"\bnan\b|\bNone\b", " ".join(
        "".join(o.get("data", {}).get("text/plain", "")) for c in notebook.cells for o in c.get("outputs", []))
        .replace("NaN", "nan"), flags=re.IGNORECASE)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert "diverged" in json.dumps(summary["Q1.2"])
