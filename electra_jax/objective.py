"""ELECTRA's pretraining objective: dynamic masking, generator sampling, replaced-token detection and their losses.

Clark et al. 2020 §2: L = Σ_x L_MLM(x, θ_G) + λ L_Disc(x, θ_D) with λ = 50 (Appendix A, Table 6), where the
generator is trained by maximum likelihood on the masked positions and the discriminator classifies every real token
as original or replaced; samples are not back-propagated through. Reference code: `pretrain/pretrain_helpers.py`
(`mask`, `sample_from_softmax`, `scatter_update`) and `run_pretraining.py` (`_get_masked_lm_output`,
`_get_fake_data`, `_get_discriminator_output`).

Patent US 2021/0089724, claim 1: step 1 (original input) is the batch, step 2 (select masked tokens) is
`mask_inputs`, step 3 (generate replacements) is `sample_tokens` over `model.generator_logits`, step 4 (replace,
forming the noised input) is `replace_tokens`, step 6 (loss on the per-token predictions) is `electra_loss`; "a
replacement equal to the original counts as original" is the label rule in `replace_tokens`.

Shape suffixes: B batch, L length, N max_predictions_per_seq, V vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from core import mlm as core_mlm

Array = jax.Array

ELECTRA_FRACTIONS = (0.85, 0.0)  # ([MASK], random token); the rest keep the original token
BERT_FRACTIONS = (0.8, 0.1)


class MaskedInputs(NamedTuple):
  input_ids_BxL: Array  # corrupted ids (what the generator / MLM model reads)
  positions_BxN: Array  # masked positions; padded slots hold 0 with weight 0
  weights_BxN: Array  # float32 1 for a real (distinct) masked position, 0 for padding and duplicates
  labels_BxN: Array  # original ids at the positions (0 where weight 0)
  is_masked_BxL: Array  # bool, the positions as a [B, L] mask


def mask_inputs(
  key: Array,
  input_ids_BxL: Array,
  attention_mask_BxL: Array,
  *,
  mask_prob: float,
  mask_id: int,
  vocab_size: int,
  special_ids: Sequence[int],
  mask_token_fraction: float = ELECTRA_FRACTIONS[0],
  random_token_fraction: float = ELECTRA_FRACTIONS[1],
  max_predictions_per_seq: int | None = None,
) -> MaskedInputs:
  """Dynamic masking as the reference `pretrain_helpers.mask` (paper §2; patent claim 1 step 2).

  Candidates are real tokens that are not in `special_ids` ([CLS], [SEP], [MASK], [PAD]). Each row gets
  max(1, min(N, round(n_tokens · p))) draws, N = int((p + 0.005) · L), uniformly over its candidates WITH
  replacement; duplicates are dropped (weight 0), so a row may mask a few fewer. Each distinct position becomes
  [MASK] with probability `mask_token_fraction`, a uniformly random token with `random_token_fraction`, else keeps
  its token (ELECTRA 0.85 / 0 / 0.15, BERT 0.8 / 0.1 / 0.1). Unlike the reference's `scatter_update`, duplicated
  draws are neither summed (which averages token ids) nor counted twice in the MLM loss.
  """
  batch, length = input_ids_BxL.shape
  n_max = core_mlm.max_predictions(mask_prob, length) if max_predictions_per_seq is None else max_predictions_per_seq
  n_max = max(1, n_max)
  draw_key, kind_key, random_key = jax.random.split(key, 3)

  candidates_BxL = core_mlm.candidates(input_ids_BxL, attention_mask_BxL, special_ids)
  n_predict_B = core_mlm.prediction_count(attention_mask_BxL, mask_prob, n_max)
  slot_used_BxN = (jnp.arange(n_max)[None, :] < n_predict_B[:, None]) & candidates_BxL.any(-1)[:, None]

  logits_BxL = jnp.where(candidates_BxL, 0.0, -jnp.inf)
  positions_BxN = jax.random.categorical(draw_key, logits_BxL, axis=-1, shape=(n_max, batch)).T
  positions_BxN = jnp.where(slot_used_BxN, positions_BxN, 0).astype(jnp.int32)
  # Drop a draw when an earlier used slot of the same row drew the same position.
  same_BxNxN = (positions_BxN[:, :, None] == positions_BxN[:, None, :]) & slot_used_BxN[:, None, :]
  earlier_NxN = jnp.tril(jnp.ones((n_max, n_max), bool), k=-1)
  duplicate_BxN = (same_BxNxN & earlier_NxN[None]).any(-1)
  keep_BxN = slot_used_BxN & ~duplicate_BxN
  positions_BxN = jnp.where(keep_BxN, positions_BxN, 0)
  weights_BxN = keep_BxN.astype(jnp.float32)
  labels_BxN = jnp.where(keep_BxN, jnp.take_along_axis(input_ids_BxL, positions_BxN, axis=1), 0)

  new_ids_BxN = core_mlm.corrupt_ids(
    kind_key,
    random_key,
    labels_BxN,
    mask_id=mask_id,
    vocab_size=vocab_size,
    mask_token_fraction=mask_token_fraction,
    random_token_fraction=random_token_fraction,
  )
  corrupted_BxL = scatter_positions(input_ids_BxL, new_ids_BxN, positions_BxN, keep_BxN)
  is_masked_BxL = scatter_positions(jnp.zeros((batch, length), bool), keep_BxN, positions_BxN, keep_BxN)
  return MaskedInputs(corrupted_BxL, positions_BxN, weights_BxN, labels_BxN, is_masked_BxL)


def scatter_positions(x_BxL: Array, updates_BxN: Array, positions_BxN: Array, valid_BxN: Array) -> Array:
  """x with x[b, positions[b, n]] = updates[b, n] where valid (positions distinct where valid); others untouched."""
  length = x_BxL.shape[1]
  rows_BxN = jnp.broadcast_to(jnp.arange(x_BxL.shape[0])[:, None], positions_BxN.shape)
  target_BxN = jnp.where(valid_BxN, positions_BxN, length)  # out of range -> dropped
  return x_BxL.at[rows_BxN, target_BxN].set(updates_BxN.astype(x_BxL.dtype), mode="drop")


def sample_tokens(key: Array, logits_BxNxV: Array, *, temperature: float = 1.0, disallow_BxN: Array | None = None):
  """Replacement tokens x̂ ~ p_G(· | x) by Gumbel-argmax of logits / temperature, in fp32, with no gradient
  (paper §2; reference `sample_from_softmax`; patent claim 1 step 3). [MASK] is not excluded from the vocabulary.
  `disallow_BxN` (the original ids) subtracts 1000 from the true token's logit (`disallow_correct`)."""
  logits_BxNxV = jax.lax.stop_gradient(logits_BxNxV).astype(jnp.float32) / temperature
  if disallow_BxN is not None:
    logits_BxNxV = logits_BxNxV - 1000.0 * jax.nn.one_hot(disallow_BxN, logits_BxNxV.shape[-1], dtype=jnp.float32)
  return jax.lax.stop_gradient(jax.random.categorical(key, logits_BxNxV, axis=-1)).astype(jnp.int32)


