"""Angular LSH attention and chunked local attention in the [batch, length, heads, head_dim] layout.

Reformer (Kitaev, Kaiser, Levskaya 2020, arXiv 2001.04451) §2: shared-QK attention, angular locality-sensitive
hashing h(x) = argmax([xR; −xR]) with a random rotation R per hash round, a sort by (bucket, position), attention
within fixed-size chunks of the sorted order plus look-back, and several rounds merged by their log-sum-exp.
Patent US 10,909,461 claim 1: step 1 (queries of each position: the caller's projection, `qk_BxLxNxD`), step 2 (hash
values per query and round: `hash_vectors`), step 3 (groupings: same bucket together, sorted by position inside:
`sort_by_bucket`), step 4 (attention inside each grouping in fixed-size segments of the sorted order, the union over
rounds: `_attend_in_chunks` + the round merge in `lsh_attention`).

Conventions follow google/trax `efficient_attention.py` and the HuggingFace port matched to it:
  - keys are the queries scaled to unit length; logits q·k̂ with no further 1/√d (the query keeps its norm: a learned
    temperature);
  - a position attends to itself only when nothing else is allowed: its own logit is −1e5 (finite); causal and
    padding masks are −1e9, on the original positions carried through the sort;
  - padded positions hash to a bucket of their own (after every real bucket), so they change no unpadded output;
  - chunks look `n_chunks_before` back and `n_chunks_after` ahead in the sorted order, wrapping around (chunk 0 of a
    round sees the last chunk of the previous round, as in trax);
  - rounds: out = Σ_r softmax_r(lse_r) · out_r. No cross-round de-duplication (trax's current code has none).

Everything is pure and jit-compiled; batch and heads are independent rows, so inputs sharded over a mesh's data axis
(batch) need no communication. Sorting gathers with a permutation whose gradient is a gather with the inverse
permutation (`permute`): no scatter in the backward pass. `lsh_attention(..., return_buckets=True)` returns the
bucket of every (head, round, position); passing them back as `buckets=` skips hashing, so a recomputing backward pass
(reversible layers) attends exactly as the forward pass did, even where reconstruction error would flip an argmax.

Shape suffixes: B batch, L length, N heads, D head dim, R hash rounds, T = R·L sorted items, C chunks, Q chunk
length, K keys per chunk (= Q · (1 + before + after)).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from core import dropout as dropout_lib

Array = jax.Array
Buckets = int | Sequence[int] | None

SELF_LOGIT = -1e5  # a position's own key: used only when no other key is allowed
MASKED_LOGIT = -1e9  # causal / padding


def default_n_buckets(length: int, chunk_len: int) -> int | tuple[int, int]:
  """trax's default: 2·max(1, L // chunk_len) buckets (an average bucket is half a chunk, paper §2), factorised as
  (2^⌈log2 √n⌉, n / that) above 128 so the hashing matmul stays small."""
  n = 2 * max(1, length // chunk_len)
  if n <= 128:
    return n
  first = 2 ** math.ceil(math.log2(math.sqrt(n)))
  return (first, n // first) if n % first == 0 and (n // first) % 2 == 0 else n


def bucket_factors(n_buckets: int | Sequence[int]) -> tuple[int, ...]:
  """The factors of a bucket count (an int is one factor); each must be an even int >= 2 (argmax over [xR; −xR])."""
  factors = (n_buckets,) if isinstance(n_buckets, int) and not isinstance(n_buckets, bool) else tuple(n_buckets)
  if not factors or any(isinstance(f, bool) or not isinstance(f, int) or f < 2 or f % 2 for f in factors):
    raise ValueError(f"n_buckets: must be an even int >= 2 or a tuple of them, got {n_buckets!r}")
  return factors


def hash_vectors(
  x_BxLxNxD: Array, key: Array, n_buckets: int | Sequence[int], n_hashes: int, attention_mask: Array | None = None
) -> Array:
  """Angular LSH (paper §2, Andoni et al. 2015): bucket = argmax([xR; −xR]) for a random R ~ N(0, 1) of shape
  [D, n_buckets/2], independent per head and round. A factorised count (f1, f2, ...) hashes with one rotation per
  factor and combines the argmaxes mixed-radix (b1 + f1·b2 + ...). Padded positions (attention_mask 0) get bucket
  n_buckets, after every real one. Returns buckets_BxNxRxL, int32 in [0, n_buckets]."""
  factors = bucket_factors(n_buckets)
  _, _, n_heads, head_dim = x_BxLxNxD.shape
  x_BxLxNxD = x_BxLxNxD.astype(jnp.float32)
  buckets_BxNxRxL = jnp.zeros((), jnp.int32)
  radix = 1
  for index, factor in enumerate(factors):
    rotations_NxDxRxF = jax.random.normal(jax.random.fold_in(key, index), (n_heads, head_dim, n_hashes, factor // 2))
    rotated_BxNxRxLxF = jnp.einsum("blnd,ndrf->bnrlf", x_BxLxNxD, rotations_NxDxRxF)
    signed_BxNxRxLx2F = jnp.concatenate([rotated_BxNxRxLxF, -rotated_BxNxRxLxF], axis=-1)
    buckets_BxNxRxL = buckets_BxNxRxL + radix * jnp.argmax(signed_BxNxRxLx2F, axis=-1).astype(jnp.int32)
    radix *= factor
  if attention_mask is not None:
    real_Bx1x1xL = (jnp.asarray(attention_mask) > 0)[:, None, None, :]
    buckets_BxNxRxL = jnp.where(real_Bx1x1xL, buckets_BxNxRxL, radix)
  return buckets_BxNxRxL


@jax.custom_vjp
def permute(x_BxNxTx_: Array, perm_BxNxT: Array, inverse_BxNxT: Array) -> Array:
  """x[..., perm, :] along axis 2, for a permutation `perm` whose inverse is `inverse`. The gradient is the
  cotangent gathered with the inverse permutation (trax's sort VJP), not the scatter-add autodiff would emit."""
  return _gather(x_BxNxTx_, perm_BxNxT)


def _gather(x_BxNxTx_: Array, index_BxNxT: Array) -> Array:
  index = index_BxNxT.reshape(index_BxNxT.shape + (1,) * (x_BxNxTx_.ndim - 3))
  return jnp.take_along_axis(x_BxNxTx_, index, axis=2)


def _permute_fwd(x, perm, inverse):
  return _gather(x, perm), (perm, inverse)


def _permute_bwd(residuals, g):
  perm, inverse = residuals
  return _gather(g, inverse), None, None


permute.defvjp(_permute_fwd, _permute_bwd)


def sort_by_bucket(buckets_BxNxRxL: Array) -> tuple[Array, Array]:
  """(sort_BxNxT, undo_BxNxT): the stable order of the T = R·L items (round r, position i) by (round, bucket,
  position) — claim 1 step 3 — and its inverse permutation. Item r·L + i of the tiled input is position i of round r."""
  _, _, n_hashes, length = buckets_BxNxRxL.shape
  n_slots = jnp.max(buckets_BxNxRxL) + 1  # buckets of one round, the padding bucket included
  rounds_R = jnp.arange(n_hashes, dtype=jnp.int32)
  # (round, bucket, position) packed in one int32 key: unique, so any sort is stable.
  key_BxNxRxL = ((buckets_BxNxRxL + rounds_R[:, None] * n_slots) * length + jnp.arange(length, dtype=jnp.int32))
  key_BxNxT = jax.lax.stop_gradient(key_BxNxRxL.reshape(*key_BxNxRxL.shape[:2], n_hashes * length))
  items_BxNxT = jax.lax.broadcasted_iota(jnp.int32, key_BxNxT.shape, 2)
  # Keys are unique, so an unstable one-key sort gives the stable order.
  _, sort_BxNxT = jax.lax.sort((key_BxNxT, items_BxNxT), dimension=-1, num_keys=1, is_stable=False)
  # The inverse permutation: undo[sort[t]] = t (integers, outside any gradient path; O(T) instead of a second sort).
  b, n, _ = jnp.indices(sort_BxNxT.shape, sparse=True)
  undo_BxNxT = jnp.zeros_like(sort_BxNxT).at[b, n, sort_BxNxT].set(items_BxNxT, unique_indices=True)
  return sort_BxNxT, undo_BxNxT


def _chunks(x_BxNxTx_: Array, chunk_len: int) -> Array:
  """[B, N, T, ...] -> [B, N, C, chunk_len, ...]."""
  b, n, t = x_BxNxTx_.shape[:3]
  return x_BxNxTx_.reshape(b, n, t // chunk_len, chunk_len, *x_BxNxTx_.shape[3:])


def look_adjacent(x_BxNxCxQx_: Array, n_chunks_before: int, n_chunks_after: int) -> Array:
  """Each chunk concatenated with its `n_chunks_before` predecessors and `n_chunks_after` successors along the
  within-chunk axis (wrapping around): [B, N, C, Q, ...] -> [B, N, C, (before + 1 + after)·Q, ...]."""
  if n_chunks_before == 0 and n_chunks_after == 0:
    return x_BxNxCxQx_
  parts = [jnp.roll(x_BxNxCxQx_, -offset, axis=2) for offset in range(-n_chunks_before, n_chunks_after + 1)]
  return jnp.concatenate(parts, axis=3)


def _attend_in_chunks(
  q_BxNxCxQxD: Array,
  k_BxNxCxKxD: Array,
  v_BxNxCxKxD: Array,
  allowed_BxNxCxQxK: Array,
  self_BxNxCxQxK: Array | None,
  dropout_rate: float,
  dropout_key: Array | None,
) -> tuple[Array, Array]:
  """Softmax attention inside each chunk (claim 1 step 4): (out_BxNxCxQxD, lse_BxNxCxQ), logits in float32.
  Disallowed keys get −1e9; a query's own key −1e5 (`self_`), so it is used only when nothing else is allowed."""
  logits = jnp.einsum("bncqd,bnckd->bncqk", q_BxNxCxQxD, k_BxNxCxKxD, preferred_element_type=jnp.float32)
  if self_BxNxCxQxK is not None:
    logits = jnp.where(self_BxNxCxQxK, SELF_LOGIT, logits)
  logits = jnp.where(allowed_BxNxCxQxK, logits, MASKED_LOGIT)
  # Normalise by the row max, not by exp(logits - lse): at a lone self logit of −1e5, float32's rounding of lse (ulp
  # 0.008) would scale the whole row by up to 0.4%.
  max_BxNxCxQx1 = jax.lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True))
  unnormalised = jnp.exp(logits - max_BxNxCxQx1)
  total_BxNxCxQx1 = jnp.sum(unnormalised, axis=-1, keepdims=True)
  probs = unnormalised / total_BxNxCxQx1
  lse_BxNxCxQx1 = max_BxNxCxQx1 + jnp.log(total_BxNxCxQx1)
  if dropout_rate:
    probs = dropout_lib.dropout(probs, dropout_rate, dropout_key)
  out = jnp.einsum("bncqk,bnckd->bncqd", probs.astype(v_BxNxCxKxD.dtype), v_BxNxCxKxD)
  return out, lse_BxNxCxQx1[..., 0]


