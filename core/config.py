"""The training loop's config schema, validation helpers and config-file loading (ml_collections + stdlib only).

Every entry point is `python -m <package>.<entry> --config=configs/<method>/<name>.py[:arg] --workdir=DIR`
(ARCHITECTURE.md rule 4; `core.main.run_main`). Configs are ml_collections ConfigDicts, locked at load so a misspelt
override fails; each entry point validates its config with the `check_*` helpers below *before* any work starts, and
every failure is a one-line `ConfigError` naming the field and the allowed values. Numbers must be finite (nan and
inf fail every numeric check) and fit float32, the dtype the loop computes in. Config files import this module (for
`parse_arg`, `ConfigError` and the loop's `default_config`), so it must not import jax.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import tempfile
from collections.abc import Iterable
from typing import Any

import ml_collections

OPTIMIZERS = ("adamw", "adam", "sgd", "lamb")
SCHEDULES = ("constant", "warmup_linear", "warmup_cosine", "warmup_times_linear")
FLOAT32_MAX = 3.4028234663852886e38
INT32_MAX = 2**31 - 1  # the loop's step counter and seeds are int32


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


def check_number(config, field: str) -> float:
  """The field's value, which must be a finite int or float within float32's range (not a bool, nan or inf)."""
  value = get(config, field)
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    raise ConfigError(f"{field}: must be a number, got {value!r}")
  if not math.isfinite(value) or abs(value) > FLOAT32_MAX:
    raise ConfigError(f"{field}: must be a finite number within float32 range, got {value!r}")
  return value


def check_positive(config, field: str, *, allow_zero: bool = False) -> None:
  value = check_number(config, field)
  if value < 0 or (value == 0 and not allow_zero):
    bound = ">= 0" if allow_zero else "> 0"
    raise ConfigError(f"{field}: must be {bound}, got {value!r}")


def check_int(config, field: str, *, minimum: int | None = None, maximum: int | None = None) -> None:
  value = get(config, field)
  if isinstance(value, bool) or not isinstance(value, int):
    raise ConfigError(f"{field}: must be an integer, got {value!r}")
  if minimum is not None and value < minimum:
    raise ConfigError(f"{field}: must be >= {minimum}, got {value}")
  if maximum is not None and value > maximum:
    raise ConfigError(f"{field}: must be <= {maximum}, got {value}")


def check_range(config, field: str, low: float, high: float, *, inclusive: bool = False) -> None:
  """Checks low < value < high (or low <= value <= high when inclusive)."""
  check_interval(config, field, f"[{low}, {high}]" if inclusive else f"({low}, {high})")


def check_interval(config, field: str, interval: str) -> None:
  """Checks the value lies in `interval`, written as in the error message: '(0, 1]', '[0.0, 1.0)', ..."""
  match = re.fullmatch(r"([\[(])\s*([^,]+),\s*([^\])]+)([\])])", interval)
  if not match:
    raise ValueError(f"check_interval: cannot parse interval {interval!r}")
  opening, low, high, closing = match.group(1), float(match.group(2)), float(match.group(3)), match.group(4)
  value = check_number(config, field)
  above = value >= low if opening == "[" else value > low
  below = value <= high if closing == "]" else value < high
  if not (above and below):
    raise ConfigError(f"{field}: must be in {interval}, got {value!r}")


def check_choice(config, field: str, allowed: Iterable[Any]) -> None:
  value = get(config, field)
  allowed = list(allowed)
  if isinstance(value, bool) or value not in allowed:  # a bool is no choice: True == 1 would match 1
    raise ConfigError(f"{field}: unknown value {value!r} (allowed: {', '.join(map(str, allowed))})")


def check_bool(config, field: str) -> None:
  value = get(config, field)
  if not isinstance(value, bool):
    raise ConfigError(f"{field}: must be true or false, got {value!r}")


def check_divisible(config, field: str, divisor: int, why: str) -> None:
  value = get(config, field)
  if value % divisor:
    raise ConfigError(f"{field}: {value} is not divisible by {divisor} ({why})")


def check_file(config, field: str, hint: str = "") -> None:
  path = get(config, field)
  if not path or not os.path.isfile(os.path.expanduser(str(path))):
    extra = f"; {hint}" if hint else ""
    raise ConfigError(f"{field}: file not found: {path!r}{extra}")


def check_dir(config, field: str) -> None:
  """'' (unset) or an existing directory."""
  path = get(config, field)
  if not isinstance(path, str) or (path and not os.path.isdir(os.path.expanduser(path))):
    raise ConfigError(f"{field}: not a directory: {path!r}")


def check_data_dir(config, field: str) -> None:
  """'' (unset), a remote location (`gs://...`, any `scheme://`: checked when opened) or an existing directory."""
  path = get(config, field)
  if isinstance(path, str) and "://" in path:
    return
  check_dir(config, field)


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
  """Parses the `:a=1,b=x` suffix of `--config=path.py:a=1,b=x` into values typed like the defaults (big_vision).

  A bare word (`:tiny`) sets the first default's key. Unknown keys and unparsable values raise a one-line ConfigError.
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
      if raw.lower() not in ("1", "true", "yes", "0", "false", "no"):
        raise ConfigError(f"config arg {key}: {raw!r} is not a bool (allowed: true, false)")
      value: Any = raw.lower() in ("1", "true", "yes")
    elif defaults[key] is None or kind is str:
      value = raw
    else:
      try:
        value = kind(raw)
      except ValueError:
        raise ConfigError(f"config arg {key}: {raw!r} is not a {kind.__name__}") from None
    result[key] = value
  return result


