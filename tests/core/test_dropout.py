"""core.dropout: hashed masks have the requested rate, are unbiased, deterministic per key, and independent between
neighbouring positions and between keys."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from core import dropout as dropout_lib

N = 1 << 20


def _keep(rate: float, key=0, shape=(N,)) -> np.ndarray:
  threshold, _ = dropout_lib.keep_threshold(rate)
  key = jax.random.key(key) if isinstance(key, int) else key
  return np.asarray(dropout_lib.random_bits(key, shape) >= threshold)


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_keep_fraction_matches_rate_within_binomial_noise(rate):
  keep = _keep(rate)
  sigma = np.sqrt(rate * (1 - rate) / N)
  assert abs(keep.mean() - (1 - rate)) < 5 * sigma


def test_fmix32_matches_murmurhash3_reference_values():
  # MurmurHash3_x86_32's finaliser computed with Python integers (independent of the jnp implementation).
  def fmix_ref(h):
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    return h ^ (h >> 16)

  xs = np.array([0, 1, 2, 0xDEADBEEF, 0xFFFFFFFF, 123456789], np.uint32)
  got = np.asarray(dropout_lib._fmix32(jnp.asarray(xs)))
  np.testing.assert_array_equal(got, [fmix_ref(int(x)) for x in xs])


def test_bits_are_uniform_in_every_byte():
  bits = np.asarray(dropout_lib.random_bits(jax.random.key(3), (N,)))
  for shift in (0, 8, 16, 24):
    counts = np.bincount((bits >> shift) & 0xFF, minlength=256)
    expected = N / 256
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 255 + 6 * np.sqrt(2 * 255), (shift, chi2)  # mean 255, sd sqrt(510)


def test_neighbours_and_rows_are_uncorrelated():
  keep = _keep(0.5, shape=(1024, 1024)).astype(np.float64)
  bound = 5.0 / np.sqrt(keep.size)
  for a, b in ((keep[:, :-1], keep[:, 1:]), (keep[:-1], keep[1:]), (keep[:, :-2], keep[:, 2:])):
    assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < bound


def test_same_key_same_mask_and_keys_are_independent():
  np.testing.assert_array_equal(_keep(0.1, key=7), _keep(0.1, key=7))
  a, b = _keep(0.5, key=1), _keep(0.5, key=2)
  agreement = (a == b).mean()  # independent fair coins agree half of the time
  assert abs(agreement - 0.5) < 5 * np.sqrt(0.25 / N)
  folded = _keep(0.5, key=jax.random.fold_in(jax.random.key(1), 1))
  assert abs((a == folded).mean() - 0.5) < 5 * np.sqrt(0.25 / N)


def test_dropout_is_unbiased_and_scales_survivors():
  x = jnp.full((N,), 2.0, jnp.float32)
  rate = 0.1
  out = np.asarray(dropout_lib.dropout(x, rate, jax.random.key(0)))
  _, keep_prob = dropout_lib.keep_threshold(rate)
  survivors = out[out != 0]
  np.testing.assert_allclose(survivors, 2.0 / keep_prob, rtol=1e-6)
  assert abs(out.mean() - 2.0) < 5 * 2.0 / keep_prob * np.sqrt(rate * keep_prob / N)


def test_gradient_is_the_mask_over_keep_prob():
  x = jnp.linspace(-1.0, 1.0, 4096)
  key = jax.random.key(5)
  grad = np.asarray(jax.grad(lambda v: dropout_lib.dropout(v, 0.3, key).sum())(x))
  keep = np.asarray(dropout_lib.dropout(jnp.ones_like(x), 0.3, key)) != 0
  _, keep_prob = dropout_lib.keep_threshold(0.3)
  np.testing.assert_allclose(grad, np.where(keep, 1.0 / keep_prob, 0.0), rtol=1e-6)


def test_deterministic_rate_zero_and_bad_inputs():
  x = jnp.arange(10.0)
  assert dropout_lib.dropout(x, 0.5, None, deterministic=True) is x
  assert dropout_lib.dropout(x, 0.0, None) is x
  with pytest.raises(ValueError, match=r"rate must be in \[0, 1\)"):
    dropout_lib.dropout(x, 1.0, jax.random.key(0))
  with pytest.raises(ValueError, match="rng key is required"):
    dropout_lib.dropout(x, 0.5, None)


def test_linen_module_draws_from_the_dropout_collection():
  layer = dropout_lib.Dropout(0.5)
  x = jnp.ones((64, 64))
  np.testing.assert_array_equal(layer.apply({}, x, deterministic=True), x)
  a = layer.apply({}, x, deterministic=False, rngs={"dropout": jax.random.key(1)})
  b = layer.apply({}, x, deterministic=False, rngs={"dropout": jax.random.key(1)})
  c = layer.apply({}, x, deterministic=False, rngs={"dropout": jax.random.key(2)})
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  with pytest.raises(flax.errors.InvalidRngError):
    layer.apply({}, x, deterministic=False)
