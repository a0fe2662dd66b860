"""Export the executed notebook to PDF without re-running it: nbconvert HTML, printed by a Chromium-family browser.

Usage: python tools/pdf.py [NOTEBOOK] [PDF]   (defaults: Assignment3_Q1.ipynb -> Assignment3_Q1.pdf)

What the PDF leaves out, by cell tag: `remove_cell` (the Colab bootstrap), `remove_input` (plumbing whose
output matters), and single outputs tagged `tooling` (run logs); also progress-bar widgets and stderr.
The browser: Chrome, Chromium or Edge where Linux, macOS or Windows install them; failing that,
Playwright's own Chromium (`pip install playwright` and `python -m playwright install chromium`).
"""
from __future__ import annotations

import html as html_lib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter
from nbconvert.preprocessors import TagRemovePreprocessor

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from helpers.config import TOOLING  # noqa: E402  -- the tag the notebook's run logs carry (no torch is imported)

# The closed network of some machines makes Chromium's background networking hang: switch all of it off.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-quic", "--disable-extensions",
                  "--no-pdf-header-footer", "--run-all-compositor-stages-before-draw"]
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "microsoft-edge", "msedge")
MAC_DIRS = ("/Applications", str(Path.home() / "Applications"))
MAC_APPS = ("Google Chrome.app/Contents/MacOS/Google Chrome", "Chromium.app/Contents/MacOS/Chromium",
            "Microsoft Edge.app/Contents/MacOS/Microsoft Edge")
WINDOWS_EXES = (("Google", "Chrome", "Application", "chrome.exe"), ("Microsoft", "Edge", "Application", "msedge.exe"),
                ("Chromium", "Application", "chrome.exe"))
HOW_TO_INSTALL = ("make pdf needs Chrome, Chromium or Edge. Debian: sudo apt-get install chromium; Ubuntu/Colab "
                  "(apt's chromium-browser is a snap that does not run in containers): pip install playwright && "
                  "python -m playwright install chromium; macOS: install Google Chrome; Windows: Edge is built in "
                  "(or install Chrome). Then run make pdf (or python tools/pdf.py) again.")
NOISE = "application/vnd.jupyter.widget-view+json"


