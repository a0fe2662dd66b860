"""`make pdf`: the committed notebook exported without re-running, read back as a TA gets it.

These tests need a Chromium-family browser and poppler-utils; without them they are skipped and say why
(`make test` installs both only where it may: as root with apt)."""
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "Assignment3_Q1.ipynb"
SECTIONS = ["Q1.1 The data", "Q1.2 Learning rate", "Q1.3 Learning rate", "Q1.4 What the two tables",
            "Q1.5 Wider and deeper", "Q1.6 The mean gradient", "Q1.7 A small CNN", "Appendix A: the code that ran",
            "Appendix B:"]
RUN_LOGS = ["NBVAL", "nbval", "loaded from", "REPO_URL", "Traceback", r"\d+%\|", "training it", r"trained \d+ of \d+ runs",
            "runs loaded, made on"]  # regular expressions
ANSWER_PAGES = 6
MARGIN_MM, SIDE_MARGIN_MM = map(float, re.search(  # the template's top and side margins
    r"@page \{ size: A4; margin: ([\d.]+)mm ([\d.]+)mm", (ROOT / "tools" / "pdf_template" / "index.html.j2")
    .read_text(encoding="utf-8")).groups())
APPENDIX_PAGES = 4

spec = importlib.util.spec_from_file_location("pdf_tool", ROOT / "tools" / "pdf.py")
pdf_tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pdf_tool)

BROWSER = next((b for b in pdf_tool.candidates() if pdf_tool.works(b)), None)
POPPLER = all(shutil.which(tool) for tool in ("pdftotext", "pdfimages", "pdfinfo", "pdftoppm"))
needs_tools = pytest.mark.skipif(not (BROWSER and POPPLER), reason=(
    "needs a Chromium-family browser and poppler-utils (pdftotext, pdfimages, pdfinfo, pdftoppm): "
    "sudo apt-get install chromium poppler-utils"))


