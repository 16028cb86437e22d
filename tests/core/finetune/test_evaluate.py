"""Dev scoring: batched prediction with a padded last batch, and `score` per task type against hand computations."""

import numpy as np
import pytest

from core.finetune import evaluate, features
from core.finetune.examples import QaExample, TaggingExample, TaskSpec


def test_predict_all_pads_the_last_batch_and_keeps_row_order():
  ids_NxL = np.arange(5 * 3, dtype=np.int32).reshape(5, 3)
  feats = features.Features({"input_ids": ids_NxL, "token_type_ids": 0 * ids_NxL, "attention_mask": 1 + 0 * ids_NxL},
                            np.zeros(5, np.int32))  # fmt: skip
  shapes = []

  def predict(params, batch):
    shapes.append(batch["input_ids"].shape)
    return batch["input_ids"][:, 0] * params

  out = evaluate.predict_all(predict, 2, feats, batch_size=2)
  assert out.tolist() == [0, 6, 12, 18, 24] and shapes == [(2, 3)] * 3  # one compiled shape, padding dropped
  assert evaluate.predict_all(predict, 1, feats, batch_size=64).tolist() == [0, 3, 6, 9, 12]
  assert shapes[3:] == [(5, 3)]  # fewer rows than a batch: one batch of 5, not 64 mostly padding


def test_score_of_regression_and_classification():
  spec = TaskSpec("stsb", "regression", (), "spearman", "glue")
  feats = features.Features({}, np.array([1.0, 2.0, 3.0, 4.0], np.float32))
  out = evaluate.score(spec, [None] * 4, feats, np.array([0.1, 0.3, 0.2, 0.9]))
  assert out["spearman"] == pytest.approx(0.8) and out["score"] == pytest.approx(80.0)  # ranks 1,3,2,4 vs 1,2,3,4
  spec = TaskSpec("cola", "classification", ("0", "1"), "mcc", "glue")
  feats = features.Features({}, np.array([1, 1, 0, 0]))
  out = evaluate.score(spec, [None] * 4, feats, np.array([1, 0, 0, 0]))
  assert out["accuracy"] == 0.75 and out["score"] == pytest.approx(100 * 1 / np.sqrt(3))  # MCC: 2 / sqrt(12)


def test_score_of_span_qa_and_tagging_reads_words_back():
  spec = TaskSpec("qa", "span_qa", (), "f1", "bundled")
  qa = [QaExample("a", "q?", "Hanoi: city", ("Hanoi",), 0), QaExample("b", "q?", "the big Rome", ("Rome",), 8)]
  meta = {"example": [0, 1], "token_to_word": [[-1, -1, 0, 1], [-1, -1, 0, 1, 2]],
          "words": [["Hanoi:", "city"], ["the", "big", "Rome"]]}  # fmt: skip
  out = evaluate.score(spec, qa, features.Features({}, np.zeros((2, 2)), meta), np.array([[2, 3], [3, 4]]))
  assert out["exact_match"] == 0.0 and out["f1"] == pytest.approx((2 / 3 + 2 / 3) / 2)  # 'hanoi city', 'big rome'
  spec = TaskSpec("ner", "tagging", ("O", "B", "I"), "token_f1", "bundled")
  tagged = [TaggingExample(("a", "b", "c"), (1, 2, 2))]  # word 'c' was truncated away: predicted 'O'
  meta = {"first_piece": [[1, 3]], "num_words": [3]}
  out = evaluate.score(spec, tagged, features.Features({}, np.zeros((1, 6)), meta), np.array([[0, 1, 0, 2, 0, 0]]))
  assert out["accuracy"] == pytest.approx(2 / 3)  # gold B I I vs predicted B I O (read at the first pieces 1, 3)
  assert (out["token_precision"], out["token_recall"]) == (1.0, pytest.approx(2 / 3)) and out["score"] == 80.0