def prepare(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook as the PDF shows it: tagged cells, inputs and outputs removed, widgets and stderr dropped."""
    remover = TagRemovePreprocessor(remove_cell_tags={"remove_cell"}, remove_input_tags={"remove_input"},
                                    remove_single_output_tags={TOOLING}, enabled=True)
    notebook, _ = remover.preprocess(notebook, {})
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if NOISE not in o.get("data", {}) and o.get("name") != "stderr"]
    notebook.metadata.pop("widgets", None)
    return notebook


def to_html(notebook_path: Path) -> str:
    """The notebook as self-contained, print-friendly HTML (figures embedded as PNG data)."""
    notebook = prepare(nbformat.read(notebook_path, as_version=4))
    exporter = HTMLExporter(template_name="pdf_template", extra_template_basedirs=[str(Path(__file__).parent)],
                            exclude_input_prompt=True, exclude_output_prompt=True)
    html, _ = exporter.from_notebook_node(notebook)
    return hang_code_lines(html)


PRE = re.compile(r"(<pre[^>]*>)(.*?)(</pre>)", re.DOTALL)
TAG = re.compile(r"<(/?)span[^>]*>")


def hang_code_lines(html: str) -> str:
    """Each line of code as a block of its own whose continuation, where a long line wraps, starts 4 columns in from
    the line's own indentation (a hanging indent), so that wrapped code keeps its shape. Spans that cross a line
    end are closed there and opened again on the next line."""
    def lines(match: re.Match) -> str:
        opened: list[str] = []
        out = []
        for line in match.group(2).split("\n"):
            text = html_lib.unescape(re.sub(r"<[^>]+>", "", line))
            indent = len(text) - len(text.lstrip(" "))
            body = "".join(opened) + line
            for tag in TAG.finditer(line):
                if tag.group(1):
                    opened.pop() if opened else None
                else:
                    opened.append(tag.group(0))
            out.append(f'<span class="code-line" style="padding-left:{indent + 4}ch;text-indent:-{indent + 4}ch">'
                       f'{body}{"</span>" * len(opened)}</span>')
        if out and out[-1].endswith('-4ch"></span>'):  # the empty line after the last newline
            out.pop()
        return match.group(1) + "".join(out) + match.group(3)
    return PRE.sub(lines, html)


def candidates() -> list[str]:
    """Browsers to try, in order: on PATH, then where macOS and Windows install them."""
    found = [shutil.which(name) for name in BROWSER_NAMES]
    found += [str(Path(base) / app) for base in MAC_DIRS for app in MAC_APPS]
    for variable in ("PROGRAMFILES", "PROGRAMFILES(X86)", "LOCALAPPDATA"):
        if os.environ.get(variable):
            found += [str(Path(os.environ[variable], *parts)) for parts in WINDOWS_EXES]
    return [path for path in dict.fromkeys(found) if path and Path(path).is_file()]


def works(browser: str) -> bool:
    """False for a browser that cannot start here (e.g. Ubuntu's snap stub inside a container). Chrome and Edge
    on Windows print no version, so a browser that does not answer --version is asked to print a page."""
    try:
        if subprocess.run([browser, "--headless", "--version"], capture_output=True, timeout=30).returncode == 0:
            return True
    except (OSError, subprocess.TimeoutExpired):
        pass
    with tempfile.TemporaryDirectory() as tmp:
        page, pdf = Path(tmp) / "probe.html", Path(tmp) / "probe.pdf"
        page.write_text("<p>probe</p>")
        try:
            print_with_browser(browser, page, pdf, tmp)
        except (OSError, subprocess.TimeoutExpired, SystemExit):
            return False
        return pdf.exists()


def print_with_browser(browser: str, html_path: Path, pdf_path: Path, tmp: str) -> None:
    """Print the HTML file to PDF with a Chromium-family browser."""
    command = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp}/profile", f"--print-to-pdf={pdf_path}",
               html_path.as_uri()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if result.returncode != 0 or not pdf_path.exists() or pdf_path.stat().st_size == 0:
        sys.exit(f"{browser} did not write the PDF (exit {result.returncode}):\n{result.stderr[-2000:]}")


def print_with_playwright(html_path: Path, pdf_path: Path) -> bool:
    """Print with Playwright's Chromium, if Playwright and its browser are installed; False otherwise."""
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        return False
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch()
            page = browser.new_page()
            page.goto(html_path.as_uri())
            page.pdf(path=str(pdf_path), prefer_css_page_size=True)
            browser.close()
        return True
    except Error:
        return False


def export(notebook_path: Path, pdf_path: Path) -> None:
    """Write `pdf_path` from the executed notebook at `notebook_path`."""
    with tempfile.TemporaryDirectory() as tmp:
        html_path = Path(tmp) / "notebook.html"
        html_path.write_text(to_html(notebook_path), encoding="utf-8")
        partial = Path(tmp) / "out.pdf"
        browser = next((b for b in candidates() if works(b)), None)
        if browser:
            print_with_browser(browser, html_path, partial, tmp)
        elif not print_with_playwright(html_path, partial):
            sys.exit(HOW_TO_INSTALL)
        shutil.move(partial, pdf_path)
    print(f"wrote {pdf_path.relative_to(ROOT) if pdf_path.is_relative_to(ROOT) else pdf_path}")


if __name__ == "__main__":
    args = sys.argv[1:]
    export(Path(args[0] if args else ROOT / "Assignment3_Q1.ipynb").resolve(),
           Path(args[1] if len(args) > 1 else ROOT / "Assignment3_Q1.pdf").resolve())