def load_config_file(path: str, arg: str | None = None, overrides: dict[str, Any] | None = None):
  """What `--config=path[:arg] --config.a.b=v` gives, for scripts and tests: `get_config(arg)`, locked, overridden."""
  if not os.path.isfile(path):
    raise ConfigError(f"--config: file not found: {path!r}")
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


def default_config() -> ml_collections.ConfigDict:
  """The loop's sections (`seed`, `train`, `optimizer`, `mesh`; read by `core.train`) with their defaults."""
  return ml_collections.ConfigDict(
    dict(
      seed=0,
      train=dict(
        batch_size=32,
        total_steps=1000,
        grad_accum_steps=1,
        log_every=50,
        eval_every=0,  # 0 = no evaluation
        eval_batches=8,
        checkpoint_every=500,
        keep_checkpoints=3,
        async_checkpoints=True,
        progress=True,
        inject_nan_at_step=-1,  # test hook for the NaN guard; -1 = off
      ),
      optimizer=default_optimizer().to_dict(),
      mesh=dict(data=-1, model=1, rules=()),  # data -1 = all devices left over by `model`
    )
  )


def default_optimizer() -> ml_collections.ConfigDict:
  """The `optimizer` section (`core.optim.make_optimizer`) with its defaults."""
  return ml_collections.ConfigDict(
    dict(
      name="adamw",
      peak_lr=1e-4,
      schedule="warmup_linear",
      warmup_steps=0,
      end_lr_fraction=0.0,
      weight_decay=0.01,
      b1=0.9,
      b2=0.999,
      eps=1e-6,
      clip_norm=1.0,  # 0 = no clipping
    )
  )


def validate_loop(config: ml_collections.ConfigDict) -> None:
  """One-line ConfigErrors for the sections the loop reads (`core.train.validate` adds the device-count checks)."""
  check_int(config, "seed", minimum=0, maximum=INT32_MAX)
  check_int(config, "train.batch_size", minimum=1)
  check_int(config, "train.total_steps", minimum=1, maximum=INT32_MAX)
  check_int(config, "train.grad_accum_steps", minimum=1)
  check_divisible(
    config,
    "train.batch_size",
    config.train.grad_accum_steps,
    "train.grad_accum_steps splits each batch into equal micro-batches",
  )
  check_int(config, "train.log_every", minimum=1)
  check_int(config, "train.eval_every", minimum=0)
  check_int(config, "train.eval_batches", minimum=1)
  check_int(config, "train.checkpoint_every", minimum=1)
  check_int(config, "train.keep_checkpoints", minimum=1)
  check_bool(config, "train.async_checkpoints")
  check_bool(config, "train.progress")
  check_int(config, "train.inject_nan_at_step", minimum=-1)
  validate_optimizer(config)
  check_int(config, "mesh.model", minimum=1)
  check_int(config, "mesh.data", minimum=-1)
  if config.mesh.data == 0:
    raise ConfigError("mesh.data: must be >= 1 or -1 (all devices), got 0")
  for rule in get(config, "mesh.rules"):
    ok = isinstance(rule, (tuple, list)) and len(rule) == 2 and isinstance(rule[0], str)
    if not ok or not all(axis is None or isinstance(axis, str) for axis in rule[1]):
      raise ConfigError(f"mesh.rules: {rule!r} is not a (regex, (axis name or None, ...)) pair")
    try:
      re.compile(rule[0])
    except re.error as e:
      raise ConfigError(f"mesh.rules: bad regex {rule[0]!r} ({e})") from None


def validate_optimizer(config: ml_collections.ConfigDict, prefix: str = "optimizer") -> None:
  """One-line ConfigErrors for an optimizer section."""
  check_choice(config, f"{prefix}.name", OPTIMIZERS)
  check_choice(config, f"{prefix}.schedule", SCHEDULES)
  check_positive(config, f"{prefix}.peak_lr")
  check_int(config, f"{prefix}.warmup_steps", minimum=0, maximum=INT32_MAX)
  check_positive(config, f"{prefix}.weight_decay", allow_zero=True)
  check_positive(config, f"{prefix}.clip_norm", allow_zero=True)
  check_positive(config, f"{prefix}.eps")
  check_range(config, f"{prefix}.end_lr_fraction", 0.0, 1.0, inclusive=True)
  for beta in ("b1", "b2"):
    check_range(config, f"{prefix}.{beta}", 0.0, 1.0, inclusive=False)
