"""A reader that reads from step 0: REALM's knowledge-augmented encoder saved apart from a training run.

REALM (arXiv 2002.08909) §4 starts the knowledge-augmented encoder from BERT, whose pretrained MLM head predicts a
masked token from its context at step 0, so the marginal likelihood (Eq. 5) sends useful gradient to the retriever
from the first step (US 11,003,865 claim 1, step 8). MiniLM ships without an MLM head (`realm_jax.model`
initialises one), so its reader starts at chance and its retriever gets noise until it learns to read. A reader
trained on the gold document alone (`benchmarks/realm/reader_oracle.py --save_reader DIR`) stands in for BERT's head;
`realm_jax.pretrain` loads it with `reader_from=DIR` into the `reader` subtree, the embedders untouched.

  DIR/reader/       the reader's params (orbax PyTree, float32)
  DIR/reader.json   the model section it was trained with and how (for the record; shapes are checked on load)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np

from core import checkpoint as checkpoint_lib
from core import config as config_lib
from core import tree as tree_lib


def save_reader(directory: str, reader: Any, record: dict[str, Any]) -> Path:
  """Writes `reader` (the `reader` subtree of `realm_jax.model.Realm`'s params) and `record` (JSON) to
  `directory`; refuses to overwrite a saved reader."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

  path = Path(directory).expanduser().absolute()
  if (path / "reader").exists():
    raise FileExistsError(f"save_reader: {path / 'reader'} exists (a saved reader is never overwritten)")
  path.mkdir(parents=True, exist_ok=True)
  with ocp.PyTreeCheckpointer() as checkpointer:
    checkpointer.save(path / "reader", jax.tree.map(lambda x: np.asarray(x, np.float32), reader))
  (path / "reader.json").write_text(json.dumps(record, indent=1, default=str))
  return path


def load_reader(directory: str, template: Any, field: str = "reader_from") -> dict[str, Any]:
  """The saved reader (float32 numpy) after checking its shapes against `template` (the fresh model's `reader`
  subtree): one-line ConfigError naming `field` when the directory holds none or the shapes differ."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

  path = Path(os.path.expanduser(directory)).absolute() / "reader"
  if not path.is_dir():
    raise config_lib.ConfigError(f"{field}: {str(path.parent)!r} holds no saved reader (write one with "
                                 "benchmarks/realm/reader_oracle.py --save_reader DIR)")
  with ocp.PyTreeCheckpointer() as checkpointer:
    saved = checkpointer.metadata(path).item_metadata.tree
    try:
      tree_lib.check_shapes(template, saved, f"{path}")
    except (tree_lib.ShapeError, KeyError, TypeError) as e:
      raise config_lib.ConfigError(f"{field}: {e} (the saved reader and the model section differ)") from None
  return checkpoint_lib.restore_float32(path, template)
