"""The shared absl entry point: `--config`, `--workdir`, `--multihost`, validation first, one-line errors, quiet logs.

Every entry point is `python -m <package>.<entry> --config=configs/<method>/<name>.py[:arg] --workdir=DIR`
(ARCHITECTURE.md rule 4) and ends with `if __name__ == "__main__": run_main(...)`. Bad configs exit with status 2
and a single line on stderr; nothing in the workdir is touched before validation passes. The libraries' INFO chatter
(orbax, absl) is hidden unless asked for with absl's `--verbosity=0` (INFO) or `--verbosity=1` (DEBUG).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import ml_collections

from core import config as config_lib


def _load_error(config: Any, path: str) -> str:
  """The one-line reason a `--config` file gave no ConfigDict (ml_collections defers the IOError to first use)."""
  if not os.path.isfile(path):
    return f"--config: file not found: {path!r}"
  try:
    error = object.__getattribute__(config, "_error")
  except AttributeError:
    error = f"get_config() returned {type(config).__name__}, not a ConfigDict"
  return f"--config: cannot load {path!r}: {' '.join(str(error).split())}"


def quiet_unless_asked() -> None:
  """Warnings and errors only, unless the command line set absl's --verbosity; call first thing in an absl main
  (app.run has just set the level to INFO)."""
  from absl import flags, logging

  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)


def run_app(main: Callable[[Sequence[str]], Any]) -> None:
  """absl's `app.run(main)` with the libraries' INFO logs hidden (`quiet_unless_asked`), for scripts with own flags."""
  from absl import app

  def _main(argv: Sequence[str]) -> Any:
    quiet_unless_asked()
    return main(argv)

  app.run(_main)


def run_main(
  train_and_evaluate: Callable[[ml_collections.ConfigDict, str], Any],
  validate: Callable[[ml_collections.ConfigDict], None],
  default_config: str,
) -> None:
  """Parses the flags, validates the config, then runs `train_and_evaluate(config, workdir)`."""
  from absl import app, flags
  from ml_collections import config_flags

  config_flags.DEFINE_config_file("config", default_config, "Config file (path.py[:arg]).", lock_config=True)
  flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and results; resumed when present.")
  flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() first (TPU pods, Slurm, k8s).")

  def _main(argv: Sequence[str]) -> None:
    del argv
    flags_ = flags.FLAGS
    quiet_unless_asked()
    if flags_.multihost:
      from core import sharding

      sharding.initialize_multihost()
    try:
      config = flags_.config
      if not isinstance(config, ml_collections.ConfigDict):
        raise config_lib.ConfigError(_load_error(config, flags_["config"].config_filename))
      validate(config)
      config_lib.check_workdir(flags_.workdir)
    except config_lib.ConfigError as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(2)
    from core.checkpoint import CheckpointError
    from core.train import NonFiniteLossError

    try:
      train_and_evaluate(config, flags_.workdir)
    except config_lib.ConfigError as e:  # raised while building data/model from a valid-looking config
      print(f"error: {e}", file=sys.stderr)
      sys.exit(2)
    except (CheckpointError, NonFiniteLossError) as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(1)

  try:  # parse once here so a bad override is one line, not absl's traceback or usage text
    flags.FLAGS(sys.argv)
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
    app.run(_main, argv=sys.argv[:1])  # flags are parsed above; parsing twice would redefine the overrides
  except config_lib.ConfigError as e:  # raised inside the config file's get_config(arg)
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
