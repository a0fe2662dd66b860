"""results/summary.json: every table the notebook shows, per question, and how the runs were made.

The written answers quote numbers from these tables (the tests check each one against this file). When a
re-run gives other numbers than the ones the answers were written from (another machine, an edited recipe),
`save` says in one line which questions changed.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from . import models
from .config import Profile
from .experiments import write_json
from .training import History

TIMING = ("s/epoch",)  # columns that differ on every run of the same recipe: not compared
_answered: dict[Path, dict | None] = {}  # the summary the answers were written from, per file, read once
_shown: dict[str, dict[str, list]] = {}  # question -> table name -> rows, as show_table displayed them


def records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """A table as a list of rows (its index as the first columns; two-level headers joined by ': '), as shown."""
    flat = table.reset_index()
    flat.columns = [": ".join(part for part in column if part) if isinstance(column, tuple) else column
                    for column in flat.columns]
    return json.loads(flat.to_json(orient="records", force_ascii=False))


def show_table(question: str, make: Callable[..., pd.DataFrame], *args: Any) -> None:
    """Display the table `make(*args)` in the notebook and keep it, under its question and the function's name,
    for summary.json: the table saved is the table shown."""
    from IPython.display import display
    table = make(*args)
    display(table)
    _shown.setdefault(question, {})[make.__name__] = records(table)


def build(profile: Profile, *experiments: dict | list) -> dict[str, Any]:
    """Every table the notebook showed, by question, and how the runs of `experiments` (dicts or lists of
    Histories or of groups of them) were made."""
    runs: dict[tuple[int, int], History] = {}
    def collect(value: Any) -> None:
        for item in value.values() if isinstance(value, dict) else value:
            if isinstance(item, History):  # a run cut to its first epochs counts once, whole
                whole = runs.get((item.started, item.finished))
                runs[(item.started, item.finished)] = item if whole is None or item.epochs > whole.epochs else whole
            else:
                collect(item)
    collect(experiments)
    return {"profile": profile.name, "data_sizes": profile.data_sizes, "seeds": list(profile.seeds),
            "runs": runs_made(list(runs.values())), **{q: dict(tables_) for q, tables_ in sorted(_shown.items())}}


def runs_made(runs: list[History]) -> dict[str, Any]:
    """How the runs were made: machines, time, and the compute floor (FLOPs counted, at the measured rate)."""
    flops = sum(run.steps_per_epoch * run.recipe.batch_size * run.epochs * models.training_flops(run.recipe.model)
                + sum(run.data_sizes[s] for s in ("train_eval", "validation", "test")) * run.epochs
                * 2 * models.multiply_adds(run.recipe.model) for run in runs)
    wall = (max(run.finished for run in runs) - min(run.started for run in runs)) / 1000
    rate = max((run.machine.get("matmul_gflops") or 0 for run in runs), default=0)
    machines = sorted({f"{r.machine['device'].upper()} {r.machine['name']} ({r.machine['kernels']} kernels), "
                       f"torch {r.machine['torch']}" for r in runs})
    peaks = [run.peak_memory_mb for run in runs if run.peak_memory_mb]
    return {"count": len(runs), "epochs": sum(run.epochs for run in runs), "machines": machines,
            "side_by_side": max(run.machine.get("side_by_side", 1) for run in runs),
            "seconds_wall": wall, "seconds_of_runs": sum(sum(r.seconds) + sum(r.eval_seconds) for r in runs),
            "tflop": flops / 1e12, "matmul_gflops": rate or None,
            "floor_ratio": wall / (flops / (rate * 1e9)) if rate else None,
            "peak_memory_mb_per_worker": max(peaks) if peaks else None}


def changed(answered: dict[str, Any] | None, now: dict[str, Any]) -> list[str]:
    """The questions whose tables differ (timing columns aside) between two summaries."""
    def bare(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: bare(v) for k, v in value.items() if k not in TIMING}
        return [bare(v) for v in value] if isinstance(value, list) else value
    if answered is None:
        return []
    return [q for q in now if q.startswith("Q") and bare(answered.get(q)) != bare(now[q])]


def answered_summary(path: Path) -> dict[str, Any] | None:
    """The summary the answers were written from: the committed one (git), else the file as first found."""
    if path not in _answered:
        try:
            shown = subprocess.run(["git", "show", f"HEAD:./{path.name}"], cwd=path.parent, capture_output=True,
                                   text=True, timeout=20)
            _answered[path] = json.loads(shown.stdout) if shown.returncode == 0 else json.loads(path.read_text())
        except (OSError, ValueError, subprocess.SubprocessError):
            _answered[path] = None
    return _answered[path]


def save(results: dict[str, Any], profile: Profile) -> None:
    """Write results/summary.json; say which questions' numbers differ from the ones the answers quote, and
    what trained the runs."""
    path = profile.results_dir / "summary.json"
    answered = answered_summary(path)
    differ = changed(answered, results)
    write_json(path, results)
    if answered is None:  # nothing to compare with yet: later runs are compared with this one
        _answered[path] = results
    made = results["runs"]
    threads = ", one CPU thread each" if all(m.startswith("CPU") for m in made["machines"]) else ""
    print(f"The {made['count']} runs ({made['epochs']} epochs) trained on {'; '.join(made['machines'])}, "
          f"{made['side_by_side']} at a time{threads}: {made['seconds_wall'] / 60:.0f} min.")
    if differ:
        print(f"Note: these numbers differ from the ones my answers quote in {', '.join(differ)}.")
