"""What every Reformer config shares: the `model` fields (`reformer_jax.model.ReformerConfig`), the `task` and `eval`
sections, and the loop's sections (`core.config.default_config`). Standard library, ml_collections and core.config.

Conventions of the `model` section: n_buckets 0 = trax's default 2·L/chunk_len (factorised above 128);
axial_pos_shape () = a learned position table of max_len rows. `attention` is a tuple of layer kinds cycled over the
layers: 'lsh' (shared-QK LSH), 'full_shared_qk' (the same parameters, every key in reach: the paper's "full
attention" rows of Table 2), 'local' (chunked, separate Q/K), 'full' (standard).
"""

import ml_collections

from core import config as config_lib

# Kitaev et al. 2020 / trax defaults, overridden per config file.
MODEL = dict(
  vocab_size=259,  # bytes + pad/bos/eos (core.data.ByteTokenizer)
  d_model=256,
  d_ff=512,
  n_layers=2,
  n_heads=4,
  d_head=64,
  attention=("lsh",),
  n_hashes=1,
  n_buckets=0,
  chunk_len=64,
  lsh_chunks_before=1,
  lsh_chunks_after=0,
  local_chunk_len=64,
  local_chunks_before=1,
  local_chunks_after=0,
  dropout_rate=0.0,
  attention_dropout_rate=0.0,
  ff_dropout_rate=0.0,
  ff_activation="relu",
  ff_chunk_size=0,  # 0 = unchunked (§3 "Chunking")
  axial_pos_shape=(),
  axial_pos_dims=(),
  max_len=2048,
  reversible=True,
  n_classes=2,
  pooling="mean",
  layer_norm_eps=1e-6,
  dtype="float32",
)

TASK = dict(
  name="duplication",
  seq_len=1024,
  vocab_size=128,  # duplication: symbols 1..vocab_size-1
  corpus="wikipedia_xml",  # char_lm: wikipedia_xml (bundled) or enwik8 (task.path)
  path="",
  tfds_dir="",  # imagenet64: prepared tfds data (may be gs://)
  eval_examples=256,  # held-out rows (LM) or examples (ListOps) per evaluation
  listops=dict(min_length=500, max_length=2000, max_depth=10, max_args=10, train_examples=96_000),  # LRA's
)


def base_config(task: str, **model) -> ml_collections.ConfigDict:
  """default_config() + `task`, `model` (MODEL updated by `model`) and `eval` sections for `task`."""
  config = config_lib.default_config()
  config.task = ml_collections.ConfigDict({**TASK, "name": task})
  config.model = ml_collections.ConfigDict({**MODEL, **model})
  # Evaluated attention variants besides the trained one: full attention on the same parameters, LSH with these
  # hash counts (Table 2's columns); an LSH variant of a model without LSH layers is skipped.
  config.eval = ml_collections.ConfigDict(dict(full=False, n_hashes=()))
  config.optimizer.update(dict(name="adam", schedule="warmup_cosine", weight_decay=0.0, b2=0.98, eps=1e-9))
  return config
