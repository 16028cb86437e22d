"""Masked-language-model corruption and loss (BERT, Devlin et al. 2018 §3.1 "Task #1: Masked LM").

Shared by ELECTRA's generator and MLM baseline and by REALM's pretraining. `mask_tokens` picks exactly
n = max(1, min(max_predictions, round(p · n_real))) positions per sequence, never special tokens or padding, then
replaces `mask_token_fraction` of them by [MASK], `random_token_fraction` by a random token and keeps the rest
(BERT: 0.8 / 0.1 / 0.1; ELECTRA: 0.85 / 0.0 / 0.15).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import optax


def max_predictions(mask_prob: float, seq_len: int) -> int:
  """The reference code's cap on masked positions per sequence: int((p + 0.005) · L), e.g. 19 at L=128, p=0.15."""
  return int((mask_prob + 0.005) * seq_len)


def candidates(input_ids_BxL: jax.Array, attention_mask_BxL: jax.Array, special_ids: Sequence[int]) -> jax.Array:
  """bool[B, L]: positions that may be masked, i.e. real tokens (attention_mask) whose id is not in special_ids."""
  eligible_BxL = attention_mask_BxL.astype(bool)
  for special in special_ids:
    eligible_BxL &= input_ids_BxL != special
  return eligible_BxL


def prediction_count(attention_mask_BxL: jax.Array, mask_prob: float, cap: int) -> jax.Array:
  """int32[B]: masked positions per row, max(1, min(cap, round(p · n_real))) (the reference's count formula)."""
  n_real_B = attention_mask_BxL.astype(jnp.float32).sum(-1)
  return jnp.clip(jnp.round(n_real_B * mask_prob).astype(jnp.int32), 1, max(1, cap))


def corrupt_ids(
  kind_key: jax.Array,
  random_key: jax.Array,
  ids: jax.Array,
  *,
  mask_id: int,
  vocab_size: int,
  mask_token_fraction: float,
  random_token_fraction: float,
) -> jax.Array:
  """Replacements for positions chosen for prediction: [MASK] with probability `mask_token_fraction`, a uniform
  random token with `random_token_fraction`, else the id itself (BERT §3.1: 0.8 / 0.1 / 0.1). Any shape."""
  kind = jax.random.uniform(kind_key, ids.shape)
  random_ids = jax.random.randint(random_key, ids.shape, 0, vocab_size, dtype=ids.dtype)
  is_random = (kind >= mask_token_fraction) & (kind < mask_token_fraction + random_token_fraction)
  new_ids = jnp.where(kind < mask_token_fraction, jnp.asarray(mask_id, ids.dtype), ids)
  return jnp.where(is_random, random_ids, new_ids)


def mask_tokens(
  key: jax.Array,
  input_ids_BxL: jax.Array,
  attention_mask_BxL: jax.Array,
  *,
  mask_prob: float,
  mask_id: int,
  vocab_size: int,
  special_ids: Sequence[int] = (),
  mask_token_fraction: float = 0.8,
  random_token_fraction: float = 0.1,
  max_predictions_per_seq: int | None = None,
):
  """Returns (corrupted_ids_BxL, is_masked_BxL bool). Eligible = real (attention_mask) and not in special_ids."""
  batch, length = input_ids_BxL.shape
  cap = max_predictions(mask_prob, length) if max_predictions_per_seq is None else max_predictions_per_seq
  select_key, kind_key, random_key = jax.random.split(key, 3)

  eligible_BxL = candidates(input_ids_BxL, attention_mask_BxL, special_ids)
  n_mask_B = jnp.minimum(prediction_count(attention_mask_BxL, mask_prob, cap), eligible_BxL.sum(-1))

  # Uniform scores, ineligible pushed last; the n lowest-ranked eligible positions are selected.
  scores_BxL = jnp.where(eligible_BxL, jax.random.uniform(select_key, (batch, length)), 2.0)
  rank_BxL = jnp.argsort(jnp.argsort(scores_BxL, axis=-1), axis=-1)
  is_masked_BxL = rank_BxL < n_mask_B[:, None]

  new_ids_BxL = corrupt_ids(
    kind_key,
    random_key,
    input_ids_BxL,
    mask_id=mask_id,
    vocab_size=vocab_size,
    mask_token_fraction=mask_token_fraction,
    random_token_fraction=random_token_fraction,
  )
  return jnp.where(is_masked_BxL, new_ids_BxL, input_ids_BxL), is_masked_BxL


def mlm_loss(logits_BxLxV: jax.Array, labels_BxL: jax.Array, weights_BxL: jax.Array):
  """Mean cross-entropy and accuracy over the weighted (masked) positions; fp32 regardless of logits dtype."""
  logits_BxLxV = logits_BxLxV.astype(jnp.float32)
  weights_BxL = weights_BxL.astype(jnp.float32)
  xent_BxL = optax.softmax_cross_entropy_with_integer_labels(logits_BxLxV, labels_BxL)
  denom = jnp.maximum(weights_BxL.sum(), 1.0)
  loss = (xent_BxL * weights_BxL).sum() / denom
  accuracy = ((logits_BxLxV.argmax(-1) == labels_BxL) * weights_BxL).sum() / denom
  return loss, accuracy
