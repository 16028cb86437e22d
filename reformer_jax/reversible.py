"""Reversible residual stack (jax.custom_vjp) and chunked feed-forward.

Reformer (Kitaev et al. 2020, arXiv 2001.04451) §3 "Reversible Transformer": each layer maps (X1, X2) to
  Y1 = X1 + F(X2)   (F: LayerNorm -> attention)
  Y2 = X2 + G(Y1)   (G: LayerNorm -> feed-forward),
and the backward pass rebuilds the inputs from the outputs, X2 = Y2 − G(Y1), X1 = Y1 − F(X2), one layer at a time
while it takes that layer's vjp (trax `ReversibleHalfResidual.reverse_and_grad`). Only the stack's output is kept
for the backward pass, so activation memory does not grow with depth. §3 "Chunking": the feed-forward is applied
over slices of the sequence, so its d_ff-wide activations exist for one slice at a time.
Patent US 10,909,461: the reversible residual layers described with claim 1 (activations stored once, not per layer).

Design (explicit parameter pytrees, plain `jax.custom_vjp`, no Linen lifting):
  - A block is a pure function `block(params, x_BxLxH, mask_BxL, rngs, buckets) -> (out_BxLxH, buckets)`; `rngs` is a
    dict of typed keys ('hash', 'dropout'); `buckets` is the LSH bucket array of that block (None for blocks that do
    not hash). `reformer_jax.model.ReformerStack` builds them from Linen modules (`module.apply` on a params subtree).
  - Layer i's F draws its keys as `fold_in(k, 2i)` and G as `fold_in(k, 2i+1)` for every stream k, so the recompute
    in the backward pass sees the same dropout masks as the forward pass.
  - The forward pass returns each F's buckets and keeps them as residuals (small int32 arrays); the backward pass
    passes them back in, so a reconstructed input whose argmax flips in the last bit still attends as it did forward.
  - `plain_stack` is the same computation under ordinary autodiff (activations of every layer stored): the reference
    the tests compare gradients against and the baseline of the memory benchmark.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from core import dropout as dropout_lib

Array = jax.Array
Params = Any
Rngs = dict[str, Array]
Block = Callable[[Params, Array, Array | None, Rngs, Any], tuple[Array, Any]]
Layer = tuple[Block, Block]  # (F, G)


def layer_rngs(rngs: Rngs, layer: int, half: int) -> Rngs:
  """The keys of block `half` (0 = F, 1 = G) of layer `layer`: fold_in(k, 2·layer + half) for every stream."""
  return {name: jax.random.fold_in(key, 2 * layer + half) for name, key in rngs.items()}


def _layer_start(i, x1_BxLxH, x2_BxLxH, mask_BxL, rngs, buckets, params):
  """Layer i's inputs, attention mask, F and G keys, F's buckets and the layer's params, passed through one
  optimization barrier.

  Everything a layer computes from its mask, keys, buckets or params alone (dropout masks, the sort and the chunk
  masks of LSH and local attention: [B, N, C, Q, K] arrays; params broadcast to [B, L, H]) then depends on the
  layer's input activations, so XLA can neither compute it for every layer up front nor share it between the
  forward pass and the backward recompute. Either would keep one such array per layer alive at once, and memory
  would grow with depth again. Measured (XLA compiled memory analysis, CPU, ReformerLM grad step, L=16384,
  d_model 256, LSH, 2 hashes): reversible 12 layers / 2 layers = 2.06x without the params in the barrier, 1.42x
  with them; the rest was LayerNorm's scale multiply (see `LayerNorm`), written as an einsum it is 1.03x.
  """
  f_rngs, g_rngs = layer_rngs(rngs, i, 0), layer_rngs(rngs, i, 1)
  return jax.lax.optimization_barrier((x1_BxLxH, x2_BxLxH, mask_BxL, f_rngs, g_rngs, buckets, params))


def _forward(layers, params, x1_BxLxH, x2_BxLxH, mask_BxL, rngs, buckets):
  """Y1 = X1 + F(X2), Y2 = X2 + G(Y1) through every layer (§3) -> (y1, y2, buckets of every F)."""
  new_buckets = []
  for i, ((f, g), (f_params, g_params)) in enumerate(zip(layers, params)):
    x1_BxLxH, x2_BxLxH, mask, f_rngs, g_rngs, f_buckets, (f_params, g_params) = _layer_start(
      i, x1_BxLxH, x2_BxLxH, mask_BxL, rngs, buckets[i], (f_params, g_params)
    )
    f_out, f_buckets = f(f_params, x2_BxLxH, mask, f_rngs, f_buckets)
    x1_BxLxH, x2_BxLxH = x2_BxLxH, x1_BxLxH + f_out  # (X2, Y1)
    g_out, _ = g(g_params, x2_BxLxH, mask, g_rngs, None)
    x1_BxLxH, x2_BxLxH = x2_BxLxH, x1_BxLxH + g_out  # (Y1, Y2)
    new_buckets.append(f_buckets)
  return x1_BxLxH, x2_BxLxH, new_buckets


def _check(layers: Sequence[Layer], params: Sequence[Any], buckets):
  if len(layers) != len(params):
    raise ValueError(f"params: {len(params)} entries for {len(layers)} layers")
  buckets = [None] * len(layers) if buckets is None else list(buckets)
  if len(buckets) != len(layers):
    raise ValueError(f"buckets: {len(buckets)} entries for {len(layers)} layers")
  return buckets


def plain_stack(layers, params, x1_BxLxH, x2_BxLxH, mask_BxL=None, rngs=None, buckets=None, return_buckets=False):
  """The two-stream residual stack under ordinary autodiff (every layer's activations stored for the backward pass).

  Same parameters, keys and outputs as `reversible_stack`; its `jax.grad` is the reference for the reversible one.
  """
  buckets = _check(layers, params, buckets)
  y1, y2, new_buckets = _forward(layers, params, x1_BxLxH, x2_BxLxH, mask_BxL, rngs or {}, buckets)
  return (y1, y2, new_buckets) if return_buckets else (y1, y2)


def reconstruct_inputs(layers, params, y1_BxLxH, y2_BxLxH, mask_BxL, rngs, buckets):
  """Inverts the stack (§3): X2 = Y2 − G(Y1), X1 = Y1 − F(X2), last layer first -> (x1, x2). Exact up to float
  rounding when `buckets` are the forward pass's (returned by `plain_stack(..., return_buckets=True)`)."""
  buckets = _check(layers, params, buckets)
  for i in reversed(range(len(layers))):
    (f, g), (f_params, g_params) = layers[i], params[i]
    y2_BxLxH = y2_BxLxH - g(g_params, y1_BxLxH, mask_BxL, layer_rngs(rngs, i, 1), None)[0]  # X2
    y1_BxLxH = y1_BxLxH - f(f_params, y2_BxLxH, mask_BxL, layer_rngs(rngs, i, 0), buckets[i])[0]  # X1
  return y1_BxLxH, y2_BxLxH


def reversible_stack(layers, params, x1_BxLxH, x2_BxLxH, mask_BxL=None, rngs=None, buckets=None):
  """Reversible residual stack (§3) -> (y1, y2), with a custom vjp that stores only (y1, y2), the params and the
  F blocks' buckets, and recomputes each layer in the backward pass.

  Args:
    layers: per layer (F, G), pure `Block` functions (see the module docstring).
    params: per layer (F params, G params).
    x1_BxLxH, x2_BxLxH: the two input streams (Reformer's model feeds the embeddings to both).
    mask_BxL: attention mask passed to every block (1 = real token), or None.
    rngs: {'hash': key, 'dropout': key} (either may be absent); layer i's blocks fold in 2i and 2i+1.
    buckets: per layer, F's buckets to use instead of hashing (None entries hash); None = hash everywhere.
  Gradients flow to params, x1 and x2; the mask, keys and buckets get none.
  """
  buckets = _check(layers, params, buckets)
  params = [tuple(p) for p in params]  # the structure the backward pass returns gradients in
  rngs = rngs or {}

  @jax.custom_vjp
  def stack(params, x1, x2, mask, rngs, buckets):
    return _forward(layers, params, x1, x2, mask, rngs, buckets)[:2]

  def stack_fwd(params, x1, x2, mask, rngs, buckets):
    y1, y2, new_buckets = _forward(layers, params, x1, x2, mask, rngs, buckets)
    return (y1, y2), (params, y1, y2, mask, rngs, new_buckets)

  def stack_bwd(residuals, cotangents):
    params, y1, y2, mask, rngs, buckets = residuals
    dy1, dy2 = cotangents
    grads = [None] * len(layers)
    for i in reversed(range(len(layers))):
      (f, g) = layers[i]
      y1, y2, layer_mask, f_rngs, g_rngs, f_buckets, (f_params, g_params) = _layer_start(
        i, y1, y2, mask, rngs, buckets[i], params[i]
      )
      # Y2 = X2 + G(Y1): rebuild X2, and the cotangent of Y1 picks up G's input gradient.
      g_out, g_vjp = jax.vjp(lambda p, y: g(p, y, layer_mask, g_rngs, None)[0], g_params, y1)
      x2 = y2 - g_out
      dg_params, dy1_via_g = g_vjp(dy2)
      dy1 = dy1 + dy1_via_g
      # Y1 = X1 + F(X2), with the forward pass's buckets: rebuild X1; X2's cotangent picks up F's input gradient.
      f_out, f_vjp = jax.vjp(lambda p, x: f(p, x, layer_mask, f_rngs, f_buckets)[0], f_params, x2)
      x1 = y1 - f_out
      df_params, dx2_via_f = f_vjp(dy1)
      # The barrier ties this layer's parameter gradients to the values the next layer down reads, so XLA finishes
      # them (and frees this layer's recomputed activations) before it starts that layer, instead of deferring
      # every layer's weight-gradient products to the end (which would make memory grow with depth again).
      carry = ((df_params, dg_params), x1, x2, dy1, dy2 + dx2_via_f)
      grads[i], y1, y2, dy1, dy2 = jax.lax.optimization_barrier(carry)
    return grads, dy1, dy2, None, None, None

  stack.defvjp(stack_fwd, stack_bwd)
  return stack(params, x1_BxLxH, x2_BxLxH, mask_BxL, rngs, buckets)


def feed_forward(params: Params, x_BxLxH: Array, *, activation: str, dropout_rate: float = 0.0, dropout_key=None):
  """Position-wise FFN(x) = act(x W_i + b_i) W_o + b_o (Vaswani et al. 2017 Eq. 2), dropout after the activation."""
  h_BxLxF = x_BxLxH @ params["wi"].astype(x_BxLxH.dtype) + params["bi"].astype(x_BxLxH.dtype)
  h_BxLxF = ACTIVATIONS[activation](h_BxLxF)
  h_BxLxF = dropout_lib.dropout(h_BxLxF, dropout_rate, dropout_key, deterministic=dropout_rate == 0.0)
  return h_BxLxF @ params["wo"].astype(x_BxLxH.dtype) + params["bo"].astype(x_BxLxH.dtype)


def chunked_feed_forward(params, x_BxLxH, *, chunk_size: int, activation: str, dropout_rate=0.0, dropout_key=None):
  """`feed_forward` over slices of `chunk_size` positions (Reformer §3 "Chunking"): a `lax.map` over the slices of a
  rematerialised slice function, so forward and backward hold one slice's d_ff activations at a time. L is padded
  to a multiple of chunk_size (position-wise, so padding changes nothing) and sliced back. Without dropout it
  equals the unchunked FFN; with dropout slice c draws its mask from fold_in(dropout_key, c)."""
  batch, length, width = x_BxLxH.shape
  if chunk_size <= 0 or chunk_size >= length:
    return feed_forward(params, x_BxLxH, activation=activation, dropout_rate=dropout_rate, dropout_key=dropout_key)
  n_chunks = -(-length // chunk_size)
  padded_BxPxH = jnp.pad(x_BxLxH, ((0, 0), (0, n_chunks * chunk_size - length), (0, 0)))
  chunks_CxBxQxH = jnp.moveaxis(padded_BxPxH.reshape(batch, n_chunks, chunk_size, width), 1, 0)

  @jax.checkpoint
  def one_chunk(args):
    x_BxQxH, index = args
    key = None if dropout_key is None else jax.random.fold_in(dropout_key, index)
    return feed_forward(params, x_BxQxH, activation=activation, dropout_rate=dropout_rate, dropout_key=key)

  out_CxBxQxH = jax.lax.map(one_chunk, (chunks_CxBxQxH, jnp.arange(n_chunks)))
  return jnp.moveaxis(out_CxBxQxH, 0, 1).reshape(batch, n_chunks * chunk_size, -1)[:, :length]


ACTIVATIONS = {"relu": jax.nn.relu, "gelu": jax.nn.gelu}


class LayerNorm(nn.Module):
  """LayerNorm (Ba et al. 2016) over the last axis, statistics in float32, params `scale` and `bias` as
  `flax.linen.LayerNorm`. Written out (two-pass variance) because, measured with XLA's compiled memory analysis on
  CPU, `flax.linen.LayerNorm` inside the reversible backward pass leaves two [L, H] buffers live per layer (the
  memory of `reversible_stack` grew with depth), while this one keeps it flat."""

  epsilon: float = 1e-6
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BxLxH: Array) -> Array:
    width = x_BxLxH.shape[-1]
    scale = self.param("scale", nn.initializers.ones_init(), (width,))
    bias = self.param("bias", nn.initializers.zeros_init(), (width,))
    x = x_BxLxH.astype(jnp.float32)
    centred = x - jnp.mean(x, axis=-1, keepdims=True)
    normed = centred * jax.lax.rsqrt(jnp.mean(jnp.square(centred), axis=-1, keepdims=True) + self.epsilon)
    # The scale is applied as an einsum (a dot_general with H as a batch axis), not `normed * scale`: XLA:CPU's
    # YNNPACK fusion turns the multiply into a separate kernel that materialises scale broadcast to [B, L, H] for
    # every layer and schedules them all at the start of the backward pass, so a reversible stack's memory grew
    # with depth (ReformerLM grad step, L=16384, compiled memory analysis: 12 / 2 layers = 1.40x with the multiply,
    # 1.03x with the einsum, 1.05x with no scale at all; step time unchanged, 5.9 vs 5.5 s).
    return (jnp.einsum("...h,h->...h", normed, scale) + bias).astype(self.dtype)


class FeedForward(nn.Module):
  """Linen owner of the FFN params `wi` [H, F], `bi` [F], `wo` [F, H], `bo` [H]; applies `chunked_feed_forward`
  (chunk_size 0 = unchunked). Rng stream 'dropout' when `deterministic=False` and dropout_rate > 0."""

  d_ff: int
  activation: str = "relu"
  dropout_rate: float = 0.0
  chunk_size: int = 0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BxLxH: Array, *, deterministic: bool = True) -> Array:
    width = x_BxLxH.shape[-1]
    init = nn.initializers.lecun_normal()
    params = {
      "wi": self.param("wi", init, (width, self.d_ff)),
      "bi": self.param("bi", nn.initializers.zeros_init(), (self.d_ff,)),
      "wo": self.param("wo", init, (self.d_ff, width)),
      "bo": self.param("bo", nn.initializers.zeros_init(), (width,)),
    }
    rate = 0.0 if deterministic else self.dropout_rate
    return chunked_feed_forward(
      params,
      x_BxLxH.astype(self.dtype),
      chunk_size=self.chunk_size,
      activation=self.activation,
      dropout_rate=rate,
      dropout_key=self.make_rng("dropout") if rate > 0.0 else None,
    )
