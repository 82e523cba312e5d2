"""The layout drawn from the code's own imports (docs/ARCHITECTURE.md describes it in words).

Every module's imports are read with `ast` (function-level and TYPE_CHECKING imports too: a
lazy import running upward is still an arrow upward). Three rules:

- rooms sit on floors; an import may point to its own room or to a lower floor, never up
  (nor sideways to another room of the same floor);
- no import cycle spans two rooms;
- translators import nothing from `gateway` but `gateway.issues`.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("gateway", "translators", "mappings", "schemas")

# Floors, lowest first. A room is a top-level package, a `gateway` sub-package or a
# `gateway` top-level module.
FLOORS: tuple[frozenset[str], ...] = (
    frozenset({"gateway", "gateway.issues"}),  # the ground floor: the one Issue type
    frozenset({"gateway.errors"}),  # the one exception root
    frozenset({"gateway.ids"}),  # the one dataset-id rule
    frozenset({"gateway.config", "gateway.jsonio"}),
    frozenset({"mappings", "schemas"}),  # reference data: mapping tables and their loader, JSON Schemas
    frozenset({"gateway.ontology"}),  # the HPO loaded once per process, for filters and validation alike
    frozenset({"gateway.store", "gateway.variants"}),  # storage: metadata store, VCF ingest and variant store
    frozenset({"translators"}),  # pure functions over documents
    frozenset({"gateway.security"}),  # tokens, callers, policy, budget, audit, pseudonyms
    frozenset({"gateway.beacon"}),  # Beacon engine and its access decisions
    frozenset({"gateway.validation"}),
    frozenset({"gateway.services"}),  # ingest pipelines shared by HTTP and CLI
    frozenset({"gateway.demo", "gateway.network", "gateway.conformance"}),
    frozenset({"gateway.api", "gateway.export_cli"}),  # HTTP only; the export subcommands of the CLI
    frozenset({"app"}),  # the composition root
    frozenset({"gateway.cli"}),  # the command line, wired by app.create_app
)
FLOOR = {room: level for level, rooms in enumerate(FLOORS) for room in rooms}

# Arrows the current code still draws against the rules, each with the work that removes it.
KNOWN_UPWARD: set[tuple[str, str]] = set()
TRANSLATOR_ALLOWED = {"gateway.issues"}
KNOWN_TRANSLATOR_IMPORTS: set[str] = set()


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    found = {"app": REPO / "app.py"}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            if "__pycache__" not in path.parts and "migrations" not in path.parts:
                found[_module_name(path)] = path
    return found


MODULES = _modules()


def _imported(name: str, path: Path) -> set[str]:
    """The project modules `name` imports (an imported name that is a module counts as that module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            candidates = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        for candidate in candidates:
            # `import gateway.beacon.engine` names the module; keep the longest known prefix.
            while candidate and candidate not in MODULES:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name:
                targets.add(candidate)
    return targets


IMPORTS = {name: _imported(name, path) for name, path in MODULES.items()}


def room_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "gateway" and len(parts) > 1:
        return f"gateway.{parts[1]}"
    return parts[0]


def test_every_room_has_a_floor():
    rooms = {room_of(m) for m in MODULES}
    assert rooms <= set(FLOOR), f"rooms without a floor in FLOORS: {sorted(rooms - set(FLOOR))}"


def test_arrows_point_down():
    wrong = set()
    for source, targets in IMPORTS.items():
        for target in targets:
            a, b = room_of(source), room_of(target)
            if a != b and FLOOR[a] <= FLOOR[b]:
                wrong.add((source, target))
    assert wrong - KNOWN_UPWARD == set(), "imports that point up or sideways:\n" + "\n".join(
        f"  {s} -> {t}" for s, t in sorted(wrong - KNOWN_UPWARD)
    )
    assert KNOWN_UPWARD - wrong == set(), f"no longer drawn, drop from KNOWN_UPWARD: {sorted(KNOWN_UPWARD - wrong)}"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return components


def test_no_cycle_spans_two_rooms():
    # The arrows still listed in KNOWN_UPWARD are reported by test_arrows_point_down, not twice.
    graph = {s: {t for t in targets if (s, t) not in KNOWN_UPWARD} for s, targets in IMPORTS.items()}
    spanning = [c for c in _cycles(graph) if len({room_of(m) for m in c}) > 1]
    assert not spanning, f"import cycles across rooms: {spanning}"


def test_translators_import_only_the_issue_type_from_gateway():
    reached = {
        target
        for source, targets in IMPORTS.items()
        if room_of(source) == "translators"
        for target in targets
        if target.startswith("gateway")
    }
    assert reached - TRANSLATOR_ALLOWED - KNOWN_TRANSLATOR_IMPORTS == set()


def test_the_rules_see_real_imports():
    # The reader itself: a known downward arrow and a known same-room arrow are found.
    assert "gateway.issues" in IMPORTS["gateway.jsonio"]
    assert "gateway.beacon.response" in IMPORTS["gateway.beacon.engine"]
    assert room_of("gateway.beacon.engine") == "gateway.beacon" and room_of("app") == "app"


def test_every_gateway_exception_has_the_one_root():
    import importlib
    import inspect

    from gateway.errors import GatewayError

    rootless = []
    for name in sorted(MODULES):
        if room_of(name) not in {"app", "translators", "mappings", "schemas"} and not name.endswith("__main__"):
            module = importlib.import_module(name)
            for _, cls in inspect.getmembers(module, inspect.isclass):
                if cls.__module__ == name and issubclass(cls, BaseException) and not issubclass(cls, GatewayError):
                    rootless.append(f"{name}.{cls.__qualname__}")
    assert rootless == [], f"exceptions outside GatewayError: {rootless}"
