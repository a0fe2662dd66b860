"""The committed notebook is the deliverable: executed in order with the full profile, no errors, every question
answered, every table it shows the numbers in results/summary.json, every number its answers quote shown above
it, the results made by the code as it is now, and the notebook exactly what `make run` makes from results/.
Nothing here pins the machine that made the results: a student's own re-run passes (the last test)."""
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT, needs_real_data
from deliverable import QUESTIONS, Deliverable, check_numbers_are_shown_above, check_tables_show_the_summary, text_of
from helpers import config, experiments, models
from test_claims import check_claims, derived_numbers


@pytest.fixture(scope="module")
def committed() -> Deliverable:
    return Deliverable.read(ROOT)


def check_executed(d: Deliverable) -> list[str]:
    code = [c for c in d.notebook["cells"] if c["cell_type"] == "code"]
    problems = []
    if [c["execution_count"] for c in code] != list(range(1, len(code) + 1)):
        problems.append("not executed top to bottom (execution counts are not 1..n)")
    outputs = [o for c in code for o in c["outputs"]]
    problems += [f"error output: {o.get('ename')}" for o in outputs if o["output_type"] == "error"]
    problems += ["stderr output (warnings or progress debris)" for o in outputs if o.get("name") == "stderr"]
    if re.search(r"\d+%\|", "\n".join(text_of(c) for c in code)):
        problems.append("progress bars saved in the notebook")
    full = config.get_profile("full")
    if d.summary["profile"] != "full" or d.summary["data_sizes"] != full.data_sizes or d.summary["seeds"] != list(full.seeds):
        problems.append("the summary is not the full profile's")
    for question in QUESTIONS:
        if len(d.prose(question)) < (100 if question == "Q1.1" else 250):
            problems.append(f"{question} has no written answer")
    if sum("image/png" in o.get("data", {}) for o in outputs) < 6:
        problems.append("fewer than 6 figures")
    return problems


def check_run_logs_are_tagged(d: Deliverable) -> list[str]:
    """Run logs are tagged so that the PDF leaves them out."""
    return [f"untagged run log: {text[:60]!r}" for cell in d.notebook["cells"] for output in cell.get("outputs", [])
            if re.search(r"loaded from results|^trained \d+ of|training it|runs loaded, made on",
                         text := "".join(output.get("text", "")) + "".join(output.get("data", {}).get("text/plain", "")))
            and "tooling" not in output.get("metadata", {}).get("tags", [])]


def check_numbers(d: Deliverable) -> list[str]:
    """Every quoted number is shown above, or derived from shown ones by a claim that recomputes it."""
    return check_numbers_are_shown_above(d, derived_numbers())


ALL = (check_executed, check_run_logs_are_tagged, check_tables_show_the_summary, check_numbers, check_claims)


@pytest.mark.parametrize("check", ALL, ids=lambda check: check.__name__)
def test_the_committed_deliverable(committed, check):
    problems = check(committed)
    assert not problems, "\n".join(problems)


def test_the_commit_the_notebook_names_holds_the_code_and_results_it_shows(committed):
    """The setup cell prints the git commit of helpers/ and results/: that commit's helpers/ and results/ are the
    ones checked out now, and none had uncommitted changes when the notebook ran."""
    line = next(text_of(c) for c in committed.notebook["cells"] if "Code (helpers/) and results" in text_of(c))
    commit = re.search(r"git commit ([0-9a-f]{7,40})", line)
    assert commit and "uncommitted" not in line, line
    known = subprocess.run(["git", "cat-file", "-e", f"{commit.group(1)}^{{commit}}"], cwd=ROOT, capture_output=True)
    if known.returncode:
        pytest.skip(f"commit {commit.group(1)} is not in this clone's history (a shallow clone?)")
    same = subprocess.run(["git", "diff", "--quiet", commit.group(1), "--", "helpers", "results"], cwd=ROOT)
    assert same.returncode == 0, f"helpers/ or results/ changed since {commit.group(1)}: run `make run` and commit"


