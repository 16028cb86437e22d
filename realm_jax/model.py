"""REALM's three networks: the query and document embedders and the knowledge-augmented encoder.

REALM, arXiv 2002.08909 §3.2 (Eq. 1, 3-4); US 11,003,865 claim 1, steps 2, 3 and 6:
- Embed_input(x) and Embed_doc(z): a BERT encoder each (separate parameters), then a linear projection of the [CLS]
  vector to `proj_size` (d = 128 in the paper): `Embedder`;
- the knowledge-augmented encoder: BERT over join(x, z) = [CLS] x [SEP] z [SEP] with an MLM head whose output layer
  is tied to the input embeddings (Eq. 3): `KnowledgeAugmentedEncoder`. The head is evaluated only at the masked
  positions, so a [B·K, L] pass costs K·M·V·E for the output layer, not K·L·V·E.

`Realm` holds the three as submodules, params {'query_embedder', 'doc_embedder', 'reader'}; its methods are called
with `model.apply(variables, ..., method=Realm.embed_query)` and so on. Documents are embedded from
'[CLS] title [SEP] text [SEP]' (`realm_jax.data`); join(x, z) is built by `join` from a query row and a document row
with position ids that skip the query's padding, so a batch of fixed-size rows reads as the paper's concatenation.
Shape suffixes: B batch (queries), K candidates per query, N documents, L/Lq/Ld lengths, M masked positions,
H hidden, E embedding width, D = proj_size, V vocabulary.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from core import bert as bert_lib

Array = jax.Array
POOLINGS = ("cls", "mean")


@dataclasses.dataclass(frozen=True)
class RealmConfig:
  """The encoder shape shared by the three networks and the retrieval projection size (paper: BERT-base, d = 128)."""

  encoder: bert_lib.BertConfig
  proj_size: int = 128
  # What the projection reads: 'cls' (the paper's [CLS] vector) or 'mean' (the mean over real tokens, how
  # sentence-transformers checkpoints such as the bundled MiniLM were trained to embed).
  pooling: str = "cls"

  def validate(self) -> RealmConfig:
    self.encoder.validate()
    if not isinstance(self.proj_size, int) or isinstance(self.proj_size, bool) or self.proj_size < 1:
      raise ValueError(f"proj_size must be a positive int, got {self.proj_size!r}")
    if self.pooling not in POOLINGS:
      raise ValueError(f"pooling: unknown value {self.pooling!r} (allowed: {', '.join(POOLINGS)})")
    return self


class Embedder(nn.Module):
  """Embed(x) = W_proj · BERT_CLS(x) (§3.2, Eq. 1; claim 1 steps 2-3); `RealmConfig.pooling='mean'` reads the mean
  over real tokens instead of [CLS]. Params {'encoder', 'projection'}."""

  config: RealmConfig

  @nn.compact
  def __call__(self, ids_BxL: Array, mask_BxL: Array, *, deterministic: bool = True) -> Array:
    cfg = self.config.encoder
    hidden_BxLxH = bert_lib.BertEncoder(cfg, name="encoder")(
      ids_BxL, jnp.zeros_like(ids_BxL), mask_BxL, deterministic=deterministic
    )
    projection = nn.Dense(
      self.config.proj_size,
      dtype=cfg.compute_dtype,
      param_dtype=jnp.float32,
      kernel_init=nn.initializers.truncated_normal(stddev=cfg.initializer_range),
      name="projection",
    )
    pooled_BxH = hidden_BxLxH[:, 0] if self.config.pooling == "cls" else bert_lib.mean_pool(hidden_BxLxH, mask_BxL)
    return projection(pooled_BxH.astype(cfg.compute_dtype)).astype(jnp.float32)


class KnowledgeAugmentedEncoder(nn.Module):
  """p(y_j | z, x) = softmax(w_{y_j}ᵀ BERT_MASK(j)(join(x, z))) (§3.2, Eq. 3; claim 1 step 6).

  Params {'encoder', 'mlm_head'}: `core.bert.BertEncoder` and `core.bert.MlmHead` (tied to the word embeddings),
  the tree of `core.bert.BertForMlm`, so a BERT MLM checkpoint loads as it is.
  """

  config: RealmConfig

  def setup(self):
    self.encoder = bert_lib.BertEncoder(self.config.encoder, name="encoder")
    self.mlm_head = bert_lib.MlmHead(self.config.encoder, name="mlm_head")

  def __call__(
    self,
    ids_BxL: Array,
    token_type_ids_BxL: Array,
    mask_BxL: Array,
    position_ids_BxL: Array,
    mask_positions_BxM: Array,
    *,
    deterministic: bool = True,
  ) -> Array:
    """Log-probabilities of the whole vocabulary at the masked positions: log_probs_BxMxV (fp32)."""
    hidden_BxLxH = self.encoder(
      ids_BxL, token_type_ids_BxL, mask_BxL, position_ids_BxL=position_ids_BxL, deterministic=deterministic
    )
    at_masks_BxMxH = jnp.take_along_axis(hidden_BxLxH, mask_positions_BxM[..., None], axis=1)
    table_VxE = self.encoder.embeddings.word_embeddings.embedding
    logits_BxMxV = self.mlm_head(at_masks_BxMxH, table_VxE)
    return jax.nn.log_softmax(logits_BxMxV.astype(jnp.float32), axis=-1)

  def hidden(self, ids_BxL, token_type_ids_BxL, mask_BxL, position_ids_BxL, *, deterministic: bool = True) -> Array:
    """The encoder's hidden states over join(x, z) (the open-QA span reader reads these)."""
    return self.encoder(
      ids_BxL, token_type_ids_BxL, mask_BxL, position_ids_BxL=position_ids_BxL, deterministic=deterministic
    )


