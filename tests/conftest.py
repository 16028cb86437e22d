"""Test-session settings: one JAX persistent compilation cache per pytest run, shared by the tests and by the entry
points they start as subprocesses.

Entry points run as subprocesses (command lines, reruns after SIGKILL, multi-process jobs) compile the programs that
other runs of the same config compiled before; with the cache they load them instead (a second 5-step
`core.pretrain_mlm` run: 27 -> 12 CPU-s). The directory is new and empty for every run, so `make test` times a fresh
clone, and it is deleted at the end. pytest-xdist workers inherit it from the controller's environment.
"""

import os
import shutil
import sys
import tempfile

import pytest

_CACHE_DIR = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
  if hasattr(config, "workerinput"):  # an xdist worker: the controller's environment already names the cache
    return
  cache_dir = tempfile.mkdtemp(prefix="jax-test-cache-")
  config.stash[_CACHE_DIR] = cache_dir
  os.environ["JAX_COMPILATION_CACHE_DIR"] = cache_dir
  os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"  # test programs compile in under jax's default 1 s
  if "jax" in sys.modules:  # imported before this hook (a plugin): the variables above came too late for this process
    import jax

    jax.config.update("jax_compilation_cache_dir", cache_dir)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def pytest_unconfigure(config: pytest.Config) -> None:
  cache_dir = config.stash.get(_CACHE_DIR, None)
  if cache_dir:
    shutil.rmtree(cache_dir, ignore_errors=True)
