"""Config validation helpers and the shared absl entry-point wrapper.

Every entry point is `python -m <package>.<entry> --config=configs/<method>/<name>.py[:arg] --workdir=DIR`
(ARCHITECTURE.md rule 4). Configs are ml_collections ConfigDicts, locked at load so a misspelt override fails;
each entry point validates its config with the `check_*` helpers below *before* any work starts, and every
failure is a one-line `ConfigError` naming the field and the allowed values.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import ml_collections


class ConfigError(ValueError):
  """A bad config value. The message is one line: `<field>: <problem> (allowed: ...)`."""


def get(config: ml_collections.ConfigDict, field: str) -> Any:
  """Reads a dotted field (`optimizer.peak_lr`), raising a one-line ConfigError when it is missing."""
  node: Any = config
  for part in field.split("."):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      raise ConfigError(f"{field}: missing from the config")
    node = node[part]
  return node


def check_positive(config, field: str, *, allow_zero: bool = False) -> None:
  value = get(config, field)
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    raise ConfigError(f"{field}: must be a number, got {value!r}")
  if value < 0 or (value == 0 and not allow_zero):
    bound = ">= 0" if allow_zero else "> 0"
    raise ConfigError(f"{field}: must be {bound}, got {value!r}")


def check_int(config, field: str, *, minimum: int | None = None) -> None:
  value = get(config, field)
  if isinstance(value, bool) or not isinstance(value, int):
    raise ConfigError(f"{field}: must be an integer, got {value!r}")
  if minimum is not None and value < minimum:
    raise ConfigError(f"{field}: must be >= {minimum}, got {value}")


def check_range(config, field: str, low: float, high: float, *, inclusive: bool = False) -> None:
  """Checks low < value < high (or low <= value <= high when inclusive)."""
  value = get(config, field)
  ok = (low <= value <= high) if inclusive else (low < value < high)
  if not ok:
    interval = f"[{low}, {high}]" if inclusive else f"({low}, {high})"
    raise ConfigError(f"{field}: must be in {interval}, got {value!r}")


def check_choice(config, field: str, allowed: Iterable[Any]) -> None:
  value = get(config, field)
  allowed = list(allowed)
  if value not in allowed:
    raise ConfigError(f"{field}: unknown value {value!r} (allowed: {', '.join(map(str, allowed))})")


def check_divisible(config, field: str, divisor: int, why: str) -> None:
  value = get(config, field)
  if value % divisor:
    raise ConfigError(f"{field}: {value} is not divisible by {divisor} ({why})")


def check_file(config, field: str, hint: str = "") -> None:
  path = get(config, field)
  if not path or not os.path.isfile(os.path.expanduser(str(path))):
    extra = f"; {hint}" if hint else ""
    raise ConfigError(f"{field}: file not found: {path!r}{extra}")


def check_workdir(workdir: str) -> None:
  """The workdir must be creatable and writable; checked before any work starts."""
  if not workdir:
    raise ConfigError("--workdir: required (a directory for checkpoints and metrics)")
  try:
    os.makedirs(workdir, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=workdir, prefix=".write_test_"):
      pass
  except OSError as e:
    raise ConfigError(f"--workdir: not writable: {workdir!r} ({e.strerror or e})") from None


def parse_arg(arg: str | None, **defaults: Any) -> ml_collections.ConfigDict:
  """Parses the `:a=1,b=x` suffix of `--config=path.py:a=1,b=x` into typed values (big_vision style).

  A bare word (`:tiny`) sets the first default's key. Unknown keys raise a one-line ConfigError.
  """
  result = ml_collections.ConfigDict(defaults)
  if not arg:
    return result
  for i, item in enumerate(arg.split(",")):
    key, sep, raw = item.partition("=")
    if not sep:
      if i != 0 or not defaults:
        raise ConfigError(f"config arg: cannot parse {item!r} (use key=value)")
      key, raw = next(iter(defaults)), item
    if key not in defaults:
      raise ConfigError(f"config arg: unknown key {key!r} (allowed: {', '.join(defaults)})")
    kind = type(defaults[key])
    if kind is bool:
      value: Any = raw.lower() in ("1", "true", "yes")
    elif defaults[key] is None:
      value = raw
    else:
      value = kind(raw)
    result[key] = value
  return result


def load_config_file(path: str, arg: str | None = None, overrides: dict[str, Any] | None = None):
  """What `--config=path[:arg] --config.a.b=v` gives, for scripts and tests: `get_config(arg)`, locked, overridden."""
  import importlib.util

  spec = importlib.util.spec_from_file_location(f"config_{abs(hash(path))}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(arg)
  config.lock()
  for dotted, value in (overrides or {}).items():
    node = config
    *parents, leaf = dotted.split(".")
    for part in parents:
      node = node[part]
    node[leaf] = value
  return config


def run_main(
  train_and_evaluate: Callable[[ml_collections.ConfigDict, str], Any],
  validate: Callable[[ml_collections.ConfigDict], None],
  default_config: str,
) -> None:
  """The shared absl `main`: parses `--config`, `--workdir`, `--multihost`, validates, then runs.

  Every entry point module ends with `if __name__ == "__main__": run_main(...)`. Bad configs exit with status 2 and
  a single line on stderr; nothing in the workdir is touched before validation passes.
  """
  from absl import app, flags
  from ml_collections import config_flags

  config_flags.DEFINE_config_file("config", default_config, "Config file (path.py[:arg]).", lock_config=True)
  flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and results; resumed when present.")
  flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() first (TPU pods, Slurm, k8s).")

  def _main(argv: Sequence[str]) -> None:
    del argv
    flags_ = flags.FLAGS
    if flags_.multihost:
      from core import sharding

      sharding.initialize_multihost()
    try:
      config = flags_.config
      validate(config)
      check_workdir(flags_.workdir)
    except ConfigError as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(2)
    from core.checkpoint import CheckpointError
    from core.train import NonFiniteLossError

    try:
      train_and_evaluate(config, flags_.workdir)
    except ConfigError as e:  # raised while building data/model from a valid-looking config
      print(f"error: {e}", file=sys.stderr)
      sys.exit(2)
    except (CheckpointError, NonFiniteLossError) as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(1)

  def _run_with_one_line_errors(argv: list[str]) -> None:
    try:  # parse once here so a bad override is one line, not absl's traceback or usage text
      flags.FLAGS(argv)
    except flags.Error as e:
      text = " ".join(str(e).split())
      if "ConfigError: " in text:  # raised by the config file's get_config(arg)
        text = text.rsplit("ConfigError: ", 1)[1]
      print(f"error: {text}", file=sys.stderr)
      sys.exit(2)
    except (AttributeError, KeyError, TypeError, ValueError) as e:  # unknown --config.x override
      text = str(e).replace("\\n", " ").replace("\\'", "").replace("'", "")
      print(f"error: config override: unknown field {' '.join(text.split())}", file=sys.stderr)
      sys.exit(2)
    try:
      app.run(_main, argv=argv[:1])  # flags are parsed above; parsing twice would redefine the overrides
    except ConfigError as e:  # raised inside the config file's get_config(arg)
      print(f"error: {e}", file=sys.stderr)
      sys.exit(2)

  _run_with_one_line_errors(sys.argv)
