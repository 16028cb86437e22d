"""Helpers shared by the test suite: load config files like the CLI does, run entry points as subprocesses."""

import os
import subprocess

from core.config import load_config_file

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


load_config = load_config_file  # `--config=path[:arg]` + `--config.a.b=v` overrides, as the CLI does


def run_module(command, env=None, timeout=600):
  out = subprocess.run(
    command, cwd=REPO, env=env or {**os.environ, "PYTHONPATH": REPO}, capture_output=True, text=True, timeout=timeout
  )
  assert out.returncode == 0, out.stderr[-3000:]
  return out
