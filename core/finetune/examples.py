"""The finetuning data model every loader returns and every featuriser reads: examples, task spec, splits.

Three example kinds cover the task types of BERT §4 and the ELECTRA patent's last step (US 2021/0089724: "the
encoder is finetuned (classification, QA with start/end vectors, NER)"): text (classification, regression), span
QA (SQuAD) and tagging (NER-style, one tag per word).
"""

from __future__ import annotations

import dataclasses
from typing import Any

TASK_TYPES = ("classification", "regression", "span_qa", "tagging")


@dataclasses.dataclass(frozen=True)
class TextExample:
  """One or two texts and an integer class (classification) or a float (regression)."""

  texts: tuple[str, ...]
  label: int | float


@dataclasses.dataclass(frozen=True)
class QaExample:
  """SQuAD-style: the answer is a span of `context`; `answer_start` is the char offset of `answers[0]` (-1 unknown)."""

  qid: str
  question: str
  context: str
  answers: tuple[str, ...]
  answer_start: int


@dataclasses.dataclass(frozen=True)
class TaggingExample:
  """Whitespace words with one tag id per word."""

  words: tuple[str, ...]
  tags: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class TaskSpec:
  name: str
  task_type: str  # one of TASK_TYPES
  labels: tuple[str, ...]  # class / tag names; () for regression and span QA
  metric: str  # the reported score: accuracy | mcc | spearman | f1 | token_f1
  source: str  # glue | squad | bundled | generated
  description: str = ""

  @property
  def num_labels(self) -> int:
    return max(1, len(self.labels))


@dataclasses.dataclass
class TaskData:
  spec: TaskSpec
  train: list[Any]
  dev: list[Any]
