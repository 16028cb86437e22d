"""Dropout (Srivastava et al. 2014, "Dropout", §2 Eq. 1-2; inverted scaling as in Vaswani et al. 2017 §5.4) with
masks drawn from a counter-based hash instead of threefry.

`jax.random.bernoulli` runs threefry-2x32 (20 rounds) per element. On CPU that is ~10 ns per element, about 16% of
an ELECTRA-Small training step, which draws ~50M dropout decisions per step (benchmarks/electra/step_vs_torch.py).
Dropout masks need independence between positions, not cryptographic strength, so here each element's bits are two
rounds of the MurmurHash3 32-bit finaliser over its flat index, keyed by 64 bits that threefry derives from the
module's `dropout` rng. That is ~25x cheaper, deterministic given the key, and tested for rate, independence
between neighbours and between keys (tests/core/test_dropout.py).

`Dropout` is a drop-in for `flax.linen.Dropout` (same `rate`, `deterministic` and `dropout` rng collection).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

_GOLDEN = np.uint32(0x9E3779B9)


def _fmix32(h: Array) -> Array:
  """MurmurHash3's 32-bit finaliser: a bijection on uint32 with full avalanche."""
  h = h ^ (h >> 16)
  h = h * np.uint32(0x85EBCA6B)
  h = h ^ (h >> 13)
  h = h * np.uint32(0xC2B2AE35)
  return h ^ (h >> 16)


def random_bits(key: Array, shape: tuple[int, ...]) -> Array:
  """uint32[shape] of hashed bits: fmix32(fmix32(index·φ + s0) ^ s1), with (s0, s1) = threefry bits of `key`."""
  seed = jax.random.bits(key, (2,), jnp.uint32)
  index = jax.lax.iota(jnp.uint32, int(np.prod(shape, dtype=np.int64))).reshape(shape)
  return _fmix32(_fmix32(index * _GOLDEN + seed[0]) ^ seed[1])


def keep_threshold(rate: float) -> tuple[np.uint32, float]:
  """(t, keep_prob): an element is kept when its bits are >= t; keep_prob = 1 - t / 2**32 is the exact rate used."""
  t = min(round(rate * 2.0**32), 2**32 - 1)
  return np.uint32(t), 1.0 - t / 2.0**32


def dropout(x: Array, rate: float, key: Array | None, deterministic: bool = False) -> Array:
  """Zeroes each element of x with probability `rate` and scales survivors by 1/keep_prob (E[out] = x)."""
  if deterministic or rate == 0.0:
    return x
  if not 0.0 <= rate < 1.0:
    raise ValueError(f"dropout rate must be in [0, 1), got {rate!r}")
  if key is None:
    raise ValueError("dropout: an rng key is required when deterministic=False and rate > 0")
  threshold, keep_prob = keep_threshold(rate)
  keep = random_bits(key, x.shape) >= threshold
  return jnp.where(keep, x * jnp.asarray(1.0 / keep_prob, x.dtype), jnp.zeros((), x.dtype))


class Dropout(nn.Module):
  """Linen dropout over the hashed masks above; a drop-in for `flax.linen.Dropout`."""

  rate: float
  rng_collection: str = "dropout"

  @nn.compact
  def __call__(self, x: Array, deterministic: bool = True) -> Array:
    if deterministic or self.rate == 0.0:
      return x
    return dropout(x, self.rate, self.make_rng(self.rng_collection))
