"""ReformerLM (causal, byte-level) and the Reformer encoder / classifier: config, axial positions, reversible stack.

Kitaev et al. 2020, arXiv 2001.04451: §2 (LSH attention layers, via `reformer_jax.attention`), §3 (reversible
residual stack and chunked feed-forward, via `reformer_jax.reversible`), §5 (the models of the experiments); the
trax model (`trax/models/reformer/reformer.py`): embed -> Dup -> ReversibleSerial[LN -> Attn, LN -> FF] ->
Concatenate -> LN -> Dense. Axial position embeddings as trax `AxialPositionalEncoding` / HuggingFace.
Patent US 10,909,461 claim 1: "an attention neural network ... comprising LSH attention layers" is `ReformerStack`
with 'lsh' in `ReformerConfig.attention`; the sub-layer steps 1-4 are in `reformer_jax.attention` / `core.lsh`.

Any input length works: the stack runs on the input padded to a multiple of `ReformerConfig.length_multiple` (the
lcm of the chunk lengths in use) with the padding masked; outputs are sliced back to the input length.

Rng streams of `apply`: 'hash' (the LSH rotations; needed whenever an 'lsh' layer runs, also with
`deterministic=True`) and 'dropout' (only when `deterministic=False` and a rate is > 0), e.g.
`model.apply(params, ids, rngs={'hash': k1, 'dropout': k2}, deterministic=False)`. `init` needs only 'params' (flax
falls back to it for the other streams). Layer i's blocks fold 2i / 2i+1 into both keys (`reversible.layer_rngs`).

Parameter tree (ReformerLM): reformer/{embed, pos_embed, stack/layer_i/{attention/{norm, attention},
feed_forward/{norm, ffn}}, final_norm}, lm_head. The classifier has `classifier` instead of `lm_head`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from core import dropout as dropout_lib
from core.data.tokenizers import ByteTokenizer
from reformer_jax import attention as attention_lib
from reformer_jax import reversible
from reformer_jax.positions import EMBED_INIT as _EMBED_INIT
from reformer_jax.positions import AxialPositionEmbedding, LearnedPositionEmbedding

Array = jax.Array

ATTENTION_KINDS = attention_lib.ATTENTION_KINDS
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@dataclasses.dataclass(frozen=True)
class ReformerConfig:
  """Sizes and attention pattern of a Reformer (defaults: a small byte-level LM; trax names in comments)."""

  vocab_size: int = ByteTokenizer.vocab_size  # 259: bytes + pad/bos/eos
  d_model: int = 256
  d_ff: int = 512
  n_layers: int = 2
  n_heads: int = 4
  d_head: int = 64
  attention: tuple[str, ...] = ("lsh",)  # cycled over layers, e.g. ('local', 'local', 'lsh', 'local')
  n_hashes: int = 1
  n_buckets: int | tuple[int, ...] | None = None  # None: trax default 2·L/chunk_len (factorised above 128)
  chunk_len: int = 64  # LSH chunk length
  lsh_chunks_before: int = 1
  lsh_chunks_after: int = 0
  local_chunk_len: int = 64
  local_chunks_before: int = 1
  local_chunks_after: int = 0
  dropout_rate: float = 0.0  # embeddings and residual branches
  attention_dropout_rate: float = 0.0
  ff_dropout_rate: float = 0.0  # after the FF activation
  ff_activation: str = "relu"
  ff_chunk_size: int = 0  # 0 = unchunked (§3 "Chunking")
  axial_pos_shape: tuple[int, ...] | None = None  # e.g. (128, 512) for L = 65536
  axial_pos_dims: tuple[int, ...] | None = None  # sum = d_model, e.g. (256, 512)
  max_len: int | None = 2048  # learned position table size; with axial: must be <= prod(axial_pos_shape)
  reversible: bool = True
  causal: bool | None = None  # None: ReformerLM causal, encoder / classifier bidirectional
  n_classes: int = 2
  pooling: str = "mean"  # classifier: 'mean' (masked) or 'first'
  layer_norm_eps: float = 1e-6
  dtype: str = "float32"  # compute dtype; params are float32

  def __post_init__(self):  # lists from ml_collections / JSON -> tuples (hashable, so usable as a static arg)
    for name in ("attention", "n_buckets", "axial_pos_shape", "axial_pos_dims"):
      value = getattr(self, name)
      if isinstance(value, list):
        object.__setattr__(self, name, tuple(value))

  @property
  def compute_dtype(self) -> Any:
    return _DTYPES[self.dtype]

  def kind(self, layer: int) -> str:
    """The attention kind of layer `layer` (the pattern cycled)."""
    return self.attention[layer % len(self.attention)]

  @property
  def kinds(self) -> tuple[str, ...]:
    return tuple(self.kind(i) for i in range(self.n_layers))

  @property
  def length_multiple(self) -> int:
    """Inputs are padded to a multiple of this: lcm of the LSH and local chunk lengths of the layers in use."""
    chunks = [self.chunk_len] * ("lsh" in self.kinds) + [self.local_chunk_len] * ("local" in self.kinds)
    return math.lcm(*chunks) if chunks else 1

  @property
  def n_positions(self) -> int:
    """The longest input: prod(axial_pos_shape), else max_len."""
    return math.prod(self.axial_pos_shape) if self.axial_pos_shape else self.max_len

  def validate(self) -> ReformerConfig:
    """Raises a one-line ValueError naming the field and what is allowed; returns self."""
    for name in ("vocab_size", "d_model", "d_ff", "n_layers", "n_heads", "d_head", "n_hashes", "chunk_len",
                 "local_chunk_len", "n_classes"):
      _check_int(name, getattr(self, name), 1)
    for name in ("lsh_chunks_before", "lsh_chunks_after", "local_chunks_before", "local_chunks_after",
                 "ff_chunk_size"):
      _check_int(name, getattr(self, name), 0)
    if not isinstance(self.attention, tuple) or not self.attention:
      raise ValueError(f"ReformerConfig.attention: must be a non-empty tuple of kinds, got {self.attention!r}")
    for kind in self.attention:
      if kind not in ATTENTION_KINDS:
        raise ValueError(f"ReformerConfig.attention: unknown kind {kind!r} (allowed: {', '.join(ATTENTION_KINDS)})")
    factors = self.n_buckets if isinstance(self.n_buckets, tuple) else (self.n_buckets,)
    if self.n_buckets is not None and (
      not factors or any(isinstance(f, bool) or not isinstance(f, int) or f < 2 or f % 2 for f in factors)
    ):
      raise ValueError(f"ReformerConfig.n_buckets: must be an even int >= 2, a tuple of them or None: {self.n_buckets}")
    for name in ("dropout_rate", "attention_dropout_rate", "ff_dropout_rate"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"ReformerConfig.{name}: must be in [0, 1), got {value!r}")
    for name, allowed in (("ff_activation", tuple(reversible.ACTIVATIONS)), ("pooling", ("mean", "first")),
                          ("dtype", tuple(_DTYPES))):
      if getattr(self, name) not in allowed:
        raise ValueError(f"ReformerConfig.{name}: must be one of {allowed}, got {getattr(self, name)!r}")
    for name in ("reversible",) + (("causal",) if self.causal is not None else ()):
      if not isinstance(getattr(self, name), bool):
        raise ValueError(f"ReformerConfig.{name}: must be a bool, got {getattr(self, name)!r}")
    if not 0.0 < self.layer_norm_eps < 1.0:
      raise ValueError(f"ReformerConfig.layer_norm_eps: must be in (0, 1), got {self.layer_norm_eps!r}")
    self._validate_positions()
    return self

  def _validate_positions(self):
    shape, dims = self.axial_pos_shape, self.axial_pos_dims
    if self.max_len is not None:
      _check_int("max_len", self.max_len, 1)
    if shape is None and dims is None:
      if self.max_len is None:
        raise ValueError("ReformerConfig.max_len: required (a positive int) when axial_pos_shape is None")
      return
    if shape is None or dims is None:
      raise ValueError(f"ReformerConfig.axial_pos_shape/axial_pos_dims: give both or neither, got {shape!r}, {dims!r}")
    for name, value in (("axial_pos_shape", shape), ("axial_pos_dims", dims)):
      if not isinstance(value, tuple) or not value or any(isinstance(v, bool) or not isinstance(v, int) or v < 1
                                                          for v in value):
        raise ValueError(f"ReformerConfig.{name}: must be a non-empty tuple of positive ints, got {value!r}")
    if len(shape) != len(dims):
      raise ValueError(f"ReformerConfig.axial_pos_dims: {dims} must have one entry per axis of axial_pos_shape {shape}")
    if sum(dims) != self.d_model:
      raise ValueError(f"ReformerConfig.axial_pos_dims: {dims} must sum to d_model {self.d_model}, got {sum(dims)}")
    if self.max_len is not None and self.max_len > math.prod(shape):
      raise ValueError(
        f"ReformerConfig.axial_pos_shape: {shape} covers {math.prod(shape)} positions, "
        f"fewer than max_len {self.max_len}"
      )


def _check_int(name: str, value: Any, minimum: int) -> None:
  if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
    raise ValueError(f"ReformerConfig.{name}: must be an int >= {minimum}, got {value!r}")


def make_attention(config: ReformerConfig, kind: str, causal: bool, name: str | None = None) -> nn.Module:
  """The attention layer of `kind` ('lsh' | 'local' | 'full' | 'full_shared_qk') with the config's settings."""
  common = dict(
    num_heads=config.n_heads, head_dim=config.d_head, causal=causal, dropout_rate=config.attention_dropout_rate,
    dtype=config.compute_dtype, name=name,
  )
  if kind == "lsh":
    return attention_lib.LSHSelfAttention(
      n_hashes=config.n_hashes, n_buckets=config.n_buckets, chunk_len=config.chunk_len,
      n_chunks_before=config.lsh_chunks_before, n_chunks_after=config.lsh_chunks_after, **common,
    )
  if kind == "local":
    return attention_lib.LocalSelfAttention(
      chunk_len=config.local_chunk_len, n_chunks_before=config.local_chunks_before,
      n_chunks_after=config.local_chunks_after, **common,
    )
  if kind in ("full", "full_shared_qk"):
    return attention_lib.FullSelfAttention(shared_qk=kind == "full_shared_qk", **common)
  raise ValueError(f"attention kind: unknown {kind!r} (allowed: {', '.join(ATTENTION_KINDS)})")


