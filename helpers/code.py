"""The code that defines a run, read from the files on disk (what a freshly started worker imports): shown in
the notebook, and fingerprinted for the keys of stored results (comments, docstrings and blank lines aside)."""
from __future__ import annotations

import ast
import functools
import hashlib
import io
import tokenize
from pathlib import Path
from types import ModuleType


def source(module: ModuleType, name: str | None = None, bare: bool = False, docstrings: bool = True) -> str:
    """The module's code, or that of its top-level def/class/assignment `name`, as the file on disk has it now;
    `bare` drops comments, docstrings, trailing spaces and blank lines; `docstrings=False` drops docstrings."""
    text = Path(module.__file__).read_text(encoding="utf-8")
    tree = ast.parse(text)
    lines = text.splitlines()
    if bare:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type == tokenize.COMMENT:
                row, column = token.start
                lines[row - 1] = lines[row - 1][:column]
    if bare or not docstrings:
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                    and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)):
                after = lines[body[0].end_lineno] if body[0].end_lineno < len(lines) else "x"
                end = body[0].end_lineno + (1 if not bare and after is not None and not after.strip() else 0)
                lines[body[0].lineno - 1:end] = [None] * (end - body[0].lineno + 1)  # and a blank line after it
    if name is not None:
        node = next((n for n in tree.body if name in _names(n)), None)
        if node is None:
            raise ValueError(f"{module.__name__} has no top-level {name}")
        first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
        while not bare and first > 1 and lines[first - 2].lstrip().startswith("#"):  # its comment belongs to it
            first -= 1
        lines = lines[first - 1:node.end_lineno]
    lines = [line for line in lines if line is not None]  # the docstrings' lines, when dropped
    if bare:
        lines = [line.rstrip() for line in lines if line.strip()]
    return "\n".join(lines)


def _names(node: ast.stmt) -> list[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
    return [t.id for t in targets if isinstance(t, ast.Name)]


def fingerprint(module: ModuleType, name: str | None = None) -> str:
    """A short hash of the bare code of a module or of one of its top-level names."""
    stat = Path(module.__file__).stat()
    return _fingerprint(module, name, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=256)
def _fingerprint(module: ModuleType, name: str | None, mtime_ns: int, size: int) -> str:
    return hashlib.sha256(source(module, name, bare=True).encode()).hexdigest()[:16]


def show(module: ModuleType, *names: str) -> None:
    """Display the code of `names` in `module` as the file on disk has it (docstrings aside), highlighted."""
    from IPython.display import Markdown, display
    display(Markdown("```python\n" + "\n\n".join(source(module, name, docstrings=False) for name in names)
                     + "\n```"))
