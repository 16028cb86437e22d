"""ELECTRA masking, sampling, labels and metrics (electra.md §1–2, §8 invariants)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from core import mlm as core_mlm
from electra_jax import objective

CLS, SEP, MASK, PAD, VOCAB = 101, 102, 103, 0, 30522
SPECIALS = (CLS, SEP, MASK, PAD)


def _batch(batch=512, length=128, seed=0):
  """[CLS] tokens [SEP] [PAD]... rows of random lengths; some real tokens are [MASK]/[SEP] ids to be skipped."""
  rng = np.random.default_rng(seed)
  ids = rng.integers(1000, VOCAB, size=(batch, length))
  lengths = rng.integers(3, length + 1, size=batch)
  lengths[:4] = (length, 3, 4, 20)
  attention = np.arange(length)[None, :] < lengths[:, None]
  ids[:, 0] = CLS
  ids[np.arange(batch), lengths - 1] = SEP
  ids[5, 1:10] = MASK
  ids[6, 2:8] = SEP
  ids = np.where(attention, ids, PAD)
  return jnp.asarray(ids, jnp.int32), jnp.asarray(attention, jnp.int32)


def _mask(key, ids, attention, fractions=objective.ELECTRA_FRACTIONS):
  return _mask_jit(key, ids, attention, fractions)  # defaults are static to jit: pass the fractions as an argument


@jax.jit  # compiled once: every masking test uses [512, 128] batches and BERT's fractions are traced like ELECTRA's
def _mask_jit(key, ids, attention, fractions):
  mask_fraction, random_fraction = fractions
  return objective.mask_inputs(
    key,
    ids,
    attention,
    mask_prob=0.15,
    mask_id=MASK,
    vocab_size=VOCAB,
    special_ids=SPECIALS,
    mask_token_fraction=mask_fraction,
    random_token_fraction=random_fraction,
  )


def test_max_predictions_is_the_reference_formula():
  assert core_mlm.max_predictions(0.15, 128) == 19
  assert core_mlm.max_predictions(0.15, 512) == 79
  assert core_mlm.max_predictions(0.25, 512) == 130


def test_masking_invariants():
  ids, attention = _batch()
  masked = _mask(jax.random.key(0), ids, attention)
  ids, attention = np.asarray(ids), np.asarray(attention)
  is_masked = np.asarray(masked.is_masked_BxL)
  positions, weights = np.asarray(masked.positions_BxN), np.asarray(masked.weights_BxN)
  corrupted, labels = np.asarray(masked.input_ids_BxL), np.asarray(masked.labels_BxN)
  assert positions.shape == (512, 19)

  # Never a special token or padding.
  assert not is_masked[~attention.astype(bool)].any()
  assert not np.isin(ids[is_masked], SPECIALS).any()
  # 1 <= count <= max(1, min(N, round(n * p))); draws with replacement can lose a few to duplicates.
  counts = is_masked.sum(1)
  cap = np.maximum(1, np.minimum(19, np.round(attention.sum(1) * 0.15).astype(int)))
  assert (counts >= 1).all() and (counts <= cap).all()
  assert counts.sum() >= 0.9 * cap.sum()
  # Positions with weight 1 are distinct and are exactly the masked set; labels are the original ids.
  for b in range(512):
    used = positions[b][weights[b] > 0]
    assert len(set(used.tolist())) == len(used) == counts[b]
    assert set(used.tolist()) == set(np.flatnonzero(is_masked[b]).tolist())
    np.testing.assert_array_equal(labels[b][weights[b] > 0], ids[b, used])
  assert (positions[weights == 0] == 0).all() and (labels[weights == 0] == 0).all()
  # Outside the masked set nothing changes; inside: [MASK] or the original token, never a random one.
  np.testing.assert_array_equal(corrupted[~is_masked], ids[~is_masked])
  changed = corrupted != ids
  assert (corrupted[changed] == MASK).all() and not (changed & ~is_masked).any()


def test_electra_masks_85_percent_and_never_a_random_token():
  ids, attention = _batch(seed=1)
  masked = _mask(jax.random.key(1), ids, attention)
  is_masked = np.asarray(masked.is_masked_BxL)
  became_mask = np.asarray(masked.input_ids_BxL)[is_masked] == MASK
  kept = np.asarray(masked.input_ids_BxL)[is_masked] == np.asarray(ids)[is_masked]
  assert is_masked.sum() > 4000
  assert abs(became_mask.mean() - 0.85) < 0.02
  assert (became_mask | kept).all()


def test_bert_fractions_through_the_same_code_path():
  ids, attention = _batch(seed=2)
  masked = _mask(jax.random.key(2), ids, attention, objective.BERT_FRACTIONS)
  is_masked = np.asarray(masked.is_masked_BxL)
  new, old = np.asarray(masked.input_ids_BxL)[is_masked], np.asarray(ids)[is_masked]
  assert abs((new == MASK).mean() - 0.8) < 0.02
  assert abs(((new != MASK) & (new != old)).mean() - 0.1) < 0.02
  assert abs((new == old).mean() - 0.1) < 0.02


def test_duplicate_draws_are_dropped():
  # One candidate, three draws: the reference masks it once (scatter dedupes); the MLM weight counts it once too.
  row = [CLS, 2000, SEP] + [MASK] * 17 + [PAD] * 108  # 20 real tokens, one candidate; round(20 * 0.15) = 3 draws
  ids = jnp.asarray([row] * 512, jnp.int32)
  attention = (ids != PAD).astype(jnp.int32)
  masked = _mask(jax.random.key(3), ids, attention)
  np.testing.assert_array_equal(masked.weights_BxN.sum(1), 1.0)
  np.testing.assert_array_equal(masked.is_masked_BxL, np.broadcast_to(np.arange(128) == 1, (512, 128)))


def test_label_rule_correct_samples_are_original():
  ids, attention = _batch()
  masked = _mask(jax.random.key(4), ids, attention)
  weights = np.asarray(masked.weights_BxN) > 0
  # Half the masked slots sample the original token, the other half a different one.
  different = (np.asarray(masked.labels_BxN) + 1) % VOCAB
  pick_original = np.arange(weights.shape[1])[None, :] % 2 == 0
  sampled = np.where(pick_original, np.asarray(masked.labels_BxN), different)
  noised, labels = jax.jit(objective.replace_tokens)(ids, masked, jnp.asarray(sampled, jnp.int32))
  noised, labels = np.asarray(noised), np.asarray(labels)
  positions = np.asarray(masked.positions_BxN)
  for b in range(len(ids)):
    for n in np.flatnonzero(weights[b]):
      assert noised[b, positions[b, n]] == sampled[b, n]
      assert labels[b, positions[b, n]] == (not pick_original[0, n])
  assert not labels[~np.asarray(masked.is_masked_BxL)].any()
  np.testing.assert_array_equal(noised != np.asarray(ids), labels)


def test_gumbel_sampling_matches_softmax_and_is_reproducible():
  logits = jnp.asarray([2.0, 1.0, 0.0, -1.0, 0.5])
  draws = 20_000
  logits_BxNxV = jnp.broadcast_to(logits, (1, draws, 5))
  for temperature in (1.0, 2.0):
    sampled = objective.sample_tokens(jax.random.key(5), logits_BxNxV, temperature=temperature)
    counts = np.bincount(np.asarray(sampled).ravel(), minlength=5)
    expected = draws * np.asarray(jax.nn.softmax(logits / temperature))
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 18.47, (temperature, counts, expected)  # chi-square, 4 dof, p = 0.001
  again = objective.sample_tokens(jax.random.key(5), logits_BxNxV, temperature=2.0)
  np.testing.assert_array_equal(again, sampled)
  # disallow_correct: the true token (index 0, the most likely) is never drawn.
  banned = objective.sample_tokens(jax.random.key(6), logits_BxNxV, disallow_BxN=jnp.zeros((1, draws), jnp.int32))
  assert not (np.asarray(banned) == 0).any()


def test_sampling_has_no_gradient():
  grad = jax.grad(lambda x: objective.sample_tokens(jax.random.key(0), x).astype(jnp.float32).sum())(
    jnp.ones((1, 3, 4))
  )
  assert not np.asarray(grad).any()


def test_auc_matches_brute_force_with_ties():
  rng = np.random.default_rng(7)
  scores = np.round(rng.normal(size=300), 1)  # many ties
  labels = rng.random(300) < 0.3
  weights = rng.random(300) < 0.8
  s, y = scores[weights], labels[weights]
  pos, neg = s[y], s[~y]
  brute = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (len(pos) * len(neg))
  auc = jax.jit(objective.binary_auc)
  np.testing.assert_allclose(float(auc(scores, labels, weights)), brute, rtol=1e-6)
  assert float(auc(scores, np.zeros(300, bool), weights)) == 0.5


def test_discriminator_loss_weights_all_real_tokens_or_only_masked():
  logits = jnp.asarray([[3.0, -2.0, -0.5, 9.0]])
  labels = jnp.asarray([[1, 0, 1, 0]])
  xent = np.log1p(np.exp(-np.array([3.0, 2.0, -0.5, -9.0])))  # log(1 + exp(-z)), z = logit · (2·label - 1)
  real = jnp.asarray([[1, 1, 1, 0]])
  loss = jax.jit(objective.discriminator_loss)
  np.testing.assert_allclose(float(loss(logits, labels, real)), xent[:3].mean(), rtol=1e-6)
  only_masked = jnp.asarray([[0, 0, 1, 0]])  # "ELECTRA 15%"
  np.testing.assert_allclose(float(loss(logits, labels, only_masked)), xent[2], rtol=1e-6)
  metrics = jax.jit(objective.discriminator_metrics)(logits, labels, real)
  assert float(metrics["disc_accuracy"]) == pytest.approx(2 / 3)
  assert float(metrics["disc_precision"]) == pytest.approx(1.0)
  assert float(metrics["disc_recall"]) == pytest.approx(0.5)
