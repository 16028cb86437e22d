"""ELECTRA generator and discriminator with shared embeddings, as pure functions over one parameter tree.

Clark et al. 2020, "ELECTRA: Pre-training Text Encoders as Discriminators Rather Than Generators", §2 (generator G:
a masked LM, p_G(x_t | x) = softmax(e(x_t)ᵀ h_G(x)_t); discriminator D(x, t) = sigmoid(wᵀ h_D(x)_t)), §3.2 (smaller
generator, tied embeddings) and Appendix A (sizes). Patent US 2021/0089724 claim 1: step 3 (the generator that
proposes replacement tokens) is `generator_logits`, step 5 (the encoder that predicts original vs replaced for every
token) is `discriminator_logits`; "some weights (embeddings) shared" is the single `embeddings` subtree below.

Parameter tree (tying at the parameter level, like the reference code's shared `electra/embeddings` scope):
  embeddings/     core `BertEmbeddings`: word [V, E], position [P, E], token-type [T, E] tables + layer_norm [E]
  generator/      core `BertEncoder` params minus `embeddings` (its own embeddings_project E -> H_G, layer_i)
                  + mlm_head (core `MlmHead`: dense H_G -> E, GELU, LayerNorm; logits tied to word embeddings, bias)
  discriminator/  core `BertEncoder` params minus `embeddings` (embeddings_project E -> H when E != H, layer_i)
                  + head (dense H -> H, GELU, dense H -> 1)
At apply time each network's `BertEncoder` tree is {**its encoder part, 'embeddings': params['embeddings']}, so the
gradients of both losses flow into the one shared copy. The MLM baseline ("BERT" in the paper's compute-matched
comparisons) is core `BertForMlm` with the discriminator's config: params {'encoder', 'mlm_head'}.

Shape suffixes: B batch, L length, P masked positions per row (max_predictions_per_seq), H hidden, V vocabulary.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from core import bert as bert_lib

Array = jax.Array
Params = dict[str, Any]

HEAD_NAMES = {"generator": "mlm_head", "discriminator": "head"}


def generator_config(disc_config: bert_lib.BertConfig, fraction: float) -> bert_lib.BertConfig:
  """The generator's config from the discriminator's (reference `get_generator_config`; paper §3.2, Table 6).

  hidden = round(H · fraction), heads = max(1, hidden // 64), FFN = 4 · hidden; same layers, vocabulary, positions
  and embedding width E (the tables are shared). ELECTRA-Small at 1/4: 64 hidden, 256 FFN, 1 head, 12 layers.
  """
  if not 0.0 < fraction <= 1.0:
    raise ValueError(f"generator_hidden_fraction must be in (0, 1], got {fraction!r}")
  hidden = max(1, round(disc_config.hidden_size * fraction))
  heads = max(1, hidden // 64)
  return disc_config.replace(
    hidden_size=hidden,
    num_heads=heads,
    intermediate_size=4 * hidden,
    embedding_size=disc_config.emb_size,
  )


class DiscriminatorHead(nn.Module):
  """Replaced-token-detection head: dense(H) → GELU → dense(1) per token (paper §2: D(x, t) = sigmoid(wᵀ h_D(x)_t);
  the reference code's `discriminator_predictions` adds the hidden dense + GELU)."""

  config: bert_lib.BertConfig

  @nn.compact
  def __call__(self, hidden_BxLxH: Array) -> Array:
    cfg = self.config
    init = nn.initializers.truncated_normal(stddev=cfg.initializer_range)
    h_BxLxH = nn.Dense(cfg.hidden_size, dtype=cfg.compute_dtype, kernel_init=init, name="dense")(hidden_BxLxH)
    h_BxLxH = bert_lib.gelu(h_BxLxH)
    logits_BxLx1 = nn.Dense(1, dtype=cfg.compute_dtype, kernel_init=init, name="out")(h_BxLxH)
    return logits_BxLx1[..., 0].astype(jnp.float32)


def _split_encoder(tree: Params) -> tuple[Params, Params]:
  """(embeddings, everything else) of a core BertEncoder param tree."""
  rest = {k: v for k, v in tree.items() if k != "embeddings"}
  return tree["embeddings"], rest


def init_params(key: Array, disc_config: bert_lib.BertConfig, gen_config: bert_lib.BertConfig, seq_len: int) -> Params:
  """Fresh ELECTRA params (truncated-normal 0.02, as core.bert); the shared embeddings come from the discriminator."""
  disc_key, gen_key, gen_head_key, disc_head_key = jax.random.split(key, 4)
  if gen_config.emb_size != disc_config.emb_size or gen_config.vocab_size != disc_config.vocab_size:
    raise ValueError("generator and discriminator must share the embedding width E and the vocabulary")
  dummy_BxL = jnp.zeros((1, seq_len), jnp.int32)
  disc_tree = bert_lib.BertEncoder(disc_config).init(disc_key, dummy_BxL)["params"]
  gen_tree = bert_lib.BertEncoder(gen_config).init(gen_key, dummy_BxL)["params"]
  embeddings, disc_rest = _split_encoder(disc_tree)
  _, gen_rest = _split_encoder(gen_tree)
  table_VxE = embeddings["word_embeddings"]["embedding"]
  mlm_head = bert_lib.MlmHead(gen_config).init(gen_head_key, jnp.zeros((1, 1, gen_config.hidden_size)), table_VxE)
  disc_head = DiscriminatorHead(disc_config).init(disc_head_key, jnp.zeros((1, 1, disc_config.hidden_size)))
  return {
    "embeddings": embeddings,
    "generator": {**gen_rest, "mlm_head": mlm_head["params"]},
    "discriminator": {**disc_rest, "head": disc_head["params"]},
  }


def encoder_params(params: Params, network: str) -> Params:
  """The core `BertEncoder` tree of `network` ('generator' | 'discriminator') with the shared embeddings."""
  head = HEAD_NAMES[network]
  own = {k: v for k, v in params[network].items() if k != head}
  return {**own, "embeddings": params["embeddings"]}


def discriminator_encoder_params(params: Params) -> Params:
  """The hand-off to finetuning (patent: "the generator is discarded and the encoder is finetuned"): a core
  `BertEncoder` tree (discriminator config) holding the shared embeddings; load it with `BertEncoder(disc_config)`."""
  return encoder_params(params, "discriminator")


def _rngs(dropout_key: Array | None) -> dict[str, Array]:
  return {} if dropout_key is None else {"dropout": dropout_key}


def gather_positions(x_BxLx: Array, positions_BxP: Array) -> Array:
  """x[b, positions[b, p]] for [B, L] or [B, L, D] arrays (reference `pretrain_helpers.gather_positions`)."""
  index = positions_BxP if x_BxLx.ndim == 2 else positions_BxP[..., None]
  return jnp.take_along_axis(x_BxLx, index, axis=1)


def _encode(
  config: bert_lib.BertConfig,
  tree: Params,
  input_ids_BxL: Array,
  token_type_ids_BxL: Array | None,
  attention_mask_BxL: Array | None,
  deterministic: bool,
  dropout_key: Array | None,
) -> Array:
  return bert_lib.BertEncoder(config).apply(
    {"params": tree},
    input_ids_BxL,
    token_type_ids_BxL,
    attention_mask_BxL,
    deterministic=deterministic,
    rngs=_rngs(dropout_key),
  )


def generator_logits(
  params: Params,
  gen_config: bert_lib.BertConfig,
  masked_ids_BxL: Array,
  token_type_ids_BxL: Array | None,
  attention_mask_BxL: Array | None,
  masked_positions_BxP: Array,
  *,
  deterministic: bool = True,
  dropout_key: Array | None = None,
) -> Array:
  """Generator MLM logits [B, P, V] at the masked positions only (paper §2 p_G(x_t | x); patent claim 1 step 3).

  The hidden states are gathered to [B, P, H_G] before the head, as the reference's max_predictions_per_seq: the
  V-wide output layer runs on P ≈ 0.15·L positions instead of L.
  """
  hidden_BxLxH = _encode(
    gen_config,
    encoder_params(params, "generator"),
    masked_ids_BxL,
    token_type_ids_BxL,
    attention_mask_BxL,
    deterministic,
    dropout_key,
  )
  hidden_BxPxH = gather_positions(hidden_BxLxH, masked_positions_BxP)
  table_VxE = params["embeddings"]["word_embeddings"]["embedding"]
  head = bert_lib.MlmHead(gen_config)
  return head.apply({"params": params["generator"]["mlm_head"]}, hidden_BxPxH, table_VxE)


def discriminator_logits(
  params: Params,
  disc_config: bert_lib.BertConfig,
  input_ids_BxL: Array,
  token_type_ids_BxL: Array | None,
  attention_mask_BxL: Array | None,
  *,
  deterministic: bool = True,
  dropout_key: Array | None = None,
) -> Array:
  """Per-token replaced-token logits [B, L] in fp32 (paper §2 D(x, t) before the sigmoid; patent claim 1 step 5)."""
  hidden_BxLxH = _encode(
    disc_config,
    encoder_params(params, "discriminator"),
    input_ids_BxL,
    token_type_ids_BxL,
    attention_mask_BxL,
    deterministic,
    dropout_key,
  )
  return DiscriminatorHead(disc_config).apply({"params": params["discriminator"]["head"]}, hidden_BxLxH)


# --- MLM baseline (BERT with the discriminator's config; paper Table 1 "BERT-Small", §3.4 compute-matched) ---


def init_mlm_params(key: Array, config: bert_lib.BertConfig, seq_len: int) -> Params:
  """core `BertForMlm` params {'encoder', 'mlm_head'} for the MLM twin of an ELECTRA run."""
  return bert_lib.BertForMlm(config).init(key, jnp.zeros((1, seq_len), jnp.int32))["params"]


def mlm_logits(
  params: Params,
  config: bert_lib.BertConfig,
  masked_ids_BxL: Array,
  token_type_ids_BxL: Array | None,
  attention_mask_BxL: Array | None,
  masked_positions_BxP: Array,
  *,
  deterministic: bool = True,
  dropout_key: Array | None = None,
) -> Array:
  """`BertForMlm` logits [B, P, V] with the head evaluated only at the masked positions (Devlin et al. §3.1)."""
  hidden_BxLxH = _encode(
    config, params["encoder"], masked_ids_BxL, token_type_ids_BxL, attention_mask_BxL, deterministic, dropout_key
  )
  hidden_BxPxH = gather_positions(hidden_BxLxH, masked_positions_BxP)
  table_VxE = params["encoder"]["embeddings"]["word_embeddings"]["embedding"]
  return bert_lib.MlmHead(config).apply({"params": params["mlm_head"]}, hidden_BxPxH, table_VxE)
