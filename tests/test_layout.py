"""The package's shape, checked: small files, no import loops, every error a user can catch in one module."""

from __future__ import annotations

import ast
import inspect
import pathlib
import sys

import airflow_provider_cml
from airflow_provider_cml import exceptions

PACKAGE = pathlib.Path(airflow_provider_cml.__file__).parent
#: The most lines a package file may have (the local workbench, testing/, aside).
MAX_LINES = 450


def _modules() -> dict[str, pathlib.Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        if "testing" in path.relative_to(PACKAGE).parts:
            continue
        parts = ["airflow_provider_cml", *path.relative_to(PACKAGE).with_suffix("").parts]
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(module: str, path: pathlib.Path, known: dict[str, pathlib.Path]) -> set[str]:
    """The package modules ``module`` imports when it runs: at the top or in a function, not for typing only."""
    deps: set[str] = set()

    class Visitor(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            if "TYPE_CHECKING" in ast.unparse(node.test):
                for child in node.orelse:
                    self.visit(child)
                return
            self.generic_visit(node)

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            if node.module and node.module.startswith("airflow_provider_cml"):
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    deps.add(full if full in known else node.module)

        def visit_Import(self, node: ast.Import) -> None:
            deps.update(alias.name for alias in node.names if alias.name in known)

    Visitor().visit(ast.parse(path.read_text()))
    return {dep for dep in deps if dep in known and dep != module}


def test_no_package_file_is_longer_than_the_limit():
    long = {
        str(path.relative_to(PACKAGE)): n
        for path in _modules().values()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"files over {MAX_LINES} lines: {long}"


def _loops() -> list[str]:
    known = _modules()
    graph = {module: _imports(module, path, known) for module, path in known.items()}
    loops = []
    for start in graph:  # a depth-first walk from each module: small graph, plain code
        stack = [(start, [start])]
        while stack:
            module, trail = stack.pop()
            for dep in graph[module]:
                if dep == start:
                    loops.append(" -> ".join([*trail, dep]))
                elif dep not in trail and len(trail) < len(graph):
                    stack.append((dep, [*trail, dep]))
    return loops


def test_no_module_imports_itself_through_others():
    loops = _loops()
    assert not loops, loops[:5]


def test_the_walk_finds_a_loop_when_there_is_one(tmp_path, monkeypatch):
    # The check above must be able to fail: two modules importing each other are found.
    package = tmp_path / "airflow_provider_cml"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from airflow_provider_cml import b\n")
    (package / "b.py").write_text("def f():\n    from airflow_provider_cml.a import x\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", package)
    assert _loops() == [
        "airflow_provider_cml.a -> airflow_provider_cml.b -> airflow_provider_cml.a",
        "airflow_provider_cml.b -> airflow_provider_cml.a -> airflow_provider_cml.b",
    ]


def test_every_error_a_user_can_catch_is_in_the_exceptions_module():
    from airflow.exceptions import AirflowException

    elsewhere = []
    for module, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and module != exceptions.__name__:
                bases = {ast.unparse(base).rsplit(".", 1)[-1] for base in node.bases}
                if any(
                    inspect.isclass(cls := getattr(exceptions, b, None)) and issubclass(cls, AirflowException)
                    for b in bases
                ):
                    elsewhere.append(f"{module}.{node.name}")
    assert not elsewhere
