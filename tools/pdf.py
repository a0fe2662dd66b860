"""Export the executed notebook to PDF without re-running it: nbconvert HTML, printed by headless Chromium.

Usage: python tools/pdf.py [NOTEBOOK] [PDF]   (defaults: Assignment3_Q1.ipynb -> Assignment3_Q1.pdf)
Progress-bar widgets and stderr streams (warnings) are left out of the document.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter

ROOT = Path(__file__).resolve().parent.parent
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# The closed network here makes Chromium's background networking hang: switch all of it off.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-quic", "--disable-extensions",
                  "--no-pdf-header-footer", "--run-all-compositor-stages-before-draw"]
NOISE = "application/vnd.jupyter.widget-view+json"


def clean(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Drop kernel noise from the outputs: progress-bar widgets and stderr streams."""
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs
                            if NOISE not in o.get("data", {}) and o.get("name") != "stderr"]
    notebook.metadata.pop("widgets", None)
    return notebook


def to_html(notebook_path: Path) -> str:
    """The notebook as self-contained, print-friendly HTML (figures embedded as PNG data)."""
    notebook = clean(nbformat.read(notebook_path, as_version=4))
    exporter = HTMLExporter(template_name="pdf_template", extra_template_basedirs=[str(Path(__file__).parent)])
    html, _ = exporter.from_notebook_node(notebook)
    return html


def find_browser() -> str:
    """Path of a Chromium-family browser, or exit with what to install."""
    for name in BROWSERS:
        if shutil.which(name):
            return shutil.which(name)
    sys.exit("make pdf needs Chromium: install it (Debian/Ubuntu: sudo apt-get install chromium) and rerun.")


def export(notebook_path: Path, pdf_path: Path) -> None:
    """Write `pdf_path` from the executed notebook at `notebook_path`."""
    browser = find_browser()
    with tempfile.TemporaryDirectory() as tmp:
        html_path = Path(tmp) / "notebook.html"
        html_path.write_text(to_html(notebook_path), encoding="utf-8")
        partial = Path(tmp) / "out.pdf"
        command = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp}/profile",
                   f"--print-to-pdf={partial}", html_path.as_uri()]
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        if result.returncode != 0 or not partial.exists() or partial.stat().st_size == 0:
            sys.exit(f"Chromium did not write the PDF (exit {result.returncode}):\n{result.stderr[-2000:]}")
        shutil.move(partial, pdf_path)
    print(f"wrote {pdf_path.relative_to(ROOT) if pdf_path.is_relative_to(ROOT) else pdf_path}")


if __name__ == "__main__":
    args = sys.argv[1:]
    export(Path(args[0] if args else ROOT / "Assignment3_Q1.ipynb").resolve(),
           Path(args[1] if len(args) > 1 else ROOT / "Assignment3_Q1.pdf").resolve())
