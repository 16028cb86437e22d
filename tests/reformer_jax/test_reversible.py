"""Reversible residual stack (Reformer §3): its custom-vjp gradients equal `jax.grad` of the plain stack with the same
params, keys and buckets (toy blocks and the model's LSH / full blocks with dropout), the inputs are rebuilt from the
outputs at rounding level, the backward pass reuses the forward pass's buckets; chunked FF equals unchunked."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from core import dropout as dropout_lib
from reformer_jax import model as model_lib
from reformer_jax import reversible
from tests.helpers import jit_once


def _assert_close(actual, desired):
  """Equal at float32 rounding: rtol 1e-5, and atol 1e-5 of the tensor's largest entry (sums of ~10-100 products)."""
  np.testing.assert_allclose(actual, desired, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(desired).max())))


def _toy_layers(trace):
  """F depends on a 'bucket' (sign of the first feature) it computes unless given one; G is a plain MLP. `trace`
  records, at trace time, whether F was called without buckets."""

  def f(p, x, mask, rngs, buckets):
    trace.append(buckets is None)
    if buckets is None:
      buckets = (x[..., :1] > 0).astype(jnp.int32)
    out = jnp.tanh(x @ p) * (1.0 + buckets)
    return dropout_lib.dropout(out, 0.25, rngs["dropout"]) * mask[..., None], buckets

  def g(p, x, mask, rngs, buckets):
    return dropout_lib.dropout(jnp.tanh(x @ p), 0.25, rngs["dropout"]), None

  return [(f, g)] * 3


def test_toy_reversible_grads_match_plain_autodiff_reuse_buckets_and_invert():
  rng = np.random.default_rng(0)
  params = [tuple(0.5 * rng.standard_normal((2, 8, 8), np.float32)) for _ in range(3)]
  x1, x2, c1, c2 = rng.standard_normal((4, 2, 5, 8), np.float32)
  mask = np.array([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], np.float32)
  rngs = {"dropout": jax.random.key(0)}
  trace = []
  layers = _toy_layers(trace)

  def loss(stack, params, x1, x2):
    y1, y2 = stack(layers, params, x1, x2, mask, rngs)
    return jnp.sum(y1 * c1) + jnp.sum(y2 * c2)

  def run(params, x1, x2):
    grads_rev = jax.grad(lambda *a: loss(reversible.reversible_stack, *a), argnums=(0, 1, 2))(params, x1, x2)
    grads_plain = jax.grad(lambda *a: loss(reversible.plain_stack, *a), argnums=(0, 1, 2))(params, x1, x2)
    y1, y2, buckets = reversible.plain_stack(layers, params, x1, x2, mask, rngs, return_buckets=True)
    return grads_rev, grads_plain, reversible.reconstruct_inputs(layers, params, y1, y2, mask, rngs, buckets)

  grads_rev, grads_plain, (r1, r2) = jit_once(run, params, x1, x2)
  # Traced once: the reversible forward hashes (3 F calls without buckets), its backward recompute gets the saved
  # buckets (3 calls with them); then the plain forward hashes and the reconstruction reuses.
  assert trace == [True] * 3 + [False] * 3 + [True] * 3 + [True] * 3 + [False] * 3
  jax.tree.map(_assert_close, grads_rev, grads_plain)
  np.testing.assert_allclose(r1, x1, atol=2e-6)
  np.testing.assert_allclose(r2, x2, atol=2e-6)


CONFIG = model_lib.ReformerConfig(
  d_model=16, d_ff=32, n_layers=2, n_heads=2, d_head=4, attention=("lsh", "full"), n_hashes=2, n_buckets=4,
  chunk_len=4, dropout_rate=0.1, attention_dropout_rate=0.1, ff_dropout_rate=0.1, ff_chunk_size=8, max_len=16,
).validate()


def test_model_stack_reversible_grads_equal_plain_grads_with_lsh_and_dropout():
  # Same params, same keys: reversible (custom vjp, rebuilt activations, saved buckets) vs plain autodiff.
  x_BxLxH, c1, c2 = np.random.default_rng(1).standard_normal((3, 2, 16, 16), np.float32)
  mask_BxL = np.ones((2, 16), np.int32)
  mask_BxL[1, 13:] = 0
  rngs = {"hash": jax.random.key(2), "dropout": jax.random.key(3)}
  stack = model_lib.ReformerStack(CONFIG, causal=True)
  params = jit_once(stack.init, jax.random.key(1), x_BxLxH, mask_BxL)
  plain = model_lib.ReformerStack(dataclasses.replace(CONFIG, reversible=False), causal=True)

  def loss(module, params, x):
    y1, y2 = module.apply(params, x, mask_BxL, deterministic=False, rngs=rngs)
    return jnp.sum(y1 * c1) + jnp.sum(y2 * c2)

  layers = model_lib.block_functions(model_lib.stack_blocks(CONFIG, True), deterministic=False)

  def run(params, x):
    grad = jax.grad(loss, argnums=(1, 2))
    # The stack's own blocks invert at rounding level when given the forward pass's buckets.
    layer_params = model_lib.layer_params(params["params"])
    y1, y2, buckets = reversible.plain_stack(layers, layer_params, x, x, mask_BxL, rngs, return_buckets=True)
    rebuilt = reversible.reconstruct_inputs(layers, layer_params, y1, y2, mask_BxL, rngs, buckets)
    return grad(stack, params, x), grad(plain, params, x), buckets, rebuilt

  grads_rev, grads_plain, buckets, (r1, r2) = jit_once(run, params, x_BxLxH)
  leaves_rev, leaves_plain = jax.tree.leaves(grads_rev), jax.tree.leaves(grads_plain)
  assert len(leaves_rev) == len(leaves_plain) > 10 and all(np.abs(g).max() > 0 for g in leaves_rev)
  for a, b in zip(leaves_rev, leaves_plain):
    _assert_close(a, b)
  assert buckets[0].shape == (2, 2, 2, 16) and buckets[1] is None  # [B, N, R, L] for the LSH layer
  np.testing.assert_allclose(r1, x_BxLxH, atol=1e-5)
  np.testing.assert_allclose(r2, x_BxLxH, atol=1e-5)


def test_chunked_feed_forward_equals_unchunked_in_value_and_gradient():
  rng = np.random.default_rng(2)
  shapes = {"wi": (6, 10), "bi": (10,), "wo": (10, 6), "bo": (6,)}
  params = {name: rng.standard_normal(shape, np.float32) for name, shape in shapes.items()}
  x_BxLxH = rng.standard_normal((2, 8, 6), np.float32)

  def loss(params, x, chunk_size):  # chunk 3 does not divide 8: the padded path
    out = reversible.chunked_feed_forward(params, x, chunk_size=chunk_size, activation="gelu")
    return jnp.sum(jnp.sin(out)), out

  def both(params, x):
    value_and_grad = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)
    return value_and_grad(params, x, 3), value_and_grad(params, x, 0)

  ((l_chunked, out_chunked), g_chunked), ((l_full, out_full), g_full) = jit_once(both, params, x_BxLxH)
  np.testing.assert_allclose(out_chunked, out_full, rtol=1e-6, atol=1e-5)
  # The loss sums 96 terms of O(1) to about -0.5: its error is absolute (96 x the outputs' 1e-5), not relative.
  np.testing.assert_allclose(l_chunked, l_full, atol=96 * 1e-5)
  jax.tree.map(_assert_close, g_chunked, g_full)