class Realm(nn.Module):
  """The three networks of REALM under one parameter tree {'query_embedder', 'doc_embedder', 'reader'}."""

  config: RealmConfig

  def setup(self):
    self.query_embedder = Embedder(self.config, name="query_embedder")
    self.doc_embedder = Embedder(self.config, name="doc_embedder")
    self.reader = KnowledgeAugmentedEncoder(self.config, name="reader")

  def __call__(self, query_ids_BxLq, query_mask_BxLq, doc_ids_BxLd, doc_mask_BxLd, mask_positions_BxM):
    """Touches every submodule (used by `init`); returns (query_BxD, doc_BxD, log_probs_BxMxV)."""
    joined = join(query_ids_BxLq, query_mask_BxLq, doc_ids_BxLd[:, None], doc_mask_BxLd[:, None])
    return (
      self.embed_query(query_ids_BxLq, query_mask_BxLq),
      self.embed_documents(doc_ids_BxLd, doc_mask_BxLd),
      self.read(*(x[:, 0] for x in joined), mask_positions_BxM),
    )

  def embed_query(self, ids_BxL: Array, mask_BxL: Array, *, deterministic: bool = True) -> Array:
    """Embed_input(x): query_BxD."""
    return self.query_embedder(ids_BxL, mask_BxL, deterministic=deterministic)

  def embed_documents(self, ids_NxL: Array, mask_NxL: Array, *, deterministic: bool = True) -> Array:
    """Embed_doc(z): docs_NxD."""
    return self.doc_embedder(ids_NxL, mask_NxL, deterministic=deterministic)

  def read(self, ids_BxL, types_BxL, mask_BxL, positions_BxL, mask_positions_BxM, *, deterministic: bool = True):
    """log p(· | z, x) at the masked positions of join(x, z): log_probs_BxMxV."""
    return self.reader(ids_BxL, types_BxL, mask_BxL, positions_BxL, mask_positions_BxM, deterministic=deterministic)

  def reader_hidden(self, ids_BxL, types_BxL, mask_BxL, positions_BxL, *, deterministic: bool = True) -> Array:
    return self.reader.hidden(ids_BxL, types_BxL, mask_BxL, positions_BxL, deterministic=deterministic)


def join(query_ids_BxLq: Array, query_mask_BxLq: Array, doc_ids_BxKxLd: Array, doc_mask_BxKxLd: Array):
  """join(x, z) = [CLS] x [SEP] z [SEP] for every (query, candidate) pair (§3.2), as fixed-size rows.

  The query row is '[CLS] x [SEP]' + padding and each document row '[CLS] title [SEP] text [SEP]' + padding; the
  document's own [CLS] is dropped, the rest follows the query row. Position ids count real tokens only (the query's
  padding is skipped), token types are 0 for x and 1 for z, so the encoder sees exactly the concatenation. Works on
  numpy or jax arrays. Returns (ids, token_types, mask, positions), each [B, K, Lq + Ld - 1] int32.
  """
  xp = jnp if isinstance(query_ids_BxLq, jax.Array) or isinstance(doc_ids_BxKxLd, jax.Array) else np
  b, k = doc_ids_BxKxLd.shape[:2]
  lq = query_ids_BxLq.shape[1]
  ids = xp.concatenate([xp.broadcast_to(query_ids_BxLq[:, None], (b, k, lq)), doc_ids_BxKxLd[..., 1:]], axis=-1)
  mask = xp.concatenate([xp.broadcast_to(query_mask_BxLq[:, None], (b, k, lq)), doc_mask_BxKxLd[..., 1:]], axis=-1)
  types = xp.concatenate(
    [xp.zeros((b, k, lq), xp.int32), xp.ones(doc_ids_BxKxLd[..., 1:].shape, xp.int32)], axis=-1
  ) * mask
  positions = xp.maximum(xp.cumsum(mask, axis=-1) - 1, 0)
  return ids.astype(xp.int32), types.astype(xp.int32), mask.astype(xp.int32), positions.astype(xp.int32)


def init_params(model: Realm, key: Array, query_len: int, doc_len: int, num_masks: int) -> Any:
  """Random params for every network at the given row sizes (jitted: an eager Flax init of three BERTs is slow)."""
  q = jnp.zeros((1, query_len), jnp.int32)
  d = jnp.zeros((1, doc_len), jnp.int32)
  init = jax.jit(lambda key: model.init(key, q, jnp.ones_like(q), d, jnp.ones_like(d), jnp.zeros((1, num_masks),
                                                                                                    jnp.int32)))
  return init(key)["params"]
