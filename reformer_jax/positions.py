"""Position embeddings of the Reformer models: axial (Kitaev et al. 2020 §5 / trax `AxialPositionalEncoding`, HF
`AxialPositionEmbeddings`) and a plain learned table. Both return the first `length` rows, so any input length up to
the table works (no "length must equal the axial shape" crash, HF #4565)."""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array
EMBED_INIT = nn.initializers.normal(stddev=0.02)


class AxialPositionEmbedding(nn.Module):
  """Axial position embeddings (trax `AxialPositionalEncoding`, HF `AxialPositionEmbeddings`): for shape
  (n1, ..., nk) and dims (d1, ..., dk) with Σ d = d_model, position p = (i1, ..., ik) in row-major order gets
  concat(w1[i1], ..., wk[ik]); params `weights_j` [n_j, d_j] (Σ n_j d_j instead of Π n_j · d_model).
  `__call__(length)` -> [length, Σ d] for ANY length <= Π n_j (only the rows needed are built)."""

  shape: tuple[int, ...]
  dims: tuple[int, ...]

  @nn.compact
  def __call__(self, length: int) -> Array:
    total = math.prod(self.shape)
    if not 0 < length <= total:
      raise ValueError(f"length: {length} positions requested, axial_pos_shape {self.shape} has {total}")
    inner = math.prod(self.shape[1:])
    grid = (-(-length // inner),) + tuple(self.shape[1:])  # only the leading-axis rows the length reaches
    parts = []
    for j, (n, d) in enumerate(zip(self.shape, self.dims)):
      w_NxD = self.param(f"weights_{j}", EMBED_INIT, (n, d))
      axes = [1] * len(self.shape) + [d]
      axes[j] = grid[j]
      parts.append(jnp.broadcast_to(w_NxD[: grid[j]].reshape(axes), grid + (d,)))
    return jnp.concatenate(parts, axis=-1).reshape(-1, sum(self.dims))[:length]


class LearnedPositionEmbedding(nn.Module):
  """A learned table `embedding` [max_len, H]; `__call__(length)` -> its first `length` rows."""

  max_len: int
  features: int

  @nn.compact
  def __call__(self, length: int) -> Array:
    if not 0 < length <= self.max_len:
      raise ValueError(f"length: {length} positions requested, max_len is {self.max_len}")
    return self.param("embedding", EMBED_INIT, (self.max_len, self.features))[:length]
