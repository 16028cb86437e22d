"""Reformer self-attention layers in the [B, L, H] -> [B, L, H] form: LSH (shared QK), local chunked, and full.

Kitaev et al. 2020, arXiv 2001.04451: §2 "Shared-QK Transformer" (one projection for queries and keys, keys scaled to
unit length, a position attends to itself only when nothing else is allowed), §2 "LSH attention" (hash, sort, chunk,
attend with one chunk of look-back; several rounds), and the local / full baselines of §5 and Figure 5.
Patent US 10,909,461 claim 1: step 1 (the queries of every position: the learned `qk` projection of
`LSHSelfAttention`), steps 2-4 (hash values, groupings sorted by position, attention within each grouping in
fixed-size segments, union over rounds): `core.lsh.lsh_attention`, called here.

Every layer has the same call signature,
  `__call__(x_BxLxH, attention_mask_BxL=None, *, deterministic=True, buckets=None, return_buckets=False)`,
so a model picks one by name (`ATTENTION_KINDS`, `make_attention`); full and local layers ignore `buckets` and return
`(out, None)` when `return_buckets=True`. `attention_mask_BxL` is 1 for real tokens; padded query rows return zeros.

Rng streams: 'hash' (LSH rotations; not drawn when `buckets` are given) and 'dropout' (attention probabilities; only
when `deterministic=False` and the rate is > 0).

Parameters (no biases, as trax and the HuggingFace port): shared-QK layers ('lsh', 'full_shared_qk') own `qk`,
`value`, `out`; standard layers ('local', 'full') own `query`, `key`, `value`, `out`. Kernels are [H, N, D] and
[N, D, H]. So a model trained with 'lsh' can be evaluated with 'full_shared_qk' (the paper's Table 2 "Full" column)
and 'local' with 'full', on the same parameters.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from core import attention as attention_lib
from core import dropout as dropout_lib
from core import lsh

Array = jax.Array
Dtype = Any

ATTENTION_KINDS = ("lsh", "local", "full", "full_shared_qk")
SHARED_QK_KINDS = ("lsh", "full_shared_qk")


def unit_keys(qk_BxLxNxD: Array) -> Array:
  """Shared-QK keys k̂_j = q_j / ‖q_j‖ (Reformer §2), computed as `core.lsh.lsh_attention` does (float32 norm)."""
  sq_BxLxNx1 = jnp.sum(jnp.square(qk_BxLxNxD.astype(jnp.float32)), -1, keepdims=True)
  return qk_BxLxNxD * jax.lax.rsqrt(jnp.maximum(sq_BxLxNx1, 1e-12)).astype(qk_BxLxNxD.dtype)


def shared_qk_attention(
  qk_BxLxNxD: Array,
  v_BxLxNxD: Array,
  *,
  causal: bool = False,
  attention_mask_BxL: Array | None = None,
  dropout_rate: float = 0.0,
  dropout_key: Array | None = None,
) -> Array:
  """Full shared-QK attention (Reformer §2): softmax over q_i·k̂_j with no 1/√d, own logit −1e5 (used only when
  nothing else is allowed), causal/padding −1e9 -> out_BxLxNxD; padded query rows are zeros. Equals
  `core.lsh.lsh_attention` when one chunk covers the sequence (the paper's "full attention" rows of Table 2)."""
  length = qk_BxLxNxD.shape[1]
  logits_BxNxLxL = jnp.einsum("blnd,bsnd->bnls", qk_BxLxNxD, unit_keys(qk_BxLxNxD), preferred_element_type=jnp.float32)
  pos_L = jnp.arange(length)
  logits_BxNxLxL = jnp.where(pos_L[:, None] == pos_L[None, :], lsh.SELF_LOGIT, logits_BxNxLxL)
  allowed = jnp.ones((1, 1, length, length), jnp.bool_)
  if causal:
    allowed = allowed & attention_lib.make_causal_mask(length)
  if attention_mask_BxL is not None:
    allowed = allowed & attention_lib.make_padding_mask(attention_mask_BxL)
  logits_BxNxLxL = jnp.where(allowed, logits_BxNxLxL, lsh.MASKED_LOGIT)
  probs_BxNxLxL = jax.nn.softmax(logits_BxNxLxL, axis=-1)
  if dropout_rate > 0.0:
    probs_BxNxLxL = dropout_lib.dropout(probs_BxNxLxL, dropout_rate, dropout_key)
  out_BxLxNxD = jnp.einsum("bnls,bsnd->blnd", probs_BxNxLxL.astype(v_BxLxNxD.dtype), v_BxLxNxD)
  return _zero_padded_rows(out_BxLxNxD, attention_mask_BxL)


def _zero_padded_rows(out_BxLxNxD: Array, attention_mask_BxL: Array | None) -> Array:
  if attention_mask_BxL is None:
    return out_BxLxNxD
  return jnp.where((jnp.asarray(attention_mask_BxL) > 0)[:, :, None, None], out_BxLxNxD, 0)


class LSHSelfAttention(nn.Module):
  """Shared-QK LSH self-attention (Reformer §2; claim 1 steps 1-4): `qk`, `value` -> `core.lsh.lsh_attention` -> `out`.

  Attributes mirror trax `LSHSelfAttention`: n_hashes rounds, n_buckets (even int, tuple of even factors, or None
  for trax's default), chunk_len, n_chunks_before/after, causal. The hashing key comes from the 'hash' rng stream
  unless `buckets` (int32 [B, N, R, L], from `return_buckets=True`) are given.
  """

  num_heads: int
  head_dim: int
  n_hashes: int = 1
  n_buckets: int | tuple[int, ...] | None = None
  chunk_len: int = 64
  n_chunks_before: int = 1
  n_chunks_after: int = 0
  causal: bool = False
  dropout_rate: float = 0.0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x_BxLxH, attention_mask_BxL=None, *, deterministic=True, buckets=None, return_buckets=False):
    qk_BxLxNxD = _project(self, "qk", x_BxLxH)
    v_BxLxNxD = _project(self, "value", x_BxLxH)
    rate = 0.0 if deterministic else self.dropout_rate
    ctx_BxLxNxD, buckets_BxNxRxL = lsh.lsh_attention(
      qk_BxLxNxD,
      v_BxLxNxD,
      self.make_rng("hash") if buckets is None else None,
      n_hashes=self.n_hashes,
      n_buckets=self.n_buckets,
      chunk_len=self.chunk_len,
      causal=self.causal,
      attention_mask=attention_mask_BxL,
      n_chunks_before=self.n_chunks_before,
      n_chunks_after=self.n_chunks_after,
      buckets=buckets,
      return_buckets=True,
      dropout_rate=rate,
      dropout_key=self.make_rng("dropout") if rate > 0.0 else None,
    )
    out_BxLxH = _output(self, ctx_BxLxNxD, x_BxLxH.shape[-1])
    return (out_BxLxH, buckets_BxNxRxL) if return_buckets else out_BxLxH


