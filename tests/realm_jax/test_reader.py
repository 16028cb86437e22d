"""The open-QA span reader (realm_jax.reader): span candidates, the span MLP, answer and document masks, ORQA's
marginal losses and prediction, decoding and exact match, each against an independent reference."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from core.data import corpora as core_corpora
from core.data import tokenizers
from realm_jax import corpora, data, model, reader

ANSWER = "Alan Mathison Turing"  # 4 wordpieces: alan math ##ison turing
# Jitted once per shape: one compilation is faster on CPU than dispatching each op eagerly.
marginal_log_loss = jax.jit(reader.marginal_log_loss)
reader_loss = jax.jit(reader.reader_loss)
best_answer = jax.jit(reader.best_answer)


@pytest.fixture(scope="module")
def tokenizer():
  return tokenizers.WordPieceTokenizer(core_corpora.bert_vocab_path())


def _joined(tokenizer, question, documents, query_len=12, doc_len=40):
  """join(x, z) rows [1, K, L] of one question and its documents, and the documents' token lists."""
  rows = data.document_rows(tokenizer, [corpora.Document(i, t, x) for i, (t, x) in enumerate(documents)], doc_len)
  query = tokenizer.encode_batch([question], max_length=query_len)
  ids, types, mask, _ = model.join(query["input_ids"], query["attention_mask"], rows.ids_NxL[None], rows.mask_NxL[None])
  return ids, types, mask


@pytest.mark.parametrize("length, width", [(1, 1), (6, 1), (7, 3), (10, 10), (4, 9), (12, 5)])
def test_span_candidates_are_every_short_span_once(length, width):
  starts_S, ends_S = reader.span_candidates(length, width)
  assert starts_S.dtype == ends_S.dtype == np.int32
  assert len(starts_S) == sum(max(length - w + 1, 0) for w in range(1, width + 1))
  pairs = list(zip(starts_S.tolist(), ends_S.tolist()))
  expected = {(i, j) for i in range(length) for j in range(length) if 0 <= j - i < width}
  assert len(set(pairs)) == len(pairs) and set(pairs) == expected
  assert pairs == sorted(pairs, key=lambda p: (p[1] - p[0], p[0]))  # ORQA's order: by width, then start
  if width >= length:
    assert len(pairs) == length * (length + 1) // 2


def test_bad_inputs_raise_one_line_errors(tokenizer):
  for width in (0, -3, 2.0):
    with pytest.raises(ValueError, match="max_span_width") as error:
      reader.span_candidates(8, width)
    assert "\n" not in str(error.value)
  with pytest.raises(ValueError, match=re.escape(repr(" \t "))) as error:
    reader.tokenize_answers(tokenizer, ["", " \t "])
  assert "\n" not in str(error.value)
  with pytest.raises(ValueError, match="predictions"):
    reader.exact_match_score(["a"], [["a"], ["b"]])
  with pytest.raises(ValueError, match="not inside a row"):
    reader.answer_text(tokenizer, np.arange(5), 3, 5)


def test_span_scorer_equals_a_per_span_mlp():
  rng = np.random.default_rng(0)
  b, length, h, p = 2, 7, 8, 16
  hidden_BxLxH = rng.normal(size=(b, length, h)).astype(np.float32)
  starts_S, ends_S = reader.span_candidates(length, 3)
  scorer = reader.SpanScorer(hidden_size=p)
  params = jax.jit(scorer.init)(jax.random.key(0), hidden_BxLxH, starts_S, ends_S)["params"]
  # Every parameter random (LayerNorm scale/bias and the biases start at 1/0), so each one is checked.
  params = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape) * 0.5, jnp.float32), params)
  apply = jax.jit(scorer.apply)
  logits_BxS = np.asarray(apply({"params": params}, hidden_BxLxH, starts_S, ends_S))
  assert logits_BxS.shape == (b, len(starts_S))

  kernel, bias = np.asarray(params["projection"]["kernel"], np.float64), np.asarray(params["projection"]["bias"])
  scale, shift = np.asarray(params["layer_norm"]["scale"]), np.asarray(params["layer_norm"]["bias"])
  w, w0 = np.asarray(params["output"]["kernel"])[:, 0], np.asarray(params["output"]["bias"])[0]
  reference_BxS = np.zeros((b, len(starts_S)))
  for bi in range(b):
    for s, (i, j) in enumerate(zip(starts_S, ends_S)):
      x = hidden_BxLxH[bi, i] @ kernel[:, :p] + bias[:p] + hidden_BxLxH[bi, j] @ kernel[:, p:] + bias[p:]
      x = np.maximum(x, 0.0)
      x = (x - x.mean()) / np.sqrt(x.var() + 1e-3) * scale + shift
      reference_BxS[bi, s] = x @ w + w0
  np.testing.assert_allclose(logits_BxS, reference_BxS, rtol=1e-5, atol=1e-5)
  # Any leading shape: [1, B, L, H] gives the same scores.
  again = apply({"params": params}, hidden_BxLxH[None], starts_S, ends_S)[0]
  np.testing.assert_allclose(again, logits_BxS, rtol=1e-6, atol=1e-6)


