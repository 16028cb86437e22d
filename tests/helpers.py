"""Helpers shared by the test suite: load config files like the CLI does, run entry points as subprocesses, compile
run-once functions cheaply."""

import os
import subprocess

from core.config import load_config_file

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# XLA's backend optimisations roughly double a CPU compile; a program that runs once on tiny shapes does not repay them.
UNOPTIMISED = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


load_config = load_config_file  # `--config=path[:arg]` + `--config.a.b=v` overrides, as the CLI does


def run_module(command, env=None, timeout=600):
  out = subprocess.run(
    command, cwd=REPO, env=env or {**os.environ, "PYTHONPATH": REPO}, capture_output=True, text=True, timeout=timeout
  )
  assert out.returncode == 0, out.stderr[-3000:]
  return out


def jit_once(fn, *args):
  """`jax.jit(fn)(*args)` compiled without backend optimisations (half the compile time of a tiny graph on CPU; the
  same operations, so results agree to float rounding). For a function a test calls once; a function called on many
  batches (a train step) should keep `jax.jit`."""
  import jax  # here, so that loading configs through this module stays jax-free

  return jax.jit(fn).lower(*args).compile(UNOPTIMISED)(*args)
