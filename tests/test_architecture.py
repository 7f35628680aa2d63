"""runlab's shape, read from its source with ``ast`` (nothing is imported):

(a) no import cycles among runlab's modules;
(b) no upward imports: leaves (``status``, ``errors``, ``logs``) <- ``record`` <- ``sweep``
    <- ``results`` <- the ``runlab`` facade and ``doctor`` <- ``cli``;
(c) no imports of runlab's own modules inside functions (heavy third-party ones are fine);
(d) no function over ``MAX_LINES`` lines;
(e) a class's instance attributes are all set in ``__init__`` (or declared in its body, as a
    dataclass's fields are), never first in another method.

Every import statement counts: at module top, inside functions and classes, ``import x``,
``from x import y``, relative imports, and ``from package import submodule`` (an edge to the
submodule). Imports under ``if TYPE_CHECKING:`` never run, so they cannot close a cycle;
they still count for the layers. ``importlib.import_module`` with a computed name (the lazy
command modules of ``cli/__init__``, the lazy names of ``runlab/__init__``) is how runlab
loads modules on demand, and is not an import statement: it is not checked here.

Each exception is an entry of an allow-list below, keyed by module-qualified names, with its
reason. An entry that is no longer needed fails the test too, so the lists only shrink.

``python tests/test_architecture.py [SRC/runlab]`` prints the counts (cycles, upward imports,
function-level imports, long functions) for the source tree given.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "runlab"
MAX_LINES = 80

# Layers, lowest first: a module may import its own layer and those below, never above.
# A module belongs to the layer of its longest matching prefix.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("leaves", ("runlab.status", "runlab.errors", "runlab.logs")),
    ("record", ("runlab.record",)),
    ("sweep", ("runlab.sweep",)),
    ("results", ("runlab.results",)),
    # The public facade (`runlab.launch`, `runlab.Reader`...) and the environment checks
    # (doctor reads record's view of a distributed job, and checks SLURM and the logs):
    # above the library layers, below the command line that presents them.
    ("api", ("runlab", "runlab.doctor")),
    ("cli", ("runlab.cli", "runlab.__main__")),
)

# ---------------------------------------------------------------- allow-lists
# Lead: shrink these as the rewrites of issue 18 land; each entry must still be needed.

_POLARS = (
    "results.reader and results.report load polars at their top (about 0.5 s): imported when "
    "runs are read, so that `runlab ls --help`, `show --help`, `status --help` and "
    "`report --help` stay light"
)

# Import cycles that may remain, each as the exact set of modules in the cycle (a strongly
# connected component of the module graph).
ALLOWED_CYCLES: dict[frozenset[str], str] = {}

# Upward imports that may remain: "importer -> imported".
ALLOWED_UPWARD: dict[str, str] = {}

# Imports of runlab's own modules inside a function: "module.function -> imported module".
ALLOWED_FUNCTION_IMPORTS: dict[str, str] = {
    "runlab.cli.report._report -> runlab.results.report": _POLARS,
    "runlab.cli.results._reader -> runlab.results.reader": _POLARS,
    "runlab.cli.results._record -> runlab.results.reader": _POLARS,
    "runlab.cli.serve._serve -> runlab.results.serve": _POLARS,
}

# Functions over MAX_LINES lines: "module.Class.function".
ALLOWED_LONG: dict[str, str] = {}

# Instance attributes first set outside __init__: "module.Class.attribute".
ALLOWED_LATE_ATTRIBUTES: dict[str, str] = {}


# ---------------------------------------------------------------- reading the source
@dataclass(frozen=True)
class Import:
    """One import of a runlab module by another, where it stands in the importer."""

    importer: str  # module name
    imported: str  # module name
    line: int
    function: str | None  # qualified name of the enclosing function, if any
    type_checking: bool  # under `if TYPE_CHECKING:`

    @property
    def where(self) -> str:
        return f"{_path(self.importer)}:{self.line}"


@dataclass(frozen=True)
class Function:
    qualname: str  # module.Class.function
    module: str
    line: int
    lines: int


def _modules(package: Path) -> dict[str, Path]:
    """Module name -> file, for every ``.py`` file of the package."""
    found: dict[str, Path] = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _path(module: str) -> str:
    return _MODULE_FILES.get(module, module)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(
    node: ast.AST, scope: list[str], function: str | None, guarded: bool
) -> Iterator[tuple[ast.AST, str | None, bool, list[str]]]:
    """Every node under ``node`` with its enclosing function (qualified), whether it is under
    ``if TYPE_CHECKING:``, and its scope (classes and functions around it)."""
    for child in ast.iter_child_nodes(node):
        yield child, function, guarded, scope
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            inner = [*scope, child.name]
            yield from _walk(child, inner, ".".join(inner), guarded)
        elif isinstance(child, ast.ClassDef):
            yield from _walk(child, [*scope, child.name], function, guarded)
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.body:
                yield stmt, function, True, scope
                yield from _walk(stmt, scope, function, True)
            for stmt in child.orelse:
                yield stmt, function, guarded, scope
                yield from _walk(stmt, scope, function, guarded)
        else:
            yield from _walk(child, scope, function, guarded)


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> set[str]:
    """The runlab modules an import statement in ``module`` loads (the deepest that exist)."""
    if isinstance(node, ast.Import):
        names = {alias.name for alias in node.names}
    else:
        if node.level:
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            source = ".".join([*base, *([node.module] if node.module else [])])
        else:
            source = node.module or ""
        names = set()
        for alias in node.names:
            submodule = f"{source}.{alias.name}"
            names.add(submodule if submodule in _MODULE_FILES else source)
    found = set()
    for name in sorted(names):
        while name and name not in _MODULE_FILES:  # `import runlab.x.y` as the deepest module
            name = name.rpartition(".")[0]
        if name:
            found.add(name)
    return found


def scan(package: Path) -> tuple[list[Import], list[Function]]:
    """Every import between runlab's modules, and every function with its length."""
    modules = _modules(package)
    _MODULE_FILES.clear()
    _MODULE_FILES.update({m: str(p.relative_to(package.parent.parent)) for m, p in modules.items()})
    imports: list[Import] = []
    functions: list[Function] = []
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        for node, function, guarded, scope in _walk(tree, [], None, False):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in _targets(node, module, is_package):
                    if target != module:
                        imports.append(Import(module, target, node.lineno, function, guarded))
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                qualname = ".".join([module, *scope, node.name])
                functions.append(Function(qualname, module, node.lineno, length))
    return imports, functions