def test_document_span_mask_keeps_title_and_text_spans_only(tokenizer):
  title, text = "turing", "alan turing was a mathematician"
  ids, types, mask = _joined(tokenizer, "who was turing?", [(title, text)], query_len=10, doc_len=16)
  n_title, n_text = len(tokenizer.tokenize(title)), len(tokenizer.tokenize(text))
  assert mask[0, 0, :10].sum() < 10 and mask[0, 0].sum() < mask.shape[-1]  # padding in both parts
  length, width = ids.shape[-1], 4
  starts_S, ends_S = reader.span_candidates(length, width)
  allowed = reader.document_span_mask(types, mask, starts_S, ends_S, ids_BxL=ids, sep_id=tokenizer.sep_id)
  assert allowed.shape == (1, 1, len(starts_S)) and allowed.dtype == bool
  # Doc row '[CLS] title [SEP] text [SEP]' minus its [CLS] follows the 10 query slots.
  title_pos, text_pos = set(range(10, 10 + n_title)), set(range(11 + n_title, 11 + n_title + n_text))
  expected = {
    (i, j) for i, j in zip(starts_S.tolist(), ends_S.tolist()) if {i, j} <= title_pos or {i, j} <= text_pos
  }
  got = {(int(starts_S[s]), int(ends_S[s])) for s in np.flatnonzero(allowed[0, 0])}
  assert got == expected and len(expected) > 5
  on_jax = reader.document_span_mask(
    jnp.asarray(types), jnp.asarray(mask), starts_S, ends_S, ids_BxL=jnp.asarray(ids), sep_id=tokenizer.sep_id
  )
  assert isinstance(on_jax, jax.Array) and np.array_equal(np.asarray(on_jax), allowed)


def test_answer_span_mask_finds_the_answer_in_documents_never_in_the_query(tokenizer):
  segments = ["the mathematician", ANSWER, "was born in 1912 .", ANSWER, "died in 1954"]
  text = " ".join(segments)
  pieces = [tokenizer.tokenize(seg) for seg in segments]
  assert sum(pieces, []) == tokenizer.tokenize(text)
  answers = reader.tokenize_answers(tokenizer, [ANSWER, ANSWER.upper(), "", "1954"])
  expected_ids = [tokenizer.encode_with_offsets(a)[0] for a in (ANSWER, "1954")]
  assert [a.tolist() for a in answers] == expected_ids
  assert len(answers[0]) == 4

  lq = 12
  ids, types, mask = _joined(tokenizer, f"who was {ANSWER}?", [(ANSWER, text), ("Paris", "capital of france")], lq)
  starts_S, ends_S = reader.span_candidates(ids.shape[-1], 10)
  allowed = reader.document_span_mask(types, mask, starts_S, ends_S, ids_BxL=ids, sep_id=tokenizer.sep_id)
  correct = reader.answer_span_mask(ids, allowed, starts_S, ends_S, answers)
  text_start = lq + 4 + 1  # query slots, the 4 title pieces, the title's [SEP]
  offsets = np.cumsum([0] + [len(p) for p in pieces])
  expected = {(lq, lq + 3)}  # the title
  expected |= {(text_start + offsets[k], text_start + offsets[k] + 3) for k in (1, 3)}
  expected.add((text_start + offsets[4] + 2, text_start + offsets[4] + 2))  # "1954"
  got = {(int(starts_S[s]), int(ends_S[s])) for s in np.flatnonzero(correct[0, 0])}
  assert got == expected
  assert not correct[0, 1].any()  # the second document has no answer
  assert (ids[0, 0, 3:7] == answers[0]).all()  # the query holds the answer too; without `allowed` it would match
  everywhere = reader.answer_span_mask(ids, np.ones_like(allowed), starts_S, ends_S, answers)
  assert everywhere[0, 0, int(np.flatnonzero((starts_S == 3) & (ends_S == 6))[0])]
  narrow_S = reader.span_candidates(ids.shape[-1], 3)
  narrow = reader.answer_span_mask(ids, np.ones((1, 2, len(narrow_S[0])), bool), *narrow_S, answers[:1])
  assert not narrow.any()  # a 4-piece answer is no candidate of width <= 3

  for i, j in expected - {(text_start + offsets[4] + 2,) * 2}:
    assert reader.answer_text(tokenizer, ids[0, 0], i, j) == ANSWER.lower()  # '##ison' joined back


