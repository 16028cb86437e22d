"""configs/: loading a config file imports no jax; the model sections name BertConfig's fields; the MLM twin's step
literal matches `electra_jax.flops`; and a fuzz of every config leaf against each entry point's `validate`."""

import glob
import importlib
import math
import os
import subprocess
import sys

import pytest

from core import config as config_lib
from tests.helpers import REPO, load_config

CONFIG_FILES = sorted(
  os.path.relpath(p, REPO)
  for p in glob.glob(os.path.join(REPO, "configs", "*", "*.py"))
  if os.path.basename(p) not in ("common.py", "__init__.py")
)
HEAVY = ("jax", "jaxlib", "flax", "optax", "orbax", "grain", "tensorflow", "tensorflow_datasets", "numpy")
_LOAD = (
  "import ml_collections, runpy, sys\n"
  "runpy.run_path(sys.argv[1])['get_config']()\n"
  f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
)


@pytest.mark.parametrize("path", CONFIG_FILES)
def test_loading_a_config_imports_no_jax(path):
  out = subprocess.run([sys.executable, "-c", _LOAD, path], cwd=REPO, capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.strip() == "[]", f"{path} imports {out.stdout.strip()}"


def test_model_sections_state_every_bertconfig_field():
  import dataclasses

  from core import bert

  fields = {f.name for f in dataclasses.fields(bert.BertConfig)}
  for path, arg in [
    ("configs/core/bert_mlm.py", "mini"),
    ("configs/electra/small.py", None),
    ("configs/electra/glue.py", "task=rte,size=base"),
    ("configs/realm/ict.py", "size=minilm"),
  ]:
    assert set(load_config(os.path.join(REPO, path), arg).model) == fields, path


def test_tiny_mlm_twin_steps_are_the_compute_matched_literal():
  from configs.electra import common
  from electra_jax import flops, pretrain

  electra = load_config(os.path.join(REPO, "configs/electra/tiny.py"))
  twin = load_config(os.path.join(REPO, "configs/electra/tiny.py"), "mlm=true")
  target = pretrain.flops_per_step(electra) * electra.train.total_steps
  steps = flops.compute_matched_steps(target, pretrain.flops_per_step(twin))
  assert twin.train.total_steps == common.SIZES["tiny"]["mlm_total_steps"] == steps


def test_config_args_are_one_line_errors():
  path = os.path.join(REPO, "configs/electra/small.py")
  for arg, message in [
    ("mlm=maybe", "config arg mlm: 'maybe' is not a bool (allowed: true, false)"),
    ("layers=3", "config arg: unknown key 'layers' (allowed: mlm)"),
  ]:
    with pytest.raises(config_lib.ConfigError) as error:
      load_config(path, arg)
    assert str(error.value) == message
  with pytest.raises(config_lib.ConfigError, match=r"^config arg steps: 'ten' is not a int$"):
    config_lib.parse_arg("steps=ten", steps=10)
  with pytest.raises(config_lib.ConfigError, match=r"^--config: file not found: 'configs/electra/nope.py'$"):
    load_config("configs/electra/nope.py")


# --- fuzz: every leaf set in turn to -1, 0, huge, nan, inf, '' or an unknown name -------------------------------

ENTRY_POINTS = [
  ("core.pretrain_mlm", "configs/core/bert_mlm.py", "tiny"),
  ("electra_jax.pretrain", "configs/electra/tiny.py", None),
  ("electra_jax.pretrain", "configs/electra/tiny.py", "mlm=true"),
  ("electra_jax.finetune", "configs/electra/glue.py", "task=polarity,size=tiny"),
  ("core.demo", "configs/core/search_demo.py", None),
  ("reformer_jax.train", "configs/reformer/duplication.py", None),
  ("reformer_jax.train", "configs/reformer/char_lm.py", None),
  ("reformer_jax.train", "configs/reformer/listops.py", None),
  ("lora_jax.finetune", "configs/lora/cpu.py", None),
  ("realm_jax.ict", "configs/realm/ict.py", None),
  ("realm_jax.ict", "configs/realm/ict.py", "corpus=wikipedia"),
  ("realm_jax.pretrain", "configs/realm/pretrain.py", None),
  ("realm_jax.openqa", "configs/realm/openqa.py", None),
]
# Negative values with a documented meaning; any other negative value that validates is a hole.
NEGATIVE_SENTINELS = {("mesh.data", -1), ("train.inject_nan_at_step", -1)}
# Leaves no fuzz value makes illegal (free text; bools are typed by ml_collections and need no range).
UNCHECKED = {
  "results_dir",  # '' = no copy; any other path is created
  "data.tfds_dir",  # may be remote (gs://...): checked when the corpus is opened (test_paper_corpus_offline_...)
  "task.tfds_dir",  # the same for reformer_jax's imagenet64
  "task.path",  # read only by char_lm's enwik8 corpus (checked then: tests/reformer_jax/test_train.py)
}


def _fuzz_values(value):
  if isinstance(value, bool):
    return [not value, 0, ""]
  if isinstance(value, int):
    return [-1, 0, 10**12, -(10**12)]
  if isinstance(value, float):
    return [-1.0, 0.0, 1e300, math.nan, math.inf, -math.inf]
  if isinstance(value, str):
    return ["", "nope"]
  if isinstance(value, tuple):
    return [(), ("",)]
  return []


def _leaves(config, prefix=""):
  for key, value in config.items():
    if hasattr(value, "items"):
      yield from _leaves(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}", value


def _set(config, field, value) -> bool:
  *parents, leaf = field.split(".")
  node = config
  for part in parents:
    node = node[part]
  try:
    node[leaf] = value
  except TypeError:  # ml_collections refuses the type; on the command line this is a one-line flag error
    return False
  return True


@pytest.mark.parametrize("module,path,arg", ENTRY_POINTS, ids=[f"{p}:{a}" for _, p, a in ENTRY_POINTS])
def test_fuzzed_config_gives_a_one_line_error_or_a_legal_value(module, path, arg):
  validate = importlib.import_module(module).validate
  base = load_config(os.path.join(REPO, path), arg)
  validate(base)
  holes, never_rejected = [], []
  for field, original in _leaves(base):
    rejected = False
    for value in _fuzz_values(original):
      config = load_config(os.path.join(REPO, path), arg)
      if not _set(config, field, value):
        continue
      try:
        validate(config)
      except config_lib.ConfigError as e:
        rejected = True
        if "\n" in str(e) or ":" not in str(e):
          holes.append(f"{field}={value!r}: not a one-line error: {e!r}")
        continue
      except Exception as e:  # noqa: BLE001 - every other exception type is a hole
        holes.append(f"{field}={value!r}: {type(e).__name__}: {e}")
        continue
      if isinstance(value, float) and not (math.isfinite(value) and abs(value) <= config_lib.FLOAT32_MAX):
        holes.append(f"{field}={value!r} passed validation")
      if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
        if (field, value) not in NEGATIVE_SENTINELS:
          holes.append(f"{field}={value!r} passed validation")
    if not rejected and not isinstance(original, bool) and field not in UNCHECKED:
      never_rejected.append(field)
  assert not holes, "\n".join(holes)
  assert not never_rejected, f"fields without a range: {never_rejected}"