def replace_tokens(original_ids_BxL: Array, masked: MaskedInputs, sampled_BxN: Array) -> tuple[Array, Array]:
  """(noised ids, labels) for the discriminator (patent claim 1 step 4 and the label rule).

  Every masked position (also those the corruption kept unchanged) takes the generator's sample; label 1 = masked
  AND sampled != original, so a correctly sampled token is labelled original (paper §2).
  """
  valid_BxN = masked.weights_BxN > 0
  noised_BxL = scatter_positions(original_ids_BxL, sampled_BxN, masked.positions_BxN, valid_BxN)
  labels_BxL = (noised_BxL != original_ids_BxL) & masked.is_masked_BxL
  return noised_BxL, labels_BxL


def masked_lm_loss(logits_BxNxV: Array, masked: MaskedInputs) -> tuple[Array, Array]:
  """(mean cross-entropy, accuracy) over the weighted masked positions (paper §2 L_MLM; reference
  `_get_masked_lm_output`). fp32 regardless of the logits' dtype."""
  return core_mlm.mlm_loss(logits_BxNxV, masked.labels_BxN, masked.weights_BxN)


def discriminator_loss(logits_BxL: Array, labels_BxL: Array, weights_BxL: Array) -> Array:
  """Sigmoid cross-entropy averaged over the weighted tokens (paper §2 L_Disc; patent claim 1 step 6).

  ELECTRA weights all real tokens, [CLS]/[SEP] included (the reference's `input_mask`); the "ELECTRA 15%" ablation
  (paper §3.4, Table 5) weights only the masked positions.
  """
  weights_BxL = weights_BxL.astype(jnp.float32)
  xent_BxL = optax.sigmoid_binary_cross_entropy(logits_BxL.astype(jnp.float32), labels_BxL.astype(jnp.float32))
  return (xent_BxL * weights_BxL).sum() / jnp.maximum(weights_BxL.sum(), 1e-6)


def binary_auc(scores: Array, labels: Array, weights: Array) -> Array:
  """Rank-based ROC AUC (Mann-Whitney U / (n_pos · n_neg)) over the entries with weight > 0, ties at half credit.
  Returns 0.5 when the weighted entries hold only one class (AUC undefined)."""
  scores, labels, valid = scores.reshape(-1).astype(jnp.float32), labels.reshape(-1), weights.reshape(-1) > 0
  scores = jnp.where(valid, scores, jnp.inf)  # sorted past every valid score
  ordered = jnp.sort(scores)
  below = jnp.searchsorted(ordered, scores, side="left").astype(jnp.float32)
  at_or_below = jnp.searchsorted(ordered, scores, side="right").astype(jnp.float32)
  rank = 0.5 * (below + at_or_below + 1.0)  # 1-based average rank among valid entries
  positive, negative = valid & (labels > 0), valid & (labels <= 0)
  n_pos, n_neg = positive.sum().astype(jnp.float32), negative.sum().astype(jnp.float32)
  u = jnp.where(positive, rank, 0.0).sum() - n_pos * (n_pos + 1.0) / 2.0
  defined = (n_pos > 0) & (n_neg > 0)
  return jnp.where(defined, u / jnp.maximum(n_pos * n_neg, 1.0), 0.5)