def _reference_marginal(logits_N, correct_N):
  if not any(correct_N):
    return 0.0
  all_sum = sum(np.exp(float(x)) for x in logits_N)
  correct_sum = sum(np.exp(float(x)) for x, c in zip(logits_N, correct_N) if c)
  return np.log(all_sum) - np.log(correct_sum)


def test_marginal_log_loss_against_sums_of_exps_and_its_gradient():
  rng = np.random.default_rng(1)
  logits_BxN = (rng.normal(size=(5, 7)) * 3).astype(np.float32)
  correct_BxN = rng.random((5, 7)) < 0.4
  correct_BxN[0], correct_BxN[1], correct_BxN[2] = False, True, False
  correct_BxN[2, 4] = True
  loss_B, has_B = marginal_log_loss(jnp.asarray(logits_BxN), jnp.asarray(correct_BxN))
  reference_B = [_reference_marginal(logits_BxN[b], correct_BxN[b]) for b in range(5)]
  np.testing.assert_allclose(loss_B, reference_B, rtol=1e-5, atol=1e-5)
  assert has_B.tolist() == correct_BxN.any(-1).tolist() and loss_B[0] == 0.0 and abs(loss_B[1]) < 1e-6
  grad_BxN = np.asarray(jax.jit(jax.grad(lambda x: reader.marginal_log_loss(x, correct_BxN)[0].sum()))(logits_BxN))
  assert np.isfinite(grad_BxN).all() and (grad_BxN[0] == 0).all()
  for b in range(1, 5):  # d/dx [logsumexp(all) − logsumexp(correct)] = softmax(all) − softmax over the correct ones
    p_all = np.exp(logits_BxN[b] - logits_BxN[b].max())
    p_correct = np.where(correct_BxN[b], p_all, 0.0)
    np.testing.assert_allclose(grad_BxN[b], p_all / p_all.sum() - p_correct / p_correct.sum(), atol=1e-6)


def _random_reader_batch(rng, b=4, k=3, length=6, width=3):
  num_spans = len(reader.span_candidates(length, width)[0])
  retriever_BxK = (rng.normal(size=(b, k)) * 2).astype(np.float32)
  spans_BxKxS = (rng.normal(size=(b, k, num_spans)) * 2).astype(np.float32)
  allowed_BxKxS = rng.random((b, k, num_spans)) < 0.6
  allowed_BxKxS[0, 2] = False  # a padded document slot
  correct_BxKxS = rng.random((b, k, num_spans)) < 0.15  # some correct-but-not-allowed entries, which must not count
  correct_BxKxS[1] = False  # a query with no correct span
  correct_BxKxS[0, 0, np.flatnonzero(allowed_BxKxS[0, 0])[0]] = True
  return retriever_BxK, spans_BxKxS, correct_BxKxS, allowed_BxKxS


def test_reader_loss_against_a_brute_force_reference():
  rng = np.random.default_rng(2)
  retriever_BxK, spans_BxKxS, correct_BxKxS, allowed_BxKxS = _random_reader_batch(rng)
  b, k, s = spans_BxKxS.shape
  retriever_terms, reader_terms, oracle = [], [], []
  for q in range(b):
    good = [[bool(correct_BxKxS[q, z, j] and allowed_BxKxS[q, z, j]) for j in range(s)] for z in range(k)]
    docs = [any(row) for row in good]
    if any(docs):
      retriever_terms.append(_reference_marginal(retriever_BxK[q], docs))
    pairs = [(z, j) for z in range(k) for j in range(s) if allowed_BxKxS[q, z, j]]
    joint = [float(retriever_BxK[q, z]) + float(spans_BxKxS[q, z, j]) for z, j in pairs]
    if any(good[z][j] for z, j in pairs):
      reader_terms.append(_reference_marginal(joint, [good[z][j] for z, j in pairs]))
    oracle.append(any(docs))
  assert oracle == [True, False, True, True]
  loss, metrics = reader_loss(retriever_BxK, spans_BxKxS, correct_BxKxS, allowed_BxKxS)
  np.testing.assert_allclose(metrics["retriever_loss"], np.mean(retriever_terms), rtol=1e-5)
  np.testing.assert_allclose(metrics["reader_loss"], np.mean(reader_terms), rtol=1e-5)
  np.testing.assert_allclose(loss, np.mean(retriever_terms) + np.mean(reader_terms), rtol=1e-5)
  assert float(metrics["reader_oracle"]) == 0.75

  def total(r, sp):
    return reader.reader_loss(r, sp, correct_BxKxS, allowed_BxKxS)[0]

  grad_r, grad_s = jax.jit(jax.grad(total, argnums=(0, 1)))(jnp.asarray(retriever_BxK), jnp.asarray(spans_BxKxS))
  assert np.isfinite(grad_r).all() and np.isfinite(grad_s).all()
  assert (np.asarray(grad_r)[1] == 0).all() and (np.asarray(grad_s)[1] == 0).all()  # no correct span: no signal
  assert (np.asarray(grad_s)[~allowed_BxKxS] == 0).all()