class LocalSelfAttention(nn.Module):
  """Chunked local self-attention (Reformer §5 / Figure 5 baseline; trax `SelfAttention(chunk_len=...)`): separate
  q, k, v, softmax(q kᵀ/√d) within chunks of `chunk_len` plus `n_chunks_before/after` neighbours
  (`core.lsh.local_attention`). L must be a multiple of chunk_len (or <= it); ReformerLM pads to ensure it."""

  num_heads: int
  head_dim: int
  chunk_len: int = 64
  n_chunks_before: int = 1
  n_chunks_after: int = 0
  causal: bool = False
  dropout_rate: float = 0.0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x_BxLxH, attention_mask_BxL=None, *, deterministic=True, buckets=None, return_buckets=False):
    del buckets  # no hashing
    q, k, v = (_project(self, name, x_BxLxH) for name in ("query", "key", "value"))
    rate = 0.0 if deterministic else self.dropout_rate
    ctx_BxLxNxD = lsh.local_attention(
      q,
      k,
      v,
      chunk_len=self.chunk_len,
      causal=self.causal,
      attention_mask=attention_mask_BxL,
      n_chunks_before=self.n_chunks_before,
      n_chunks_after=self.n_chunks_after,
      dropout_rate=rate,
      dropout_key=self.make_rng("dropout") if rate > 0.0 else None,
    )
    out_BxLxH = _output(self, ctx_BxLxNxD, x_BxLxH.shape[-1])
    return (out_BxLxH, None) if return_buckets else out_BxLxH


class FullSelfAttention(nn.Module):
  """Full O(L²) self-attention, the Figure 5 / Table 2 baseline. Standard (`shared_qk=False`): q, k, v,
  softmax(q kᵀ/√d) via `core.attention.dot_product_attention` with causal and padding masks (Vaswani et al. 2017
  Eq. 1). Shared-QK (`shared_qk=True`): `shared_qk_attention`, the same parameters and logits as `LSHSelfAttention`
  with every key in reach."""

  num_heads: int
  head_dim: int
  causal: bool = False
  shared_qk: bool = False
  dropout_rate: float = 0.0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x_BxLxH, attention_mask_BxL=None, *, deterministic=True, buckets=None, return_buckets=False):
    del buckets  # no hashing
    rate = 0.0 if deterministic else self.dropout_rate
    dropout_key = self.make_rng("dropout") if rate > 0.0 else None
    if self.shared_qk:
      ctx_BxLxNxD = shared_qk_attention(
        _project(self, "qk", x_BxLxH),
        _project(self, "value", x_BxLxH),
        causal=self.causal,
        attention_mask_BxL=attention_mask_BxL,
        dropout_rate=rate,
        dropout_key=dropout_key,
      )
    else:
      q, k, v = (_project(self, name, x_BxLxH) for name in ("query", "key", "value"))
      mask = attention_lib.combine_masks(
        attention_lib.make_causal_mask(x_BxLxH.shape[1]) if self.causal else None,
        None if attention_mask_BxL is None else attention_lib.make_padding_mask(attention_mask_BxL),
      )
      ctx_BxLxNxD = attention_lib.dot_product_attention(
        q, k, v, mask, dropout_rate=rate, dropout_rng=dropout_key, deterministic=rate == 0.0
      )
      ctx_BxLxNxD = _zero_padded_rows(ctx_BxLxNxD, attention_mask_BxL)
    out_BxLxH = _output(self, ctx_BxLxNxD, x_BxLxH.shape[-1])
    return (out_BxLxH, None) if return_buckets else out_BxLxH


def _project(layer: nn.Module, name: str, x_BxLxH: Array) -> Array:
  """x @ W_name ([H, N, D], no bias): a child `name` of `layer` (called inside its compact __call__)."""
  dense = nn.DenseGeneral((layer.num_heads, layer.head_dim), use_bias=False, dtype=layer.dtype, name=name)
  return dense(x_BxLxH)


def _output(layer: nn.Module, ctx_BxLxNxD: Array, width: int) -> Array:
  """ctx @ W_out ([N, D, H], no bias): the child `out` of `layer` (called inside its compact __call__)."""
  return nn.DenseGeneral(width, axis=(-2, -1), use_bias=False, dtype=layer.dtype, name="out")(ctx_BxLxNxD)
