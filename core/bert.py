"""BERT-style Transformer encoder and masked-LM head in Flax Linen.

Devlin et al. 2018, "BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding", §3
(input representation = token + segment + position embeddings, Fig. 2; encoder = the Transformer encoder of
Vaswani et al. 2017 §3.1 with post-LayerNorm residual blocks and GELU feed-forward; masked-LM head with output
weights tied to the input embeddings, §3.1 "Task #1"). An optional factorised embedding (embedding_size E != H,
projected E -> H after the embedding LayerNorm) follows ELECTRA (Clark et al. 2020, §3.2 / Appendix).

Param tree of `BertEncoder` (loaded from HuggingFace checkpoints by `core.bert_import.load_hf_bert`):
  embeddings/{word_embeddings,position_embeddings,token_type_embeddings}/embedding [V|P|T, E]
  embeddings/layer_norm/{scale,bias} [E]
  embeddings_project/{kernel [E, H], bias [H]}                 (only when E != H)
  layer_{i}/attention/{query,key,value,out}/{kernel,bias}      (core.attention.MultiHeadAttention)
  layer_{i}/attention_layer_norm, layer_{i}/intermediate [H, F], layer_{i}/output [F, H], layer_{i}/output_layer_norm
Shape suffixes: B batch, L length, H hidden, E embedding width, F intermediate width, V vocabulary.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from core import attention
from core import dropout as dropout_lib

Array = jax.Array

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
_FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclasses.dataclass(frozen=True)
class BertConfig:
  """Sizes and regularisation of a BERT-family encoder (defaults: BERT-Base, Devlin et al. 2018 §3)."""

  vocab_size: int = 30522
  hidden_size: int = 768
  num_layers: int = 12
  num_heads: int = 12
  intermediate_size: int = 3072
  embedding_size: int | None = None  # None = hidden_size; else E -> H `embeddings_project` (ELECTRA)
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  hidden_dropout_rate: float = 0.1
  attention_dropout_rate: float = 0.1
  layer_norm_eps: float = 1e-12
  initializer_range: float = 0.02
  dtype: str = "float32"  # compute dtype; params are always float32

  @property
  def emb_size(self) -> int:
    """E: the width of the embedding tables."""
    return self.hidden_size if self.embedding_size is None else self.embedding_size

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_heads

  @property
  def compute_dtype(self) -> Any:
    return _DTYPES[self.dtype]

  def validate(self) -> BertConfig:
    """Raises a one-line ValueError on an inconsistent config; returns self."""
    for name in (
      "vocab_size",
      "hidden_size",
      "num_layers",
      "num_heads",
      "intermediate_size",
      "max_position_embeddings",
      "type_vocab_size",
    ):
      value = getattr(self, name)
      if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"BertConfig.{name} must be a positive int, got {value!r}")
    if self.embedding_size is not None and (
      not isinstance(self.embedding_size, (int, np.integer)) or self.embedding_size <= 0
    ):
      raise ValueError(f"BertConfig.embedding_size must be None or a positive int, got {self.embedding_size!r}")
    if self.hidden_size % self.num_heads:
      raise ValueError(f"BertConfig.hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
    for name in ("hidden_dropout_rate", "attention_dropout_rate"):
      value = getattr(self, name)
      if not 0.0 <= value < 1.0:
        raise ValueError(f"BertConfig.{name} must be in [0, 1), got {value!r}")
    if not 0 < self.layer_norm_eps <= _FLOAT32_MAX or not 0 < self.initializer_range <= _FLOAT32_MAX:
      raise ValueError(
        f"BertConfig.layer_norm_eps and initializer_range must be > 0 and within float32 range, got "
        f"{self.layer_norm_eps!r}, {self.initializer_range!r}"
      )
    if self.dtype not in _DTYPES:
      raise ValueError(f"BertConfig.dtype must be one of {sorted(_DTYPES)}, got {self.dtype!r}")
    return self

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> BertConfig:
    """Builds and validates a config from `to_dict` output; unknown keys are a one-line ValueError."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
      raise ValueError(f"BertConfig.from_dict: unknown keys {unknown}; known keys {sorted(known)}")
    return cls(**d).validate()

  def replace(self, **changes: Any) -> BertConfig:
    return dataclasses.replace(self, **changes).validate()


def model_section(hidden: int, layers: int, heads: int, intermediate: int, embedding: int = 0, **overrides: Any):
  """The `config.model` section of a config file (an ml_collections ConfigDict; embedding 0 = hidden)."""
  import ml_collections  # pylint: disable=g-import-not-at-top

  fields = dataclasses.asdict(BertConfig())
  fields.update(
    hidden_size=hidden,
    num_layers=layers,
    num_heads=heads,
    intermediate_size=intermediate,
    embedding_size=embedding,
    **overrides,
  )
  return ml_collections.ConfigDict(fields)


def from_model_section(section: Any) -> BertConfig:
  """BertConfig from a `config.model` section (`embedding_size` 0 means E = H); not validated."""
  fields = section.to_dict() if hasattr(section, "to_dict") else dict(section)
  fields["embedding_size"] = fields.get("embedding_size") or None
  return BertConfig(**fields)


