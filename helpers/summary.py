"""results/summary.json: the numbers of every table the notebook shows, per question, and how the runs were made.
The tests check the answers' claims against it; `save` says in one line when a re-run gives other numbers than
the ones the answers were written from (another machine, an edited recipe)."""
from __future__ import annotations

import io
import json
import math
import re
import statistics
import subprocess
import tokenize
from pathlib import Path
from typing import Any

import pandas as pd

from .config import ROOT, Profile
from . import models
from .device import machine_line
from .tables import view
from .training import History

_answered: dict[Path, dict | None] = {}  # the summary the answers were written from, per file, read once
_shown: dict[str, dict[str, list]] = {}  # question -> table name -> rows of numbers, as show() displayed them


def records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """A table's rows as plain numbers (its index first; a missing value as None)."""
    def plain(value: Any) -> Any:
        value = value.item() if hasattr(value, "item") else value  # numpy scalars
        return [plain(v) for v in value] if isinstance(value, list) else \
            None if isinstance(value, float) and math.isnan(value) else value
    return [{k: plain(v) for k, v in row.items()} for row in table.reset_index().to_dict(orient="records")]


def show(question: str, name: str, table: pd.DataFrame) -> None:
    """Display `table` as `tables.view` formats it and keep its numbers for summary.json, under its question."""
    from IPython.display import display
    display(view(table))
    _shown.setdefault(question, {})[name] = records(table)


def build(profile: Profile, *experiments: Any) -> dict[str, Any]:
    """Every table the notebook showed, by question, and how the runs in `experiments` (Histories, or dicts, lists
    and searches of them) were made."""
    runs: dict[tuple[int, int], History] = {}

    def collect(value: Any) -> None:
        if isinstance(value, History):  # a run cut to its first epochs counts once, whole
            known = runs.get((value.started, value.finished))
            runs[(value.started, value.finished)] = value if known is None or value.epochs > known.epochs else known
        elif isinstance(value, (dict, list, tuple)) or hasattr(value, "runs"):
            for item in (value.values() if isinstance(value, dict) else [value.runs] if hasattr(value, "runs")
                         else value):
                collect(item)
    collect(experiments)
    return {"profile": profile.name, "data_sizes": profile.data_sizes, "seeds": list(profile.seeds),
            "runs": runs_made(list(runs.values())), **dict(sorted(_shown.items()))}


def runs_made(runs: list[History]) -> dict[str, Any]:
    """How the runs were made: machines, time, memory, and the compute floor: the FLOPs counted (training,
    evaluation, the probe) at the matrix-multiply rate measured in their session. The wall time adds up each
    session's span (its first run's start to its last run's end), so that the time between an interrupted session
    and the one that resumed it does not count; the floor_ratio is that wall time over the sessions' floors."""
    def flops(run: History) -> int:
        return run.epochs * models.run_flops(run.data_sizes["train"], sum(run.data_sizes[s] for s in (
            "train_eval", "validation", "test")), run.flops_per_image, run.multiply_adds) + probe_flops(run)
    sessions: dict[str, list[History]] = {}
    for run in runs:
        sessions.setdefault(run.machine.get("session", "unknown"), []).append(run)
    wall = sum(max(r.finished for r in rs) - min(r.started for r in rs) for rs in sessions.values()) / 1000
    rates = {name: max(run.machine.get("matmul_gflops") or 0 for run in rs) for name, rs in sessions.items()}
    spent = {name: sum(map(flops, rs)) for name, rs in sessions.items()}
    floor = sum(spent[name] / (rates[name] * 1e9) for name in sessions) if all(rates.values()) else None
    peaks = sorted(run.peak_memory_mb for run in runs if run.peak_memory_mb)
    return {"count": len(runs), "epochs": sum(run.epochs for run in runs),
            "machines": sorted({machine_line(r.machine) for r in runs}),
            "sessions": len(sessions), "side_by_side": max(run.machine.get("side_by_side", 1) for run in runs),
            "seconds_wall": wall, "seconds_of_runs": sum(sum(r.seconds) + sum(r.eval_seconds) for r in runs),
            "tflop": sum(spent.values()) / 1e12, "matmul_gflops": max(rates.values()) or None,
            "floor_ratio": wall / floor if floor else None,
            "peak_memory_mb_per_run": {"max": peaks[-1], "median": statistics.median(peaks)} if peaks else None}