def _check_lengths(length: int, chunk_len: int, n_chunks_before: int, n_chunks_after: int) -> int:
  if isinstance(chunk_len, bool) or not isinstance(chunk_len, int) or chunk_len < 1:
    raise ValueError(f"chunk_len: must be a positive int, got {chunk_len!r}")
  for name, value in (("n_chunks_before", n_chunks_before), ("n_chunks_after", n_chunks_after)):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
      raise ValueError(f"{name}: must be an int >= 0, got {value!r}")
  chunk_len = min(chunk_len, length)
  if length % chunk_len:
    raise ValueError(
      f"chunk_len: the length {length} is not a multiple of chunk_len {chunk_len} (pad the input and mask it; "
      "reformer_jax models do this themselves)"
    )
  return chunk_len


def _real_positions(attention_mask: Array | None, batch: int, length: int) -> Array:
  if attention_mask is None:
    return jnp.ones((batch, length), jnp.bool_)
  if attention_mask.shape != (batch, length):
    raise ValueError(f"attention_mask: shape {attention_mask.shape} != [batch, length] {(batch, length)}")
  return jnp.asarray(attention_mask) > 0


@functools.partial(
  jax.jit,
  static_argnames=(
    "n_hashes", "n_buckets", "chunk_len", "causal", "n_chunks_before", "n_chunks_after", "return_buckets",
    "dropout_rate",
  ),
)
def lsh_attention(
  qk_BxLxNxD: Array,
  v_BxLxNxD: Array,
  key: Array | None,
  *,
  n_hashes: int,
  n_buckets: Buckets,
  chunk_len: int,
  causal: bool = False,
  attention_mask: Array | None = None,
  n_chunks_before: int = 1,
  n_chunks_after: int = 0,
  buckets: Array | None = None,
  return_buckets: bool = False,
  dropout_rate: float = 0.0,
  dropout_key: Array | None = None,
) -> Array | tuple[Array, Array]:
  """Shared-QK LSH attention (Reformer §2; claim 1 steps 2-4) -> out_BxLxNxD (and buckets_BxNxRxL if asked).

  Args:
    qk_BxLxNxD: the shared query/key projection; keys are its rows scaled to unit length.
    v_BxLxNxD: values.
    key: typed PRNG key of the random rotations (unused when `buckets` is given).
    n_hashes: hash rounds R >= 1; their outputs are merged by softmax over each round's log-sum-exp.
    n_buckets: buckets per round: an even int, a tuple of even factors, or None for `default_n_buckets`.
    chunk_len: length of the sorted chunks (clamped to L); L must be a multiple of it.
    causal: position i attends only to positions <= i (original positions, not sorted ones).
    attention_mask: [B, L], 1 = real token; padded keys are never attended, padded query rows return zeros.
    n_chunks_before, n_chunks_after: neighbouring chunks each chunk also attends to (trax: 1 and 0).
    buckets: int32 [B, N, R, L] from an earlier call with `return_buckets=True`; skips hashing.
    dropout_rate, dropout_key: dropout on the attention probabilities.
  """
  batch, length, n_heads, head_dim = qk_BxLxNxD.shape
  if v_BxLxNxD.shape[:3] != (batch, length, n_heads):
    raise ValueError(f"v: shape {v_BxLxNxD.shape} does not match qk {qk_BxLxNxD.shape} in [batch, length, heads]")
  if isinstance(n_hashes, bool) or not isinstance(n_hashes, int) or n_hashes < 1:
    raise ValueError(f"n_hashes: must be an int >= 1, got {n_hashes!r}")
  chunk_len = _check_lengths(length, chunk_len, n_chunks_before, n_chunks_after)
  real_BxL = _real_positions(attention_mask, batch, length)
  if buckets is None:
    if key is None:
      raise ValueError("key: required to hash (pass `buckets` from an earlier call to skip hashing)")
    n_buckets = default_n_buckets(length, chunk_len) if n_buckets is None else n_buckets
    n_total = math.prod(bucket_factors(n_buckets))
    if n_hashes * (n_total + 1) * length >= 2**31:
      raise ValueError(f"n_buckets: {n_buckets!r} x n_hashes {n_hashes} x length {length} overflows the int32 sort key")
    buckets = hash_vectors(qk_BxLxNxD, key, n_buckets, n_hashes, real_BxL)
  elif buckets.shape != (batch, n_heads, n_hashes, length):
    expected = (batch, n_heads, n_hashes, length)
    raise ValueError(f"buckets: shape {buckets.shape} != [batch, heads, n_hashes, length] {expected}")
  buckets = jax.lax.stop_gradient(buckets)
  sort_BxNxT, undo_BxNxT = sort_by_bucket(buckets)

  def tiled(x_BxLxNx_: Array) -> Array:  # [B, L, N, ...] -> [B, N, R·L, ...]: item r·L + i is position i
    x_BxNxLx_ = jnp.moveaxis(x_BxLxNx_, 2, 1)
    return jnp.concatenate([x_BxNxLx_] * n_hashes, axis=2) if n_hashes > 1 else x_BxNxLx_

  sorted_qk_BxNxTxD = permute(tiled(qk_BxLxNxD), sort_BxNxT, undo_BxNxT)
  sorted_v_BxNxTxD = permute(tiled(v_BxLxNxD), sort_BxNxT, undo_BxNxT)
  sorted_pos_BxNxT = sort_BxNxT % length
  sorted_real_BxNxT = _gather(jnp.broadcast_to(real_BxL[:, None, :], (batch, n_heads, length)), sorted_pos_BxNxT)

  q_BxNxCxQxD = _chunks(sorted_qk_BxNxTxD, chunk_len)
  unit_k_BxNxCxQxD = q_BxNxCxQxD * jax.lax.rsqrt(
    jnp.maximum(jnp.sum(jnp.square(q_BxNxCxQxD.astype(jnp.float32)), -1, keepdims=True), 1e-12)
  ).astype(q_BxNxCxQxD.dtype)
  adjacent = functools.partial(look_adjacent, n_chunks_before=n_chunks_before, n_chunks_after=n_chunks_after)
  k_BxNxCxKxD = adjacent(unit_k_BxNxCxQxD)
  v_BxNxCxKxD = adjacent(_chunks(sorted_v_BxNxTxD, chunk_len))
  q_pos_BxNxCxQ = _chunks(sorted_pos_BxNxT, chunk_len)
  k_pos_BxNxCxK = adjacent(q_pos_BxNxCxQ)
  allowed = adjacent(_chunks(sorted_real_BxNxT, chunk_len))[..., None, :]
  if causal:
    allowed = allowed & (q_pos_BxNxCxQ[..., :, None] >= k_pos_BxNxCxK[..., None, :])
  is_self = q_pos_BxNxCxQ[..., :, None] == k_pos_BxNxCxK[..., None, :]
  out_BxNxCxQxD, lse_BxNxCxQ = _attend_in_chunks(
    q_BxNxCxQxD, k_BxNxCxKxD, v_BxNxCxKxD, allowed, is_self, dropout_rate, dropout_key
  )

  # Undo the sort, then merge the rounds: out = Σ_r softmax_r(lse_r) · out_r.
  out_BxNxTxD = permute(out_BxNxCxQxD.reshape(sorted_v_BxNxTxD.shape), undo_BxNxT, sort_BxNxT)
  lse_BxNxT = permute(lse_BxNxCxQ.reshape(sort_BxNxT.shape), undo_BxNxT, sort_BxNxT)
  out_BxNxRxLxD = out_BxNxTxD.reshape(batch, n_heads, n_hashes, length, -1)
  weights_BxNxRxL = jax.nn.softmax(lse_BxNxT.reshape(batch, n_heads, n_hashes, length), axis=2)
  out_BxNxLxD = jnp.einsum("bnrld,bnrl->bnld", out_BxNxRxLxD, weights_BxNxRxL.astype(out_BxNxRxLxD.dtype))
  out_BxLxNxD = jnp.where(real_BxL[:, :, None, None], jnp.moveaxis(out_BxNxLxD, 1, 2), 0)
  return (out_BxLxNxD, buckets) if return_buckets else out_BxLxNxD


