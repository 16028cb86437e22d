"""ELECTRA generator/discriminator: sizes, parameter counts, tying, gradient flow (electra.md §3, §8)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from core import bert as bert_lib
from electra_jax import model, objective
from tests.helpers import jit_once

SMALL = bert_lib.BertConfig(hidden_size=256, num_layers=12, num_heads=4, intermediate_size=1024, embedding_size=128)
MICRO = bert_lib.BertConfig(
  vocab_size=64,
  hidden_size=32,
  num_layers=1,
  num_heads=2,
  intermediate_size=64,
  embedding_size=16,
  max_position_embeddings=16,
  hidden_dropout_rate=0.0,
  attention_dropout_rate=0.0,
)  # fmt: skip  (one layer, no dropout: each compiles faster; dropout is exercised by test_pretrain)
MASK = 3


def _flat(tree):
  return {jax.tree_util.keystr(path): leaf for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def test_small_generator_is_64_256_one_head():
  gen = model.generator_config(SMALL, 0.25)
  assert (gen.hidden_size, gen.intermediate_size, gen.num_heads, gen.num_layers, gen.emb_size) == (64, 256, 1, 12, 128)
  base = model.generator_config(bert_lib.BertConfig(), 1 / 3)
  assert (base.hidden_size, base.intermediate_size, base.num_heads, base.emb_size) == (256, 1024, 4, 768)


def test_small_parameter_counts_from_the_real_init():
  gen = model.generator_config(SMALL, 0.25)
  shapes = jax.eval_shape(lambda key: model.init_params(key, SMALL, gen, 128), jax.random.key(0))
  disc_encoder = bert_lib.param_count(model.discriminator_encoder_params(shapes))
  assert disc_encoder == 13_483_008  # electra.md: ~13.48M
  generator_only = bert_lib.param_count(shapes["generator"])
  assert generator_only == 647_162  # electra.md: ~0.65M
  # The hand-off tree has exactly the shapes of a fresh core BertEncoder with the discriminator config.
  encoder = jax.eval_shape(
    lambda key: bert_lib.BertEncoder(SMALL).init(key, jnp.zeros((1, 8), jnp.int32)), jax.random.key(0)
  )
  reference = {k: v.shape for k, v in _flat(encoder["params"]).items()}
  assert {k: v.shape for k, v in _flat(model.discriminator_encoder_params(shapes)).items()} == reference


@functools.cache
def _micro_setup():
  gen = model.generator_config(MICRO, 0.5)
  params = jit_once(lambda key: model.init_params(key, MICRO, gen, 16), jax.random.key(0))
  rng = np.random.default_rng(0)
  ids = rng.integers(5, 64, size=(2, 16))
  ids[:, 0], ids[:, -1] = 1, 2
  batch = {
    "input_ids": jnp.asarray(ids, jnp.int32),
    "token_type_ids": jnp.zeros((2, 16), jnp.int32),
    "attention_mask": jnp.ones((2, 16), jnp.int32),
  }
  mask_fn = functools.partial(
    objective.mask_inputs, mask_prob=0.25, mask_id=MASK, vocab_size=64, special_ids=(0, 1, 2, MASK)
  )

  def gen_fn(p, ids, types, attention, positions, **kw):
    return model.generator_logits(p, gen, ids, types, attention, positions, **kw)

  def disc_fn(p, ids, types, attention, **kw):
    return model.discriminator_logits(p, MICRO, ids, types, attention, **kw)

  loss = functools.partial(objective.electra_loss, gen_logits_fn=gen_fn, disc_logits_fn=disc_fn, mask_fn=mask_fn)
  return params, batch, loss


@functools.cache
def _loss_and_gradients():
  """(total, metrics) of the loss at gen_weight 1, disc_weight 50, and the gradients of its two parts: one compile."""
  params, batch, loss = _micro_setup()

  def parts(p):
    total, metrics = loss(p, batch, jax.random.key(1), gen_weight=1.0, disc_weight=50.0)
    return jnp.stack([metrics["disc_loss"], metrics["mlm_loss"]]), (total, metrics)

  grads, (total, metrics) = jit_once(jax.jacrev(parts, has_aux=True), params)  # one backward pass per loss
  return total, metrics, jax.tree.map(lambda g: g[0], grads), jax.tree.map(lambda g: g[1], grads)


def test_rtd_loss_reaches_the_generator_only_through_the_shared_embeddings():
  _, _, disc_grads, mlm_grads = _loss_and_gradients()
  # Exactly zero for every generator-only parameter (no backprop through sampling) ...
  for name, g in _flat(disc_grads["generator"]).items():
    assert not np.asarray(g).any(), name
  # ... and the MLM loss never touches the discriminator.
  for name, g in _flat(mlm_grads["discriminator"]).items():
    assert not np.asarray(g).any(), name
  # The shared tables and the embedding LayerNorm get a nonzero gradient from each loss separately.
  for grads in (disc_grads, mlm_grads):
    for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
      assert np.abs(np.asarray(grads["embeddings"][name]["embedding"])).sum() > 0, name
    for leaf in ("scale", "bias"):
      assert np.abs(np.asarray(grads["embeddings"]["layer_norm"][leaf])).sum() > 0, leaf
  assert np.abs(np.asarray(mlm_grads["generator"]["layer_0"]["intermediate"]["kernel"])).sum() > 0
  assert np.abs(np.asarray(disc_grads["discriminator"]["head"]["out"]["kernel"])).sum() > 0


def test_total_loss_is_gen_weight_mlm_plus_disc_weight_rtd():
  total, metrics, _, _ = _loss_and_gradients()
  np.testing.assert_allclose(float(total), float(metrics["mlm_loss"] + 50.0 * metrics["disc_loss"]), rtol=1e-6)
  assert abs(float(metrics["mlm_loss"]) - np.log(64)) < 0.5  # near-uniform generator at init


def test_generator_head_at_positions_equals_the_full_head_gathered():
  params, batch, _ = _micro_setup()
  gen = model.generator_config(MICRO, 0.5)
  positions = jnp.asarray([[1, 4, 4, 0], [7, 2, 14, 3]], jnp.int32)
  args = (batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])

  def both(p):
    hidden = bert_lib.BertEncoder(gen).apply({"params": model.encoder_params(p, "generator")}, *args)
    table = p["embeddings"]["word_embeddings"]["embedding"]
    full = bert_lib.MlmHead(gen).apply({"params": p["generator"]["mlm_head"]}, hidden, table)
    return model.generator_logits(p, gen, *args, positions), full

  at_positions, full = jit_once(both, params)  # one compile for both paths
  np.testing.assert_allclose(at_positions, model.gather_positions(full, positions), rtol=1e-5, atol=1e-6)


def test_mlm_baseline_head_at_positions_equals_bert_for_mlm():
  _, batch, _ = _micro_setup()
  positions = jnp.asarray([[1, 2, 3], [9, 10, 0]], jnp.int32)
  args = (batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])

  def both(key):
    params = model.init_mlm_params(key, MICRO, 16)
    full = bert_lib.BertForMlm(MICRO).apply({"params": params}, *args)
    return model.mlm_logits(params, MICRO, *args, positions), full

  at_positions, full = jit_once(both, jax.random.key(3))  # init and both paths in one compile
  np.testing.assert_allclose(at_positions, model.gather_positions(full, positions), rtol=1e-5, atol=1e-6)


def test_discriminator_encoder_params_load_into_core_bert_encoder():
  params, batch, _ = _micro_setup()
  args = (batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])

  def both(p):
    hidden = bert_lib.BertEncoder(MICRO).apply({"params": model.discriminator_encoder_params(p)}, *args)
    logits = model.DiscriminatorHead(MICRO).apply({"params": p["discriminator"]["head"]}, hidden)
    return logits, model.discriminator_logits(p, MICRO, *args)

  logits, reference = jit_once(both, params)  # one compile for both paths
  np.testing.assert_allclose(logits, reference, rtol=1e-6)
  assert logits.shape == (2, 16) and logits.dtype == jnp.float32