@pytest.fixture(scope="module")
def pdf(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pdf") / "notebook.pdf"
    before = NOTEBOOK.stat().st_mtime_ns
    subprocess.run([sys.executable, "tools/pdf.py", str(NOTEBOOK), str(path)], cwd=ROOT, check=True, timeout=300)
    assert NOTEBOOK.stat().st_mtime_ns == before  # exported, not re-run or rewritten
    return path


def text_of(pdf: Path) -> str:
    return subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout


def pages_of(pdf: Path) -> list[str]:
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    count = int(re.search(r"Pages:\s+(\d+)", info).group(1))
    return [subprocess.run(["pdftotext", "-f", str(i), "-l", str(i), str(pdf), "-"], capture_output=True, text=True,
                           check=True).stdout for i in range(1, count + 1)]


@needs_tools
def test_the_answers_fit_in_6_pages_and_the_appendices_follow(pdf):
    pages = pages_of(pdf)
    start = next(i for i, text in enumerate(pages) if "Appendix A: the code that ran" in text)
    before = pages[start].split("Appendix A: the code that ran")[0].strip()
    last_answer_page = start + 1 if before else start  # 1-based
    assert last_answer_page <= ANSWER_PAGES, f"the answers run to page {last_answer_page}"
    assert "Name:" in pages[0] and "Student ID:" in pages[0]


@needs_tools
def test_the_appendices_fit_in_4_pages_and_no_page_but_the_last_is_more_than_a_third_blank(pdf, tmp_path):
    """Pages rendered at 20 dpi: the lowest row that is not white, against the page's printable height."""
    from PIL import Image
    pages = pages_of(pdf)
    start = next(i for i, text in enumerate(pages) if "Appendix A: the code that ran" in text)
    assert len(pages) - start <= APPENDIX_PAGES, f"the appendices take {len(pages) - start} pages"
    subprocess.run(["pdftoppm", "-r", "20", "-gray", str(pdf), str(tmp_path / "page")], check=True)
    blank = {}
    for number, image in enumerate(sorted(tmp_path.glob("page*.pgm")), start=1):
        picture = Image.open(image)
        width, height = picture.size
        rows = [y for y in range(height) if picture.crop((0, y, width, y + 1)).getextrema()[0] < 200]
        printable = height * (1 - 2 * MARGIN_MM / 297)  # A4, the template's top and bottom margins
        blank[number] = 1 - ((rows[-1] + 1) - height * MARGIN_MM / 297) / printable if rows else 1.0
    last = len(pages)
    assert not {n: round(b, 2) for n, b in blank.items() if b > 1 / 3 and n != last}, blank


def laid_out(item, kind: type):
    """Every element of type `kind` in a pdfminer layout tree (a page, a box, a line)."""
    if isinstance(item, kind):
        yield item
    elif hasattr(item, "__iter__"):
        for child in item:
            yield from laid_out(child, kind)


@needs_tools
def test_text_prints_at_9_points_and_code_at_8(pdf):
    """Exact sizes from the PDF's own text: body text and tables 9 pt or more, code (monospace) 8 pt or more."""
    from pdfminer.high_level import extract_pages
    from pdfminer.layout import LTChar
    sizes = {(round(c.size, 1), "Mono" in c.fontname) for page in extract_pages(pdf) for c in laid_out(page, LTChar)
             if c.get_text().strip()}
    assert min(size for size, mono in sizes if not mono) >= 9, sorted(sizes)
    assert min(size for size, mono in sizes if mono) >= 8, sorted(sizes)


@needs_tools
def test_no_table_or_text_runs_past_the_right_edge(pdf):
    """A table wider than the page is cut off, not shrunk: the print engine clips outputs about 20 pt inside the
    page's margin (Q1.7's networks table once lost its last column there), so no text may reach past that."""
    from pdfminer.high_level import extract_pages
    from pdfminer.layout import LTTextLine
    margin = SIDE_MARGIN_MM * 72 / 25.4  # in points
    past = [(number, line.get_text().strip()[-30:]) for number, page in enumerate(extract_pages(pdf), start=1)
            for line in laid_out(page, LTTextLine) if line.x1 > page.width - margin - 20]
    assert not past, f"cut off at the right edge (page, text): {past}"


@needs_tools
def test_every_section_is_in_the_pdf_and_the_overview_comes_first(pdf):
    flat = " ".join(text_of(pdf).split())
    positions = [flat.find(section) for section in SECTIONS]
    assert all(p >= 0 for p in positions), [s for s, p in zip(SECTIONS, positions) if p < 0]
    assert positions == sorted(positions)


@needs_tools
def test_no_run_logs_reach_the_pdf(pdf):
    text = text_of(pdf)
    assert not [pattern for pattern in RUN_LOGS if re.search(pattern, text)]
    assert not re.search(r"\bnan\b", text, flags=re.IGNORECASE)  # a missing number is shown with its reason


@needs_tools
def test_every_figure_is_embedded(pdf):
    notebook = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    kept = [c for c in notebook["cells"] if "remove_cell" not in c["metadata"].get("tags", [])]
    figures = sum("image/png" in o.get("data", {}) for c in kept for o in c.get("outputs", []))
    listing = subprocess.run(["pdfimages", "-list", str(pdf)], capture_output=True, text=True, check=True).stdout
    images = [line for line in listing.splitlines()[2:] if line.split()[2] == "image"]
    assert len(images) == figures >= 6


def test_tagged_cells_and_outputs_are_left_out():
    notebook = pdf_tool.nbformat.read(NOTEBOOK, as_version=4)
    shown = pdf_tool.prepare(notebook)
    html = pdf_tool.to_html(NOTEBOOK)
    assert "REPO_URL" not in html  # remove_cell
    assert "summary.save" not in html and "plotting.loss_curves" not in html  # remove_input
    outputs = json.dumps([c.get("outputs", []) for c in shown.cells])
    assert "loaded from" not in outputs and not re.search(r"trained \d+ of \d+ runs", outputs)


def test_every_figure_prints_at_its_own_size():
    """Figures are drawn at most 7.4 inches wide at 96 dpi and stored at twice that resolution ("retina"): the
    page shows them at their own size (710 CSS pixels is the text width of an A4 page), so 8-point fonts
    print at 8 points."""
    notebook = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    widths = [o["metadata"]["image/png"]["width"] for c in notebook["cells"] for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert widths and all(w <= 7.4 * 96 for w in widths), widths


def test_without_a_browser_make_pdf_stops_with_one_line_saying_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(pdf_tool, "candidates", lambda: [])
    monkeypatch.setattr(pdf_tool, "print_with_playwright", lambda html, out: False)
    with pytest.raises(SystemExit) as stop:
        pdf_tool.export(NOTEBOOK, tmp_path / "x.pdf")
    message = str(stop.value)
    assert "\n" not in message and "apt-get install chromium" in message and "playwright" in message
    assert "macOS" in message and "Windows" in message and not (tmp_path / "x.pdf").exists()


def test_browsers_are_looked_for_where_macos_and_windows_install_them(monkeypatch, tmp_path):
    chrome = tmp_path / "Google" / "Chrome" / "Application" / "chrome.exe"
    chrome.parent.mkdir(parents=True)
    chrome.write_text("", encoding="utf-8")
    mac = tmp_path / "Applications" / "Google Chrome.app" / "Contents" / "MacOS" / "Google Chrome"
    mac.parent.mkdir(parents=True)
    mac.write_text("", encoding="utf-8")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    for variable in ("PROGRAMFILES", "PROGRAMFILES(X86)", "LOCALAPPDATA"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("PROGRAMFILES", str(tmp_path))
    monkeypatch.setattr(pdf_tool, "MAC_DIRS", (str(tmp_path / "Applications"),))  # not this machine's own
    assert pdf_tool.candidates() == [str(mac), str(chrome)]


def test_a_browser_that_does_not_answer_version_is_asked_to_print(monkeypatch, tmp_path):
    """Chrome and Edge on Windows print no version: such a browser is kept if it prints a page."""
    calls = []

    def fake_run(command, **kwargs):
        calls.append(command)
        if "--version" in command:
            return pdf_tool.subprocess.CompletedProcess(command, 1, b"", b"")
        Path(next(a for a in command if a.startswith("--print-to-pdf=")).split("=", 1)[1]).write_bytes(b"%PDF")
        return pdf_tool.subprocess.CompletedProcess(command, 0, "", "")
    monkeypatch.setattr(pdf_tool.subprocess, "run", fake_run)
    assert pdf_tool.works("msedge.exe") and len(calls) == 2


def test_a_browser_that_cannot_start_is_passed_over(tmp_path):
    stub = tmp_path / "chromium-browser"  # like Ubuntu's snap stub inside a container
    stub.write_text("#!/bin/sh\necho 'Command requires the chromium snap' >&2\nexit 1\n", encoding="utf-8")
    stub.chmod(0o755)
    assert not pdf_tool.works(str(stub))


def test_make_test_without_root_skips_the_pdf_tools_and_says_why(tmp_path):
    """`make pdf-tools` as a user who may not install: exit 0 and a printed reason, never a silent skip."""
    make = shutil.which("make")
    if not make:
        pytest.skip("make is not installed")
    env = {**os.environ, "PATH": str(tmp_path)}  # no chromium, no pdftotext on this PATH
    result = subprocess.run([make, "-s", "--no-print-directory", "pdf-tools", "CAN_INSTALL=no", "SHELL=/bin/sh"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "PDF tests will be skipped" in result.stdout and "apt-get install chromium poppler-utils" in result.stdout


def test_wrapped_code_keeps_its_indentation():
    """Each code line becomes a block whose wrapped continuation hangs 4 columns in from its own indentation; a span
    that crosses a line end is closed and reopened, so the markup stays balanced."""
    html = ('<pre><span class="k">def</span> f():\n        <span class="s">"a\nb"</span> + x\n</pre>')
    hung = pdf_tool.hang_code_lines(html)
    assert hung.count('class="code-line"') == 3 and "\n" not in hung
    assert 'style="padding-left:12ch;text-indent:-12ch">        <span class="s">"a</span></span>' in hung
    assert '<span class="s">b"</span> + x</span>' in hung
    assert hung.count("<span") == hung.count("</span>")
