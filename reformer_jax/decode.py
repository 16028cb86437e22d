"""Autoregressive sampling from a ReformerLM with a per-layer key/value cache (trax / HuggingFace "predict" mode).

Kitaev et al. 2020 §5 (the generative models of enwik8 and imagenet64 are sampled one symbol at a time). One decode
step embeds the newest token and runs the reversible layers on that single position (Y1 = X1 + F(X2),
Y2 = X2 + G(Y1), §3), so every layer keeps only the keys and values of the positions before it:
  - 'full' and 'local' layers: keys/values of the standard projections; 'local' restricts the query at position t
    to positions j <= t in its own chunk and the `local_chunks_before` chunks before it, exactly the keys
    `core.lsh.local_attention` gives it in the full forward;
  - 'lsh' and 'full_shared_qk' layers: the shared-QK projection and values; the key cache holds the unit-length keys
    and the query at t attends to ALL cached positions j <= t (own key −1e5, as `core.lsh`). Choice made here: for
    'lsh' this is exact when one LSH chunk covers the model's padded length (then LSH attention is full shared-QK
    attention); for longer sequences it is full attention over the prefix, a superset of what the hashed chunks let a
    position see, not a re-run of the hashing (HF caches buckets instead; re-hashing the prefix each step would cost
    the full forward). tests/reformer_jax/test_decode.py asserts, for a model with 'lsh', 'local', 'full' and
    'full_shared_qk' layers whose LSH chunk covers the sequence, that the cached step's logits equal
    `ReformerLM.apply` at every position (atol 1e-4), and that greedy sampling follows the full forward's argmax.

The step reads the model's params by name (the tree documented in `reformer_jax.model`) and reuses its LayerNorm,
feed-forward block and position-embedding modules. Per new token: O(L · n_layers · d) time, O(L · n_layers · d)
memory for the cache.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp

from core import lsh
from reformer_jax import attention as attention_lib
from reformer_jax import model as model_lib
from reformer_jax import reversible

Array = jax.Array
Params = Any
Cache = list[dict[str, Array]]


def init_cache(config: model_lib.ReformerConfig, batch: int, length: int) -> Cache:
  """Per layer {'k', 'v'}: zeros [B, length, N, D] in the compute dtype."""
  shape = (batch, length, config.n_heads, config.d_head)
  return [{"k": jnp.zeros(shape, config.compute_dtype), "v": jnp.zeros(shape, config.compute_dtype)}
          for _ in range(config.n_layers)]


def _project(dense_params: Params, h_BxH: Array) -> Array:
  return jnp.einsum("bh,hnd->bnd", h_BxH, dense_params["kernel"].astype(h_BxH.dtype))


def _attend(config, kind: str, q_BxNxD: Array, k_BxTxNxD: Array, v_BxTxNxD: Array, t: Array) -> Array:
  """The attention of the query at position t over the cached positions it may see (see the module docstring)."""
  pos_T = jnp.arange(k_BxTxNxD.shape[1])
  allowed_T = pos_T <= t
  if kind in attention_lib.SHARED_QK_KINDS:
    logits_BxNxT = jnp.einsum("bnd,btnd->bnt", q_BxNxD, k_BxTxNxD, preferred_element_type=jnp.float32)
    logits_BxNxT = jnp.where(pos_T == t, lsh.SELF_LOGIT, logits_BxNxT)
  else:
    scale = jnp.asarray(1.0 / math.sqrt(config.d_head), q_BxNxD.dtype)
    logits_BxNxT = jnp.einsum("bnd,btnd->bnt", q_BxNxD * scale, k_BxTxNxD, preferred_element_type=jnp.float32)
    if kind == "local":
      chunk = config.local_chunk_len
      allowed_T = allowed_T & (pos_T // chunk >= t // chunk - config.local_chunks_before)
  probs_BxNxT = jax.nn.softmax(jnp.where(allowed_T, logits_BxNxT, lsh.MASKED_LOGIT), axis=-1)
  return jnp.einsum("bnt,btnd->bnd", probs_BxNxT.astype(v_BxTxNxD.dtype), v_BxTxNxD)


def decode_step(
  params: Params, config: model_lib.ReformerConfig, cache: Cache, ids_B: Array, t: Array, pos_table_TxH: Array
) -> tuple[Array, Cache]:
  """ReformerLM on the single position t, given the caches of positions < t -> (logits_BxV float32, new cache).

  `pos_table_TxH` is `position_table(params, config, T)`; ids_B are the tokens at position t.
  """
  cfg = config
  dtype = cfg.compute_dtype
  tree = params["params"]["reformer"] if "params" in params else params["reformer"]
  head = params["params"]["lm_head"] if "params" in params else params["lm_head"]
  layer_norm = reversible.LayerNorm(cfg.layer_norm_eps, dtype)
  x_BxH = tree["embed"]["embedding"].astype(dtype)[ids_B] + jax.lax.dynamic_index_in_dim(pos_table_TxH, t, 0, False)
  x1_BxH = x2_BxH = x_BxH.astype(dtype)
  new_cache = []
  for i, kind in enumerate(cfg.kinds):
    layer = tree["stack"][f"layer_{i}"]
    attn = layer["attention"]["attention"]
    h_BxH = layer_norm.apply({"params": layer["attention"]["norm"]}, x2_BxH)
    if kind in attention_lib.SHARED_QK_KINDS:
      q_BxNxD = _project(attn["qk"], h_BxH)
      k_BxNxD = attention_lib.unit_keys(q_BxNxD[:, None])[:, 0]
    else:
      q_BxNxD, k_BxNxD = _project(attn["query"], h_BxH), _project(attn["key"], h_BxH)
    v_BxNxD = _project(attn["value"], h_BxH)
    k_BxTxNxD = jax.lax.dynamic_update_index_in_dim(cache[i]["k"], k_BxNxD.astype(dtype), t, 1)
    v_BxTxNxD = jax.lax.dynamic_update_index_in_dim(cache[i]["v"], v_BxNxD.astype(dtype), t, 1)
    new_cache.append({"k": k_BxTxNxD, "v": v_BxTxNxD})
    ctx_BxNxD = _attend(cfg, kind, q_BxNxD, k_BxTxNxD, v_BxTxNxD, t)
    x1_BxH = x1_BxH + jnp.einsum("bnd,ndh->bh", ctx_BxNxD, attn["out"]["kernel"].astype(dtype))  # Y1
    ff_BxH = model_lib.FeedForwardBlock(cfg).apply({"params": layer["feed_forward"]}, x1_BxH[:, None])[:, 0]
    x1_BxH, x2_BxH = x1_BxH, x2_BxH + ff_BxH  # (Y1, Y2)
  h_Bx2H = layer_norm.apply({"params": tree["final_norm"]}, jnp.concatenate([x1_BxH, x2_BxH], axis=-1))
  logits_BxV = h_Bx2H @ head["kernel"].astype(dtype) + head["bias"].astype(dtype)
  return logits_BxV.astype(jnp.float32), new_cache


def position_table(params: Params, config: model_lib.ReformerConfig, length: int) -> Array:
  """The model's position embeddings of positions 0..length-1 -> [length, H]."""
  tree = params["params"]["reformer"] if "params" in params else params["reformer"]
  module = model_lib.position_embedding(config)
  return module.apply({"params": tree["pos_embed"]}, length).astype(config.compute_dtype)


