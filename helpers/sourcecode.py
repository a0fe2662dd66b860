"""The code as the files on disk have it now (what a freshly started worker imports): shown in the notebook,
read for the network tables, and fingerprinted for the keys of stored results (comments, docstrings and blank
lines aside). `watch_imports` also keeps each file's text as this process imported it, so that a run trained in
this process can be refused when the files have changed since."""
from __future__ import annotations

import ast
import functools
import hashlib
import importlib.machinery
import io
import sys
import tokenize
from pathlib import Path
from types import ModuleType
from typing import Any

PACKAGE = Path(__file__).resolve().parent
IMPORTED: dict[Path, str] = {}  # file -> its text when this process imported it (see watch_imports)


def _file(module: ModuleType | Path) -> Path:
    return Path(module.__file__ if isinstance(module, ModuleType) else module)


def _stamp(path: Path) -> tuple[Path, int, int]:
    stat = path.stat()
    return path, stat.st_mtime_ns, stat.st_size


@functools.lru_cache(maxsize=256)
def _read(path: Path, mtime_ns: int, size: int) -> tuple[str, ast.Module]:
    text = path.read_text(encoding="utf-8")
    return text, ast.parse(text, str(path))


@functools.lru_cache(maxsize=256)
def _parse(text: str) -> ast.Module:
    return ast.parse(text)


def source(module: ModuleType | Path, name: str | None = None, bare: bool = False, docstrings: bool = True,
           without: frozenset[str] = frozenset(), text: str | None = None) -> str:
    """The file's code, or that of its top-level def/class/assignment `name`, as the file on disk has it now (or
    as `text`, when given); `bare` drops comments, docstrings, trailing spaces and blank lines;
    `docstrings=False` drops docstrings; `without` leaves out the named top-level definitions."""
    text, tree = _read(*_stamp(_file(module))) if text is None else (text, _parse(text))
    lines: list[str | None] = list(text.splitlines())
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
                end = body[0].end_lineno
                if not bare and end < len(lines) and not (lines[end] or "").strip():
                    end += 1  # and the blank line after it
                lines[body[0].lineno - 1:end] = [None] * (end - body[0].lineno + 1)
    for node in tree.body:
        if set(_names(node)) & without:
            lines[node.lineno - 1:node.end_lineno] = [None] * (node.end_lineno - node.lineno + 1)
    if name is not None:
        node = _node(tree, name, _file(module))
        first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
        while not bare and first > 1 and (lines[first - 2] or "").lstrip().startswith("#"):  # its comment
            first -= 1
        lines = lines[first - 1:node.end_lineno]
    kept = [line for line in lines if line is not None]
    if bare:
        kept = [line.rstrip() for line in kept if line.strip()]
    return "\n".join(kept)


def _names(node: ast.stmt) -> list[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
    return [t.id for t in targets if isinstance(t, ast.Name)]


def _node(tree: ast.Module, name: str, path: Path) -> ast.stmt:
    node = next((n for n in tree.body if name in _names(n)), None)
    if node is None:
        raise ValueError(f"{path.name} has no top-level {name}")
    return node


def classes(module: ModuleType | Path) -> list[str]:
    """The names of the top-level classes the file on disk defines."""
    return [node.name for node in _read(*_stamp(_file(module)))[1].body if isinstance(node, ast.ClassDef)]


def reachable(module: ModuleType | Path, roots: set[str]) -> set[str]:
    """The top-level definitions of the file on disk that `roots` use, directly or through one another (the roots
    included): a network class, the block classes and functions it calls, the constants they read."""
    tree = _read(*_stamp(_file(module)))[1]
    definitions = {name: node for node in tree.body for name in _names(node)}
    found: set[str] = set()
    todo = [name for name in roots if name in definitions]
    while todo:
        name = todo.pop()
        if name not in found:
            found.add(name)
            todo += [n.id for n in ast.walk(definitions[name]) if isinstance(n, ast.Name) and n.id in definitions]
    return found


def constant(module: ModuleType, name: str) -> Any:
    """The value of the top-level assignment `name` as the file on disk has it now, so that an edit applies without
    restarting the kernel. It must be a literal (numbers, strings, tuples, lists, dicts): nothing is evaluated."""
    path = _file(module)
    node = _node(_read(*_stamp(path))[1], name, path)
    try:
        return ast.literal_eval(node.value)
    except ValueError:
        raise ValueError(f"{path.name}: {name} must be written as a literal, e.g. {{'base': (512, 512)}}, "
                         f"with numbers rather than names or expressions") from None


def imports(path: Path) -> set[Path]:
    """The files of this package that the file at `path` imports, anywhere in it (relative or absolute)."""
    tree = _read(*_stamp(path))[1]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names |= {node.module.split(".")[0]} if node.module else {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith(PACKAGE.name):
            parts = node.module.split(".")
            names |= {parts[1]} if len(parts) > 1 else {alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            names |= {a.name.split(".")[1] for a in node.names if a.name.startswith(PACKAGE.name + ".")}
    return {PACKAGE / f"{name}.py" for name in names if (PACKAGE / f"{name}.py").is_file()}


def closure(start: ModuleType | Path) -> list[Path]:
    """Every file of this package that importing `start` loads (the package's __init__ included), found by
    following the imports in the files on disk, sorted."""
    seen = {PACKAGE / "__init__.py"}
    todo = [_file(start), PACKAGE / "__init__.py"]
    while todo:
        path = todo.pop()
        seen.add(path)
        todo += [p for p in imports(path) if p not in seen]
    return sorted(seen)


def fingerprint(module: ModuleType | Path, without: frozenset[str] = frozenset()) -> str:
    """A short hash of the bare code of a file (less the top-level definitions named in `without`)."""
    return hashlib.sha256(source(module, bare=True, without=without).encode()).hexdigest()[:16]


class _Snapshots(importlib.machinery.PathFinder):
    """Finds this package's modules as Python does, keeping each file's text as it is imported."""

    @classmethod
    def find_spec(cls, fullname, path=None, target=None):  # noqa: ANN001, ANN206 -- the finder protocol
        if not fullname.startswith(__package__ + "."):
            return None
        spec = super().find_spec(fullname, path, target)
        if spec is not None and spec.origin and spec.origin.endswith(".py"):
            IMPORTED[Path(spec.origin).resolve()] = Path(spec.origin).read_text(encoding="utf-8")
        return spec


def watch_imports() -> None:
    """From now on keep the text of every module of this package as this process imports it (and of those
    imported already, as their files are now)."""
    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith(__package__) and getattr(module, "__file__", None):
            IMPORTED.setdefault(Path(module.__file__).resolve(), Path(module.__file__).read_text(encoding="utf-8"))
    if not any(finder is _Snapshots for finder in sys.meta_path):
        sys.meta_path.insert(0, _Snapshots)


def edited_since_import(files: list[Path], without: dict[str, frozenset[str]]) -> list[str]:
    """The names of those `files` this process imported whose code (comments, docstrings and the top-level
    definitions `without[name]` aside) differs on disk now from the text it imported."""
    def bare(path: Path, text: str | None = None) -> str:
        return source(path, bare=True, without=without.get(path.name, frozenset()), text=text)
    return [path.name for path in files if path.resolve() in IMPORTED
            and bare(path, IMPORTED[path.resolve()]) != bare(path)]


def show(module: ModuleType, *names: str) -> None:
    """Display the code of `names` in `module` as the file on disk has it (docstrings aside), highlighted."""
    from IPython.display import Markdown, display
    display(Markdown("```python\n" + "\n\n".join(source(module, name, docstrings=False) for name in names)
                     + "\n```"))
