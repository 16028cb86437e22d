"""REALM's objective (Eq. 1-6): the marginal likelihood, its analytic retriever gradient r(z), and k = 1 = plain MLM."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from core import bert as bert_lib
from core import mlm
from realm_jax import model as model_lib
from realm_jax import objective
from tests.helpers import jit_once


def _random(shape, seed, scale=1.0):
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape) * scale, jnp.float32)


def test_relevance_is_the_inner_product_of_the_two_embeddings():
  q, d = _random((3, 5), 0), _random((3, 4, 5), 1)
  expected = np.einsum("bd,bkd->bk", np.asarray(q), np.asarray(d))
  np.testing.assert_allclose(objective.relevance(q, d), expected, rtol=1e-6)


def test_gradient_of_the_marginal_with_respect_to_relevance_is_r_of_z():
  """d log p(y|x) / d f(x, z) = [p(y|z,x) / p(y|x) - 1] p(z|x) (Eq. 6), for one marginal per query."""
  relevance_BxK = _random((4, 6), 2, 2.0)
  log_p_y_BxKxM = -jnp.abs(_random((4, 6, 3), 3, 3.0))
  weights_BxM = jnp.ones((4, 3))
  valid = jnp.ones((4, 6))

  def marginal(rel):
    log_p_z = objective.log_p_z_given_x(rel, valid)
    return objective.marginal_log_likelihood(log_p_z, log_p_y_BxKxM, weights_BxM, per_mask=False)[0].sum() * 3

  grad_BxK = jax.jit(jax.grad(marginal))(relevance_BxK)
  log_p_z = jax.nn.log_softmax(relevance_BxK)
  log_p_y_given_zx = np.asarray(log_p_y_BxKxM).sum(-1)
  p_z = np.exp(np.asarray(log_p_z, np.float64))
  p_y_zx = np.exp(log_p_y_given_zx.astype(np.float64))
  p_y_x = (p_z * p_y_zx).sum(-1, keepdims=True)
  np.testing.assert_allclose(grad_BxK, (p_y_zx / p_y_x - 1) * p_z, rtol=2e-5, atol=1e-7)
  np.testing.assert_allclose(objective.relevance_gradient(log_p_z, jnp.asarray(log_p_y_given_zx)), grad_BxK, rtol=2e-5,
                             atol=1e-7)


def test_per_mask_marginal_averages_one_r_of_z_per_masked_token():
  relevance_BxK = _random((2, 5), 4)
  log_p_y_BxKxM = -jnp.abs(_random((2, 5, 3), 5, 2.0))
  weights_BxM = jnp.array([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
  valid = jnp.ones((2, 5))

  def marginal(rel):
    log_p_z = objective.log_p_z_given_x(rel, valid)
    return objective.marginal_log_likelihood(log_p_z, log_p_y_BxKxM, weights_BxM)[0].sum()

  grad = jax.jit(jax.grad(marginal))(relevance_BxK)
  log_p_z = jax.nn.log_softmax(relevance_BxK)
  r_BxKxM = jax.vmap(lambda y: objective.relevance_gradient(log_p_z, y), in_axes=-1, out_axes=-1)(log_p_y_BxKxM)
  expected = (r_BxKxM * weights_BxM[:, None]).sum(-1) / weights_BxM.sum(-1)[:, None]
  np.testing.assert_allclose(grad, expected, rtol=2e-5, atol=1e-7)


def test_uniform_scores_and_identical_documents_give_the_per_document_likelihood():
  log_p_y_M = -jnp.abs(_random((3,), 6))
  log_p_y_BxKxM = jnp.broadcast_to(log_p_y_M, (1, 4, 3))
  log_p_z = objective.log_p_z_given_x(jnp.zeros((1, 4)), jnp.ones((1, 4)))
  for per_mask in (True, False):
    value, count = objective.marginal_log_likelihood(log_p_z, log_p_y_BxKxM, jnp.ones((1, 3)), per_mask=per_mask)
    np.testing.assert_allclose(value, [float(log_p_y_M.mean())], rtol=1e-5)
    assert float(count[0]) == 3


def test_invalid_candidates_get_no_probability():
  log_p_z = objective.log_p_z_given_x(jnp.array([[5.0, 1.0, 9.0]]), jnp.array([[1.0, 1.0, 0.0]]))
  p = np.exp(np.asarray(log_p_z))
  assert p[0, 2] < 1e-30
  np.testing.assert_allclose(p[0, :2].sum(), 1.0, rtol=1e-6)


def _tiny_realm():
  encoder = bert_lib.BertConfig(vocab_size=50, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32,
                                max_position_embeddings=32)
  cfg = model_lib.RealmConfig(encoder, proj_size=8)
  model = model_lib.Realm(cfg)
  return cfg, model, model_lib.init_params(model, jax.random.key(0), 6, 8, 2)


def test_one_candidate_gives_the_plain_mlm_loss_of_the_reader():
  """k = 1, the gold document alone: log p(z|x) = 0, so −log p(y|x) is BERT's MLM cross-entropy over join(x, z)."""
  cfg, model, params = _tiny_realm()
  rng = np.random.default_rng(7)
  query = rng.integers(5, 50, (3, 6)).astype(np.int32)
  query_mask = np.array([[1] * 6, [1] * 4 + [0] * 2, [1] * 5 + [0]], np.int32)
  doc = rng.integers(5, 50, (3, 1, 8)).astype(np.int32)
  doc_mask = np.array([[[1] * 8], [[1] * 6 + [0] * 2], [[1] * 7 + [0]]], np.int32)
  positions_BxM = np.array([[1, 3], [2, 3], [1, 2]], np.int32)
  labels_BxM = rng.integers(5, 50, (3, 2)).astype(np.int32)

  joined = [x[:, 0] for x in model_lib.join(query, query_mask, doc, doc_mask)]

  def realm_loss(params):
    log_probs = model.apply({"params": params}, *joined, positions_BxM, method=model_lib.Realm.read)[:, None]
    log_p_y = objective.token_log_probs(log_probs, labels_BxM)
    log_p_z = objective.log_p_z_given_x(jnp.array([[3.0], [-2.0], [0.5]]), jnp.ones((3, 1)))
    return -objective.marginal_log_likelihood(log_p_z, log_p_y, jnp.ones((3, 2)))[0].mean()

  value = jit_once(realm_loss, params)
  logits_BxLxV = jit_once(
    lambda p: bert_lib.BertForMlm(cfg.encoder).apply({"params": p}, *joined[:3], position_ids_BxL=joined[3]),
    params["reader"],
  )
  labels_BxL = np.zeros(joined[0].shape, np.int32)
  weights_BxL = np.zeros(joined[0].shape, np.float32)
  for b in range(3):
    labels_BxL[b, positions_BxM[b]] = labels_BxM[b]
    weights_BxL[b, positions_BxM[b]] = 1.0
  expected, _ = mlm.mlm_loss(logits_BxLxV, labels_BxL, weights_BxL)
  np.testing.assert_allclose(float(value), float(expected), rtol=1e-5)


