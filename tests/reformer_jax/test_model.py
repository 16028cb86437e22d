"""ReformerLM / classifier: one-line config errors, axial position embeddings at any length, any input length
(L=37 with chunk 16), padding invariance, same key -> same output, exact causality of the reversible LSH LM."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reformer_jax import model as model_lib
from reformer_jax import positions
from tests.helpers import UNOPTIMISED, jit_once

BASE = model_lib.ReformerConfig(
  d_model=16, d_ff=32, n_layers=2, n_heads=2, d_head=8, attention=("lsh", "local"), n_hashes=2, n_buckets=4,
  chunk_len=16, local_chunk_len=8, max_len=64,
)


@pytest.mark.parametrize(
  "field, value",
  [
    ("n_buckets", 3),
    ("n_buckets", (4, 5)),
    ("n_hashes", 0),
    ("chunk_len", 0),
    ("attention", ("lsh", "sparse")),
    ("axial_pos_shape", (4, 8)),  # dims missing
    ("dropout_rate", 1.0),
    ("ff_activation", "swish"),
    ("d_model", 12.0),
  ],
)
def test_validate_rejects_bad_fields_with_one_line_naming_the_field(field, value):
  with pytest.raises(ValueError, match=field) as err:
    dataclasses.replace(BASE, **{field: value}).validate()
  assert "\n" not in str(err.value)


def test_validate_axial_errors_and_list_fields_become_tuples():
  with pytest.raises(ValueError, match="must sum to d_model 16"):
    dataclasses.replace(BASE, axial_pos_shape=(8, 8), axial_pos_dims=(8, 4)).validate()
  with pytest.raises(ValueError, match="covers 64 positions, fewer than max_len 100"):
    dataclasses.replace(BASE, axial_pos_shape=(8, 8), axial_pos_dims=(8, 8), max_len=100).validate()
  config = dataclasses.replace(BASE, attention=["local", "lsh"], n_buckets=[2, 4]).validate()
  assert config.attention == ("local", "lsh") and config.n_buckets == (2, 4) and hash(config)
  assert BASE.validate().length_multiple == 16 and BASE.kinds == ("lsh", "local")


def test_axial_position_embedding_is_the_broadcast_concat_table_at_any_length():
  module = positions.AxialPositionEmbedding(shape=(4, 8), dims=(6, 10))
  params = jit_once(lambda key: module.init(key, 32), jax.random.key(0))
  w0, w1 = np.asarray(params["params"]["weights_0"]), np.asarray(params["params"]["weights_1"])
  reference = np.array([np.concatenate([w0[p // 8], w1[p % 8]]) for p in range(32)])  # position p = (p // 8, p % 8)
  lengths = (32, 20, 5)
  for length, table in zip(lengths, jit_once(lambda p: [module.apply(p, n) for n in lengths], params)):
    np.testing.assert_array_equal(table, reference[:length])
  with pytest.raises(ValueError, match="33 positions requested"):
    module.apply(params, 33)


def test_lm_any_length_same_key_same_output_and_exact_causality():
  # L = 37 with LSH chunk 16 and local chunk 8: padded to 48 inside and sliced back.
  config = BASE.validate()
  model = model_lib.ReformerLM(config)
  ids_BxL = np.random.default_rng(1).permutation(256)[:74].reshape(2, 37).astype(np.int32) + 3  # tokens unique
  params = jit_once(model.init, jax.random.key(2), ids_BxL)
  w_V = np.random.default_rng(3).standard_normal(config.vocab_size).astype(np.float32)
  query = 20

  def logits_and_grad(params, hash_key):
    def probe(params):  # logits at position `query` of row 0, projected
      logits_BxLxV = model.apply(params, ids_BxL, rngs={"hash": hash_key})
      return logits_BxLxV[0, query] @ w_V, logits_BxLxV

    (_, logits_BxLxV), grads = jax.value_and_grad(probe, has_aux=True)(params)
    return logits_BxLxV, grads["params"]["reformer"]["embed"]["embedding"]

  compiled = jax.jit(logits_and_grad).lower(params, jax.random.key(4)).compile(UNOPTIMISED)
  logits, grad_VxH = compiled(params, jax.random.key(4))
  assert logits.shape == (2, 37, config.vocab_size) and np.isfinite(logits).all()
  # Causality: the input embedding at j > query gets exactly zero gradient (each position's token is unique).
  grad_LxH = np.asarray(grad_VxH)[np.asarray(ids_BxL[0])]
  assert np.all(grad_LxH[query + 1 :] == 0.0)
  reached = np.abs(grad_LxH[: query + 1]).max(axis=1) > 0
  assert reached[query] and reached[8:query].all()  # itself, and (local chunk 8, one back) positions 8..19
  # Same key -> same output; another hash key changes the LSH layer's buckets.
  np.testing.assert_array_equal(compiled(params, jax.random.key(4))[0], logits)
  assert np.abs(compiled(params, jax.random.key(5))[0] - logits).max() > 1e-6


def test_padding_does_not_change_real_positions_and_any_length_is_padded_inside():
  # Bidirectional LSH + local classifier. Rows 0 and 1: the same 37 real tokens, then 11 masked positions holding
  # different garbage; row 2: the 37 tokens alone (L=37, padded to 48 inside). The encoder's hidden states at the
  # 37 real positions and the (masked mean-pooled) logits must agree across all three.
  config = dataclasses.replace(BASE, pooling="mean", n_classes=3).validate()
  model = model_lib.ReformerClassifier(config)
  rng = np.random.default_rng(6)
  ids_BxL = rng.integers(3, 259, (2, 48), dtype=np.int32)
  ids_BxL[1, :37] = ids_BxL[0, :37]
  mask_BxL = np.broadcast_to(np.arange(48) < 37, (2, 48)).astype(np.int32)
  params = jit_once(model.init, jax.random.key(8), ids_BxL, mask_BxL)

  def run(params, key):
    def apply(ids, mask):
      is_encoder = lambda module, _: isinstance(module, model_lib.ReformerEncoder)  # noqa: E731
      logits, state = model.apply(params, ids, mask, rngs={"hash": key}, capture_intermediates=is_encoder)
      return logits, state["intermediates"]["reformer"]["__call__"][0]

    return apply(ids_BxL, mask_BxL), apply(ids_BxL[:1, :37], None)

  (logits_BxC, hidden_BxLx2H), (logits_1xC, hidden_1xLx2H) = jit_once(run, params, jax.random.key(9))
  assert logits_BxC.shape == (2, 3) and hidden_1xLx2H.shape == (1, 37, 2 * config.d_model)
  for row in (hidden_BxLx2H[0, :37], hidden_BxLx2H[1, :37]):
    np.testing.assert_allclose(row, hidden_1xLx2H[0], atol=1e-5)
  np.testing.assert_allclose(logits_BxC, np.concatenate([logits_1xC, logits_1xC]), atol=1e-5)
