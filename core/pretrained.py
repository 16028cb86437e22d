"""One loader for pretrained encoders, by path: the hand-off from any pretraining run to any finetuning run.

ELECTRA (patent US 2021/0089724, last step; paper §2): "after pretraining the generator is discarded and the
encoder is finetuned"; BERT §3: pretrained parameters initialise the downstream model. Every package hands its
encoder over in one format, the BERT-family directory that `core.bert_import` reads and writes (HuggingFace names:
config.json + *.safetensors, with vocab.txt beside them), or by pointing at an orbax checkpoint of a run whose
params hold a core `encoder` subtree. `load_encoder(path, step=None)` accepts

  (a) a BERT-family directory (a HuggingFace BERT / ELECTRA download, MiniLM, or an export below);
  (b) a training workdir that exported such directories at its checkpoint steps, `WORKDIR/export/step_<N>/`
      (`export_encoder`; ELECTRA pretraining exports its discriminator encoder there): `step`, else the latest;
  (c) a training workdir with orbax checkpoints `WORKDIR/checkpoints/<N>/state` (`step`, else the latest) or one
      `checkpoints/<N>` directory, of a run whose params hold `encoder` (core.pretrain_mlm, ELECTRA's MLM twin, a
      finetuning run); the sizes are the `model` section of the run's `WORKDIR/config.json` (saved by
      `core.train.train`), never guessed from shapes; the saved shapes are checked against them before reading.

Anything else is a one-line `ConfigError`. An empty path means "no pretrained encoder": callers initialise randomly.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import jax
import numpy as np

from core import bert as bert_lib
from core import bert_import
from core import tree as tree_lib
from core.config import ConfigError

EXPORT_DIR = "export"
ALLOWED = "a BERT-family directory (config.json + *.safetensors), a workdir with export/step_<N>/ or checkpoints/<N>/"


def export_path(workdir: str | os.PathLike, step: int) -> Path:
  """Where a run exports the encoder of checkpoint `step`: WORKDIR/export/step_<N>."""
  return Path(workdir) / EXPORT_DIR / f"step_{step}"


def export_encoder(
  workdir: str | os.PathLike, step: int, config: bert_lib.BertConfig, encoder_params: Any, vocab_path: str = ""
) -> Path:
  """Writes `encoder_params` (a `BertEncoder(config)` tree) as a BERT-family directory at `export_path(workdir,
  step)`, replacing an older one; written beside it and renamed, so a reader never sees a half-written export.
  The arrays must be readable from this process (replicated or data-parallel, as `core.train` runs them)."""
  final = export_path(workdir, step)
  partial = final.with_name(final.name + ".partial")
  shutil.rmtree(partial, ignore_errors=True)
  host = jax.tree.map(lambda x: np.asarray(jax.device_get(x), np.float32), encoder_params)
  bert_import.save_hf_bert(partial, config, host, vocab_path=vocab_path or None)
  shutil.rmtree(final, ignore_errors=True)
  os.replace(partial, final)
  return final


def is_bert_dir(path: Path) -> bool:
  return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def _numbered(root: Path, prefix: str, marker: str) -> list[int]:
  """Sorted N of root/<prefix><N>/ directories that hold `marker` (a file or directory name)."""
  if not root.is_dir():
    return []
  names = (p.name.removeprefix(prefix) for p in root.iterdir() if p.name.startswith(prefix) and (p / marker).exists())
  return sorted(int(n) for n in names if n.isdigit())


def exported_steps(workdir: str | os.PathLike) -> list[int]:
  return _numbered(Path(workdir) / EXPORT_DIR, "step_", "config.json")


def checkpoint_steps(workdir: str | os.PathLike) -> list[int]:
  return _numbered(Path(workdir) / "checkpoints", "", "state")


def _pick(steps: list[int], step: int | None, where: Path) -> int:
  if step is None:
    return steps[-1]
  if step not in steps:
    raise ConfigError(f"{where}: no step {step} (have {steps})")
  return step


def resolve(path: str | os.PathLike, *, step: int | None = None) -> tuple[str, Path]:
  """('bert', directory) or ('orbax', WORKDIR/checkpoints/<N>) for `path` (see the module docstring); checks the
  file system only, so validators call it before any work. One-line ConfigError otherwise."""
  p = Path(os.path.expanduser(str(path)))
  if not str(path) or not p.exists():
    raise ConfigError(f"{str(path)!r}: no such file or directory (allowed: {ALLOWED})")
  if is_bert_dir(p):
    if step is not None:
      raise ConfigError(f"{p}: a single BERT-family directory has no step {step} to choose")
    return "bert", p
  if exported := exported_steps(p):
    return "bert", export_path(p, _pick(exported, step, p / EXPORT_DIR))
  if saved := checkpoint_steps(p):
    return "orbax", p / "checkpoints" / str(_pick(saved, step, p / "checkpoints"))
  if (p / "state").is_dir() and p.parent.name == "checkpoints" and p.name.isdigit():
    if step is not None and step != int(p.name):
      raise ConfigError(f"{p}: is step {p.name}, not step {step}")
    return "orbax", p
  raise ConfigError(f"{p}: holds none of {ALLOWED} (or a checkpoints/<N> directory)")


def load_encoder(
  path: str | os.PathLike, *, step: int | None = None, dtype: str = "float32"
) -> tuple[bert_lib.BertConfig, dict[str, Any]]:
  """(BertConfig, `BertEncoder` params as float32 numpy) from `path`; see the module docstring. `dtype` is the
  returned config's compute dtype."""
  kind, where = resolve(path, step=step)
  if kind == "bert":
    from safetensors import SafetensorError  # pylint: disable=g-import-not-at-top

    try:
      config, params = bert_import.load_hf_bert(where, dtype=dtype)
    except (ValueError, OSError, SafetensorError) as e:
      raise ConfigError(f"{where}: not loadable: {str(e).splitlines()[0]}") from None
    return config, jax.tree.map(lambda x: np.asarray(x, np.float32), params)
  return _load_orbax_encoder(where, dtype)


