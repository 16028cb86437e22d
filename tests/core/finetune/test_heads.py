"""Finetuning heads, losses, span decoding and metrics, against hand computations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from core import bert as bert_lib
from core.finetune import heads, metrics

CONFIG = bert_lib.BertConfig(
  vocab_size=50, hidden_size=16, num_layers=3, num_heads=2, intermediate_size=32, embedding_size=8,
  max_position_embeddings=32,
)  # fmt: skip
B, L = 3, 10


def _inputs():
  ids = jax.random.randint(jax.random.key(0), (B, L), 1, 50)
  mask = jnp.ones((B, L), jnp.int32).at[0, 7:].set(0)
  return ids, jnp.zeros((B, L), jnp.int32), mask


@pytest.mark.parametrize(
  "task_type,shape", [("classification", (B, 4)), ("regression", (B,)), ("tagging", (B, L, 4)), ("span_qa", None)]
)
def test_head_shapes_and_param_tree(task_type, shape):
  model = heads.FinetuneModel(CONFIG, task_type, num_labels=4)
  ids, types, mask = _inputs()
  params = model.init(jax.random.key(1), ids, types, mask)["params"]
  assert set(params) == {"encoder", "head"}
  assert set(params["encoder"]) == {"embeddings", "embeddings_project", "layer_0", "layer_1", "layer_2"}
  out = model.apply({"params": params}, ids, types, mask, deterministic=False, rngs={"dropout": jax.random.key(2)})
  if task_type == "span_qa":
    assert out[0].shape == out[1].shape == (B, L)
  else:
    assert out.shape == shape
  if task_type == "classification":  # HF ElectraClassificationHead: dense(H) then out_proj(K)
    assert params["head"]["dense"]["kernel"].shape == (16, 16)
    assert params["head"]["out_proj"]["kernel"].shape == (16, 4)


def test_linear_classifier_is_one_dense_on_cls():
  """classifier='linear': logits = h_[CLS]·W + b, the head's only parameters (H·K + K); an unknown shape fails."""
  model = heads.FinetuneModel(CONFIG, "classification", num_labels=4, classifier="linear")
  ids, types, mask = _inputs()
  params = model.init(jax.random.key(1), ids, types, mask)["params"]
  assert set(params["head"]) == {"out_proj"} and params["head"]["out_proj"]["kernel"].shape == (16, 4)
  hidden_BxLxH = bert_lib.BertEncoder(CONFIG).apply({"params": params["encoder"]}, ids, types, mask)
  out_proj = params["head"]["out_proj"]
  by_hand = hidden_BxLxH[:, 0] @ out_proj["kernel"] + out_proj["bias"]
  np.testing.assert_allclose(model.apply({"params": params}, ids, types, mask), by_hand, rtol=1e-5, atol=1e-6)
  # (no '$': under pytest jax appends a note on its filtered traceback)
  with pytest.raises(ValueError, match=r"^classifier: unknown value 'deep' \(allowed: mlp, linear\)"):
    heads.FinetuneModel(CONFIG, "classification", classifier="deep").init(jax.random.key(1), ids, types, mask)


def test_losses_are_finite_scalars_and_tagging_ignores_masked_tokens():
  logits = jax.random.normal(jax.random.key(0), (B, 4))
  loss, aux = heads.classification_loss(logits, jnp.array([0, 1, 3]))
  assert loss.shape == () and np.isfinite(loss) and 0 <= aux["accuracy"] <= 1
  loss, _ = heads.regression_loss(jnp.array([1.0, 2.0, 3.0]), jnp.array([1.0, 2.0, 5.0]))
  np.testing.assert_allclose(loss, 4.0 / 3)
  tag_logits = jax.random.normal(jax.random.key(1), (B, L, 3))
  labels = jnp.full((B, L), heads.IGNORE).at[:, 1:4].set(1)
  loss_a, _ = heads.tagging_loss(tag_logits, labels)
  by_hand = -jax.nn.log_softmax(tag_logits)[:, 1:4, 1].mean()
  np.testing.assert_allclose(loss_a, by_hand, rtol=1e-6)
  start, end = jax.random.normal(jax.random.key(2), (2, B, L))
  mask = jnp.ones((B, L), jnp.int32).at[:, 8:].set(0)
  loss, aux = heads.span_loss(start, end, jnp.array([1, 2, 3]), jnp.array([2, 2, 5]), mask)
  masked = lambda x: jax.nn.log_softmax(jnp.where(mask > 0, x, -1e9))
  by_hand = -(masked(start)[jnp.arange(B), jnp.array([1, 2, 3])] + masked(end)[jnp.arange(B), jnp.array([2, 2, 5])])
  np.testing.assert_allclose(loss, by_hand.mean() / 2, rtol=1e-6)