def probe_flops(run: History) -> int:
    """The FLOPs a run spent measuring its probe batch (Q1.4, Q1.6), apart from training and evaluation."""
    return ((run.gradients or {}).get("probe") or {}).get("flops", 0)


def changed(answered: dict[str, Any] | None, now: dict[str, Any]) -> list[str]:
    """The questions (and the appendix, B) whose numbers differ between two summaries."""
    def bare(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: bare(v) for k, v in value.items()}
        return [bare(v) for v in value] if isinstance(value, list) else \
            round(value, 12) if isinstance(value, float) else value
    return [q for q in now if q.startswith(("Q", "B")) and bare(answered.get(q)) != bare(now[q])] if answered else []


def answered_summary(path: Path) -> dict[str, Any] | None:
    """The summary the answers were written from: the committed one (git), else the file as first found here."""
    if path not in _answered:
        for read in (lambda: subprocess.run(["git", "show", f"HEAD:./{path.name}"], cwd=path.parent, check=True,
                                            capture_output=True, text=True, encoding="utf-8", timeout=20).stdout,
                     lambda: path.read_text(encoding="utf-8")):
            try:
                _answered[path] = json.loads(read())
                break
            except (OSError, ValueError, subprocess.SubprocessError):  # no git, not committed, no file
                _answered[path] = None
    return _answered[path]


def commit_line(root: Path = ROOT) -> str:
    """The last commit of this project's git history that changed the code (helpers/) or the results (results/)
    shown, and whether either has changed since it was committed."""
    def git(*args: str, check: bool = True) -> str:
        return subprocess.run(["git", *args], cwd=root, check=check, capture_output=True, text=True, encoding="utf-8",
                              timeout=20).stdout.strip()
    try:
        changed = git("status", "--porcelain", "--", "helpers", "results")
        commit = git("log", "-1", "--format=%h", "--abbrev=12", "--", "helpers", "results") \
            if git("rev-parse", "--verify", "-q", "HEAD", check=False) else ""  # the last commit to change them
    except (OSError, subprocess.SubprocessError):
        return "Code (helpers/) and results (results/): not in a git checkout, so no commit can be named."
    if not commit:
        return "Code (helpers/) and results (results/): not committed yet, so no commit can be named."
    remote = re.sub(r"//[^/@]*@", "//", git("remote", "get-url", "origin", check=False))  # no user:token@
    return (f"Code (helpers/) and results (results/) as in git commit {commit}" + (f" of {remote}" if remote else "")
            + (", with uncommitted changes." if changed else "."))


def save(results: dict[str, Any], profile: Profile) -> None:
    """Write results/summary.json; print (for the report) what trained the runs and how long it took, and which
    questions' numbers differ from the ones the answers quote."""
    path = profile.results_dir / "summary.json"
    answered = answered_summary(path)
    differ = changed(answered, results)
    partial = path.with_name(path.name + ".tmp")  # written whole, then renamed: never half a file
    partial.write_text(json.dumps(results, separators=(",", ":"), allow_nan=False), encoding="utf-8")
    partial.replace(path)
    profile.rerun_mark.unlink(missing_ok=True)  # every run the notebook asked for is in: a retrain has ended
    if answered is None:  # nothing to compare with yet: later runs are compared with this one
        _answered[path] = results
    made = results["runs"]
    threads = ", 1 thread each" if all(m.startswith("CPU") for m in made["machines"]) else ""
    print(f"{made['count']} runs, {made['epochs']:,} epochs, {made['seconds_wall'] / 60:.0f} min, "
          f"{made['side_by_side']} at a time{threads}; {'; '.join(made['machines'])}")
    if differ:
        print(f"Note: these numbers differ from the ones my answers quote in {', '.join(differ)}.")


WIDTH = 101  # characters of code that fit a line of the PDF's code blocks (8 pt monospace; measured)