def test_the_committed_results_were_made_by_the_code_as_it_is_now(committed):
    """Every stored run's key holds the code of the files a worker imports as they are now: a fresh clone's
    `make run` loads them and trains nothing."""
    keys = [json.loads(p.read_text(encoding="utf-8"))["key"] for p in (ROOT / "results").glob("*-*.json")]
    assert keys and len(keys) == len(committed.runs)
    stale = [k["recipe"] for k in keys if k["code"] != experiments.code_key(models.spec(k["recipe"]["model"]))]
    assert not stale, f"{len(stale)} results were made by other code: re-run the graded profile"


@needs_real_data
def test_make_run_from_results_reproduces_the_committed_notebook(tmp_path):
    """Executing the committed notebook again from results/ (what `make run` does) trains nothing and gives the
    same outputs, byte for byte (run logs and the commit line aside): nothing shown is stale."""
    copy = tmp_path / "again.ipynb"  # executed where the notebook lies (it imports helpers/), written here
    done = subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
                           "--ExecutePreprocessor.timeout=600", "--ExecutePreprocessor.record_timing=False",
                           f"--output-dir={tmp_path}", "--output=again", "Assignment3_Q1.ipynb"],
                          cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "A3_PROFILE": "full", "A3_PROGRESS": "0", "A3_RERUN": "0"})
    assert done.returncode == 0, done.stderr[-3000:]

    def outputs(notebook: dict) -> list:  # the commit line depends on the checkout (a shallow clone names its HEAD)
        shown = [[o for o in c.get("outputs", []) if "tooling" not in o.get("metadata", {}).get("tags", [])]
                 for c in notebook["cells"] if c["cell_type"] == "code"]
        return json.loads(re.sub(r"Code \(helpers/\) and results \(results/\)[^\\\"]*", "COMMIT LINE", json.dumps(shown)))
    again = json.loads(copy.read_text(encoding="utf-8"))
    assert not re.search(r"trained \d+ of \d+ runs", json.dumps([c.get("outputs") for c in again["cells"]]))
    committed = json.loads((ROOT / "Assignment3_Q1.ipynb").read_text(encoding="utf-8"))
    for i, (new, old) in enumerate(zip(outputs(again), outputs(committed))):
        assert new == old, f"code cell {i + 1}: its output differs from the committed notebook's: run `make run`"


def student_rerun(tmp_path, change) -> Deliverable:
    """The committed deliverable as a student's own re-run of the graded profile on another machine would leave
    it: another CPU, other times and run counts, and `change` applied to the summary's numbers."""
    d = Deliverable.read(ROOT)
    summary = json.loads(json.dumps(d.summary))
    summary["runs"].update(count=999, seconds_wall=12345.0, machines=["CPU Intel(R) Core(TM) i7-1165G7 (AVX2 kernels), "
                                                                      "torch 2.9.1"], side_by_side=8)
    change(summary)
    runs = {name: {**run, "machine": {**run["machine"], "name": "Intel(R) Core(TM) i7-1165G7"},
                   "seconds": [2 * s for s in run["seconds"]]} for name, run in d.runs.items()}
    notebook = json.loads(json.dumps(d.notebook).replace("AMD EPYC", "Intel(R) Core(TM) i7-1165G7"))
    return Deliverable(notebook, summary, runs)


def test_a_students_own_rerun_on_another_machine_passes_and_a_changed_number_names_its_sentence(tmp_path):
    same = student_rerun(tmp_path, lambda summary: None)
    for check in (check_executed, check_run_logs_are_tagged, check_numbers, check_claims):
        assert not check(same), check.__name__  # provenance (CPU, times, run counts) is never checked
    def other_numbers(summary):  # noqa: E306 -- another re-run whose Q1.5 came out the other way round
        for row in summary["Q1.5"]["structures"]:
            row["accuracy"] = {"base": 0.80, "deeper": 0.95, "wider": 0.96, "narrow": 0.97}[row["structure"]]
            row["p"] = None if row["structure"] == "base" else 0.001
    problems = check_claims(student_rerun(tmp_path, other_numbers))
    assert problems and all(p.startswith("Q1.") and "'" in p for p in problems), problems  # each names a sentence