def test_best_answer_is_the_brute_force_argmax_and_feeds_the_metrics():
  rng = np.random.default_rng(3)
  retriever_BxK, spans_BxKxS, correct_BxKxS, allowed_BxKxS = _random_reader_batch(rng, b=6, k=4)
  doc_B, span_B = best_answer(retriever_BxK, spans_BxKxS, allowed_BxKxS)
  expected = []
  for q in range(6):
    best, arg = -np.inf, None
    for z in range(4):
      for j in range(spans_BxKxS.shape[-1]):
        score = float(retriever_BxK[q, z]) + float(spans_BxKxS[q, z, j])
        if allowed_BxKxS[q, z, j] and score > best:
          best, arg = score, (z, j)
    expected.append(arg)
  assert list(zip(np.asarray(doc_B).tolist(), np.asarray(span_B).tolist())) == expected
  _, metrics = reader_loss(retriever_BxK, spans_BxKxS, correct_BxKxS, allowed_BxKxS)
  good_BxKxS = correct_BxKxS & allowed_BxKxS
  assert np.isclose(metrics["exact_match"], np.mean([good_BxKxS[q, z, j] for q, (z, j) in enumerate(expected)]))
  top_B = retriever_BxK.argmax(-1)
  assert np.isclose(metrics["retriever_correct"], np.mean([good_BxKxS[q, top_B[q]].any() for q in range(6)]))


def test_prediction_decodes_to_an_exact_match(tokenizer):
  documents = [("Enigma", "a cipher"), ("Bletchley", f"{ANSWER} worked here")]
  ids, types, mask = _joined(tokenizer, "who broke enigma?", documents)
  starts_S, ends_S = reader.span_candidates(ids.shape[-1], 10)
  allowed = reader.document_span_mask(types, mask, starts_S, ends_S, ids_BxL=ids, sep_id=tokenizer.sep_id)
  correct = reader.answer_span_mask(ids, allowed, starts_S, ends_S, reader.tokenize_answers(tokenizer, [ANSWER]))
  span_logits = np.where(correct, 5.0, 0.0).astype(np.float32)  # a reader that has learnt the answer
  doc_B, span_B = best_answer(np.zeros((1, 2), np.float32), span_logits, allowed)
  predicted = reader.answer_text(tokenizer, ids[0, int(doc_B[0])], starts_S[int(span_B[0])], ends_S[int(span_B[0])])
  assert int(doc_B[0]) == 1 and reader.exact_match_score([predicted], [[ANSWER]]) == 1.0


def test_exact_match_normalisation():
  cases = corpora.fanoutqa_answer_cases(max_cases=200)
  assert len(cases) == 200
  for variants, gold in cases:
    assert reader.exact_match_score(list(variants), [[gold]] * len(variants)) == 1.0, (variants, gold)
  ones = [("The Eiffel Tower!", ["eiffel tower"]), ("an Apple", ["apple"]), ("  PARIS. ", ["London", "paris"]),
          ("1,000", ["1000"]), ("rock-and-roll", ["rockandroll"])]
  zeros = [("Paris France", ["Paris"]), ("towers", ["tower"]), ("Lyon", ["Paris", "Marseille"]), ("", ["a cat"])]
  for prediction, answers in ones:
    assert reader.exact_match_score([prediction], [answers]) == 1.0, prediction
  for prediction, answers in zeros:
    assert reader.exact_match_score([prediction], [answers]) == 0.0, prediction
  assert reader.exact_match_score(["paris", "lyon"], [["Paris"], ["Nice"]]) == 0.5
  assert reader.exact_match_score([], []) == 0.0
