"""`make pdf`: the committed notebook exported without re-running, every section and figure in it."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "Assignment3_Q1.ipynb"
SECTIONS = ["Q1.1 The data", "Q1.2 Learning rate", "Q1.3 Learning rate", "Q1.4 What the two tables",
            "Q1.5 Wider and deeper", "Q1.6 The mean gradient", "Q1.7 A small CNN", "Summary"]


@pytest.fixture(scope="module")
def pdf(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pdf") / "notebook.pdf"
    before = NOTEBOOK.stat().st_mtime_ns
    subprocess.run([sys.executable, "tools/pdf.py", str(NOTEBOOK), str(path)], cwd=ROOT, check=True, timeout=300)
    assert NOTEBOOK.stat().st_mtime_ns == before  # exported, not re-run or rewritten
    return path


def test_every_section_is_in_the_pdf(pdf):
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True,
                          check=True).stdout
    flat = " ".join(text.split())
    for section in SECTIONS:
        assert section in flat, section
    assert "Traceback" not in flat and "%|" not in flat


def test_every_figure_is_embedded(pdf):
    notebook = json.loads(NOTEBOOK.read_text())
    figures = sum("image/png" in o.get("data", {}) for c in notebook["cells"] for o in c.get("outputs", []))
    listing = subprocess.run(["pdfimages", "-list", str(pdf)], capture_output=True, text=True, check=True).stdout
    images = [line for line in listing.splitlines()[2:] if line.split()[2] == "image"]
    assert len(images) == figures > 0
