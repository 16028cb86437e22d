"""Helpers shared by the test suite: load config files like the CLI does, run entry points as subprocesses."""

import importlib.util
import os
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(path: str, arg: str | None, overrides: dict):
  """`--config=path:arg` plus `--config.a.b=v` overrides, applied to a locked config as the CLI does."""
  spec = importlib.util.spec_from_file_location("test_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(arg)
  config.lock()
  for dotted, value in overrides.items():
    node = config
    *parents, leaf = dotted.split(".")
    for part in parents:
      node = node[part]
    node[leaf] = value
  return config


def run_module(command, env=None, timeout=600):
  out = subprocess.run(
    command, cwd=REPO, env=env or {**os.environ, "PYTHONPATH": REPO}, capture_output=True, text=True, timeout=timeout
  )
  assert out.returncode == 0, out.stderr[-3000:]
  return out