def fitted(code: str, width: int = WIDTH) -> str:
    """`code` with every line longer than `width` broken where Python allows it, so that what is printed stays valid
    Python: a trailing comment moves above its line; inside brackets a line breaks after a comma, before an
    operator, or at a space in a string literal ("a b" becomes "a " "b"), its continuation aligned with the
    bracket's contents. A line with no such place is left as it is."""
    places: dict[int, list[tuple[int, int, str]]] = {}  # line -> (column, continuation column, quote to reopen)
    comments: dict[int, int] = {}  # line -> column of its trailing comment
    opened: list[int] = []
    lines = code.splitlines()
    for token in tokenize.generate_tokens(io.StringIO(code).readline):
        (row, column), kind, text = token.start, token.type, token.string
        if kind == tokenize.COMMENT and lines[row - 1][:column].strip():
            comments[row] = column
        if kind == tokenize.OP and text in "([{":
            opened.append(column)
        elif kind == tokenize.OP and text in ")]}":
            opened.pop()
        elif not opened:  # outside brackets a line may break between two tokens with a backslash
            if kind in (tokenize.NAME, tokenize.OP, tokenize.NUMBER, tokenize.STRING) \
                    and column > len(lines[row - 1]) - len(lines[row - 1].lstrip()):
                places.setdefault(row, []).append((column, -1, "\\"))
            continue
        elif kind == tokenize.OP and text == ",":
            places.setdefault(row, []).append((column + 1, opened[-1] + 1, ""))
        elif (kind == tokenize.OP and text in ("+", "-", "*", "/", "//", "%", "==", "<=", ">=", "<", ">")
              or kind == tokenize.NAME and text in ("if", "else", "and", "or", "for")):
            places.setdefault(row, []).append((column, opened[-1] + 1, ""))
        elif kind == tokenize.STRING and row == token.end[0] and not text.endswith(('"""', "'''")):
            opening = text[:len(text) - len(text.lstrip("rbfuRBFU")) + 1]  # prefix and quote: 'f"'
            braces = 0
            for i, char in enumerate(text[len(opening):-1], start=len(opening)):
                braces += {"{": 1, "}": -1}.get(char, 0)
                if char == " " and not braces:
                    places.setdefault(row, []).append((column + i + 1, opened[-1] + 1, opening))
    out = []
    for number, line in enumerate(lines, start=1):
        indent = len(line) - len(line.lstrip())
        if len(line) > width and line.lstrip().startswith("# "):  # a long comment goes on as a comment
            words, line = line.lstrip()[2:].split(" "), " " * indent + "#"
            for word in words:
                if len(line) + 1 + len(word) > width:
                    out.append(line)
                    line = " " * indent + "#"
                line += " " + word
        if len(line) > width and number in comments:  # a trailing comment goes above its line
            out.append(" " * indent + line[comments[number]:])
            line = line[:comments[number]].rstrip()
        start, lead, reopened = 0, 0, ""  # the next piece: `reopened` + line[start:], after `lead` spaces
        while lead + len(reopened) + len(line) - start > width:
            fitting = [p for p in places.get(number, []) if start < p[0]
                       and lead + len(reopened) + p[0] - start + len(p[2][-1:]) + 1 <= width]
            if not fitting:
                break
            commas = [p for p in fitting if line[p[0] - 1] == ","]  # a break after a comma reads best
            inside = [p for p in fitting if p[2] != "\\"]  # then one inside brackets
            cut, align, opening = (commas or inside or fitting)[-1]
            piece = (reopened + line[start:cut]).rstrip() + " \\" if opening == "\\" else \
                reopened + line[start:cut] + opening[-1:]
            out.append(" " * lead + piece.strip() if start else piece.rstrip())
            start, lead = cut, align if 0 <= align and align + 20 < width else indent + 4
            reopened = "" if opening == "\\" else opening
        out.append(" " * lead + (reopened + line[start:]).strip() if start else line)
    return "\n".join(out)


def show_code(module: Any, *names: str) -> None:
    """Display the code of `names` in `module` as the file on disk has it (docstrings aside), highlighted, its long
    lines broken as `fitted` does."""
    from IPython.display import Markdown, display
    from .sourcecode import source
    display(Markdown("```python\n" + "\n\n".join(fitted(source(module, name, docstrings=False)) for name in names)
                     + "\n```"))