def _check(config: model_lib.ReformerConfig, length: int) -> None:
  if config.causal is False:
    raise ValueError("config.causal: cached decoding needs a causal ReformerLM (causal None or True), got False")
  if length > config.n_positions:
    raise ValueError(f"length: {length} tokens exceed the model's {config.n_positions} positions")


@functools.partial(jax.jit, static_argnames=("config",))
def incremental_logits(params: Params, config: model_lib.ReformerConfig, ids_BxL: Array) -> Array:
  """Teacher-forced cached decoding: logits_BxLxV from one `decode_step` per position (what sampling computes)."""
  batch, length = ids_BxL.shape
  _check(config, length)
  pos_table_LxH = position_table(params, config, length)

  def step(cache, t):
    logits_BxV, cache = decode_step(params, config, cache, ids_BxL[:, t], t, pos_table_LxH)
    return cache, logits_BxV

  _, logits_LxBxV = jax.lax.scan(step, init_cache(config, batch, length), jnp.arange(length))
  return jnp.moveaxis(logits_LxBxV, 0, 1)


@functools.partial(jax.jit, static_argnames=("config", "max_new_tokens", "temperature", "top_k"))
def sample(
  params: Params,
  config: model_lib.ReformerConfig,
  prompt_ids: Array,
  key: Array,
  *,
  max_new_tokens: int,
  temperature: float = 1.0,
  top_k: int | None = None,
) -> Array:
  """Continues `prompt_ids` ([B, P] or [P]) by `max_new_tokens` tokens -> ids [B, P + max_new_tokens] (prompt
  included). The prompt runs through the same cached step (one `lax.scan` over all positions); token t+1 is drawn
  from softmax(logits_t / temperature) restricted to the `top_k` largest (temperature 0: argmax), with key
  fold_in(key, t). Same key -> same tokens."""
  if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
    raise ValueError(f"max_new_tokens: must be an int >= 1, got {max_new_tokens!r}")
  if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature >= 0):
    raise ValueError(f"temperature: must be a finite number >= 0 (0 = greedy), got {temperature!r}")
  bad_top_k = isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= config.vocab_size
  if top_k is not None and bad_top_k:
    raise ValueError(f"top_k: must be None or an int in [1, vocab_size={config.vocab_size}], got {top_k!r}")
  prompt_BxP = prompt_ids[None] if prompt_ids.ndim == 1 else prompt_ids
  batch, prompt_len = prompt_BxP.shape
  if prompt_len < 1:
    raise ValueError("prompt_ids: must hold at least one token per row")
  total = prompt_len + max_new_tokens
  _check(config, total)
  pos_table_TxH = position_table(params, config, total)
  ids_BxT = jnp.pad(prompt_BxP.astype(jnp.int32), ((0, 0), (0, max_new_tokens)))

  def step(carry, t):
    cache, ids_BxT = carry
    logits_BxV, cache = decode_step(params, config, cache, ids_BxT[:, t], t, pos_table_TxH)
    if temperature == 0:
      next_B = jnp.argmax(logits_BxV, axis=-1).astype(jnp.int32)
    else:
      logits_BxV = logits_BxV / temperature
      if top_k is not None:
        kth_Bx1 = jax.lax.top_k(logits_BxV, top_k)[0][:, -1:]
        logits_BxV = jnp.where(logits_BxV < kth_Bx1, -jnp.inf, logits_BxV)
      next_B = jax.random.categorical(jax.random.fold_in(key, t), logits_BxV).astype(jnp.int32)
    next_B = jnp.where(t + 1 < prompt_len, ids_BxT[:, t + 1], next_B)  # inside the prompt: keep the prompt
    return (cache, jax.lax.dynamic_update_index_in_dim(ids_BxT, next_B, t + 1, 1)), None

  (_, ids_BxT), _ = jax.lax.scan(step, (init_cache(config, batch, total), ids_BxT), jnp.arange(total - 1))
  return ids_BxT
