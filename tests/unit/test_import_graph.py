"""Imports run one way: config -> policy -> launcher -> helpers beside a run
-> backends -> API and CLI, and no module reaches back up or takes part in a
cycle. Read from the sources themselves (function-level imports included),
so a shortcut that works today but ties the layers together fails here."""

import ast
import os

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "src")

# Lowest first. A module may import from its own layer and the ones below it;
# the packages that share a layer stay apart from each other.
LAYERS = [
    ("base", ("ringfence", "ringfence._record", "ringfence._process", "ringfence.errors", "ringfence.events",
              "ringfence.paths", "ringfence.state", "ringfence.mountinfo", "ringfence.printable")),
    ("config", ("ringfence.config",)),
    ("policy", ("ringfence.policy",)),
    ("launcher", ("ringfence.launcher",)),
    ("beside a run", ("ringfence.proxy", "ringfence.isolate", "ringfence.approval")),
    ("backends", ("ringfence.backends",)),
    ("api", ("ringfence.sandbox",)),
    ("reports", ("ringfence.report",)),
    ("cli", ("ringfence.cli",)),
    ("entry point", ("ringfence.__main__",)),
]


def module_names():
    for directory, _dirs, files in os.walk(os.path.join(SRC, "ringfence")):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(directory, name)
            relative = os.path.relpath(path, SRC)[:-3].replace(os.sep, ".")
            module = relative[:-len(".__init__")] if relative.endswith(".__init__") else relative
            yield module, path, name == "__init__.py"


def imports_of(module: str, path: str, is_package: bool) -> set[str]:
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    package = module if is_package else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            submodules = [f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in MODULES]
            # `from . import fds` imports the module fds (its package is
            # already loading); `from . import Policy` takes a name from it.
            found.update(submodules if submodules and len(submodules) == len(node.names) else [target])
            found.update(submodules)
    return {name for name in found if name == "ringfence" or name.startswith("ringfence.")}


MODULES = {name for name, _path, _package in module_names()}


def graph():
    modules = {name: (path, package) for name, path, package in module_names()}
    edges = {}
    for name, (path, package) in modules.items():
        edges[name] = {target for target in imports_of(name, path, package) if target in modules and target != name}
    return edges


def place(module: str):
    best = None
    for index, (_label, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or (prefix != "ringfence" and module.startswith(prefix + ".")):
                if best is None or len(prefix) > len(best[1]):
                    best = (index, prefix)
    assert best is not None, f"{module} belongs to no layer: add it to LAYERS"
    return best


def test_every_import_goes_down_or_sideways_within_a_package():
    wrong = []
    for module, targets in graph().items():
        layer, package = place(module)
        for target in targets:
            target_layer, target_package = place(target)
            if target_layer > layer:
                wrong.append(f"{module} ({LAYERS[layer][0]}) imports {target} ({LAYERS[target_layer][0]})")
            elif target_layer == layer and target_package != package and layer != 0:
                wrong.append(f"{module} imports {target}: {package} and {target_package} stay apart")
    assert wrong == [], "\n".join(sorted(wrong))


def test_no_cycles():
    edges = graph()
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    assert cycles == [], cycles


def test_the_layers_name_real_packages():
    names = set(graph())
    for _label, prefixes in LAYERS:
        for prefix in prefixes:
            assert prefix in names or any(name.startswith(prefix + ".") for name in names), prefix
