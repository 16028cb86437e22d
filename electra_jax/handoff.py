"""Pretraining → finetuning hand-off: the discriminator encoder out of a pretraining run, the generator discarded.

Patent US 2021/0089724 (ELECTRA), final step: "after pretraining the generator is discarded and the encoder is
finetuned"; paper §2 ("we throw out the generator and only fine-tune the discriminator on downstream tasks").

`load_pretrained_encoder(path)` accepts
  (a) a pretraining workdir: orbax checkpoints `DIR/checkpoints/<step>/state` (the latest step is used) whose
      `params` are either ELECTRA's {'embeddings': <core BertEmbeddings>, 'discriminator': {layer_i...,
      [embeddings_project], 'head'}, 'generator': {...}} (the shared embeddings + the discriminator body become a
      core `BertEncoder` tree) or an MLM run's {'encoder': <BertEncoder>, 'mlm_head': ...} (also a finetuning run's
      {'encoder', 'head'}). The model sizes come from `DIR/config.json` when present, else from the param shapes;
      the number of heads (not visible in any shape) from config.json, else `num_heads`, else
      `heads_for_hidden[hidden]`, else hidden // 64 (ELECTRA's head width at every size);
  (b) a HuggingFace BERT / ELECTRA directory (config.json + model.safetensors; `core.bert_import.load_hf_bert`);
  (c) '' → (None, None): the caller initialises the encoder randomly from its own config.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from core import bert as bert_lib
from core import bert_import

_LAYER = re.compile(r"^layer_(\d+)$")
_ENCODER_KEYS = re.compile(r"^(layer_\d+|embeddings_project)$")
_CONFIG_FIELDS = ("hidden_size", "num_layers", "num_heads", "intermediate_size", "vocab_size")


class HandoffError(ValueError):
  """A path that holds no usable pretrained encoder; the message is one line."""


def checkpoint_steps(workdir: str | os.PathLike) -> list[int]:
  """Completed orbax steps under `workdir/checkpoints` (directories named by an integer holding 'state')."""
  root = Path(workdir) / "checkpoints"
  if not root.is_dir():
    return []
  return sorted(int(p.name) for p in root.iterdir() if p.name.isdigit() and (p / "state").is_dir())


def is_pretraining_workdir(path: str | os.PathLike) -> bool:
  return bool(checkpoint_steps(path))


def is_hf_dir(path: str | os.PathLike) -> bool:
  p = Path(path)
  return (p / "config.json").is_file() and any(p.glob("*.safetensors"))


def _restore_raw(state_dir: Path) -> Any:
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

  checkpointer = ocp.StandardCheckpointer()
  try:
    return checkpointer.restore(state_dir.absolute())
  except Exception as e:  # orbax/tensorstore raise many types for damaged files
    raise HandoffError(f"checkpoint {state_dir} is unreadable: {type(e).__name__}: {str(e).splitlines()[0]}") from None
  finally:
    checkpointer.close()


def encoder_from_params(params: dict[str, Any]) -> dict[str, Any]:
  """The core `BertEncoder` tree inside an ELECTRA, MLM or finetuning params tree (generator / heads dropped)."""
  if "discriminator" in params:  # ELECTRA: shared embeddings + discriminator body
    if "embeddings" not in params:
      raise HandoffError("ELECTRA params have a 'discriminator' but no shared 'embeddings'")
    body = {k: v for k, v in params["discriminator"].items() if _ENCODER_KEYS.match(k)}
    if not any(_LAYER.match(k) for k in body):
      raise HandoffError(f"ELECTRA 'discriminator' params hold no layer_<i>: {sorted(params['discriminator'])}")
    return {"embeddings": params["embeddings"], **body}
  if "encoder" in params:  # MLM baseline (core.pretrain_mlm, ELECTRA's MLM twin) or a finetuned model
    return dict(params["encoder"])
  raise HandoffError(
    f"params hold neither 'discriminator' (ELECTRA) nor 'encoder' (MLM / BERT); top-level keys {sorted(params)}"
  )


def _find_model_dict(tree: Any) -> dict[str, Any] | None:
  """The first dict (breadth first, 'discriminator' / 'model' before other keys) holding BertConfig-like fields."""
  queue = [tree]
  while queue:
    node = queue.pop(0)
    if not isinstance(node, dict):
      continue
    if "num_heads" in node or "num_attention_heads" in node or sum(f in node for f in _CONFIG_FIELDS) >= 2:
      return node
    for key in ("discriminator", "model", "encoder", "bert"):
      if key in node:
        queue.append(node[key])
    queue.extend(v for k, v in node.items() if isinstance(v, dict) and k not in ("discriminator", "model"))
  return None


def config_from_params(
  encoder_params: dict[str, Any],
  saved: dict[str, Any] | None = None,
  num_heads: int | None = None,
  heads_for_hidden: dict[int, int] | None = None,
) -> bert_lib.BertConfig:
  """A BertConfig whose sizes match `encoder_params`; non-shape fields from `saved` (a config dict) if given.

  Heads (invisible in the shapes): saved config, else `num_heads`, else `heads_for_hidden[hidden]`, else
  hidden // 64 (every ELECTRA size uses 64-wide heads).
  """
  shape = lambda tree: tuple(np.shape(tree))
  emb = encoder_params["embeddings"]
  vocab, emb_size = shape(emb["word_embeddings"]["embedding"])
  positions = shape(emb["position_embeddings"]["embedding"])[0]
  type_vocab = shape(emb["token_type_embeddings"]["embedding"])[0]
  layers = sorted(int(_LAYER.match(k).group(1)) for k in encoder_params if _LAYER.match(k))
  if layers != list(range(len(layers))) or not layers:
    raise HandoffError(f"encoder layers are not layer_0..layer_<n-1>: {[f'layer_{i}' for i in layers]}")
  hidden, intermediate = shape(encoder_params["layer_0"]["intermediate"]["kernel"])
  saved = dict(saved or {})
  heads = saved.get("num_heads") or saved.get("num_attention_heads") or num_heads
  heads = heads or (heads_for_hidden or {}).get(hidden) or max(1, hidden // 64)
  if hidden % int(heads):
    heads = max(1, hidden // 64)
  fields = {k: v for k, v in saved.items() if k in {f for f in bert_lib.BertConfig.__dataclass_fields__}}
  fields.update(
    vocab_size=vocab,
    hidden_size=hidden,
    num_layers=len(layers),
    num_heads=int(heads),
    intermediate_size=intermediate,
    embedding_size=None if emb_size == hidden else emb_size,
    max_position_embeddings=positions,
    type_vocab_size=type_vocab,
  )
  return bert_lib.BertConfig(**fields).validate()


def load_workdir_encoder(
  workdir: str | os.PathLike,
  step: int | None = None,
  num_heads: int | None = None,
  heads_for_hidden: dict[int, int] | None = None,
) -> tuple[bert_lib.BertConfig, dict[str, Any]]:
  """(BertConfig, encoder params as numpy) from the latest (or given) checkpoint of a pretraining workdir."""
  steps = checkpoint_steps(workdir)
  if not steps:
    raise HandoffError(f"{workdir}: no orbax checkpoints under {Path(workdir) / 'checkpoints'}")
  step = steps[-1] if step is None else step
  if step not in steps:
    raise HandoffError(f"{workdir}: no checkpoint for step {step} (have {steps})")
  raw = _restore_raw(Path(workdir) / "checkpoints" / str(step) / "state")
  if not isinstance(raw, dict) or "params" not in raw:
    raise HandoffError(f"{workdir}/checkpoints/{step}/state holds no 'params' (top-level: {sorted(raw or {})})")
  encoder = encoder_from_params(raw["params"])
  saved = None
  config_path = Path(workdir) / "config.json"
  if config_path.is_file():
    try:
      saved = _find_model_dict(json.loads(config_path.read_text()))
    except json.JSONDecodeError as e:
      raise HandoffError(f"{config_path}: not valid JSON ({e.msg} at line {e.lineno})") from None
  config = config_from_params(encoder, saved, num_heads, heads_for_hidden)
  encoder = _to_numpy(encoder)
  _check_tree(config, encoder, str(workdir))
  return config, encoder


def _to_numpy(tree: Any) -> Any:
  if isinstance(tree, dict):
    return {k: _to_numpy(v) for k, v in tree.items()}
  return np.asarray(tree, np.float32)


def _check_tree(config: bert_lib.BertConfig, params: dict[str, Any], where: str) -> None:
  """The restored tree must have exactly the structure and shapes of `BertEncoder(config)`."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  dummy = jnp.zeros((1, 2), jnp.int32)
  expected = jax.eval_shape(lambda: bert_lib.BertEncoder(config).init(jax.random.key(0), dummy)["params"])
  want = {jax.tree_util.keystr(p, simple=True, separator="/"): x.shape for p, x in _leaves(expected)}
  have = {jax.tree_util.keystr(p, simple=True, separator="/"): np.shape(x) for p, x in _leaves(params)}
  if want.keys() != have.keys():
    missing, extra = sorted(want.keys() - have.keys())[:3], sorted(have.keys() - want.keys())[:3]
    raise HandoffError(f"{where}: encoder params do not match a BertEncoder (missing {missing}, unexpected {extra})")
  for name, shape in want.items():
    if tuple(have[name]) != tuple(shape):
      raise HandoffError(f"{where}: {name} has shape {tuple(have[name])}, expected {tuple(shape)}")


