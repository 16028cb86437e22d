"""The open-QA span reader: span candidates, the span scorer, answer matching, the marginal loss and decoding.

REALM, arXiv 2002.08909 §3.2 and §4 (open-QA fine-tuning: the knowledge-augmented encoder reads join(x, z) and
scores answer spans, p(y | z, x) ∝ Σ_{s ∈ S(z, y)} exp(MLP([h_START(s); h_END(s)])), marginalised over the top-k
documents) and ORQA, arXiv 1906.00300 §3-4 (span scoring, the retriever and reader marginal log-likelihoods);
US 11,003,865: "After pretraining, the model is finetuned with supervision (e.g. open-domain QA)".
Follows `language/orqa/models/orqa_model.py` (span_candidates, the span MLP, marginal_log_loss, compute_loss,
get_predictions):

- `span_candidates`: every span (i, j), j − i < max_span_width, of a row, ordered by width then start;
- `SpanScorer`: score(i, j) = w · LN(ReLU(h_i W_s + h_j W_e)) (span_hidden_size 256);
- `document_span_mask` / `answer_span_mask`: spans inside the document part of join(x, z) / spans whose token ids
  equal a tokenised answer (HF `RealmRetriever`'s token-id search);
- `marginal_log_loss`, `reader_loss`: logsumexp(all) − logsumexp(correct), for the retriever over the K documents and
  for the reader over all (document, span) pairs with the joint logit f(x, z) + score(z, s);
- `best_answer`, `answer_text`, `exact_match_score`: ORQA's prediction argmax_{z, s} and its exact match.
Shape suffixes: B queries (or any leading batch shape), K documents per query, L length of join(x, z), H hidden,
P span hidden size, S span candidates, N candidates of one marginal.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from core.finetune import metrics as metrics_lib

Array = jax.Array
NEG_INF = -1e9  # logit of a span that is not allowed (finite, so no NaN gradient; exp underflows to exactly 0)


def span_candidates(length: int, max_span_width: int = 10) -> tuple[np.ndarray, np.ndarray]:
  """All spans (i, j), 0 <= i <= j < length, j − i < max_span_width, ordered by width then start (ORQA
  `span_candidates`). Their number is Σ_{w=1..W} max(L − w + 1, 0). Returns (starts_S, ends_S) int32."""
  if not isinstance(max_span_width, int) or isinstance(max_span_width, bool) or max_span_width < 1:
    raise ValueError(f"max_span_width must be an int >= 1, got {max_span_width!r}")
  if not isinstance(length, int) or isinstance(length, bool) or length < 1:
    raise ValueError(f"length must be an int >= 1, got {length!r}")
  widths = range(1, min(max_span_width, length) + 1)
  starts_S = np.concatenate([np.arange(length - w + 1) for w in widths]).astype(np.int32)
  ends_S = np.concatenate([np.arange(w - 1, length) for w in widths]).astype(np.int32)
  return starts_S, ends_S


class SpanScorer(nn.Module):
  """score(i, j) = w · LayerNorm(ReLU(h_i W_s + h_j W_e)) + b (ORQA §4 / `orqa_model.read`; REALM §3.2's MLP).

  As in ORQA, one dense layer of width 2P projects every token once ([..., L, 2P], split into the start and end
  halves); the spans gather those projections, so the cost is L·H·2P + S·P, not S·H·P. The LayerNorm epsilon is
  Keras' default 1e-3, which ORQA's `tf.keras.layers.LayerNormalization` uses. Params {'projection' (kernel [H, 2P],
  bias), 'layer_norm', 'output' (kernel [P, 1], bias)}. Returns logits [..., S] (fp32).
  """

  hidden_size: int = 256  # ORQA span_hidden_size
  dtype: Any = jnp.float32
  layer_norm_epsilon: float = 1e-3
  initializer_range: float = 0.02

  @nn.compact
  def __call__(self, hidden_BxLxH: Array, starts_S: Array, ends_S: Array) -> Array:
    if self.hidden_size < 1:
      raise ValueError(f"SpanScorer.hidden_size must be >= 1, got {self.hidden_size}")
    init = nn.initializers.truncated_normal(stddev=self.initializer_range)
    dense = dict(dtype=self.dtype, param_dtype=jnp.float32, kernel_init=init)
    projection_BxLx2P = nn.Dense(2 * self.hidden_size, name="projection", **dense)(hidden_BxLxH)
    start_BxLxP, end_BxLxP = jnp.split(projection_BxLx2P, 2, axis=-1)
    span_BxSxP = jnp.take(start_BxLxP, starts_S, axis=-2) + jnp.take(end_BxLxP, ends_S, axis=-2)
    span_BxSxP = nn.relu(span_BxSxP.astype(jnp.float32))
    span_BxSxP = nn.LayerNorm(epsilon=self.layer_norm_epsilon, dtype=jnp.float32, name="layer_norm")(span_BxSxP)
    logits_BxSx1 = nn.Dense(1, name="output", **dense)(span_BxSxP)
    return logits_BxSx1[..., 0].astype(jnp.float32)


def document_span_mask(types_BxL, mask_BxL, starts_S, ends_S, *, ids_BxL, sep_id: int):
  """Spans s = (i, j) the reader may answer with: both ends in the document part of join(x, z) (token type 1, real
  token) and no [SEP] in i..j, so neither the title/text separator nor the final [SEP] is ever in an answer (ORQA's
  `block_mask`, HF's `special_tokens_mask`-free token type 1). Stricter than checking the two ends only: a span across
  the title/text [SEP] would decode with '[SEP]' inside. Any leading shape; numpy or jax in, the same out.
  Returns allowed_BxS (bool)."""
  xp = jnp if any(isinstance(a, jax.Array) for a in (types_BxL, mask_BxL, ids_BxL)) else np
  in_doc_BxL = (types_BxL == 1) & (mask_BxL > 0) & (ids_BxL != sep_id)
  is_sep_BxL = (ids_BxL == sep_id).astype(xp.int32)
  seps_upto_BxL = xp.cumsum(is_sep_BxL, axis=-1)  # number of [SEP] in 0..t
  seps_inside_BxS = xp.take(seps_upto_BxL, ends_S, axis=-1) - xp.take(seps_upto_BxL - is_sep_BxL, starts_S, axis=-1)
  ends_ok_BxS = xp.take(in_doc_BxL, starts_S, axis=-1) & xp.take(in_doc_BxL, ends_S, axis=-1)
  return ends_ok_BxS & (seps_inside_BxS == 0)


def tokenize_answers(tokenizer, answers: Sequence[str]) -> list[np.ndarray]:
  """Host side: each answer's token ids without special tokens (ORQA tokenises the answer strings with the reader's
  tokenizer), duplicates (same ids) once, in order; answers that tokenise to nothing ('' or whitespace) are dropped,
  and a ValueError names them when none is left (the question cannot be supervised)."""
  if isinstance(answers, str):
    answers = (answers,)
  seen: dict[tuple[int, ...], None] = {}
  for answer in answers:
    ids = tuple(int(i) for i in tokenizer.encode_with_offsets(answer)[0])
    if ids:
      seen.setdefault(ids, None)
  if not seen:
    raise ValueError(f"no answer tokenises to any wordpiece: {list(answers)!r}")
  return [np.asarray(ids, np.int32) for ids in seen]


def answer_span_mask(ids_BxL, allowed_BxS, starts_S, ends_S, answer_ids: Sequence[np.ndarray]) -> np.ndarray:
  """Host side (numpy): correct_BxS[b, s] = allowed[b, s] and ids[b, i..j] equals one of `answer_ids` token for token
  (HF `RealmRetriever`'s token-id search; ORQA's gold spans), for s = (i, j). All rows answer the same question
  (e.g. its K documents, any leading shape); call once per question. Answers longer than the widest candidate span
  never match. Returns correct_BxS (bool)."""
  ids_BxL, allowed_BxS = np.asarray(ids_BxL), np.asarray(allowed_BxS, bool)
  starts_S, ends_S = np.asarray(starts_S), np.asarray(ends_S)
  length = ids_BxL.shape[-1]
  span_of_LxL = np.full((length, length), -1, np.int64)  # (i, j) -> candidate index
  span_of_LxL[starts_S, ends_S] = np.arange(len(starts_S))
  correct_BxS = np.zeros(allowed_BxS.shape, bool)
  for answer_A in answer_ids:
    n = len(answer_A)
    if n == 0 or n > length:
      continue
    windows_BxWxA = np.lib.stride_tricks.sliding_window_view(ids_BxL, n, axis=-1)
    hit_BxW = np.all(windows_BxWxA == np.asarray(answer_A)[None], axis=-1)
    span_W = span_of_LxL[np.arange(length - n + 1), np.arange(n - 1, length)]
    known_W = span_W >= 0
    correct_BxS[..., span_W[known_W]] |= hit_BxW[..., known_W]
  return correct_BxS & allowed_BxS


def marginal_log_loss(logits_BxN: Array, correct_BxN: Array) -> tuple[Array, Array]:
  """−log Σ_{n correct} p(n) = logsumexp(all) − logsumexp(correct) (ORQA §4, `marginal_log_loss`).

  0 with has_correct False when no candidate is correct (ORQA zeroes those terms). The correct set is masked with a
  finite fill and the empty case selected away with `jnp.where`, so the gradient is finite (and 0 for such rows).
  Returns (loss_B, has_correct_B).
  """
  correct_BxN = correct_BxN.astype(bool)
  logits_BxN = logits_BxN.astype(jnp.float32)
  has_correct_B = jnp.any(correct_BxN, axis=-1)
  log_all_B = jax.nn.logsumexp(logits_BxN, axis=-1)
  log_correct_B = jax.nn.logsumexp(jnp.where(correct_BxN, logits_BxN, NEG_INF), axis=-1)
  return jnp.where(has_correct_B, log_all_B - log_correct_B, 0.0), has_correct_B


def _joint_logits(retriever_logits_BxK: Array, span_logits_BxKxS: Array, allowed_BxKxS: Array) -> Array:
  """f(x, z) + score(z, s) for allowed spans, NEG_INF for the others: joint_BxKxS."""
  span_logits_BxKxS = jnp.where(allowed_BxKxS.astype(bool), span_logits_BxKxS.astype(jnp.float32), NEG_INF)
  return retriever_logits_BxK.astype(jnp.float32)[..., None] + span_logits_BxKxS


def best_answer(retriever_logits_BxK: Array, span_logits_BxKxS: Array, allowed_BxKxS: Array) -> tuple[Array, Array]:
  """ORQA's prediction (`get_predictions`): argmax over allowed (z, s) of f(x, z) + score(z, s).

  Returns (doc_index_B, span_index_B) into the K documents and the S candidates; the first maximum wins ties."""
  joint_BxKxS = _joint_logits(retriever_logits_BxK, span_logits_BxKxS, allowed_BxKxS)
  num_spans = joint_BxKxS.shape[-1]
  flat_B = jnp.argmax(joint_BxKxS.reshape(*joint_BxKxS.shape[:-2], -1), axis=-1)
  return flat_B // num_spans, flat_B % num_spans


def _mean_where(values_B: Array, where_B: Array) -> Array:
  weights_B = where_B.astype(jnp.float32)
  return jnp.sum(values_B * weights_B) / jnp.maximum(jnp.sum(weights_B), 1.0)


def reader_loss(
  retriever_logits_BxK: Array, span_logits_BxKxS: Array, correct_BxKxS: Array, allowed_BxKxS: Array
) -> tuple[Array, dict[str, Array]]:
  """The open-QA objective (REALM §4, ORQA §4 / `compute_loss`): L = L_retriever + L_reader, where

  L_retriever = −log Σ_{z correct} softmax_z f(x, z) over the K documents, a document correct when it holds a correct
  span, and L_reader = −log Σ_{(z, s) correct} softmax_{(z, s)} [f(x, z) + score(z, s)] over every allowed (document,
  span) pair (the joint distribution p(z | x) p(s | z, x)). A query with no correct candidate contributes 0 to a term;
  each term is averaged over the queries that have a correct candidate (ORQA's zeroing; its batch is one query).
  Padded document slots take retriever logit NEG_INF and no allowed span. `correct` is intersected with `allowed`.

  Returns (loss, metrics): retriever_loss, reader_loss; reader_oracle (queries with a correct span among the top K);
  retriever_correct (queries whose highest-f document holds a correct span); exact_match (queries whose `best_answer`
  span is correct: ORQA's token-level exact_match); correct_spans (mean count per query).
  """
  allowed_BxKxS = allowed_BxKxS.astype(bool)
  correct_BxKxS = correct_BxKxS.astype(bool) & allowed_BxKxS
  correct_doc_BxK = jnp.any(correct_BxKxS, axis=-1)
  retriever_B, retriever_has_B = marginal_log_loss(retriever_logits_BxK, correct_doc_BxK)
  joint_BxKxS = _joint_logits(retriever_logits_BxK, span_logits_BxKxS, allowed_BxKxS)
  flat_shape = (*joint_BxKxS.shape[:-2], -1)
  reader_B, reader_has_B = marginal_log_loss(joint_BxKxS.reshape(flat_shape), correct_BxKxS.reshape(flat_shape))
  retriever_term = _mean_where(retriever_B, retriever_has_B)
  reader_term = _mean_where(reader_B, reader_has_B)
  doc_B, span_B = best_answer(retriever_logits_BxK, span_logits_BxKxS, allowed_BxKxS)
  predicted_doc_BxS = jnp.take_along_axis(correct_BxKxS, doc_B[..., None, None], axis=-2)[..., 0, :]
  predicted_B = jnp.take_along_axis(predicted_doc_BxS, span_B[..., None], axis=-1)[..., 0]
  top_doc_B = jnp.argmax(retriever_logits_BxK, axis=-1)
  top_correct_B = jnp.take_along_axis(correct_doc_BxK, top_doc_B[..., None], axis=-1)[..., 0]
  metrics = {
    "retriever_loss": retriever_term,
    "reader_loss": reader_term,
    "reader_oracle": jnp.mean(reader_has_B.astype(jnp.float32)),
    "retriever_correct": jnp.mean(top_correct_B.astype(jnp.float32)),
    "exact_match": jnp.mean(predicted_B.astype(jnp.float32)),
    "correct_spans": jnp.mean(jnp.sum(correct_BxKxS, axis=(-2, -1)).astype(jnp.float32)),
  }
  return retriever_term + reader_term, metrics


def answer_text(tokenizer, ids_L, start: int, end: int) -> str:
  """Host side: the text of span start..end (inclusive) of a row: its wordpieces decoded by the tokenizer's WordPiece
  decoder ('##' continuations joined to the previous piece, special tokens dropped). ORQA maps spans back to the
  original text (`get_final_text`); decoding ids alone spaces punctuation inside words ('U.S.' reads 'u. s.')."""
  ids_L = np.asarray(ids_L)
  start, end = int(start), int(end)
  if not 0 <= start <= end < len(ids_L):
    raise ValueError(f"span ({start}, {end}) is not inside a row of length {len(ids_L)}")
  return tokenizer.decode(ids_L[start : end + 1]).strip()


def exact_match_score(predictions: Sequence[str], answers_lists: Sequence[Sequence[str]]) -> float:
  """Mean exact match after SQuAD normalisation (REALM §4 / ORQA "exact match"; `core.finetune.metrics`)."""
  if len(predictions) != len(answers_lists):
    raise ValueError(f"got {len(predictions)} predictions but {len(answers_lists)} answer lists")
  if not predictions:
    return 0.0
  return float(np.mean([metrics_lib.exact_match(p, a) for p, a in zip(predictions, answers_lists)]))
