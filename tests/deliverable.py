"""The deliverable as the tests read it: the executed notebook, results/summary.json and the stored runs, from
this project or from a copy (a student's own re-run). Each check returns its problems, one line each."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from helpers import tables

QUESTIONS = ["Q1.1", "Q1.2", "Q1.3", "Q1.4", "Q1.5", "Q1.6", "Q1.7"]
NUMBER = re.compile(r"(?<![\w.])[−-]?\d[\d,]*(?:\.\d+)?(?:e[−-]\d+)?")


@dataclass
class Deliverable:
    notebook: dict
    summary: dict
    runs: dict[str, dict]  # stored run name -> its History as a dict

    @classmethod
    def read(cls, root: Path) -> Deliverable:
        runs = {path.name.rsplit("-", 1)[0]: json.loads(path.read_text(encoding="utf-8"))["history"]
                for path in (root / "results").glob("*-*.json")}
        return cls(json.loads((root / "Assignment3_Q1.ipynb").read_text(encoding="utf-8")),
                   json.loads((root / "results" / "summary.json").read_text(encoding="utf-8")), runs)

    def table(self, question: str, name: str) -> pd.DataFrame:
        """A summary table as a DataFrame of numbers, indexed by its first column."""
        rows = self.summary[question][name]
        return pd.DataFrame(rows).set_index(next(iter(rows[0])))

    def sections(self) -> dict[str, list[dict]]:
        """The cells of each question (from its heading to the next), the introduction ('intro') and the
        appendices ('appendix')."""
        found: dict[str, list[dict]] = {"intro": []}
        current = "intro"
        for cell in self.notebook["cells"]:
            source = "".join(cell["source"])
            heading = re.match(r"## (Q1\.\d) ", source)
            if heading or source.startswith("## Appendix"):
                current = heading.group(1) if heading else "appendix"
            found.setdefault(current, []).append(cell)
        return found

    def prose(self, question: str) -> str:
        """The hand-written text of a section: its markdown without the quoted question ('> ...'), one line per
        paragraph or list item (so a sentence is found whole)."""
        text = "\n".join(line for c in self.sections()[question] if c["cell_type"] == "markdown"
                         for line in "".join(c["source"]).splitlines() if not line.startswith(">"))
        return re.sub(r"[ \t]+", " ", re.sub(r"\n(?![*\n]|\s*\* |#)", " ", text).replace("\xa0", " "))


def text_of(cell: dict) -> str:
    parts = []
    for output in cell.get("outputs", []):
        for value in (output.get("text"), *(output.get("data", {}).get(k) for k in ("text/plain", "text/markdown",
                                                                                       "text/html"))):
            if value:
                parts.append("".join(value) if isinstance(value, list) else value)
    return "\n".join(parts).replace("\xa0", " ")


def numbers(text: str) -> set[str]:
    return {n.replace("−", "-").replace(",", "") for n in NUMBER.findall(text.replace("\xa0", " "))}


def shown_numbers(cells: list[dict]) -> set[str]:
    """Numbers a reader sees in these cells: outputs, the code shown, the quoted question."""
    found = numbers("\n".join(text_of(c) for c in cells))
    found |= numbers("\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code" and not
                               {"remove_input", "remove_cell"} & set(c["metadata"].get("tags", []))))
    found |= numbers("\n".join(line for c in cells if c["cell_type"] == "markdown"
                               for line in "".join(c["source"]).splitlines() if line.startswith(">")))
    return found


def check_numbers_are_shown_above(d: Deliverable, derived: dict[str, set[str]] | None = None) -> list[str]:
    """Every number an answer quotes is shown by its question, an earlier one, or the appendix it cites; `derived`
    names, per question, the numbers a claim recomputes from shown ones (a ratio, a difference, an epoch read off a
    figure)."""
    found, shown, problems = d.sections(), shown_numbers(d.sections().get("appendix", [])), []
    for question in ["intro", *QUESTIONS]:
        shown |= shown_numbers(found[question])
        if question != "intro":
            unbacked = numbers(d.prose(question)) - shown - (derived or {}).get(question, set()) - {"1", "2", "3"}
            if unbacked:
                problems.append(f"{question} quotes numbers shown nowhere above: {sorted(unbacked)}")
    return problems


def check_tables_show_the_summary(d: Deliverable) -> list[str]:
    """Every number of every summary table appears, formatted as the notebook formats it, in its question's
    output: the numbers saved are the numbers shown."""
    problems = []
    found = d.sections()
    for question, named in d.summary.items():
        if not isinstance(named, dict) or not isinstance(next(iter(named.values()), None), list):
            continue
        cells = found.get(question, found.get("appendix", [])) if question.startswith("Q") else found["appendix"]
        output = "\n".join(text_of(c) for c in cells)
        for name, rows in named.items():
            shown = [c for c in rows[0] if not c.endswith(("_std", "_ci", "_note"))]
            if len(shown) > 9:  # the index column and at most 8 more
                problems.append(f"{question} {name}: {len(shown) - 1} columns besides its index (at most 8)")
            for row in rows:
                for column, value in row.items():
                    if column.endswith(("_std", "_ci", "_note")) or value is None or isinstance(value, str):
                        continue
                    if tables.number(column, value) not in output:
                        problems.append(f"{question} {name}: {column}={value!r} ({tables.number(column, value)}) "
                                        f"is not shown")
    return problems