def test_best_span_picks_the_best_valid_span():
  start = np.full((2, 8), -5.0, np.float32)
  end = np.full((2, 8), -5.0, np.float32)
  allowed = np.zeros((2, 8), np.int32)
  allowed[:, 3:7] = 1  # context tokens 3..6
  # Row 0: the global maxima are outside the context (1) or give end < start (start 6, end 4); best valid: (4, 4).
  start[0, [1, 4, 6]] = [9.0, 3.0, 4.0]
  end[0, [1, 4, 5]] = [9.0, 2.5, 2.0]
  # Row 1: start 3 + end 6 scores highest but is 4 tokens long; with max_answer_length 3 the best is (5, 6).
  start[1, [3, 5]] = [4.0, 2.0]
  end[1, 6] = 4.0
  s, e, score = heads.best_span(jnp.asarray(start), jnp.asarray(end), jnp.asarray(allowed), max_answer_length=3)
  assert s.tolist() == [4, 5] and e.tolist() == [4, 6]
  np.testing.assert_allclose(score, [5.5, 6.0])
  s, e, _ = heads.best_span(jnp.asarray(start), jnp.asarray(end), jnp.asarray(allowed), max_answer_length=4)
  assert (int(s[1]), int(e[1])) == (3, 6)


def test_matthews_on_a_hand_counted_confusion_matrix():
  # TP 6, TN 3, FP 1, FN 2: (6·3 − 1·2) / sqrt(7·8·4·5) = 16 / sqrt(1120)
  labels = [1] * 6 + [0] * 3 + [0] + [1] * 2
  preds = [1] * 6 + [0] * 3 + [1] + [0] * 2
  assert metrics.matthews_corrcoef(labels, preds) == pytest.approx(16 / np.sqrt(1120))
  assert metrics.binary_f1(labels, preds) == pytest.approx(12 / 15)  # 2TP / (2TP + FP + FN)
  assert metrics.accuracy(labels, preds) == pytest.approx(9 / 12)
  assert metrics.matthews_corrcoef([0, 1, 0, 1], [1, 1, 1, 1]) == 0.0  # constant prediction
  # 3 classes, confusion [[2,1,0],[0,2,0],[1,0,1]]: c=5, s=7, t=(3,2,2), p=(3,3,1) → (35−17)/sqrt((49−19)(49−17))
  labels3 = [0, 0, 0, 1, 1, 2, 2]
  preds3 = [0, 0, 1, 1, 1, 0, 2]
  assert metrics.matthews_corrcoef(labels3, preds3) == pytest.approx(18 / np.sqrt(30 * 32))


def test_correlations_with_ties():
  x, y = [1.0, 2.0, 2.0, 4.0], [1.0, 3.0, 2.0, 4.0]
  assert metrics.pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
  # ranks x: 1, 2.5, 2.5, 4; y: 1, 3, 2, 4 → Pearson of ranks
  rx, ry = np.array([1, 2.5, 2.5, 4]), np.array([1, 3, 2, 4.0])
  expected = np.sum((rx - rx.mean()) * (ry - ry.mean())) / np.sqrt(
    np.sum((rx - rx.mean()) ** 2) * np.sum((ry - 2.5) ** 2)
  )
  assert metrics.spearman(x, y) == pytest.approx(expected)
  assert metrics.spearman([1, 2, 3, 4], [10, 20, 30, 1000]) == pytest.approx(1.0)


def test_squad_and_token_scores():
  assert metrics.normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
  assert metrics.exact_match("the Algiers", ["Algiers"]) == 1.0
  assert metrics.answer_f1("capital Algiers city", ["Algiers"]) == pytest.approx(2 * (1 / 3) * 1 / (1 / 3 + 1))
  assert metrics.squad_scores(["Hanoi", "Paris"], [["Hanoi"], ["Rome"]]) == {"exact_match": 0.5, "f1": 0.5}
  scores = metrics.token_f1([0, 1, 2, 0, 1], [0, 1, 1, 1, 0])  # tp 1, predicted 3, gold 3
  assert scores["token_precision"] == pytest.approx(1 / 3) and scores["token_f1"] == pytest.approx(1 / 3)
