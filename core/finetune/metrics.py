"""Finetuning metrics in numpy: the scores ELECTRA reports (paper §3.1 and Appendix A, after GLUE / SQuAD).

ELECTRA §3.1: "we report Spearman correlation for STS, Matthews correlation for CoLA, and accuracy for the other
GLUE tasks"; SQuAD is scored by exact match and token F1 (Rajpurkar et al. 2016 §5, the official evaluate-v1.1
script's normalisation). F1 of the positive class is reported alongside accuracy for MRPC and QQP (GLUE's own
convention, Wang et al. 2018 §3). Tagging is scored by token-level micro F1 over the non-"O" tags.

All functions take host arrays and return Python floats; none needs sklearn or scipy.
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Sequence

import numpy as np


def accuracy(labels_N, predictions_N) -> float:
  labels_N, predictions_N = np.asarray(labels_N), np.asarray(predictions_N)
  return float(np.mean(labels_N == predictions_N)) if labels_N.size else 0.0


def matthews_corrcoef(labels_N, predictions_N) -> float:
  """Matthews correlation (Matthews 1975; Gorodkin 2004 for K classes), the CoLA metric.

  From the K x K confusion matrix C: (c·s − Σ_k p_k t_k) / sqrt((s² − Σ p_k²)(s² − Σ t_k²)), with c = trace(C),
  s = N, p_k = predicted count of class k, t_k = true count. 0 when a denominator vanishes (constant predictions).
  For two classes this is (TP·TN − FP·FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)).
  """
  labels_N, predictions_N = np.asarray(labels_N).astype(np.int64), np.asarray(predictions_N).astype(np.int64)
  classes = np.union1d(labels_N, predictions_N)
  index = {c: i for i, c in enumerate(classes)}
  confusion_KxK = np.zeros((len(classes), len(classes)), np.float64)
  for t, p in zip(labels_N, predictions_N, strict=True):
    confusion_KxK[index[t], index[p]] += 1
  true_K, pred_K = confusion_KxK.sum(axis=1), confusion_KxK.sum(axis=0)
  correct, total = np.trace(confusion_KxK), confusion_KxK.sum()
  numerator = correct * total - np.dot(pred_K, true_K)
  denominator = np.sqrt((total**2 - np.dot(pred_K, pred_K)) * (total**2 - np.dot(true_K, true_K)))
  return float(numerator / denominator) if denominator > 0 else 0.0


def binary_f1(labels_N, predictions_N, positive: int = 1) -> float:
  """F1 of the positive class: 2·TP / (2·TP + FP + FN) (MRPC, QQP)."""
  labels_N, predictions_N = np.asarray(labels_N), np.asarray(predictions_N)
  tp = np.sum((predictions_N == positive) & (labels_N == positive))
  fp = np.sum((predictions_N == positive) & (labels_N != positive))
  fn = np.sum((predictions_N != positive) & (labels_N == positive))
  return float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn else 0.0


def pearson(x_N, y_N) -> float:
  x_N, y_N = np.asarray(x_N, np.float64), np.asarray(y_N, np.float64)
  xc_N, yc_N = x_N - x_N.mean(), y_N - y_N.mean()
  denominator = np.sqrt(np.sum(xc_N**2) * np.sum(yc_N**2))
  return float(np.sum(xc_N * yc_N) / denominator) if denominator > 0 else 0.0


def _ranks(x_N) -> np.ndarray:
  """1-based ranks with ties given their average rank (as scipy.stats.rankdata 'average')."""
  x_N = np.asarray(x_N, np.float64)
  order_N = np.argsort(x_N, kind="mergesort")
  ranks_N = np.empty(len(x_N), np.float64)
  sorted_N = x_N[order_N]
  start = 0
  while start < len(x_N):
    end = start
    while end + 1 < len(x_N) and sorted_N[end + 1] == sorted_N[start]:
      end += 1
    ranks_N[order_N[start : end + 1]] = (start + end) / 2 + 1
    start = end + 1
  return ranks_N


def spearman(x_N, y_N) -> float:
  """Spearman's rho = Pearson correlation of the (tie-averaged) ranks; the STS-B score in ELECTRA §3.1."""
  return pearson(_ranks(x_N), _ranks(y_N))


# SQuAD v1.1 official evaluation (Rajpurkar et al. 2016): lower-case, drop punctuation and a/an/the, squash spaces.
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
  text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
  return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, answers: Sequence[str]) -> float:
  return float(max((normalize_answer(prediction) == normalize_answer(a) for a in answers), default=False))


def answer_f1(prediction: str, answers: Sequence[str]) -> float:
  """Max over gold answers of the bag-of-tokens F1 between normalised prediction and answer."""
  best = 0.0
  predicted = normalize_answer(prediction).split()
  for answer in answers:
    gold = normalize_answer(answer).split()
    common = sum((collections.Counter(predicted) & collections.Counter(gold)).values())
    if not predicted or not gold:
      best = max(best, float(predicted == gold))
    elif common:
      precision, recall = common / len(predicted), common / len(gold)
      best = max(best, 2 * precision * recall / (precision + recall))
  return best


def squad_scores(predictions: Sequence[str], answers: Sequence[Sequence[str]]) -> dict[str, float]:
  """{'exact_match', 'f1'} as fractions, averaged over examples (the evaluate-v1.1 script reports x100)."""
  if not predictions:
    return {"exact_match": 0.0, "f1": 0.0}
  em = [exact_match(p, a) for p, a in zip(predictions, answers, strict=True)]
  f1 = [answer_f1(p, a) for p, a in zip(predictions, answers, strict=True)]
  return {"exact_match": float(np.mean(em)), "f1": float(np.mean(f1))}


def token_f1(labels_N, predictions_N, outside: int = 0) -> dict[str, float]:
  """Token-level micro precision / recall / F1 over tags != `outside` (a token counts when its tag is exact)."""
  labels_N, predictions_N = np.asarray(labels_N), np.asarray(predictions_N)
  tp = float(np.sum((predictions_N == labels_N) & (labels_N != outside)))
  n_pred, n_gold = float(np.sum(predictions_N != outside)), float(np.sum(labels_N != outside))
  precision = tp / n_pred if n_pred else 0.0
  recall = tp / n_gold if n_gold else 0.0
  f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
  return {"token_precision": precision, "token_recall": recall, "token_f1": f1}


def classification_scores(labels_N, predictions_N, num_labels: int) -> dict[str, float]:
  """accuracy, Matthews correlation and (for two classes) positive-class F1."""
  out = {"accuracy": accuracy(labels_N, predictions_N), "mcc": matthews_corrcoef(labels_N, predictions_N)}
  if num_labels == 2:
    out["f1"] = binary_f1(labels_N, predictions_N)
  return out


def regression_scores(labels_N, predictions_N) -> dict[str, float]:
  return {"pearson": pearson(labels_N, predictions_N), "spearman": spearman(labels_N, predictions_N)}
