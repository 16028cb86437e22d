"""ARCHITECTURE.md rules 1-2, checked by parsing imports: methods never import siblings; core imports no method."""

import ast
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
METHODS = ("realm_jax", "electra_jax", "reformer_jax", "lora_jax")


def imported_roots(path: pathlib.Path) -> set[str]:
  tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
  roots = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      roots.update(alias.name.split(".")[0] for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
      roots.add(node.module.split(".")[0])
    elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
      if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
        roots.add(node.args[0].value.split(".")[0])
  return roots


@pytest.mark.parametrize("package", ("core",) + METHODS)
def test_package_imports_respect_the_rules(package):
  files = sorted((REPO / package).rglob("*.py"))
  assert files, f"{package} has no Python files"
  forbidden = set(METHODS) - {package}
  offenders = {str(f.relative_to(REPO)): sorted(imported_roots(f) & forbidden) for f in files}
  offenders = {f: names for f, names in offenders.items() if names}
  assert not offenders, f"{package} imports forbidden packages: {offenders}"


def test_the_checker_sees_violations(tmp_path):
  bad = tmp_path / "bad.py"
  bad.write_text(
    "import os\nfrom electra_jax.model import x\nimport importlib\nimportlib.import_module('lora_jax.lora')\n"
  )
  assert {"electra_jax", "lora_jax"} <= imported_roots(bad)