class AttentionBlock(nn.Module):
  """F of the reversible layer (§3): LayerNorm -> attention -> dropout. Returns (out_BxLxH, buckets or None)."""

  config: ReformerConfig
  kind: str
  causal: bool

  @nn.compact
  def __call__(self, x_BxLxH, attention_mask_BxL=None, *, deterministic=True, buckets=None):
    cfg = self.config
    h_BxLxH = reversible.LayerNorm(cfg.layer_norm_eps, cfg.compute_dtype, name="norm")(x_BxLxH)
    attention = make_attention(cfg, self.kind, self.causal, name="attention")
    out_BxLxH, buckets = attention(
      h_BxLxH, attention_mask_BxL, deterministic=deterministic, buckets=buckets, return_buckets=True
    )
    return dropout_lib.Dropout(cfg.dropout_rate)(out_BxLxH, deterministic), buckets


class FeedForwardBlock(nn.Module):
  """G of the reversible layer (§3): LayerNorm -> (chunked) feed-forward -> dropout."""

  config: ReformerConfig

  @nn.compact
  def __call__(self, x_BxLxH, *, deterministic=True):
    cfg = self.config
    h_BxLxH = reversible.LayerNorm(cfg.layer_norm_eps, cfg.compute_dtype, name="norm")(x_BxLxH)
    ffn = reversible.FeedForward(
      cfg.d_ff, cfg.ff_activation, cfg.ff_dropout_rate, cfg.ff_chunk_size, cfg.compute_dtype, name="ffn"
    )
    return dropout_lib.Dropout(cfg.dropout_rate)(ffn(h_BxLxH, deterministic=deterministic), deterministic)