def gelu(x: Array) -> Array:
  """Exact GELU, x·Φ(x) = ½x(1 + erf(x/√2)) (Hendrycks & Gimpel 2016; the BERT and ELECTRA reference `gelu`).

  Same function as `jax.nn.gelu(x, approximate=False)`, which goes through erfc (exp + selects); erf is a single
  polynomial on XLA CPU, which makes the feed-forward block of a training step measurably faster
  (benchmarks/electra/step_vs_torch.py). Differences are below 1e-6 in float32.
  """
  return 0.5 * x * (1.0 + jax.lax.erf(x * np.float32(1.0 / np.sqrt(2.0))).astype(x.dtype))


def _init(config: BertConfig):
  """Truncated-normal(initializer_range) init, as in the BERT reference implementation."""
  return nn.initializers.truncated_normal(stddev=config.initializer_range)


def _dense(config: BertConfig, features: int, name: str) -> nn.Dense:
  return nn.Dense(features, dtype=config.compute_dtype, param_dtype=jnp.float32, kernel_init=_init(config), name=name)


def _layer_norm(config: BertConfig, name: str) -> nn.LayerNorm:
  return nn.LayerNorm(epsilon=config.layer_norm_eps, dtype=config.compute_dtype, param_dtype=jnp.float32, name=name)


class BertEmbeddings(nn.Module):
  """Input representation = token + segment + position embeddings, LayerNorm, dropout (Devlin et al. §3, Fig. 2).

  Output width is E (config.emb_size); the E -> H projection lives in `BertEncoder`.
  """

  config: BertConfig

  def setup(self):
    cfg = self.config

    def embed(num: int, name: str) -> nn.Embed:
      return nn.Embed(
        num, cfg.emb_size, dtype=cfg.compute_dtype, param_dtype=jnp.float32, embedding_init=_init(cfg), name=name
      )

    self.word_embeddings = embed(cfg.vocab_size, "word_embeddings")
    self.position_embeddings = embed(cfg.max_position_embeddings, "position_embeddings")
    self.token_type_embeddings = embed(cfg.type_vocab_size, "token_type_embeddings")
    self.layer_norm = _layer_norm(cfg, "layer_norm")
    self.dropout = dropout_lib.Dropout(cfg.hidden_dropout_rate)

  def __call__(
    self, input_ids_BxL: Array, token_type_ids_BxL: Array, position_ids_BxL: Array, *, deterministic: bool = True
  ) -> Array:
    x_BxLxE = (
      self.word_embeddings(input_ids_BxL)
      + self.position_embeddings(position_ids_BxL)
      + self.token_type_embeddings(token_type_ids_BxL)
    )
    x_BxLxE = self.layer_norm(x_BxLxE)
    return self.dropout(x_BxLxE, deterministic=deterministic)

  def attend(self, h_BxLxE: Array) -> Array:
    """Logits h @ Wᵀ against the word-embedding table (tied output layer)."""
    return self.word_embeddings.attend(h_BxLxE)


class BertLayer(nn.Module):
  """One post-LN encoder block (Vaswani et al. 2017 §3.1; Devlin et al. 2018 §3):
  h = LN(x + Dropout(MHA(x))); out = LN(h + Dropout(W2 GELU(W1 h))), with exact (erf) GELU."""

  config: BertConfig

  @nn.compact
  def __call__(self, x_BxLxH: Array, mask: Array | None = None, *, deterministic: bool = True) -> Array:
    cfg = self.config
    attn_BxLxH = attention.MultiHeadAttention(
      num_heads=cfg.num_heads,
      dropout_rate=cfg.attention_dropout_rate,
      dtype=cfg.compute_dtype,
      kernel_init=_init(cfg),
      name="attention",
    )(x_BxLxH, mask, deterministic=deterministic)
    attn_BxLxH = dropout_lib.Dropout(cfg.hidden_dropout_rate)(attn_BxLxH, deterministic=deterministic)
    h_BxLxH = _layer_norm(cfg, "attention_layer_norm")(x_BxLxH + attn_BxLxH)
    ff_BxLxF = gelu(_dense(cfg, cfg.intermediate_size, "intermediate")(h_BxLxH))
    ff_BxLxH = _dense(cfg, cfg.hidden_size, "output")(ff_BxLxF)
    ff_BxLxH = dropout_lib.Dropout(cfg.hidden_dropout_rate)(ff_BxLxH, deterministic=deterministic)
    return _layer_norm(cfg, "output_layer_norm")(h_BxLxH + ff_BxLxH)