def discriminator_metrics(logits_BxL: Array, labels_BxL: Array, weights_BxL: Array) -> dict[str, Array]:
  """Accuracy, precision, recall (prediction = logit > 0) and AUC over the weighted tokens (reference eval)."""
  w_BxL = weights_BxL.astype(jnp.float32)
  predicted_BxL, actual_BxL = logits_BxL > 0, labels_BxL.astype(bool)
  correct = ((predicted_BxL == actual_BxL) * w_BxL).sum()
  true_pos = ((predicted_BxL & actual_BxL) * w_BxL).sum()
  return {
    "disc_accuracy": correct / jnp.maximum(w_BxL.sum(), 1.0),
    "disc_precision": true_pos / jnp.maximum((predicted_BxL * w_BxL).sum(), 1.0),
    "disc_recall": true_pos / jnp.maximum((actual_BxL * w_BxL).sum(), 1.0),
    "disc_auc": binary_auc(logits_BxL, labels_BxL, w_BxL),
    "fake_fraction": (actual_BxL * w_BxL).sum() / jnp.maximum(w_BxL.sum(), 1.0),
  }


def electra_loss(
  params: Any,
  batch: dict[str, Array],
  key: Array,
  *,
  gen_logits_fn,
  disc_logits_fn,
  mask_fn,
  gen_weight: float = 1.0,
  disc_weight: float = 50.0,
  temperature: float = 1.0,
  disallow_correct: bool = False,
  disc_on_masked_only: bool = False,
  deterministic: bool = False,
) -> tuple[Array, dict[str, Array]]:
  """gen_weight · L_MLM + disc_weight · L_Disc for one batch (paper §2 Eq. for min_{θG,θD}; patent claim 1).

  `gen_logits_fn(params, masked_ids, token_type_ids, attention_mask, positions, deterministic=, dropout_key=)`,
  `disc_logits_fn(params, ids, token_type_ids, attention_mask, deterministic=, dropout_key=)` and
  `mask_fn(key, input_ids, attention_mask) -> MaskedInputs` are bound by the caller (`pretrain.py`).
  Metrics: mlm_loss, disc_loss, mlm_accuracy (generator argmax), sampled_accuracy (samples equal to the original
  at masked positions), disc_accuracy / precision / recall / auc, fake_fraction.
  """
  mask_key, gen_key, sample_key, disc_key = jax.random.split(key, 4)
  ids_BxL, type_BxL, attn_BxL = batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]
  masked = mask_fn(mask_key, ids_BxL, attn_BxL)
  gen_BxNxV = gen_logits_fn(
    params,
    masked.input_ids_BxL,
    type_BxL,
    attn_BxL,
    masked.positions_BxN,
    deterministic=deterministic,
    dropout_key=gen_key,
  )
  mlm_loss, mlm_accuracy = masked_lm_loss(gen_BxNxV, masked)

  disallow_BxN = masked.labels_BxN if disallow_correct else None
  sampled_BxN = sample_tokens(sample_key, gen_BxNxV, temperature=temperature, disallow_BxN=disallow_BxN)
  noised_BxL, labels_BxL = replace_tokens(ids_BxL, masked, sampled_BxN)
  disc_BxL = disc_logits_fn(params, noised_BxL, type_BxL, attn_BxL, deterministic=deterministic, dropout_key=disc_key)
  weights_BxL = masked.is_masked_BxL if disc_on_masked_only else attn_BxL.astype(bool)
  disc_loss = discriminator_loss(disc_BxL, labels_BxL, weights_BxL)

  sampled_accuracy = ((sampled_BxN == masked.labels_BxN) * masked.weights_BxN).sum() / jnp.maximum(
    masked.weights_BxN.sum(), 1.0
  )
  metrics = {
    "mlm_loss": mlm_loss,
    "disc_loss": disc_loss,
    "mlm_accuracy": mlm_accuracy,
    "sampled_accuracy": sampled_accuracy,
    **discriminator_metrics(disc_BxL, labels_BxL, weights_BxL),
  }
  return gen_weight * mlm_loss + disc_weight * disc_loss, metrics


def mlm_baseline_loss(
  params: Any, batch: dict[str, Array], key: Array, *, logits_fn, mask_fn, deterministic: bool = False
) -> tuple[Array, dict[str, Array]]:
  """The MLM twin's loss: mean cross-entropy over the masked positions (Devlin et al. §3.1; paper Table 1 BERT)."""
  mask_key, dropout_key = jax.random.split(key)
  masked = mask_fn(mask_key, batch["input_ids"], batch["attention_mask"])
  logits_BxNxV = logits_fn(
    params,
    masked.input_ids_BxL,
    batch["token_type_ids"],
    batch["attention_mask"],
    masked.positions_BxN,
    deterministic=deterministic,
    dropout_key=dropout_key,
  )
  loss, accuracy = masked_lm_loss(logits_BxNxV, masked)
  return loss, {"mlm_loss": loss, "mlm_accuracy": accuracy}
