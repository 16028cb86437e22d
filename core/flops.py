"""Training FLOPs of a BERT-family encoder and model-FLOPs utilisation (MFU): the one counter every package uses.

Two conventions, chosen per call:
- The operation count of ELECTRA's `flops_computation.py` (Clark et al. 2020, §3.4, Table 1 "Train FLOPs",
  Appendix D), the default (`matmul_only=False`). An "operation" is a mathematical operation: a matrix multiply of
  [m, n] by n costs 2·m·n, an exp or a compare costs 1. Constants per activation element: dropout 4 (random, >=,
  mask multiply, rescale), LayerNorm 5 (mean, variance, square, bias, scale), GELU 8, softmax 5 (max, subtract, exp,
  sum, divide). Input embeddings count as dense one-hot multiplies (2·e·V: what accelerators often run).
- Model FLOPs (`matmul_only=True`; the PaLM / Chinchilla convention for MFU): the matmuls with weights plus QKᵀ and
  AV, nothing else; embedding lookups are gathers and cost nothing.

Per token of a [batch, s] input, forward pass (post-LN BERT block, Vaswani et al. 2017 §3.1; Devlin et al. 2018 §3):
- Block: Q/K/V 6·h² + 3·h, scores 2·h·s, softmax/dropout/scale (5 + 4 + 1)·s·heads, weighted values 2·h·s, output
  projection 2·h² + h, dropout 4h, residual h, LayerNorm 5h; FFN 2·h·i + i, GELU 8i, 2·h·i + h, dropout 4h, residual
  h, LayerNorm 5h. (The reference counts the attention LayerNorm as 5 instead of 5·h, a typo worth < 0.1%; we count
  5·h.) Matmuls only: 8·h² + 4·h·i + 4·h·s.
- Embeddings: word 2·e·V, token type and position 2·e·(s + 2), the add, LayerNorm and dropout, and the e -> h
  projection 2·h·e + h when e != h. Matmuls only: the projection's 2·h·e.
- MLM head: dense h -> e, GELU, LayerNorm, tied output 2·e·V, softmax 5V and the target-word term 2V, on
  `output_frac` of the tokens. Matmuls only: 2·h·e + 2·e·V.
Training = (1 + backward_factor) × forward: the ELECTRA reference (and its Table 1) uses 1.0; "backward is two
matmuls" is 2.0. Matching two runs on compute only needs the same convention for both.
"""

from __future__ import annotations

import dataclasses

from core import bert as bert_lib

DROPOUT_FLOPS = 4
LAYER_NORM_FLOPS = 5
ACTIVATION_FLOPS = 8
SOFTMAX_FLOPS = 5


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


def block_flops(t: TransformerShape, *, matmul_only: bool = False) -> float:
  """Forward FLOPs per token of one Transformer block."""
  h, s, i, heads = t.hidden, t.seq_len, t.i, t.n_heads
  matmuls = 3 * 2 * h * h + 2 * h * s + 2 * h * s + 2 * h * h + 2 * h * i + 2 * h * i  # QKV, QKᵀ, AV, out, FFN
  if matmul_only:
    return float(matmuls)
  attention = (
    3 * h  # Q, K, V biases
    + (SOFTMAX_FLOPS + DROPOUT_FLOPS + 1) * s * heads  # softmax, attention dropout, 1/sqrt(d) scale
    + h  # output projection bias
    + DROPOUT_FLOPS * h
    + h  # residual
    + LAYER_NORM_FLOPS * h
  )
  ffn = i + ACTIVATION_FLOPS * i + h + DROPOUT_FLOPS * h + h + LAYER_NORM_FLOPS * h  # biases, GELU, residual, LN
  return float(matmuls + attention + ffn)


def input_embedding_flops(t: TransformerShape, *, matmul_only: bool = False) -> float:
  """Forward FLOPs per token of the input representation (lookups) and the e -> h projection."""
  e, h = t.e, t.hidden
  projection = 2 * h * e if e != h else 0
  if matmul_only:
    return float(projection)
  lookups = 2 * e * t.vocab + 2 * e * (t.seq_len + 2) + 2 * e + LAYER_NORM_FLOPS * e + DROPOUT_FLOPS * e
  return float(lookups + projection + (h if e != h else 0))


def mlm_head_flops(t: TransformerShape, output_frac: float, *, matmul_only: bool = False) -> float:
  """Forward FLOPs per input token of the tied MLM output layer, run on `output_frac` of the tokens."""
  e, h, v = t.e, t.hidden, t.vocab
  per_output = 2 * e * v + 2 * h * e
  if not matmul_only:
    per_output += e + ACTIVATION_FLOPS * e + LAYER_NORM_FLOPS * e + SOFTMAX_FLOPS * v + 2 * v
  return float(output_frac * per_output)


def encoder_flops(t: TransformerShape, *, matmul_only: bool = False) -> float:
  """Forward FLOPs per token of embeddings + all layers (no head)."""
  return input_embedding_flops(t, matmul_only=matmul_only) + t.layers * block_flops(t, matmul_only=matmul_only)


def train_flops(
  forward_flops_per_token: float, batch_size: int, seq_len: int, steps: float = 1, *, backward_factor: float
) -> float:
  """(1 + backward_factor) · batch · steps · s · forward FLOPs per token (reference `get_train_flops`)."""
  return (1.0 + backward_factor) * batch_size * steps * seq_len * forward_flops_per_token


def mlm_train_flops(
  t: TransformerShape,
  batch_size: int,
  steps: float = 1,
  *,
  output_frac: float,
  backward_factor: float,
  matmul_only: bool = False,
) -> float:
  """Training FLOPs of a BERT MLM (encoder + tied MLM head on `output_frac` of the tokens), Devlin et al. §3.1."""
  forward = encoder_flops(t, matmul_only=matmul_only) + mlm_head_flops(t, output_frac, matmul_only=matmul_only)
  return train_flops(forward, batch_size, t.seq_len, steps, backward_factor=backward_factor)


def mfu(flops_per_step: float, seconds_per_step: float, peak_flops_per_s: float) -> float:
  """Model-FLOPs utilisation: achieved FLOP/s of a step over the peak FLOP/s (Chowdhery et al. 2022, App. B)."""
  if seconds_per_step <= 0 or peak_flops_per_s <= 0:
    raise ValueError(f"mfu: seconds_per_step {seconds_per_step!r} and peak {peak_flops_per_s!r} must be > 0")
  return flops_per_step / seconds_per_step / peak_flops_per_s
