"""Pretraining FLOPs, counted as ELECTRA's `flops_computation.py` does, to match ELECTRA and MLM runs on compute.

Clark et al. 2020 §3.4 and Table 1 (the "Train FLOPs" column: ELECTRA-Small 1.4e18 for 1M steps, BERT-Small given
1.45M steps to match) and Appendix D. Not a patent step (the patent does not count compute).

Method (per token of a [batch, s] input, forward pass; then ×(1 + backward_factor) for training):
- An "operation" is a mathematical operation: a matrix multiply of [m, n] by n costs 2·m·n, an exp or a compare
  costs 1. Constants per activation element: dropout 4 (random, >=, mask multiply, rescale), LayerNorm 5 (mean,
  variance, square, bias, scale), GELU 8, softmax 5 (max, subtract, exp, sum, divide).
- Transformer block: Q/K/V 6·h·h + 3·h, attention scores 2·h·s, softmax/dropout/scale (5 + 4 + 1)·s·heads,
  weighted values 2·h·s, output projection 2·h² + h, dropout 4h, residual h, LayerNorm 5h; FFN 2·h·i + i, GELU 8i,
  2·h·i + h, dropout 4h, residual h, LayerNorm 5h. (The reference counts the attention LayerNorm as 5 instead of
  5·h, a typo worth < 0.1%; we count 5·h.)
- Input embeddings are counted as dense one-hot multiplies (2·e·V: what accelerators often run), plus token-type
  and position (2·e·(s + 2)), the add, LayerNorm and dropout, and the e -> h projection (2·h·e + h) when e != h.
- MLM head (generator and MLM baseline): dense h -> e, GELU, LayerNorm, tied output 2·e·V, softmax 5V and the
  target-word term 2V, evaluated on `output_frac` of the tokens (reference default 0.15625; our models also run
  the head only on the masked positions). Discriminator head: dense 2h² + h, GELU 8h, logit 2h.
- Backward = `backward_factor` × forward. The reference (and the paper's Table 1) uses 1.0, i.e. training = 2 ×
  forward; the common "backward is two matmuls" convention is 2.0 (training = 3 × forward, numbers × 1.5). Matching
  two runs only needs the same convention for both.
ELECTRA = discriminator (with its head) + generator (with the MLM head, its embedding lookup counted separately
although the tables are tied, as the reference does). With these rules ELECTRA-Small at 1M × 128 × 128 is 1.29e18
and BERT-Small at 1.45M steps 1.42e18 (the paper rounds both to 1.4e18).
"""

from __future__ import annotations

import dataclasses

from core import bert as bert_lib

DROPOUT_FLOPS = 4
LAYER_NORM_FLOPS = 5
ACTIVATION_FLOPS = 8
SOFTMAX_FLOPS = 5
REFERENCE_OUTPUT_FRAC = 0.15625  # flops_computation.py's share of tokens with an output softmax (80 / 512)