class BertEncoder(nn.Module):
  """Embeddings (+ optional E -> H projection) followed by `num_layers` `BertLayer`s; returns hidden_BxLxH.

  `attention_mask_BxL` (1 = real token, 0 = padding) masks keys only; padded query positions still get
  (meaningless) outputs, and real-token outputs do not depend on how much padding follows.
  """

  config: BertConfig

  def setup(self):
    cfg = self.config.validate()
    self.embeddings = BertEmbeddings(cfg, name="embeddings")
    self.embeddings_project = (
      _dense(cfg, cfg.hidden_size, "embeddings_project") if cfg.emb_size != cfg.hidden_size else None
    )
    self.layers = [BertLayer(cfg, name=f"layer_{i}") for i in range(cfg.num_layers)]

  def __call__(
    self,
    input_ids_BxL: Array,
    token_type_ids_BxL: Array | None = None,
    attention_mask_BxL: Array | None = None,
    *,
    position_ids_BxL: Array | None = None,
    deterministic: bool = True,
  ) -> Array:
    b, l = input_ids_BxL.shape
    if l > self.config.max_position_embeddings:
      raise ValueError(f"sequence length {l} exceeds max_position_embeddings {self.config.max_position_embeddings}")
    if token_type_ids_BxL is None:
      token_type_ids_BxL = jnp.zeros((b, l), jnp.int32)
    if position_ids_BxL is None:
      position_ids_BxL = jnp.broadcast_to(jnp.arange(l, dtype=jnp.int32), (b, l))
    mask = None if attention_mask_BxL is None else attention.make_padding_mask(attention_mask_BxL)

    x_BxLxH = self.embeddings(input_ids_BxL, token_type_ids_BxL, position_ids_BxL, deterministic=deterministic)
    if self.embeddings_project is not None:
      x_BxLxH = self.embeddings_project(x_BxLxH)
    for layer in self.layers:
      x_BxLxH = layer(x_BxLxH, mask, deterministic=deterministic)
    return x_BxLxH

  def attend(self, h_BxLxE: Array) -> Array:
    """Logits against the (tied) word-embedding table; used by the MLM head."""
    return self.embeddings.attend(h_BxLxE)


class MlmHead(nn.Module):
  """Masked-LM head (Devlin et al. 2018 §3.1, Task #1): dense H -> E, GELU, LayerNorm, then logits against the
  word-embedding table passed in (weights tied with the input embeddings), plus a per-token bias [V].

  Params: dense/{kernel [H, E], bias}, layer_norm/{scale, bias}, bias [V]. No separate V x E matrix.
  """

  config: BertConfig

  @nn.compact
  def __call__(self, hidden_BxLxH: Array, word_embeddings_VxE: Array) -> Array:
    cfg = self.config
    h_BxLxE = gelu(_dense(cfg, cfg.emb_size, "dense")(hidden_BxLxH))
    h_BxLxE = _layer_norm(cfg, "layer_norm")(h_BxLxE)
    bias_V = self.param("bias", nn.initializers.zeros_init(), (cfg.vocab_size,), jnp.float32)
    logits_BxLxV = jnp.einsum("ble,ve->blv", h_BxLxE, word_embeddings_VxE.astype(cfg.compute_dtype))
    return logits_BxLxV + bias_V.astype(cfg.compute_dtype)


class BertForMlm(nn.Module):
  """`BertEncoder` + tied `MlmHead`; params {'encoder': ..., 'mlm_head': ...}; returns logits_BxLxV."""

  config: BertConfig

  def setup(self):
    self.encoder = BertEncoder(self.config, name="encoder")
    self.mlm_head = MlmHead(self.config, name="mlm_head")

  def __call__(
    self,
    input_ids_BxL: Array,
    token_type_ids_BxL: Array | None = None,
    attention_mask_BxL: Array | None = None,
    *,
    position_ids_BxL: Array | None = None,
    deterministic: bool = True,
  ) -> Array:
    hidden_BxLxH = self.encoder(
      input_ids_BxL,
      token_type_ids_BxL,
      attention_mask_BxL,
      position_ids_BxL=position_ids_BxL,
      deterministic=deterministic,
    )
    table_VxE = self.encoder.embeddings.word_embeddings.embedding
    return self.mlm_head(hidden_BxLxH, table_VxE)


def mean_pool(hidden_BxLxH: Array, attention_mask_BxL: Array) -> Array:
  """Mean of the hidden states over unpadded tokens (sentence-transformers pooling; Reimers & Gurevych 2019 §3)."""
  mask_BxLx1 = jnp.asarray(attention_mask_BxL, jnp.float32)[..., None]
  summed_BxH = jnp.sum(hidden_BxLxH.astype(jnp.float32) * mask_BxLx1, axis=1)
  return summed_BxH / jnp.maximum(jnp.sum(mask_BxLx1, axis=1), 1e-9)


def sentence_embedding(hidden_BxLxH: Array, attention_mask_BxL: Array) -> Array:
  """L2-normalised `mean_pool`: the all-MiniLM-L6-v2 sentence embedding; cosine similarity = dot product."""
  pooled_BxH = mean_pool(hidden_BxLxH, attention_mask_BxL)
  norm_Bx1 = jnp.linalg.norm(pooled_BxH, axis=-1, keepdims=True)
  return pooled_BxH / jnp.maximum(norm_Bx1, 1e-12)


def param_count(params: Any) -> int:
  """Total number of scalars in a param pytree."""
  return int(sum(np.prod(np.shape(x)) for x in jax.tree.leaves(params)))

