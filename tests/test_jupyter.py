"""The Jupyter habits, with a real kernel (nbclient): edit a cell and run it again in the same kernel, undo the
edit, let two cells ask for one rate; interrupt a cell that trains (once, or twice in quick succession), or lose the
kernel while it trains; edit the training step on disk and train in the kernel itself (A3_WORKERS=0); a kernel that
imported torch elsewhere and then changed into the project; Colab's Restart session then Run all; Run All, edit
helpers/models.py on disk and run Q1.5 again without a restart; a rate that diverges through the report."""
import json
import re
import shutil
import signal
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import nbformat
import psutil
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbclient.util import run_sync

from conftest import ROOT, needs_real_data

NOTEBOOK = ROOT / "Assignment3_Q1.ipynb"
needs_sigkill = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="SIGKILL is POSIX only (not on Windows)")


def kernel(cells: list[str], path: Path = ROOT) -> tuple[NotebookClient, nbformat.NotebookNode]:
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
    # A loaded machine can deliver a cell's output seconds after its reply: wait for it (nbclient's default, 4 s,
    # then drops the output silently), and fail loudly if it never comes.
    client = NotebookClient(notebook, kernel_name="python3", timeout=600, iopub_timeout=120,
                            raise_on_iopub_timeout=True, resources={"metadata": {"path": str(path)}})
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
    client, notebook = kernel([SETUP.format(results=str(tmp_path)), PROBE.format(lr=0.1)])
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
chase = experiments.run({f"lr{lr:g}_seed0": replace(demo, lr=lr, epochs=3) for lr in rates}, profile)
print({name: run.recipe.epochs for name, run in chase.items()})"""
SWEEP = """sweep = experiments.run({f"lr{lr:g}_seed0": replace(demo, lr=lr) for lr in [0.5, 0.3]}, profile)
print({name: run.recipe.epochs for name, run in sweep.items()})"""


@needs_real_data
def test_two_cells_may_ask_for_the_same_rate_under_the_same_name(tmp_path, monkeypatch):
    monkeypatch.delenv("A3_RERUN", raising=False)
    client, notebook = kernel([SETUP.format(results=str(tmp_path)), CHASE, SWEEP])
    with client.setup_kernel():
        run_cell(client, notebook, 0)
        chase = run_cell(client, notebook, 1)
        sweep = run_cell(client, notebook, 2)
        assert "{'lr0.1_seed0': 3, 'lr0.5_seed0': 3}" in chase and "{'lr0.5_seed0': 1, 'lr0.3_seed0': 1}" in sweep
        again = run_cell(client, notebook, 1)
        assert "all 2 runs loaded" in again  # each cell finds its own runs, nothing was overwritten
    assert len(list(tmp_path.glob("lr0.5_seed0-*.json"))) == 2


LONG = """experiments.run({"short": demo, "long": replace(demo, epochs=500, seed=1)}, profile, workers_=2)"""


def workers_of(pid: int) -> list[psutil.Process]:
    """The worker processes a process started (spawned: their command line runs spawn_main)."""
    found = []
    for child in psutil.Process(pid).children(recursive=True):
        try:
            if "spawn_main" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.Error:  # ended meanwhile
            pass
    return found


def alive(workers: list[psutil.Process]) -> list[int]:
    return [w.pid for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]


@contextmanager
def training_in_a_kernel(tmp_path: Path) -> Iterator[tuple[NotebookClient, nbformat.NotebookNode, int, str]]:
    """A kernel that has started LONG (a short and a long run on 2 workers): client, notebook, kernel pid, msg id."""
    client, notebook = kernel([SETUP.format(results=str(tmp_path)), LONG])
    with client.setup_kernel():
        run_cell(client, notebook, 0)
        yield client, notebook, client.km.provisioner.process.pid, client.kc.execute(LONG)


def goes_on(client: NotebookClient, source: str) -> bool:
    """Whether the kernel runs `source` after an interrupt and answers: read from the execute reply itself (shell
    channel), not from printed output, which a loaded machine can deliver after the kernel reports idle."""
    sent = client.kc.execute(source, user_expressions={"answer": "'alive'"})
    reply = run_sync(client.kc.get_shell_msg)(timeout=120)
    while reply["parent_header"].get("msg_id") != sent:  # the interrupted cell's reply, if still queued
        reply = run_sync(client.kc.get_shell_msg)(timeout=120)
    answer = reply["content"].get("user_expressions", {}).get("answer", {})
    return reply["content"]["status"] == "ok" and "alive" in answer.get("data", {}).get("text/plain", "")


def wait_for(condition, seconds: float) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


@needs_real_data
@needs_sigkill
def test_interrupting_a_cell_stops_its_workers_and_keeps_the_finished_runs(tmp_path, monkeypatch):
    monkeypatch.delenv("A3_RERUN", raising=False)
    with training_in_a_kernel(tmp_path) as (client, notebook, pid, message):
        assert wait_for(lambda: list(tmp_path.glob("short-*.json")), 120), "the short run never finished"
        workers = workers_of(pid)
        assert workers
        psutil.Process(pid).send_signal(signal.SIGINT)  # what Jupyter's interrupt button does
        reply = run_sync(client.kc.get_shell_msg)(timeout=60)
        assert reply["parent_header"]["msg_id"] == message and reply["content"]["ename"] == "KeyboardInterrupt"
        assert wait_for(lambda: not alive(workers), 10)
        assert goes_on(client, SETUP.format(results=str(tmp_path)))  # the same kernel goes on
    assert [p.name.split("-")[0] for p in tmp_path.glob("*.json")] == ["short"]


@needs_real_data
@needs_sigkill
def test_interrupting_twice_in_quick_succession_still_stops_every_worker(tmp_path, monkeypatch):
    """A second Ctrl-C that lands while the first one is stopping the workers: none is left training."""
    monkeypatch.delenv("A3_RERUN", raising=False)
    with training_in_a_kernel(tmp_path) as (client, notebook, pid, message):
        assert wait_for(lambda: len(workers_of(pid)) == 2, 60), "no workers started"
        workers = workers_of(pid)
        time.sleep(1)
        kernel_process = psutil.Process(pid)
        for _ in range(2):
            kernel_process.send_signal(signal.SIGINT)
            time.sleep(0.05)
        stopped = wait_for(lambda: not alive(workers), 15)
        survivors = alive(workers)
        for worker in survivors:
            psutil.Process(worker).kill()
        assert stopped, f"workers still training after two interrupts: {survivors}"
        reply = run_sync(client.kc.get_shell_msg)(timeout=60)
        assert reply["parent_header"]["msg_id"] == message and reply["content"]["ename"] == "KeyboardInterrupt"
        assert goes_on(client, SETUP.format(results=str(tmp_path)))


@needs_real_data
@needs_sigkill
def test_when_the_kernel_dies_mid_training_its_workers_end_within_seconds(tmp_path, monkeypatch):
    """The kernel alone is killed (as the out-of-memory killer would): its workers see it and exit."""
    monkeypatch.delenv("A3_RERUN", raising=False)
    with training_in_a_kernel(tmp_path) as (client, notebook, pid, _):
        assert wait_for(lambda: len(workers_of(pid)) == 2, 60), "no workers started"
        workers = workers_of(pid)
        time.sleep(2)  # mid-training
        psutil.Process(pid).send_signal(signal.SIGKILL)
        gone = wait_for(lambda: not alive(workers), 10)
        survivors = alive(workers)
        for worker in survivors:  # leave nothing behind, even when the test fails
            psutil.Process(worker).kill()
    assert gone, f"workers still alive 10 s after the kernel died: {survivors}"


def project_copy(tmp_path: Path) -> Path:
    """The notebook and helpers/ in a folder of their own, reading this project's data."""
    project = tmp_path / "project"
    shutil.copytree(ROOT / "helpers", project / "helpers", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(NOTEBOOK, project / NOTEBOOK.name)
    return project


@needs_real_data
def test_run_all_then_edit_the_networks_on_disk_and_run_q1_5_again_with_a_diverging_rate(tmp_path, monkeypatch):
    """The graded notebook (quick profile) in a copy of the project, with lr 100 (diverges within a few steps on
    every CPU) in Q1.2's list: every table, figure and the summary run through and show 'diverged at step'.
    Then, in the same kernel, STRUCTURES in helpers/models.py is edited on disk (wider: 1536 units) and the cells
    of Q1.5 run again: the code shown, the table and the runs are the new network's."""
    monkeypatch.setenv("A3_PROFILE", "quick")
    monkeypatch.delenv("A3_RERUN", raising=False)
    project = project_copy(tmp_path)
    notebook = nbformat.read(project / NOTEBOOK.name, as_version=4)
    edits = {"profile = config.get_profile()": "profile = replace(config.get_profile(), data_root=Path({data!r}))"
             .format(data=str(ROOT / "data")),
             "learning_rates = [1, 0.1, 0.01, 0.001]": "learning_rates = [100, 0.1, 0.01, 0.001]"}
    for cell in notebook.cells:
        for old, new in edits.items():
            if new is not None and old in cell.source:
                cell.source = cell.source.replace(old, new)
                edits[old] = None
    assert not [old for old, new in edits.items() if new is not None], "the notebook's cells changed: update the test"
    notebook.cells[0:0] = [nbformat.v4.new_code_cell("from pathlib import Path")]
    client = NotebookClient(notebook, kernel_name="python3", timeout=900, iopub_timeout=120,
                            raise_on_iopub_timeout=True, resources={"metadata": {"path": str(project)}})
    with client.setup_kernel():
        for index, cell in enumerate(notebook.cells):
            if cell.cell_type == "code":
                client.execute_cell(cell, index)
        outputs = json.dumps([cell.get("outputs", []) for cell in notebook.cells])
        assert '"output_type": "error"' not in outputs
        assert len(re.findall(r"diverged at steps? \d+", outputs)) >= 3
        shown = " ".join("".join(o.get("data", {}).get("text/plain", "")) for c in notebook.cells
                         for o in c.get("outputs", []))
        assert not re.search(r"\bnan\b|\bNone\b", shown.replace("NaN", "nan"), flags=re.IGNORECASE)
        summary = json.loads((project / "results" / "quick" / "summary.json").read_text(encoding="utf-8"))
        assert "diverged" in json.dumps(summary["Q1.2"])

        models = project / "helpers" / "models.py"
        models.write_text(models.read_text(encoding="utf-8").replace('"wider": (1024, 1024)', '"wider": (1536, 1536)'),
                          encoding="utf-8")
        start = next(i for i, c in enumerate(notebook.cells) if c.source.startswith("## Q1.5"))
        stop = next(i for i, c in enumerate(notebook.cells) if c.source.startswith("## Q1.6"))
        texts = []
        for index in range(start, stop):
            cell = notebook.cells[index]
            if cell.cell_type == "code":
                client.execute_cell(cell, index)
                texts += ["".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", "")) +
                          "".join(o.get("data", {}).get("text/markdown", "")) for o in cell.outputs]
        text = "\n".join(texts)
        wider = 784 * 1536 + 1536 + 1536 * 1536 + 1536 + 1536 * 10 + 10
        assert '"wider": (1536, 1536)' in text                     # the code shown
        assert f"{wider:,}" in text and "1,863,690" not in text    # the table: the new network's parameters
        assert re.search(r"wider_lr[\d.]+_seed\d+: the network changed \(hidden_sizes \[1024, 1024\] -> \[1536, 1536\]\); "
                         r"training it", text)


@needs_real_data
def test_an_edited_training_step_is_refused_in_the_kernel_itself_until_it_restarts(tmp_path, monkeypatch):
    """A3_WORKERS=0 in a copy of the project: train; add gradient clipping after loss.backward() in
    helpers/training.py; run the cell again in the same kernel: one line refuses (the kernel's code is the old one,
    the key would be the new one's) and nothing is stored; after a restart the edited code trains."""
    monkeypatch.delenv("A3_RERUN", raising=False)
    monkeypatch.setenv("A3_WORKERS", "0")
    project = project_copy(tmp_path)
    setup = SETUP.format(results=str(tmp_path / "results")).replace("config.get_profile(\"quick\")",
                                                                     f"config.get_profile(\"quick\"), data_root=Path({str(ROOT / 'data')!r})")
    cell = 'print(experiments.run({"probe": replace(demo, lr=1.0)}, profile)["probe"].step_loss[-1])'
    client, notebook = kernel([setup, cell], project)
    with client.setup_kernel():
        run_cell(client, notebook, 0)
        first = run_cell(client, notebook, 1)
        training = project / "helpers" / "training.py"
        text = training.read_text(encoding="utf-8")
        training.write_text(text.replace("        loss.backward()\n", "        loss.backward()\n"
                                         "        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)\n"), encoding="utf-8")
        with pytest.raises(CellExecutionError, match="A3_WORKERS=0 trains with the helpers this kernel imported, but "
                                                     "training.py changed on disk since"):
            run_cell(client, notebook, 1)
    assert len(list((tmp_path / "results").glob("probe-*.json"))) == 1  # only the first, honest one
    client, notebook = kernel([setup, cell], project)
    with client.setup_kernel():  # a restarted kernel imports the edited code
        run_cell(client, notebook, 0)
        clipped = run_cell(client, notebook, 1)
    assert "the code of a run changed (training.py)" in clipped and clipped.splitlines()[-1] != first.splitlines()[-1]


@needs_real_data
def test_workers_import_helpers_after_the_kernel_changed_into_the_project(tmp_path, monkeypatch):
    """The kernel starts elsewhere and imports torch there (multiprocessing then remembers that folder), then
    changes into the project, as Colab's first cell does: the spawned workers still import the project's helpers."""
    monkeypatch.delenv("A3_RERUN", raising=False)
    project = project_copy(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    setup = SETUP.format(results=str(tmp_path / "results")).replace("config.get_profile(\"quick\")",
                                                                     f"config.get_profile(\"quick\"), data_root=Path({str(ROOT / 'data')!r})")
    client, notebook = kernel([f"import torch, os, sys\nsys.path = [p for p in sys.path if p not in ('', {str(project)!r})]\n"
                               f"os.chdir({str(project)!r})\nsys.path.insert(0, '')", setup,
                               'print(len(experiments.run({"a": demo, "b": replace(demo, seed=1)}, profile, workers_=2)))'],
                              elsewhere)
    with client.setup_kernel():
        for index in range(3):
            out = run_cell(client, notebook, index)
    assert out.strip().endswith("2") and "trained 2 of 2 runs" in out


@needs_real_data
def test_colab_restart_session_then_run_all_finds_the_clone_it_made(tmp_path):
    """The first cell in Colab (google.colab stood in for, REPO_URL a local git repository of the project): the
    first session clones and changes into the clone; after a restart (a new kernel in the same folder) Run all finds
    the clone instead of cloning again, and helpers imports from it."""
    import subprocess
    repo = project_copy(tmp_path)
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(["git", "add", "."], cwd=repo, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "project"], cwd=repo, check=True)
    content = tmp_path / "content"
    content.mkdir()
    bootstrap = next(c for c in nbformat.read(NOTEBOOK, as_version=4).cells if "remove_cell" in c.metadata.get("tags", []))
    source = bootstrap.source.replace('REPO_URL = ""', f"REPO_URL = {str(repo)!r}")
    colab = "import sys, types\nsys.modules['google.colab'] = types.ModuleType('google.colab')"
    check = "import os, helpers\nprint(os.getcwd(), helpers.__file__)"
    for session in range(2):
        client, notebook = kernel([colab, source, check], content)
        with client.setup_kernel():
            for index in range(3):
                out = run_cell(client, notebook, index)
        assert out.split() == [str(content / "assignment3"), str(content / "assignment3" / "helpers" / "__init__.py")], session