@dataclasses.dataclass(frozen=True)
class TransformerShape:
  """The sizes the FLOPs depend on: hidden h, layers, sequence length s, vocabulary V, embedding e, FFN i, heads."""

  hidden: int
  layers: int
  seq_len: int
  vocab: int = 30522
  embedding: int | None = None
  intermediate: int | None = None
  heads: int | None = None

  @property
  def e(self) -> int:
    return self.hidden if self.embedding is None else self.embedding

  @property
  def i(self) -> int:
    return 4 * self.hidden if self.intermediate is None else self.intermediate

  @property
  def n_heads(self) -> int:
    return max(self.hidden // 64, 1) if self.heads is None else self.heads

  @classmethod
  def from_bert_config(cls, config: bert_lib.BertConfig, seq_len: int) -> TransformerShape:
    return cls(
      hidden=config.hidden_size,
      layers=config.num_layers,
      seq_len=seq_len,
      vocab=config.vocab_size,
      embedding=config.emb_size,
      intermediate=config.intermediate_size,
      heads=config.num_heads,
    )


def block_flops(t: TransformerShape) -> float:
  """Forward FLOPs per token of one Transformer block (Vaswani et al. 2017 §3.1, post-LN BERT block)."""
  h, s, i, heads = t.hidden, t.seq_len, t.i, t.n_heads
  attention = (
    3 * 2 * h * h  # Q, K, V projections
    + 3 * h  # their biases
    + 2 * h * s  # scores q·k over s keys
    + (SOFTMAX_FLOPS + DROPOUT_FLOPS + 1) * s * heads  # softmax, attention dropout, 1/sqrt(d) scale
    + 2 * h * s  # weighted average of the values
    + 2 * h * h  # output projection
    + h  # its bias
    + DROPOUT_FLOPS * h
    + h  # residual
    + LAYER_NORM_FLOPS * h
  )
  ffn = (
    2 * h * i
    + i
    + ACTIVATION_FLOPS * i  # intermediate dense, bias, GELU
    + 2 * h * i
    + h  # output dense, bias
    + DROPOUT_FLOPS * h
    + h  # residual
    + LAYER_NORM_FLOPS * h
  )
  return float(attention + ffn)


def input_embedding_flops(t: TransformerShape) -> float:
  """Forward FLOPs per token of the input representation (dense lookups) and the e -> h projection."""
  e, h = t.e, t.hidden
  flops = 2 * e * t.vocab + 2 * e * (t.seq_len + 2) + 2 * e + LAYER_NORM_FLOPS * e + DROPOUT_FLOPS * e
  if e != h:
    flops += 2 * h * e + h
  return float(flops)


def mlm_head_flops(t: TransformerShape, output_frac: float = REFERENCE_OUTPUT_FRAC) -> float:
  """Forward FLOPs per token of the tied MLM output layer, on `output_frac` of the tokens."""
  e, h, v = t.e, t.hidden, t.vocab
  per_output = 2 * e * v + 2 * h * e + e + ACTIVATION_FLOPS * e + LAYER_NORM_FLOPS * e + SOFTMAX_FLOPS * v + 2 * v
  return float(output_frac * per_output)


def discriminator_head_flops(t: TransformerShape) -> float:
  """Forward FLOPs per token of the replaced-token-detection head dense(h) → GELU → dense(1)."""
  h = t.hidden
  return float(2 * h * h + h + ACTIVATION_FLOPS * h + 2 * h)


def forward_flops_per_token(t: TransformerShape, head: str, output_frac: float = REFERENCE_OUTPUT_FRAC) -> float:
  """Embeddings + layers + head ('mlm' | 'discriminator') forward FLOPs per token."""
  if head == "mlm":
    head_flops = mlm_head_flops(t, output_frac)
  elif head == "discriminator":
    head_flops = discriminator_head_flops(t)
  else:
    raise ValueError(f"head must be 'mlm' or 'discriminator', got {head!r}")
  return input_embedding_flops(t) + t.layers * block_flops(t) + head_flops


def train_flops(
  t: TransformerShape,
  head: str,
  batch_size: int,
  steps: float = 1,
  *,
  output_frac: float = REFERENCE_OUTPUT_FRAC,
  backward_factor: float = 1.0,
) -> float:
  """(1 + backward_factor) · batch · steps · s · forward FLOPs per token (reference `get_train_flops`)."""
  return (1.0 + backward_factor) * batch_size * steps * t.seq_len * forward_flops_per_token(t, head, output_frac)


def pretrain_flops_per_step(
  objective: str,
  disc_config: bert_lib.BertConfig,
  batch_size: int,
  seq_len: int,
  gen_config: bert_lib.BertConfig | None = None,
  *,
  output_frac: float = REFERENCE_OUTPUT_FRAC,
  backward_factor: float = 1.0,
) -> float:
  """Training FLOPs of one optimizer step: 'electra' (generator + discriminator, reference
  `get_electra_train_flops`) or 'mlm' (the BERT twin with the discriminator's config, reference `get_train_flops`)."""
  disc = TransformerShape.from_bert_config(disc_config, seq_len)
  kwargs = dict(output_frac=output_frac, backward_factor=backward_factor)
  if objective == "mlm":
    return train_flops(disc, "mlm", batch_size, **kwargs)
  if objective != "electra":
    raise ValueError(f"objective must be 'electra' or 'mlm', got {objective!r}")
  if gen_config is None:
    raise ValueError("objective 'electra' needs the generator config")
  gen = TransformerShape.from_bert_config(gen_config, seq_len)
  return train_flops(disc, "discriminator", batch_size, **kwargs) + train_flops(gen, "mlm", batch_size, **kwargs)


def compute_matched_steps(target_flops: float, flops_per_step: float) -> int:
  """Steps a run needs to spend `target_flops` (e.g. the MLM twin of an ELECTRA run), rounded to the nearest step."""
  if flops_per_step <= 0:
    raise ValueError(f"flops_per_step must be > 0, got {flops_per_step!r}")
  return round(target_flops / flops_per_step)
