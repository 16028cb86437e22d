"""core.attention against a naive numpy reference (per-batch, per-head loops, float64)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from core import attention

# One jitted program per (shapes, mask/bias presence): cheaper to compile than the eager ops one by one.
attend = jax.jit(attention.dot_product_attention, static_argnames=("dropout_rate", "deterministic"))


def naive_attention(q, k, v, allowed=None, bias=None):
  """Loop reference: out[b, i, n] = Σ_j softmax_j(q·k/√d + bias)[j] v[b, j, n] over allowed j; 0 if none."""
  q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
  b_size, l_len, n_heads, d = q.shape
  s_len = k.shape[1]
  out = np.zeros((b_size, l_len, n_heads, v.shape[-1]))
  for b in range(b_size):
    for n in range(n_heads):
      for i in range(l_len):
        scores, vals = [], []
        for j in range(s_len):
          if allowed is not None and not allowed[b, n, i, j]:
            continue
          score = q[b, i, n] @ k[b, j, n] / np.sqrt(d)
          if bias is not None:
            score += bias[b, n, i, j]
          scores.append(score)
          vals.append(v[b, j, n])
        if not scores:
          continue
        w = np.exp(np.array(scores) - max(scores))
        out[b, i, n] = (w / w.sum()) @ np.stack(vals)
  return out


def _qkv(seed, b=2, l=5, s=5, n=3, d=4, dtype=np.float32):
  rng = np.random.default_rng(seed)
  q = rng.normal(size=(b, l, n, d)).astype(dtype)
  k = rng.normal(size=(b, s, n, d)).astype(dtype)
  v = rng.normal(size=(b, s, n, d)).astype(dtype)
  return q, k, v


def _padding(lengths, s):
  return (np.arange(s)[None, :] < np.asarray(lengths)[:, None]).astype(np.int32)


def test_mask_shapes_and_values():
  pad = attention.make_padding_mask(jnp.array([[1, 1, 0], [1, 0, 0]]))
  assert pad.shape == (2, 1, 1, 3) and pad.dtype == jnp.bool_
  np.testing.assert_array_equal(pad[:, 0, 0], [[True, True, False], [True, False, False]])
  causal = attention.make_causal_mask(4)
  assert causal.shape == (1, 1, 4, 4)
  np.testing.assert_array_equal(causal[0, 0], np.tril(np.ones((4, 4), bool)))
  assert attention.combine_masks(None, None) is None
  both = attention.combine_masks(pad[:, :, :, :3], attention.make_causal_mask(3))
  assert both.shape == (2, 1, 3, 3)
  assert not both[0, 0, 0, 1] and both[0, 0, 1, 1] and not both[1, 0, 2, 1]


def test_no_mask_matches_reference():
  q, k, v = _qkv(0, l=4, s=6)
  out = attend(q, k, v)
  np.testing.assert_allclose(out, naive_attention(q, k, v), rtol=1e-5, atol=1e-6)


def test_padding_mask_matches_reference():
  q, k, v = _qkv(1, l=6, s=6)
  pad_BxS = _padding([6, 3], 6)
  mask = attention.make_padding_mask(pad_BxS)
  allowed = np.broadcast_to(np.asarray(mask), (2, 3, 6, 6))
  out = attend(q, k, v, mask=mask)
  np.testing.assert_allclose(out, naive_attention(q, k, v, allowed), rtol=1e-5, atol=1e-6)


def test_causal_mask_matches_reference_and_ignores_future():
  q, k, v = _qkv(2, l=5, s=5)
  mask = attention.make_causal_mask(5)
  allowed = np.broadcast_to(np.asarray(mask), (2, 3, 5, 5))
  out = attend(q, k, v, mask=mask)
  np.testing.assert_allclose(out, naive_attention(q, k, v, allowed), rtol=1e-5, atol=1e-6)
  # Changing the last key/value must leave every earlier query position unchanged.
  k2, v2 = k.copy(), v.copy()
  k2[:, -1] += 3.0
  v2[:, -1] -= 5.0
  out2 = attend(q, k2, v2, mask=mask)
  np.testing.assert_array_equal(np.asarray(out)[:, :-1], np.asarray(out2)[:, :-1])


def test_padding_and_causal_with_bias_matches_reference():
  q, k, v = _qkv(3, b=3, l=6, s=6, n=2, d=8)
  mask = attention.combine_masks(attention.make_padding_mask(_padding([6, 4, 1], 6)), attention.make_causal_mask(6))
  bias = np.random.default_rng(4).normal(size=(3, 2, 6, 6)).astype(np.float32)
  allowed = np.broadcast_to(np.asarray(mask), (3, 2, 6, 6))
  out = attend(q, k, v, mask=mask, bias=bias)
  np.testing.assert_allclose(out, naive_attention(q, k, v, allowed, bias), rtol=1e-5, atol=1e-6)


def test_bias_alone_matches_reference_and_broadcasts():
  q, k, v = _qkv(5, l=3, s=7)
  bias_1xNx1xS = np.random.default_rng(6).normal(size=(1, 3, 1, 7)).astype(np.float32)
  full = np.broadcast_to(bias_1xNx1xS, (2, 3, 3, 7))
  out = attend(q, k, v, bias=bias_1xNx1xS)
  np.testing.assert_allclose(out, naive_attention(q, k, v, bias=full), rtol=1e-5, atol=1e-6)


def test_fully_masked_rows_are_zero_not_nan():
  q, k, v = _qkv(7, l=4, s=4)
  pad = attention.make_padding_mask(_padding([4, 0], 4))  # second example: every key is padding
  # Left padding + causal: the first two queries of example 0 see no key at all.
  left = attention.make_padding_mask(np.array([[0, 0, 1, 1], [1, 1, 1, 1]]))
  for mask in (pad, attention.combine_masks(left, attention.make_causal_mask(4))):
    out = np.asarray(attend(q, k, v, mask=mask))
    assert np.isfinite(out).all()
    allowed = np.broadcast_to(np.asarray(mask), (2, 3, 4, 4))
    np.testing.assert_allclose(out, naive_attention(q, k, v, allowed), rtol=1e-5, atol=1e-6)
  grads = jax.jit(jax.grad(lambda q_: attention.dot_product_attention(q_, k, v, mask=pad).sum()))(jnp.asarray(q))
  assert np.isfinite(np.asarray(grads)).all()


def test_bf16_inputs_close_to_fp32_and_softmax_in_fp32():
  q, k, v = _qkv(8, l=16, s=16, n=2, d=32)
  mask = attention.make_padding_mask(_padding([16, 9], 16))
  ref = attend(q, k, v, mask=mask)
  q16, k16, v16 = (jnp.asarray(a, jnp.bfloat16) for a in (q, k, v))
  out16 = attend(q16, k16, v16, mask=mask)
  assert out16.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(out16, np.float32), ref, atol=3e-2, rtol=3e-2)
  # The softmax's exp must run in float32 even though the inputs are bfloat16.
  jaxpr = jax.make_jaxpr(lambda a, b, c: attention.dot_product_attention(a, b, c, mask=mask))(q16, k16, v16)
  exp_eqns = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "exp"]
  assert exp_eqns and all(e.outvars[0].aval.dtype == jnp.float32 for e in exp_eqns)


def test_dropout_deterministic_is_identity_and_active_otherwise():
  q, k, v = _qkv(9, l=8, s=8)
  base = attend(q, k, v)
  for seed in (0, 1):
    same = attend(
      q, k, v, dropout_rate=0.5, dropout_rng=jax.random.key(seed), deterministic=True
    )
    np.testing.assert_array_equal(same, base)
  d0 = attend(q, k, v, dropout_rate=0.5, dropout_rng=jax.random.key(0), deterministic=False)
  d1 = attend(q, k, v, dropout_rate=0.5, dropout_rng=jax.random.key(1), deterministic=False)
  assert not np.allclose(d0, base) and not np.allclose(d0, d1)
  with pytest.raises(ValueError, match="dropout_rng"):
    attend(q, k, v, dropout_rate=0.5, deterministic=False)


def test_multi_head_attention_module_params_and_reference():
  b, l, h, n = 2, 6, 12, 3
  x = np.random.default_rng(10).normal(size=(b, l, h)).astype(np.float32)
  mask = attention.make_padding_mask(_padding([6, 2], l))
  mha = attention.MultiHeadAttention(num_heads=n, dropout_rate=0.1)
  params = mha.init(jax.random.key(0), x, mask)["params"]
  shapes = jax.tree.map(lambda a: a.shape, params)
  assert shapes == {
    "query": {"kernel": (h, h), "bias": (h,)},
    "key": {"kernel": (h, h), "bias": (h,)},
    "value": {"kernel": (h, h), "bias": (h,)},
    "out": {"kernel": (h, h), "bias": (h,)},
  }
  out = jax.jit(lambda p, x_: mha.apply({"params": p}, x_, mask))(params, x)
  assert out.shape == (b, l, h)
  p = jax.tree.map(np.asarray, params)
  proj = lambda name, y: y @ p[name]["kernel"] + p[name]["bias"]
  q, k, v = (proj(nm, x).reshape(b, l, n, h // n) for nm in ("query", "key", "value"))
  allowed = np.broadcast_to(np.asarray(mask), (b, n, l, l))
  ref = proj("out", naive_attention(q, k, v, allowed).reshape(b, l, h))
  np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)
  # Dropout draws from the module's 'dropout' rng collection only when deterministic=False.
  d_a = mha.apply({"params": params}, x, mask, deterministic=False, rngs={"dropout": jax.random.key(1)})
  d_b = mha.apply({"params": params}, x, mask, deterministic=False, rngs={"dropout": jax.random.key(2)})
  assert not np.allclose(d_a, d_b)
  det = mha.apply({"params": params}, x, mask, deterministic=True, rngs={"dropout": jax.random.key(1)})
  np.testing.assert_array_equal(det, out)


def test_multi_head_attention_bf16_compute_keeps_fp32_params():
  x = np.random.default_rng(11).normal(size=(2, 6, 12)).astype(np.float32)  # the shapes above: no new compiles
  mha32 = attention.MultiHeadAttention(num_heads=3)
  mha16 = attention.MultiHeadAttention(num_heads=3, dtype=jnp.bfloat16)
  params = mha32.init(jax.random.key(0), x)["params"]
  assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(mha16.init(jax.random.key(0), x)))
  out32 = mha32.apply({"params": params}, x)
  out16 = mha16.apply({"params": params}, x)
  assert out16.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(out16, np.float32), out32, atol=5e-2, rtol=5e-2)


def test_multi_head_attention_cross_attention_and_head_dim():
  x = np.ones((1, 3, 8), np.float32)
  kv = np.random.default_rng(12).normal(size=(1, 7, 10)).astype(np.float32)
  mha = attention.MultiHeadAttention(num_heads=2, head_dim=5)
  # Shapes only: traced, not compiled.
  variables = jax.eval_shape(lambda: mha.init(jax.random.key(0), x, kv_BxSxH=kv))
  assert variables["params"]["key"]["kernel"].shape == (10, 10)
  assert variables["params"]["out"]["kernel"].shape == (10, 8)
  assert jax.eval_shape(lambda v: mha.apply(v, x, kv_BxSxH=kv), variables).shape == (1, 3, 8)
  assert isinstance(mha, nn.Module)