class ReformerStack(nn.Module):
  """The n_layers two-stream residual stack (§3) -> (y1_BxLxH, y2_BxLxH): reversible (`reversible_stack`,
  custom vjp, memory independent of depth) or plain (`plain_stack`), chosen by `config.reversible`; same params.

  How the params reach the pure stack: layer i's blocks are unbound Linen modules, and the stack owns one param
  `layer_i` = {'attention': AttentionBlock params, 'feed_forward': FeedForwardBlock params}, initialised by the
  blocks' own `init`. Each block runs as `block.apply({'params': subtree}, ...)` inside the pure functions, so
  `jax.custom_vjp` sees plain arrays and returns plain gradient pytrees.
  L must be a multiple of `config.length_multiple` (`ReformerEncoder` pads to it).
  """

  config: ReformerConfig
  causal: bool

  @nn.compact
  def __call__(self, x_BxLxH, attention_mask_BxL, *, deterministic=True):
    cfg = self.config
    blocks = stack_blocks(cfg, self.causal)
    params = []
    for i, (attn, ffn) in enumerate(blocks):

      def init_layer(rng, attn=attn, ffn=ffn):
        attn_rng, ffn_rng = jax.random.split(rng)
        x_1xLxH, mask_1xL = x_BxLxH[:1], attention_mask_BxL[:1]
        return {
          "attention": attn.init({"params": attn_rng, "hash": attn_rng}, x_1xLxH, mask_1xL)["params"],
          "feed_forward": ffn.init(ffn_rng, x_1xLxH)["params"],
        }

      params.append(self.param(f"layer_{i}", init_layer))
    rngs = {}
    if "lsh" in cfg.kinds:
      rngs["hash"] = self.make_rng("hash")
    if not deterministic and max(cfg.dropout_rate, cfg.attention_dropout_rate, cfg.ff_dropout_rate) > 0.0:
      rngs["dropout"] = self.make_rng("dropout")
    stack = reversible.reversible_stack if cfg.reversible else reversible.plain_stack
    layers = block_functions(blocks, deterministic)
    return stack(layers, layer_params(params), x_BxLxH, x_BxLxH, attention_mask_BxL, rngs)