_MODULE_FILES: dict[str, str] = {}


# ---------------------------------------------------------------- the rules
def layer(module: str) -> int:
    """The rank of ``module``'s layer (the longest matching prefix wins)."""
    best, rank = -1, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), index
    if rank < 0:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in {__file__}")
    return rank


def cycles(imports: list[Import]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm) of the
    graph of the imports that run (``TYPE_CHECKING`` ones left out)."""
    graph: dict[str, set[str]] = {}
    for imp in imports:
        if not imp.type_checking:
            graph.setdefault(imp.importer, set()).add(imp.imported)
            graph.setdefault(imp.imported, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def cycle_edges(component: frozenset[str], imports: list[Import]) -> list[Import]:
    """The imports between the modules of one cycle, where to look to break it."""
    return sorted(
        (
            i
            for i in imports
            if i.importer in component and i.imported in component and not i.type_checking
        ),
        key=lambda i: (i.importer, i.line),
    )


def upward(imports: list[Import]) -> list[Import]:
    return [i for i in imports if layer(i.imported) > layer(i.importer)]


def function_imports(imports: list[Import]) -> list[Import]:
    return [i for i in imports if i.function is not None]


def function_key(imp: Import) -> str:
    return f"{imp.importer}.{imp.function} -> {imp.imported}"


def upward_key(imp: Import) -> str:
    return f"{imp.importer} -> {imp.imported}"


def long_functions(functions: list[Function]) -> list[Function]:
    return [f for f in functions if f.lines > MAX_LINES]


def _set_name(component: frozenset[str]) -> str:
    return "frozenset({" + ", ".join(f'"{m}"' for m in sorted(component)) + "})"


def _check(
    found: dict[str, list[str]], allowed: dict[str, str], what: str, fix: str, stale: str
) -> None:
    """Fail with one line per violation not allowed and per allowed entry not needed."""
    problems = [
        f"{key}: {what} ({'; '.join(details)}): {fix}"
        for key, details in sorted(found.items())
        if key not in allowed
    ]
    problems += [
        f"{key!r} is allowed in {stale} but {what} no longer: remove the entry"
        for key in sorted(allowed)
        if key not in found
    ]
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


# ---------------------------------------------------------------- the tests
@pytest.fixture(scope="module")
def source() -> tuple[list[Import], list[Function]]:
    return scan(PACKAGE)


def test_scan_sees_every_kind_of_import(tmp_path: Path) -> None:
    """The scanner itself: top-level, in-function, relative, `from package import submodule`
    and TYPE_CHECKING imports all become edges, so the rules below cannot pass by blindness."""
    pkg = tmp_path / "runlab"
    (pkg / "record").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "status.py").write_text("")
    (pkg / "record" / "__init__.py").write_text("")
    (pkg / "record" / "a.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "import runlab.status\n"
        "from . import b\n"
        "if TYPE_CHECKING:\n"
        "    from runlab.record.c import C\n"
        "class K:\n"
        "    def f(self):\n"
        "        from ..status import x\n"
        "        from runlab.record import c\n"
    )
    (pkg / "record" / "b.py").write_text("def g():\n" + "    x = 1\n" * MAX_LINES)
    (pkg / "record" / "c.py").write_text("import runlab.record.a\n")
    try:
        imports, functions = scan(pkg)
        edges = {(i.importer, i.imported, i.function, i.type_checking) for i in imports}
        assert edges == {
            ("runlab.record.a", "runlab.status", None, False),
            ("runlab.record.a", "runlab.record.b", None, False),
            ("runlab.record.a", "runlab.record.c", None, True),
            ("runlab.record.a", "runlab.status", "K.f", False),
            ("runlab.record.a", "runlab.record.c", "K.f", False),
            ("runlab.record.c", "runlab.record.a", None, False),
        }
        assert cycles(imports) == [frozenset({"runlab.record.a", "runlab.record.c"})]
        assert [f.qualname for f in long_functions(functions)] == ["runlab.record.b.g"]
    finally:
        scan(PACKAGE)  # the module map back to the real package


def test_stale_allow_list_entries_fail() -> None:
    """An allowed violation that is gone fails, so that the allow-lists only shrink."""
    _check({"a -> b": ["x.py:1"]}, {"a -> b": "why"}, "imports", "fix", "ALLOWED")
    with pytest.raises(pytest.fail.Exception, match="'a -> b' is allowed in ALLOWED but"):
        _check({}, {"a -> b": "why"}, "imports", "fix", "ALLOWED")
    with pytest.raises(pytest.fail.Exception, match=re.escape("c -> d: imports (x.py:2): fix")):
        _check({"c -> d": ["x.py:2"]}, {}, "imports", "fix", "ALLOWED")


def test_no_import_cycles(source: tuple[list[Import], list[Function]]) -> None:
    imports, _ = source
    found = {c: cycle_edges(c, imports) for c in cycles(imports)}
    problems = [
        f"import cycle among {_set_name(c)}: break it by moving what both sides share into "
        "the lower module or a new one, so that imports go one way; its imports: "
        + "; ".join(f"{i.where} {i.importer} -> {i.imported}" for i in edges)
        for c, edges in sorted(found.items(), key=lambda kv: sorted(kv[0]))
        if c not in ALLOWED_CYCLES
    ]
    problems += [
        f"{_set_name(c)} is allowed in ALLOWED_CYCLES but is no longer a cycle "
        f"(now: {', '.join(_set_name(f) for f in found if f & c) or 'none'}): "
        "remove or update the entry"
        for c in ALLOWED_CYCLES
        if c not in found
    ]
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def test_no_upward_imports(source: tuple[list[Import], list[Function]]) -> None:
    imports, _ = source
    found: dict[str, list[str]] = {}
    for imp in upward(imports):
        found.setdefault(upward_key(imp), []).append(imp.where)
    order = " <- ".join(name for name, _ in LAYERS)
    _check(
        found,
        ALLOWED_UPWARD,
        f"imports upward (layers: {order})",
        "move what it needs down to its own layer or below",
        "ALLOWED_UPWARD",
    )


def test_no_function_level_imports_of_runlab(
    source: tuple[list[Import], list[Function]],
) -> None:
    imports, _ = source
    found: dict[str, list[str]] = {}
    for imp in function_imports(imports):
        found.setdefault(function_key(imp), []).append(imp.where)
    _check(
        found,
        ALLOWED_FUNCTION_IMPORTS,
        "imports a runlab module inside a function",
        "import it at the module top (only heavy third-party packages load lazily)",
        "ALLOWED_FUNCTION_IMPORTS",
    )


def test_no_long_functions(source: tuple[list[Import], list[Function]]) -> None:
    _, functions = source
    found = {
        f.qualname: [f"{_path(f.module)}:{f.line}, {f.lines} lines"]
        for f in long_functions(functions)
    }
    _check(
        found,
        ALLOWED_LONG,
        f"is over {MAX_LINES} lines",
        "split it into functions of one job each",
        "ALLOWED_LONG",
    )


_SETUP = ("__init__", "__post_init__", "__setstate__", "__new__")


def _self_attributes(targets: list[ast.expr]) -> Iterator[str]:
    """The names ``self.NAME`` that assignment targets bind (``self.a, self.b = ...``; not
    ``self.a.b = ...``, which changes the object in ``self.a``)."""
    for target in targets:
        if isinstance(target, ast.Tuple | ast.List):
            yield from _self_attributes(list(target.elts))
        elif isinstance(target, ast.Starred):
            yield from _self_attributes([target.value])
        elif (
            isinstance(target, ast.Attribute)
            and isinstance(target.value, ast.Name)
            and target.value.id == "self"
        ):
            yield target.attr


def late_attributes(package: Path) -> dict[str, list[str]]:
    """``module.Class.attr`` -> where: the attributes of ``self`` first assigned in a method
    other than ``__init__`` (``__post_init__``, ``__setstate__``), and declared nowhere in the
    class body."""
    found: dict[str, list[str]] = {}
    for module, path in _modules(package).items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
            declared = {
                stmt.target.id
                for stmt in cls.body
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
            }
            late: dict[str, int] = {}
            for method in cls.body:
                if not isinstance(method, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                for node in ast.walk(method):
                    if isinstance(node, ast.Assign):
                        targets = node.targets
                    elif isinstance(node, ast.AnnAssign | ast.AugAssign):
                        targets = [node.target]
                    else:
                        continue
                    for attr in _self_attributes(targets):
                        if method.name in _SETUP:
                            declared.add(attr)
                        else:
                            late.setdefault(attr, node.lineno)
            for attr, line in sorted(late.items()):
                if attr not in declared:
                    where = f"{path.relative_to(package.parent.parent)}:{line}"
                    found.setdefault(f"{module}.{cls.name}.{attr}", []).append(where)
    return found


def test_no_scheduler_is_named_outside_its_backend() -> None:
    """Outside ``sweep/backends/``, no code names a scheduler (``"slurm"``, ``"sge"``,
    ``"local"``): commands go through the backend protocol, so a new one is one file."""
    pattern = re.compile(r"[\"'](slurm|sge|local)[\"']")
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if "backends" not in path.relative_to(PACKAGE).parts
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert not found, "\n".join(found)


def test_late_attributes_are_seen(tmp_path: Path) -> None:
    """The attribute rule itself: set in ``__init__`` or declared in the body is fine; set
    first in another method is found, wherever that method stands in the class."""
    pkg = tmp_path / "runlab"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "m.py").write_text(
        "class A:\n"
        "    x: int\n"
        "    def go(self):\n"
        "        self.x = self.y = self.z = 1\n"
        "        self.w.v, (self.u, _) = 1, (2, 3)\n"
        "    def __init__(self):\n"
        "        self.y = 0\n"
    )
    assert set(late_attributes(pkg)) == {"runlab.m.A.z", "runlab.m.A.u"}


def test_state_is_set_in_init() -> None:
    _check(
        late_attributes(PACKAGE),
        ALLOWED_LATE_ATTRIBUTES,
        "is first set outside __init__",
        "set it in __init__ (None or empty until it is known), so that a class's state is "
        "read in one place",
        "ALLOWED_LATE_ATTRIBUTES",
    )


def test_allow_lists_give_reasons() -> None:
    for name, allowed in (
        ("ALLOWED_CYCLES", ALLOWED_CYCLES),
        ("ALLOWED_UPWARD", ALLOWED_UPWARD),
        ("ALLOWED_FUNCTION_IMPORTS", ALLOWED_FUNCTION_IMPORTS),
        ("ALLOWED_LONG", ALLOWED_LONG),
        ("ALLOWED_LATE_ATTRIBUTES", ALLOWED_LATE_ATTRIBUTES),
    ):
        for key, reason in allowed.items():
            assert reason.strip(), f"{name}[{key!r}] gives no reason: say why it is needed"


# ---------------------------------------------------------------- the counts
def summary(package: Path) -> str:
    """The counts that issue 18 asks for, as text."""
    imports, functions = scan(package)
    lines = []
    found = cycles(imports)
    lines.append(f"import cycles: {len(found)}")
    for component in found:
        lines.append(f"  {_set_name(component)}")
        for imp in cycle_edges(component, imports):
            place = f" in {imp.function}()" if imp.function else ""
            lines.append(f"    {imp.where} {imp.importer} -> {imp.imported}{place}")
    up = upward(imports)
    lines.append(f"upward imports: {len(up)}")
    lines += [f"  {i.where} {upward_key(i)}" for i in up]
    inner = function_imports(imports)
    statements = {(i.importer, i.line) for i in inner}
    lines.append(
        f"function-level imports of runlab modules: {len(statements)} statements, "
        f"{len(inner)} module edges, {len({function_key(i) for i in inner})} function->module"
    )
    lines += [f"  {i.where} {function_key(i)}" for i in inner]
    long = sorted(long_functions(functions), key=lambda f: -f.lines)
    lines.append(f"functions over {MAX_LINES} lines: {len(long)}")
    lines += [f"  {f.lines:4d} {f.qualname} ({_path(f.module)}:{f.line})" for f in long]
    late = late_attributes(package)
    lines.append(f"instance attributes first set outside __init__: {len(late)}")
    lines += [f"  {key} ({', '.join(where)})" for key, where in sorted(late.items())]
    return "\n".join(lines)


if __name__ == "__main__":
    print(summary(Path(sys.argv[1]) if len(sys.argv) > 1 else PACKAGE))