@functools.partial(
  jax.jit, static_argnames=("chunk_len", "causal", "n_chunks_before", "n_chunks_after", "dropout_rate")
)
def local_attention(
  q_BxLxNxD: Array,
  k_BxLxNxD: Array,
  v_BxLxNxD: Array,
  *,
  chunk_len: int,
  causal: bool = False,
  attention_mask: Array | None = None,
  n_chunks_before: int = 1,
  n_chunks_after: int = 0,
  dropout_rate: float = 0.0,
  dropout_key: Array | None = None,
) -> Array:
  """Chunked local attention (Reformer §2 "chunking", trax `SelfAttention(chunk_len=...)`): the sequence is cut into
  chunks of `chunk_len` that attend to themselves and their neighbours, softmax(q kᵀ / √d) v. No wrap-around: chunk 0
  has no predecessor. The speed floor of LSH attention with the same chunk length (no hashing, no sort).
  -> out_BxLxNxD; padded query rows return zeros."""
  batch, length, n_heads, head_dim = q_BxLxNxD.shape
  chunk_len = _check_lengths(length, chunk_len, n_chunks_before, n_chunks_after)
  real_BxL = _real_positions(attention_mask, batch, length)
  adjacent = functools.partial(look_adjacent, n_chunks_before=n_chunks_before, n_chunks_after=n_chunks_after)

  def chunked(x_BxLxNxD: Array) -> Array:
    return _chunks(jnp.moveaxis(x_BxLxNxD, 2, 1), chunk_len)

  scale = jnp.asarray(1.0 / math.sqrt(head_dim), q_BxLxNxD.dtype)
  pos_1x1xCxQ = _chunks(jnp.arange(length, dtype=jnp.int32)[None, None, :], chunk_len)
  k_pos_1x1xCxK = adjacent(pos_1x1xCxQ)
  chunk_offset = k_pos_1x1xCxK[..., None, :] // chunk_len - pos_1x1xCxQ[..., :, None] // chunk_len
  allowed = (chunk_offset >= -n_chunks_before) & (chunk_offset <= n_chunks_after)  # no wrap-around
  allowed = allowed & adjacent(_chunks(real_BxL[:, None, :], chunk_len))[..., None, :]
  if causal:
    allowed = allowed & (pos_1x1xCxQ[..., :, None] >= k_pos_1x1xCxK[..., None, :])
  out_BxNxCxQxD, _ = _attend_in_chunks(
    chunked(q_BxLxNxD) * scale, adjacent(chunked(k_BxLxNxD)), adjacent(chunked(v_BxLxNxD)), allowed, None,
    dropout_rate, dropout_key,
  )
  out_BxLxNxD = jnp.moveaxis(out_BxNxCxQxD.reshape(batch, n_heads, length, -1), 1, 2)
  return jnp.where(real_BxL[:, :, None, None], out_BxLxNxD, 0)