def _leaves(tree: Any):
  import jax  # pylint: disable=g-import-not-at-top

  return jax.tree_util.tree_leaves_with_path(tree)


def load_pretrained_encoder(
  path: str | os.PathLike,
  *,
  num_heads: int | None = None,
  heads_for_hidden: dict[int, int] | None = None,
  step: int | None = None,
) -> tuple[bert_lib.BertConfig | None, dict[str, Any] | None]:
  """(BertConfig, encoder params) from a pretraining workdir, a HuggingFace dir, or (None, None) for ''.

  See the module docstring. Raises a one-line `HandoffError` for a path that is neither.
  """
  if not path:
    return None, None
  p = Path(os.path.expanduser(str(path)))
  if is_pretraining_workdir(p):
    return load_workdir_encoder(p, step=step, num_heads=num_heads, heads_for_hidden=heads_for_hidden)
  if is_hf_dir(p):
    try:
      config, params = bert_import.load_hf_bert(p)
    except (ValueError, KeyError, OSError) as e:
      raise HandoffError(f"{p}: HuggingFace checkpoint not loadable: {str(e).splitlines()[0]}") from None
    return config, _to_numpy(params)
  if not p.exists():
    raise HandoffError(f"{p}: no such file or directory")
  raise HandoffError(
    f"{p}: neither a pretraining workdir (checkpoints/<step>/state) nor a HuggingFace directory "
    "(config.json + *.safetensors)"
  )