def test_join_is_the_concatenation_with_positions_that_skip_the_query_padding():
  cfg, model, params = _tiny_realm()
  query = np.array([[2, 7, 8, 3, 0, 0]], np.int32)  # [CLS] x x [SEP] pad pad
  doc = np.array([[[2, 11, 3, 12, 13, 3, 0, 0]]], np.int32)  # [CLS] title [SEP] text text [SEP] pad pad
  ids, types, mask, positions = (x[0, 0] for x in model_lib.join(query, (query > 0).astype(np.int32), doc,
                                                                    (doc > 0).astype(np.int32)))
  real = mask.astype(bool)
  np.testing.assert_array_equal(ids[real], [2, 7, 8, 3, 11, 3, 12, 13, 3])
  np.testing.assert_array_equal(positions[real], np.arange(9))
  np.testing.assert_array_equal(types[real], [0, 0, 0, 0, 1, 1, 1, 1, 1])
  # The encoder sees exactly the unpadded concatenation: same hidden states at the real tokens.
  packed = np.array([[2, 7, 8, 3, 11, 3, 12, 13, 3]], np.int32)
  hidden = jax.jit(lambda *rows: model.apply({"params": params}, *rows, method=model_lib.Realm.reader_hidden))
  hidden_fixed = hidden(ids[None], types[None], mask[None], positions[None])[0][real]
  hidden_packed = hidden(packed, types[real][None], np.ones_like(packed), np.arange(9)[None])[0]
  np.testing.assert_allclose(hidden_fixed, hidden_packed, rtol=1e-5, atol=1e-5)


def test_marginal_predictions_pick_the_token_of_the_likelier_document():
  log_probs = jnp.log(jnp.array([[[[0.9, 0.1]], [[0.2, 0.8]]]]))  # B=1, K=2, M=1, V=2
  assert int(objective.marginal_predictions(jnp.log(jnp.array([[0.8, 0.2]])), log_probs)[0, 0]) == 0
  assert int(objective.marginal_predictions(jnp.log(jnp.array([[0.1, 0.9]])), log_probs)[0, 0]) == 1


@pytest.mark.parametrize("per_mask", [True, False])
def test_masked_slots_with_zero_weight_do_not_change_the_loss(per_mask):
  log_p_z = jax.nn.log_softmax(_random((2, 3), 8))
  log_p_y = -jnp.abs(_random((2, 3, 4), 9))
  weights = jnp.array([[1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
  changed = log_p_y.at[:, :, 2:].set(-50.0).at[1, :, 1].set(-7.0)
  a = objective.marginal_log_likelihood(log_p_z, log_p_y, weights, per_mask=per_mask)[0]
  b = objective.marginal_log_likelihood(log_p_z, changed, weights, per_mask=per_mask)[0]
  np.testing.assert_allclose(a, b, rtol=1e-6)
