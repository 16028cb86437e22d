"""What an ICT run trained, read from its workdir without jax: the retriever's shapes, for a REALM run to check.

REALM, arXiv 2002.08909 §3.4 "ICT warm start" (the pretraining run starts Embed_input and Embed_doc from the ICT
run); US 11,003,865 claim 1, steps 2-3 (the two learned embedding functions). `core.train` saves the run's config
as WORKDIR/config.json; its `model` section (`core.bert.BertConfig` fields), `realm.proj_size` and `realm.pooling`
describe both embedders. Standard library only, so a validator can call it before any work starts.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import Any

from core.config import ConfigError

# The BertConfig fields that decide parameter shapes (and the head split); dropout, eps and dtype do not.
SHAPE_FIELDS = (
  "vocab_size",
  "hidden_size",
  "num_layers",
  "num_heads",
  "intermediate_size",
  "embedding_size",
  "max_position_embeddings",
  "type_vocab_size",
)


def _fields(section: Any) -> dict[str, Any]:
  fields = section.to_dict() if hasattr(section, "to_dict") else dict(section)
  fields["embedding_size"] = fields.get("embedding_size") or 0  # 0 / None: E = H
  return fields


@dataclasses.dataclass(frozen=True)
class RetrieverSpec:
  """An ICT run's retriever: encoder fields (its `model` section), projection size, pooling, checkpointed steps."""

  workdir: str
  model: dict[str, Any]
  proj_size: int
  pooling: str
  steps: tuple[int, ...]

  def check(
    self, model_section: Mapping[str, Any] | Any, proj_size: int, pooling: str = "cls", field: str = "retriever_from"
  ) -> None:
    """One-line ConfigError `<field>: ...` naming the first shape (or the pooling) that differs from this run's."""
    ours = _fields(model_section)
    for name in SHAPE_FIELDS:
      if ours.get(name) != self.model.get(name):
        raise ConfigError(
          f"{field}: the ICT retriever in {self.workdir} has model.{name} = {self.model.get(name)!r}, "
          f"this run has {ours.get(name)!r}"
        )
    if proj_size != self.proj_size:
      raise ConfigError(
        f"{field}: the ICT retriever in {self.workdir} has realm.proj_size = {self.proj_size}, "
        f"this run has {proj_size!r}"
      )
    if pooling != self.pooling:
      raise ConfigError(
        f"{field}: the ICT retriever in {self.workdir} has realm.pooling = {self.pooling!r}, this run has {pooling!r}"
      )


def checkpoint_steps(workdir: str) -> tuple[int, ...]:
  root = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(root):
    return ()
  names = (n for n in os.listdir(root) if n.isdigit() and os.path.isdir(os.path.join(root, n, "state")))
  return tuple(sorted(int(n) for n in names))


def retriever_spec(workdir: str, field: str = "retriever_from") -> RetrieverSpec:
  """The spec of the ICT run in `workdir` (its config.json and checkpoints/<N>/state); one-line ConfigError when
  it is not one."""
  path = os.path.join(os.path.expanduser(str(workdir)), "config.json")
  if not os.path.isfile(path):
    raise ConfigError(f"{field}: {str(workdir)!r} holds no config.json of an ICT run (python -m realm_jax.ict)")
  try:
    with open(path) as f:
      saved = json.load(f)
    model, realm = _fields(saved["model"]), saved["realm"]
    proj_size, pooling = int(realm["proj_size"]), str(realm["pooling"])
  except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
    what = "model, realm.proj_size, realm.pooling"
    raise ConfigError(f"{field}: {path} is not an ICT run's config (needs {what}; {e!r})") from None
  steps = checkpoint_steps(os.path.dirname(path))
  if not steps:
    raise ConfigError(f"{field}: {str(workdir)!r} has no checkpoint yet (checkpoints/<N>/state)")
  return RetrieverSpec(os.path.dirname(path), model, proj_size, pooling, steps)
