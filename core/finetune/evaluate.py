"""Dev-set scoring of a finetuned model: jitted forward in fixed-size batches, then the task metric on the host.

The reported `score` is 100 × the task's metric (ELECTRA §3.1: accuracy, Matthews for CoLA, Spearman for STS-B,
F1 for SQuAD, token F1 for tagging); every other metric of the task type is returned alongside.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from core.finetune import features as features_lib
from core.finetune import heads, metrics
from core.finetune.examples import TaskSpec

INPUT_KEYS = ("input_ids", "token_type_ids", "attention_mask")


def make_predict_fn(model: heads.FinetuneModel, max_answer_length: int = 30):
  """params, inputs → host-ready predictions: class ids, regression values, (start, end) or per-token tags."""

  @jax.jit
  def predict(params, inputs):
    out = model.apply(
      {"params": params}, inputs["input_ids"], inputs["token_type_ids"], inputs["attention_mask"], deterministic=True
    )
    if model.task_type == "classification":
      return jnp.argmax(out, -1)
    if model.task_type == "regression":
      return out
    if model.task_type == "span_qa":
      start_B, end_B, _ = heads.best_span(out[0], out[1], inputs["context_mask"], max_answer_length)
      return jnp.stack([start_B, end_B], -1)
    return jnp.argmax(out, -1)

  return predict


def predict_all(predict_fn, params, feats: features_lib.Features, batch_size: int) -> np.ndarray:
  """Runs `predict_fn` over every row in batches of one shape, padding the last batch (padded rows are all-mask and
  discarded); a dev set smaller than `batch_size` is one batch of its own size."""
  keys = [k for k in (*INPUT_KEYS, "context_mask") if k in feats.inputs]
  n = len(feats)
  batch_size = max(1, min(batch_size, n))
  outputs = []
  for lo in range(0, n, batch_size):
    batch = {k: feats.inputs[k][lo : lo + batch_size] for k in keys}
    rows = len(batch["input_ids"])
    if rows < batch_size:
      batch = {k: np.concatenate([v, np.zeros((batch_size - rows, *v.shape[1:]), v.dtype)]) for k, v in batch.items()}
    outputs.append(np.asarray(jax.device_get(predict_fn(params, batch)))[:rows])
  return np.concatenate(outputs) if outputs else np.zeros((0,))


def score(spec: TaskSpec, examples: Sequence[Any], feats: features_lib.Features, predictions: np.ndarray) -> dict:
  """Metrics of `predictions` (from `predict_all`) against the dev examples; adds 'score' = 100 × spec.metric."""
  if spec.task_type == "classification":
    out = metrics.classification_scores(feats.labels, predictions, spec.num_labels)
  elif spec.task_type == "regression":
    out = metrics.regression_scores(feats.labels, predictions)
  elif spec.task_type == "span_qa":
    texts = [""] * len(examples)
    for row, (start, end) in enumerate(predictions):
      texts[feats.meta["example"][row]] = features_lib.qa_prediction_text(feats.meta, row, int(start), int(end))
    out = metrics.squad_scores(texts, [ex.answers for ex in examples])
  else:
    gold, predicted = [], []
    for row, ex in enumerate(examples):
      firsts = feats.meta["first_piece"][row]
      tags = [int(predictions[row][p]) for p in firsts] + [0] * (len(ex.tags) - len(firsts))
      gold += list(ex.tags)
      predicted += tags
    out = {"accuracy": metrics.accuracy(gold, predicted), **metrics.token_f1(gold, predicted)}
  out = {k: float(v) for k, v in out.items()}
  out["score"] = 100.0 * out[spec.metric]
  return out
