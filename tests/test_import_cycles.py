"""ARCHITECTURE.md rule 7, checked by parsing imports: no import cycles between the project's modules.

Every `import` and `from ... import` counts, function-local ones too (they hide a cycle rather than remove it), and
`from pkg import name` points at the module `pkg.name` when that is a module, else at `pkg`. A package's `__init__`
that re-exports its submodules is not a cycle with them unless one of them imports a name from the package itself.
"""

import ast
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("core", "electra_jax", "reformer_jax", "realm_jax", "lora_jax", "configs", "benchmarks")


def _module_name(root: pathlib.Path, path: pathlib.Path) -> str:
  parts = path.relative_to(root).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_names(path: pathlib.Path, module: str) -> set[str]:
  """Dotted names a file imports: `a.b` for `import a.b`, `a.b.c` for `from a.b import c` (any depth)."""
  is_package = path.name == "__init__.py"
  names = set()
  for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
    if isinstance(node, ast.Import):
      names.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:  # relative: drop (level - 1) components from this module's package
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join(package + ([node.module] if node.module else []))
      names.update(f"{base}.{alias.name}" for alias in node.names)
  return names


def module_graph(root: pathlib.Path, packages: tuple[str, ...]) -> dict[str, set[str]]:
  """{module: modules it imports} over the .py files of `packages` under `root`; outside imports are dropped."""
  files = {_module_name(root, f): f for package in packages for f in sorted((root / package).rglob("*.py"))}
  graph = {}
  for module, path in files.items():
    targets = set()
    for name in _imported_names(path, module):
      while name and name not in files:  # `from pkg.mod import function` -> pkg.mod
        name = name.rpartition(".")[0]
      if name and name != module:
        targets.add(name)
    graph[module] = targets
  return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """One cycle [a, b, ..., a] per strongly connected component with more than one module (Tarjan's algorithm)."""
  index, low, on_stack, stack, components = {}, {}, set(), [], []

  def visit(v: str) -> None:
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in sorted(graph.get(v, ())):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = []
      while not component or component[-1] != v:
        component.append(stack.pop())
        on_stack.discard(component[-1])
      if len(component) > 1:
        components.append(set(component))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return [_cycle_through(graph, component) for component in components]


def _cycle_through(graph: dict[str, set[str]], component: set[str]) -> list[str]:
  """A shortest path back to the component's first module (breadth-first inside the component)."""
  start = min(component)
  parents, frontier = {start: None}, [start]
  while frontier:
    nxt = []
    for v in frontier:
      for w in sorted(graph[v] & component):
        if w == start:
          path = [v]  # v, its parent, ..., start
          while parents[path[-1]] is not None:
            path.append(parents[path[-1]])
          return path[::-1] + [start]
        if w not in parents:
          parents[w] = v
          nxt.append(w)
    frontier = nxt
  raise AssertionError(f"no cycle through {start} in {sorted(component)}")


def test_no_import_cycles():
  cycles = find_cycles(module_graph(REPO, PACKAGES))
  assert not cycles, "import cycles: " + "; ".join(" -> ".join(cycle) for cycle in cycles)


def test_the_checker_sees_cycles_through_local_and_from_imports(tmp_path):
  pkg = tmp_path / "pkg"
  (pkg / "sub").mkdir(parents=True)
  (pkg / "__init__.py").write_text("")
  (pkg / "sub" / "__init__.py").write_text("")
  (pkg / "a.py").write_text("from pkg import b\nimport os\n")
  (pkg / "b.py").write_text("def f():\n  from pkg.sub.c import g\n  return g\n")
  (pkg / "sub" / "c.py").write_text("from .. import a\n")
  (pkg / "d.py").write_text("import pkg.a\nfrom pkg.sub import c\n")  # imports into the cycle, not part of it
  graph = module_graph(tmp_path, ("pkg",))
  assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.sub.c"} and graph["pkg.sub.c"] == {"pkg.a"}
  assert find_cycles(graph) == [["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]]
  (pkg / "sub" / "c.py").write_text("def g():\n  return 1\n")
  assert find_cycles(module_graph(tmp_path, ("pkg",))) == []