def stack_blocks(config: ReformerConfig, causal: bool) -> list[tuple[AttentionBlock, FeedForwardBlock]]:
  """Per layer the unbound (F, G) Linen blocks of `ReformerStack`."""
  return [
    (AttentionBlock(config, kind, causal, parent=None), FeedForwardBlock(config, parent=None)) for kind in config.kinds
  ]


def block_functions(blocks, deterministic: bool) -> list[reversible.Layer]:
  """The pure (F, G) functions of `reversible.reversible_stack` for `stack_blocks(...)`."""
  return [(_attention_fn(attn, deterministic), _feed_forward_fn(ffn, deterministic)) for attn, ffn in blocks]


def layer_params(stack_params) -> list[tuple[Any, Any]]:
  """`ReformerStack` params ({'layer_i': {'attention', 'feed_forward'}}, or a list of the layer dicts)
  -> [(F params, G params)] per layer."""
  if isinstance(stack_params, dict):
    stack_params = [stack_params[f"layer_{i}"] for i in range(len(stack_params))]
  return [(p["attention"], p["feed_forward"]) for p in stack_params]


def _attention_fn(block: AttentionBlock, deterministic: bool) -> reversible.Block:
  def apply(params, x_BxLxH, mask_BxL, rngs, buckets):
    variables = {"params": params}
    return block.apply(variables, x_BxLxH, mask_BxL, deterministic=deterministic, buckets=buckets, rngs=rngs)

  return apply


def _feed_forward_fn(block: FeedForwardBlock, deterministic: bool) -> reversible.Block:
  def apply(params, x_BxLxH, mask_BxL, rngs, buckets):
    del mask_BxL, buckets  # position-wise
    return block.apply({"params": params}, x_BxLxH, deterministic=deterministic, rngs=rngs), None

  return apply


def position_embedding(config: ReformerConfig, name: str | None = None) -> nn.Module:
  """The config's position module: axial (trax / HF) when axial_pos_shape is set, else a learned max_len table."""
  if config.axial_pos_shape:
    return AxialPositionEmbedding(config.axial_pos_shape, config.axial_pos_dims, name=name)
  return LearnedPositionEmbedding(config.max_len, config.d_model, name=name)


