"""REALM's pretraining objective: the marginal likelihood of the masked tokens over retrieved documents.

REALM, arXiv 2002.08909 §3.1-3.4, Eq. 1-2 and 5; US 11,003,865 claim 1, steps 4-5, 7-8:
- relevance f(x, z) = Embed_input(x)ᵀ Embed_doc(z), recomputed with the current parameters for the candidates the
  (possibly stale) index returned (Eq. 1, step 4);
- p(z | x) = softmax over the candidates, the null document among them (Eq. 2, step 5);
- p(y | x) = Σ_z p(y | z, x) p(z | x) (Eq. 5, step 7), marginalised per masked token as the reference code does
  (`language/realm/model.py`: logsumexp over candidates for each mask, then the mean over masks), or per example as
  the paper writes Eq. 4 (the product over masks inside the sum), `per_mask=False`;
- its gradient reaches f(x, z) as r(z) = [p(y | z, x) / p(y | x) − 1] p(z | x) (Eq. 6, step 8): autodiff of
  `marginal_log_likelihood` gives exactly that (tests/realm_jax/test_objective.py checks it against the formula).
Shape suffixes: B queries, K candidates, M masked positions, D projection size, V vocabulary.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array
NEG_INF = -1e9  # logit of a candidate slot that holds no document (a padded or excluded slot)


def relevance(query_BxD: Array, docs_BxKxD: Array) -> Array:
  """f(x, z) = Embed_input(x)ᵀ Embed_doc(z) for the K candidates of each query (Eq. 1): relevance_BxK (fp32)."""
  return jnp.einsum("bd,bkd->bk", query_BxD, docs_BxKxD, preferred_element_type=jnp.float32)


def log_p_z_given_x(relevance_BxK: Array, candidate_mask_BxK: Array) -> Array:
  """log p(z | x) = log_softmax over the valid candidates (Eq. 2); invalid slots get ≈ −1e9."""
  return jax.nn.log_softmax(jnp.where(candidate_mask_BxK > 0, relevance_BxK, NEG_INF), axis=-1)


def token_log_probs(log_probs_BxKxMxV: Array, labels_BxM: Array) -> Array:
  """log p(y_m | z, x) of the gold token at each masked position (Eq. 3): log_p_y_BxKxM."""
  labels_BxKxM = jnp.broadcast_to(labels_BxM[:, None], log_probs_BxKxMxV.shape[:-1])
  return jnp.take_along_axis(log_probs_BxKxMxV, jnp.maximum(labels_BxKxM, 0)[..., None], axis=-1)[..., 0]


def marginal_log_likelihood(
  log_p_z_BxK: Array, log_p_y_BxKxM: Array, mask_weights_BxM: Array, *, per_mask: bool = True
) -> tuple[Array, Array]:
  """log p(y | x) = logsumexp_z [log p(z | x) + log p(y | z, x)] (Eq. 5).

  per_mask=True (reference code): each masked token is marginalised on its own, log p(y_m | x) for every m, and the
  result is their weighted mean per query. per_mask=False (Eq. 4 inside Eq. 5): log p(y | z, x) = Σ_m log p(y_m | z,
  x), one marginal per query, divided by the query's mask count so both read as nats per token.
  Returns (log_p_y_given_x_B, mask_count_B).
  """
  weights_BxM = mask_weights_BxM.astype(jnp.float32)
  count_B = weights_BxM.sum(-1)
  if per_mask:
    marginal_BxM = jax.nn.logsumexp(log_p_z_BxK[..., None] + log_p_y_BxKxM, axis=1)
    total_B = (marginal_BxM * weights_BxM).sum(-1)
  else:
    joint_BxK = log_p_z_BxK + (log_p_y_BxKxM * weights_BxM[:, None]).sum(-1)
    total_B = jax.nn.logsumexp(joint_BxK, axis=-1)
  return total_B / jnp.maximum(count_B, 1.0), count_B


def retrieval_utility(log_p_y_given_x_B: Array, log_p_y_null_BxM: Array, mask_weights_BxM: Array) -> Array:
  """RU = log p(y | x) − log p(y | ∅, x) per query (§4 "retrieval utility", reference `retrieval_utility`): how much
  the retrieved documents help over the null document alone, in nats per masked token."""
  weights_BxM = mask_weights_BxM.astype(jnp.float32)
  null_B = (log_p_y_null_BxM * weights_BxM).sum(-1) / jnp.maximum(weights_BxM.sum(-1), 1.0)
  return log_p_y_given_x_B - null_B


def relevance_gradient(log_p_z_BxK: Array, log_p_y_given_zx_BxK: Array) -> Array:
  """r(z) = [p(y | z, x) / p(y | x) − 1] p(z | x) (Eq. 6): d log p(y | x) / d f(x, z) for one marginal."""
  log_p_y_B = jax.nn.logsumexp(log_p_z_BxK + log_p_y_given_zx_BxK, axis=-1)
  return (jnp.exp(log_p_y_given_zx_BxK - log_p_y_B[:, None]) - 1.0) * jnp.exp(log_p_z_BxK)


def marginal_predictions(log_p_z_BxK: Array, log_probs_BxKxMxV: Array) -> Array:
  """argmax_y Σ_z p(z | x) p(y_m | z, x) at each masked position: predictions_BxM (the model's answer)."""
  marginal_BxMxV = jax.nn.logsumexp(log_p_z_BxK[:, :, None, None] + log_probs_BxKxMxV, axis=1)
  return jnp.argmax(marginal_BxMxV, axis=-1)