def run_model_config(workdir: Path, dtype: str = "float32") -> bert_lib.BertConfig:
  """The `model` section of WORKDIR/config.json (what `core.train.train` saved) as a validated BertConfig."""
  path = workdir / "config.json"
  if not path.is_file():
    raise ConfigError(f"{workdir}: no config.json with the run's model sizes beside checkpoints/")
  try:
    section = json.loads(path.read_text())["model"]
    return bert_lib.from_model_section({**section, "dtype": dtype}).validate()
  except json.JSONDecodeError as e:
    raise ConfigError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
  except (KeyError, TypeError, ValueError) as e:
    raise ConfigError(f"{path}: no usable BertConfig in its 'model' section ({str(e).splitlines()[0]})") from None


def _load_orbax_encoder(step_dir: Path, dtype: str) -> tuple[bert_lib.BertConfig, dict[str, Any]]:
  """The `params/encoder` subtree of a TrainState checkpoint, checked against the run's saved model sizes."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

  from core import checkpoint as checkpoint_lib  # pylint: disable=g-import-not-at-top

  config = run_model_config(step_dir.parent.parent, dtype)
  ids = jax.ShapeDtypeStruct((1, 2), np.int32)
  expected = jax.eval_shape(lambda x: bert_lib.BertEncoder(config).init(jax.random.key(0), x)["params"], ids)
  checkpointer = ocp.PyTreeCheckpointer()
  try:
    try:
      saved = checkpointer.metadata(step_dir.absolute() / "state").item_metadata.tree
    except Exception as e:  # orbax/tensorstore raise many types for damaged files
      raise ConfigError(f"{step_dir}: unreadable: {type(e).__name__}: {_first_line(e)}") from None
    params = saved.get("params") if isinstance(saved, dict) else None
    if not isinstance(params, dict) or "encoder" not in params:
      top = sorted(params) if isinstance(params, dict) else type(params).__name__
      raise ConfigError(f"{step_dir}: params hold no 'encoder' subtree (top-level: {top})")
    try:
      tree_lib.check_shapes(expected, params["encoder"], f"{step_dir} params/encoder")
    except tree_lib.ShapeError as e:
      raise ConfigError(f"{e} (config.json's model section and the checkpoint disagree)") from None
  finally:
    checkpointer.close()
  restored = checkpoint_lib.restore_float32(step_dir / "state", {"params": {"encoder": expected}})
  return config, restored["params"]["encoder"]


def _first_line(e: BaseException) -> str:
  lines = str(e).strip().splitlines()
  return lines[0][:200] if lines else ""