class ReformerEncoder(nn.Module):
  """embed + positions -> dropout -> pad to `length_multiple` -> ReformerStack -> concat(y1, y2) -> LayerNorm
  -> hidden_BxLx2H (trax ReformerLM up to its last Dense). `causal` selects causal attention."""

  config: ReformerConfig
  causal: bool = False

  @nn.compact
  def __call__(self, ids_BxL, attention_mask_BxL=None, *, deterministic=True):
    cfg = self.config
    batch, length = ids_BxL.shape
    if length > cfg.n_positions:
      raise ValueError(f"ids: length {length} exceeds the model's {cfg.n_positions} positions")
    mask_BxL = jnp.ones((batch, length), jnp.int32) if attention_mask_BxL is None else attention_mask_BxL
    embed = nn.Embed(cfg.vocab_size, cfg.d_model, embedding_init=_EMBED_INIT, dtype=cfg.compute_dtype, name="embed")
    x_BxLxH = embed(ids_BxL) + position_embedding(cfg, name="pos_embed")(length)[None].astype(cfg.compute_dtype)
    x_BxLxH = dropout_lib.Dropout(cfg.dropout_rate)(x_BxLxH, deterministic)
    pad = -length % cfg.length_multiple
    x_BxPxH = jnp.pad(x_BxLxH, ((0, 0), (0, pad), (0, 0)))
    mask_BxP = jnp.pad(jnp.asarray(mask_BxL).astype(jnp.int32), ((0, 0), (0, pad)))
    y1_BxPxH, y2_BxPxH = ReformerStack(cfg, self.causal, name="stack")(x_BxPxH, mask_BxP, deterministic=deterministic)
    h_BxLx2H = jnp.concatenate([y1_BxPxH, y2_BxPxH], axis=-1)[:, :length]
    return reversible.LayerNorm(cfg.layer_norm_eps, cfg.compute_dtype, name="final_norm")(h_BxLx2H)


class ReformerLM(nn.Module):
  """Causal Reformer language model (§5 enwik8 / imagenet64; byte-level by default) -> logits_BxLxV (float32)."""

  config: ReformerConfig

  @nn.compact
  def __call__(self, ids_BxL, attention_mask_BxL=None, *, deterministic=True):
    cfg = self.config
    causal = True if cfg.causal is None else cfg.causal
    h_BxLx2H = ReformerEncoder(cfg, causal, name="reformer")(ids_BxL, attention_mask_BxL, deterministic=deterministic)
    return nn.Dense(cfg.vocab_size, dtype=cfg.compute_dtype, name="lm_head")(h_BxLx2H).astype(jnp.float32)


class ReformerClassifier(nn.Module):
  """Reformer encoder (bidirectional unless config.causal) -> masked mean or first-token pooling -> Dense n_classes
  -> logits_BxC (float32). The LRA ListOps model (Tay et al. 2020, with Reformer attention)."""

  config: ReformerConfig

  @nn.compact
  def __call__(self, ids_BxL, attention_mask_BxL=None, *, deterministic=True):
    cfg = self.config
    causal = bool(cfg.causal)
    h_BxLx2H = ReformerEncoder(cfg, causal, name="reformer")(ids_BxL, attention_mask_BxL, deterministic=deterministic)
    if cfg.pooling == "first":
      pooled_Bx2H = h_BxLx2H[:, 0]
    else:
      mask_BxL = jnp.ones(ids_BxL.shape) if attention_mask_BxL is None else jnp.asarray(attention_mask_BxL)
      mask_BxLx1 = mask_BxL[..., None].astype(h_BxLx2H.dtype)
      pooled_Bx2H = jnp.sum(h_BxLx2H * mask_BxLx1, axis=1) / jnp.maximum(jnp.sum(mask_BxLx1, axis=1), 1.0)
    return nn.Dense(cfg.n_classes, dtype=cfg.compute_dtype, name="classifier")(pooled_Bx2H).astype(jnp.float32)
