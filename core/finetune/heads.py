"""Task heads over a pretrained BERT-family encoder, their losses and span decoding.

BERT §4 (Devlin et al. 2018: classification from [CLS], SQuAD start/end vectors, per-token tagging) and the ELECTRA
patent's final step (US 2021/0089724: "after pretraining the generator is discarded and the encoder is finetuned
(classification, QA with start/end vectors, NER, ...)"; ELECTRA paper §3.1 and Appendix A).
`FinetuneModel` = core `BertEncoder` (params under 'encoder') + one head (params under 'head'), so a method can
address 'encoder/embeddings', 'encoder/layer_i' and 'head' by path (layer-wise LR decay, frozen encoders).

Heads:
- `ClassificationHead`: [CLS] → dropout → dense(H) → GELU → dropout → dense(K), as HuggingFace
  `ElectraClassificationHead` (classifier 'mlp'), or [CLS] → dropout → dense(K) alone (classifier 'linear', the
  H·K + K parameter head a parameter-budgeted method such as LoRA can afford); K = 1 is regression (STS-B, trained
  with mean squared error).
- `SpanHead`: one dense(2) over every token = the start and end vectors S, E of BERT §4.2 (SQuAD); trained with the
  mean of the start and end cross-entropies over the unpadded tokens; `best_span` decodes argmax S_i + E_j over
  i <= j < i + max_answer_length inside the context.
- `TaggingHead`: dropout → dense(K) per token (BERT §5.3, NER). Labels of -1 are ignored by the loss, so the
  featuriser decides whether only the first WordPiece of each word is labelled (BERT's choice) or all of them.
Shape suffixes: B batch, L length, H hidden, K labels.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from core import bert as bert_lib
from core import dropout as dropout_lib
from core.finetune.examples import TASK_TYPES

Array = jax.Array
CLASSIFIERS = ("mlp", "linear")  # ClassificationHead's shapes: dense(H) → GELU → dense(K) | dense(K)
IGNORE = -1  # label of tokens the tagging loss skips ([CLS], [SEP], padding, non-first WordPieces)


def _dense(config: bert_lib.BertConfig, features: int, name: str) -> nn.Dense:
  return nn.Dense(
    features,
    dtype=config.compute_dtype,
    param_dtype=jnp.float32,
    kernel_init=nn.initializers.truncated_normal(stddev=config.initializer_range),
    name=name,
  )


class ClassificationHead(nn.Module):
  """[CLS] hidden → dropout → dense(H) → GELU → dropout → out_proj(K) (HF ElectraClassificationHead, classifier
  'mlp'), or [CLS] hidden → dropout → out_proj(K) (classifier 'linear')."""

  config: bert_lib.BertConfig
  num_labels: int
  dropout_rate: float = 0.1
  classifier: str = "mlp"

  @nn.compact
  def __call__(self, hidden_BxLxH: Array, *, deterministic: bool = True) -> Array:
    if self.classifier not in CLASSIFIERS:
      raise ValueError(f"classifier: unknown value {self.classifier!r} (allowed: {', '.join(CLASSIFIERS)})")
    x_BxH = hidden_BxLxH[:, 0]
    x_BxH = dropout_lib.Dropout(self.dropout_rate)(x_BxH, deterministic=deterministic)
    if self.classifier == "mlp":
      x_BxH = bert_lib.gelu(_dense(self.config, self.config.hidden_size, "dense")(x_BxH))
      x_BxH = dropout_lib.Dropout(self.dropout_rate)(x_BxH, deterministic=deterministic)
    return _dense(self.config, self.num_labels, "out_proj")(x_BxH).astype(jnp.float32)


class SpanHead(nn.Module):
  """Start / end logits per token: a dense(2) layer = the start vector S and end vector E of BERT §4.2."""

  config: bert_lib.BertConfig

  @nn.compact
  def __call__(self, hidden_BxLxH: Array, *, deterministic: bool = True) -> tuple[Array, Array]:
    del deterministic
    logits_BxLx2 = _dense(self.config, 2, "qa_outputs")(hidden_BxLxH).astype(jnp.float32)
    return logits_BxLx2[..., 0], logits_BxLx2[..., 1]


class TaggingHead(nn.Module):
  """Per-token dropout → dense(K) (BERT §5.3)."""

  config: bert_lib.BertConfig
  num_labels: int
  dropout_rate: float = 0.1

  @nn.compact
  def __call__(self, hidden_BxLxH: Array, *, deterministic: bool = True) -> Array:
    x_BxLxH = dropout_lib.Dropout(self.dropout_rate)(hidden_BxLxH, deterministic=deterministic)
    return _dense(self.config, self.num_labels, "out_proj")(x_BxLxH).astype(jnp.float32)


class FinetuneModel(nn.Module):
  """`BertEncoder` ('encoder') + the head of `task_type` ('head'). Returns the head's outputs:

  classification: logits_BxK; regression: prediction_B; span_qa: (start_BxL, end_BxL); tagging: logits_BxLxK.
  """

  config: bert_lib.BertConfig
  task_type: str
  num_labels: int = 2
  head_dropout_rate: float = 0.1
  classifier: str = "mlp"  # classification / regression head: CLASSIFIERS

  def setup(self):
    if self.task_type not in TASK_TYPES:
      raise ValueError(f"task_type: unknown value {self.task_type!r} (allowed: {', '.join(TASK_TYPES)})")
    self.encoder = bert_lib.BertEncoder(self.config, name="encoder")
    if self.task_type in ("classification", "regression"):
      k = 1 if self.task_type == "regression" else self.num_labels
      self.head = ClassificationHead(self.config, k, self.head_dropout_rate, self.classifier, name="head")
    elif self.task_type == "span_qa":
      self.head = SpanHead(self.config, name="head")
    else:
      self.head = TaggingHead(self.config, self.num_labels, self.head_dropout_rate, name="head")

  def __call__(
    self,
    input_ids_BxL: Array,
    token_type_ids_BxL: Array | None = None,
    attention_mask_BxL: Array | None = None,
    *,
    deterministic: bool = True,
  ):
    hidden_BxLxH = self.encoder(input_ids_BxL, token_type_ids_BxL, attention_mask_BxL, deterministic=deterministic)
    out = self.head(hidden_BxLxH, deterministic=deterministic)
    return out[:, 0] if self.task_type == "regression" else out


def classification_loss(logits_BxK: Array, labels_B: Array) -> tuple[Array, dict[str, Array]]:
  """Mean softmax cross-entropy (ELECTRA `classification_tasks.py`) and batch accuracy."""
  loss_B = optax.softmax_cross_entropy_with_integer_labels(logits_BxK, labels_B)
  accuracy = jnp.mean(jnp.argmax(logits_BxK, -1) == labels_B)
  return jnp.mean(loss_B), {"accuracy": accuracy}


def regression_loss(prediction_B: Array, labels_B: Array) -> tuple[Array, dict[str, Array]]:
  """Mean squared error (ELECTRA's STS-B "regression" task)."""
  loss = jnp.mean(jnp.square(prediction_B - labels_B.astype(jnp.float32)))
  return loss, {"mse": loss}


def _masked_logits(logits_BxL: Array, mask_BxL: Array) -> Array:
  return jnp.where(mask_BxL > 0, logits_BxL, -1e9)


def span_loss(
  start_BxL: Array, end_BxL: Array, start_B: Array, end_B: Array, attention_mask_BxL: Array
) -> tuple[Array, dict[str, Array]]:
  """(CE(softmax(S·T_i), start) + CE(softmax(E·T_j), end)) / 2 over unpadded tokens (BERT §4.2 SQuAD v1.1)."""
  start_BxL = _masked_logits(start_BxL, attention_mask_BxL)
  end_BxL = _masked_logits(end_BxL, attention_mask_BxL)
  start_loss = optax.softmax_cross_entropy_with_integer_labels(start_BxL, start_B)
  end_loss = optax.softmax_cross_entropy_with_integer_labels(end_BxL, end_B)
  exact = (jnp.argmax(start_BxL, -1) == start_B) & (jnp.argmax(end_BxL, -1) == end_B)
  return jnp.mean(start_loss + end_loss) / 2, {"span_accuracy": jnp.mean(exact)}


def tagging_loss(logits_BxLxK: Array, labels_BxL: Array) -> tuple[Array, dict[str, Array]]:
  """Mean per-token cross-entropy over tokens whose label != IGNORE; accuracy over the same tokens."""
  weights_BxL = (labels_BxL != IGNORE).astype(jnp.float32)
  safe_BxL = jnp.where(labels_BxL == IGNORE, 0, labels_BxL)
  loss_BxL = optax.softmax_cross_entropy_with_integer_labels(logits_BxLxK, safe_BxL)
  count = jnp.maximum(jnp.sum(weights_BxL), 1.0)
  correct_BxL = (jnp.argmax(logits_BxLxK, -1) == labels_BxL).astype(jnp.float32)
  return jnp.sum(loss_BxL * weights_BxL) / count, {"token_accuracy": jnp.sum(correct_BxL * weights_BxL) / count}


def best_span(
  start_BxL: Array, end_BxL: Array, allowed_BxL: Array, max_answer_length: int
) -> tuple[Array, Array, Array]:
  """argmax over i <= j < i + max_answer_length, allowed[i] and allowed[j], of start[i] + end[j].

  BERT §4.2: "the score of a candidate span from position i to position j is S·T_i + E·T_j, and the maximum scoring
  span where j >= i is used as a prediction". `allowed_BxL` marks context tokens (not question, [CLS], [SEP] or
  padding). Returns (start_B, end_B, score_B); score is -inf-like (< -1e8) when no token is allowed.
  """
  length = start_BxL.shape[-1]
  i_L, j_L = jnp.arange(length)[:, None], jnp.arange(length)[None, :]
  band_LxL = (j_L >= i_L) & (j_L < i_L + max_answer_length)
  ok_BxLxL = band_LxL[None] & (allowed_BxL[:, :, None] > 0) & (allowed_BxL[:, None, :] > 0)
  scores_BxLxL = jnp.where(ok_BxLxL, start_BxL[:, :, None] + end_BxL[:, None, :], -1e9)
  flat_B = jnp.argmax(scores_BxLxL.reshape(scores_BxLxL.shape[0], -1), axis=-1)
  start_B, end_B = flat_B // length, flat_B % length
  score_B = jnp.take_along_axis(scores_BxLxL.reshape(scores_BxLxL.shape[0], -1), flat_B[:, None], axis=-1)[:, 0]
  return start_B, end_B, score_B
