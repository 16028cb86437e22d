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

  eligible_BxL = attention_mask_BxL.astype(bool)
  for special in special_ids:
    eligible_BxL &= input_ids_BxL != special
  n_eligible_B = eligible_BxL.sum(-1)
  n_real_B = attention_mask_BxL.astype(jnp.int32).sum(-1)
  n_mask_B = jnp.clip(jnp.round(n_real_B * mask_prob).astype(jnp.int32), 1, cap)
  n_mask_B = jnp.minimum(n_mask_B, n_eligible_B)

  # Uniform scores, ineligible pushed last; the n lowest-ranked eligible positions are selected.
  scores_BxL = jnp.where(eligible_BxL, jax.random.uniform(select_key, (batch, length)), 2.0)
  rank_BxL = jnp.argsort(jnp.argsort(scores_BxL, axis=-1), axis=-1)
  is_masked_BxL = rank_BxL < n_mask_B[:, None]

  kind_BxL = jax.random.uniform(kind_key, (batch, length))
  to_mask_BxL = is_masked_BxL & (kind_BxL < mask_token_fraction)
  to_random_BxL = (
    is_masked_BxL & (kind_BxL >= mask_token_fraction) & (kind_BxL < mask_token_fraction + random_token_fraction)
  )
  random_ids_BxL = jax.random.randint(random_key, (batch, length), 0, vocab_size, dtype=input_ids_BxL.dtype)
  corrupted_BxL = jnp.where(to_mask_BxL, mask_id, input_ids_BxL)
  corrupted_BxL = jnp.where(to_random_BxL, random_ids_BxL, corrupted_BxL)
  return corrupted_BxL, is_masked_BxL


def mlm_loss(logits_BxLxV: jax.Array, labels_BxL: jax.Array, weights_BxL: jax.Array):
  """Mean cross-entropy and accuracy over the weighted (masked) positions; fp32 regardless of logits dtype."""
  logits_BxLxV = logits_BxLxV.astype(jnp.float32)
  weights_BxL = weights_BxL.astype(jnp.float32)
  xent_BxL = optax.softmax_cross_entropy_with_integer_labels(logits_BxLxV, labels_BxL)
  denom = jnp.maximum(weights_BxL.sum(), 1.0)
  loss = (xent_BxL * weights_BxL).sum() / denom
  accuracy = ((logits_BxLxV.argmax(-1) == labels_BxL) * weights_BxL).sum() / denom
  return loss, accuracy
