"""The package layout keeps its promises (docs/architecture.md).

Checked by reading the source (``ast``), not by importing it, so every import counts: those at
the top of a module, inside functions (lazy imports), inside ``if TYPE_CHECKING:`` blocks, and
``importlib.import_module("genosynth....")`` with a literal name.

* Arrows point one way: ``privacy/`` imports nothing of the pipeline (training, sampling, models,
  selection, simulation, evaluate, cli); ``sampling/`` nothing of training or privacy;
  ``models/`` nothing of training, sampling or privacy; ``stats/`` nothing of genosynth but
  :mod:`genosynth.errors` and itself.
* No two modules share a name in different folders (``__init__.py`` aside), and no module is
  named like a package (as ``evaluate/privacy.py`` beside ``privacy/`` once was). The one
  exception: a command module ``cli/<command>.py`` is named after the ``genosynth <command>``
  it implements (``genosynth.cli.COMMANDS``), so it may share that name with the library part it
  drives (``cli/evaluate.py`` and ``evaluate/``). It may not share it with a second module, and no
  other cli/ module (``common.py``) is exempt.
* No function is longer than 100 lines (STYLE.md 16: functions fit on a screen). This is an
  acceptance criterion of issue 16 and fails until every long function has been split.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path


SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "genosynth"
MAX_FUNCTION_LINES = 100


def module_name(path: Path) -> str:
    """Dotted name of a source file: src/genosynth/sampling/write.py -> genosynth.sampling.write."""
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def imported_names(path: Path) -> set[str]:
    """Every module the file ``path`` imports (see :func:`imports_in`)."""
    return imports_in(path.read_text(encoding="utf-8"), module_name(path), package=path.name == "__init__.py")


def imports_in(text: str, module: str, *, package: bool = False) -> set[str]:
    """Every module the source ``text`` of ``module`` imports, relative imports resolved.

    Imports at any depth count (inside functions, ``if TYPE_CHECKING:`` blocks). ``from a.b
    import c`` yields both ``a.b`` and ``a.b.c`` (``c`` may be a submodule).
    """
    parts = module.split(".") if package else module.split(".")[:-1]
    names: set[str] = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = parts[: len(parts) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
        elif dynamic_import(node):
            names.add(node.args[0].value)
    return names


def dynamic_import(node: ast.AST) -> bool:
    """``importlib.import_module("a.b")`` or ``__import__("a.b")`` with a literal name."""
    if not (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)):
        return False
    f = node.func
    return (isinstance(f, ast.Name) and f.id in ("__import__", "import_module")) or (
        isinstance(f, ast.Attribute) and f.attr == "import_module")


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def imports_of(folder: str) -> dict[str, set[str]]:
    """genosynth imports of each module under ``genosynth/<folder>/``."""
    files = sorted((PACKAGE / folder).rglob("*.py"))
    assert files, f"no modules under genosynth/{folder}/"
    return {module_name(p): {n for n in imported_names(p) if within(n, "genosynth")} for p in files}


def violations(folder: str, forbidden: list[str]) -> list[str]:
    return sorted(f"{mod} imports {name}" for mod, names in imports_of(folder).items() for name in names
                  if any(within(name, f"genosynth.{f}") for f in forbidden))


# ------------------------------------------------------------------------- import direction
def test_privacy_imports_nothing_of_the_pipeline():
    forbidden = ["training", "sampling", "models", "selection", "simulation", "evaluate", "cli"]
    found = violations("privacy", forbidden)
    assert not found, "\n".join(found)


def test_sampling_imports_nothing_of_training_or_privacy():
    found = violations("sampling", ["training", "privacy"])
    assert not found, "\n".join(found)


def test_models_import_nothing_of_training_sampling_or_privacy():
    found = violations("models", ["training", "sampling", "privacy"])
    assert not found, "\n".join(found)


def test_stats_import_only_errors_cohort_and_stats():
    """stats/ sits below the pipeline: it may read the data model (``Cohort``) and raise its errors, no more."""
    allowed = ("genosynth.errors", "genosynth.cohort", "genosynth.stats")
    found = sorted(f"{mod} imports {name}" for mod, names in imports_of("stats").items() for name in names
                   if name != "genosynth" and not any(within(name, a) for a in allowed))
    assert not found, "\n".join(found)


def test_import_walk_sees_lazy_and_type_checking_imports():
    """The walker itself: imports inside functions, TYPE_CHECKING blocks and relative ones count."""
    text = ("from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from genosynth.models.vae import X\n"
            "def f():\n    from ..sampling import write\n    import genosynth.training.plain\n"
            "from . import accountant\n"
            "import importlib\nimportlib.import_module('genosynth.selection')\n")
    names = imports_in(text, "genosynth.privacy.probe")
    assert {"genosynth.models.vae", "genosynth.sampling.write", "genosynth.training.plain",
            "genosynth.privacy.accountant", "genosynth.selection"} <= names


# ----------------------------------------------------------------------------- module names
def command_modules() -> set[str]:
    """Module names under cli/ that implement a command (values of genosynth.cli.COMMANDS)."""
    tree = ast.parse((PACKAGE / "cli" / "__init__.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "COMMANDS" for t in targets):
                return set(ast.literal_eval(node.value).values())
    raise AssertionError("genosynth/cli/__init__.py has no COMMANDS table")


def test_no_two_modules_share_a_name():
    owners: dict[str, list[str]] = defaultdict(list)
    for path in source_files():
        if path.name != "__init__.py":
            owners[path.stem].append(module_name(path))
        elif path.parent != PACKAGE:
            owners[path.parent.name].append(module_name(path) + "/")
    commands = command_modules()
    clashes = []
    for name, where in sorted(owners.items()):
        command_pair = len(where) == 2 and name in commands and f"genosynth.cli.{name}" in where
        if len(where) > 1 and not command_pair:
            clashes.append(f"{name}: {', '.join(where)}")
    assert not clashes, "\n".join(clashes)


# ------------------------------------------------------------------------- function length
def long_functions(limit: int = MAX_FUNCTION_LINES) -> list[str]:
    found = []
    for path in source_files():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    found.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name} ({lines} lines)")
    return found


def test_no_function_over_100_lines():
    """ACCEPTANCE of issue 16 ("No function over 100 lines"): long functions are split into
    numbered stages or helpers named for what they fit, release or compute."""
    found = long_functions()
    assert not found, "\n".join(found)


def test_function_scan_measures_methods_and_nested_functions():
    """The scan itself: methods and nested functions are measured, decorators aside."""
    body = "\n".join(f"        x{i} = {i}" for i in range(3))
    text = f"class A:\n    def m(self):\n        def inner():\n            pass\n{body}\n"
    lengths = {n.name: n.end_lineno - n.lineno + 1 for n in ast.walk(ast.parse(text))
               if isinstance(n, ast.FunctionDef)}
    assert lengths == {"m": 6, "inner": 2}
