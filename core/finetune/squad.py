"""SQuAD v1.1 (Rajpurkar et al. 2016) as span-QA finetuning data: the official JSON files or tfds `squad/v1.1`.

BERT §4.2 / ELECTRA §3.1 finetune on train-v1.1.json and report EM / F1 on dev-v1.1.json (`core.finetune.metrics`).
`write_squad_json` stores any `QaExample`s in the same format (tests, bundled QA exported for other tools).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from core.finetune.examples import QaExample, TaskData, TaskSpec

SQUAD_SPEC = TaskSpec("squad", "span_qa", (), "f1", "squad", "SQuAD v1.1 (Rajpurkar et al. 2016)")


def read_squad_json(path: str | os.PathLike) -> list[QaExample]:
  """SQuAD-format JSON ({'data': [{'paragraphs': [{'context', 'qas': [{'id', 'question', 'answers'}]}]}]})."""
  with open(path, encoding="utf-8") as f:
    data = json.load(f)["data"]
  out = []
  for article in data:
    for paragraph in article["paragraphs"]:
      context = paragraph["context"]
      for qa in paragraph["qas"]:
        answers = tuple(a["text"] for a in qa.get("answers", []))
        start = int(qa["answers"][0]["answer_start"]) if answers else -1
        out.append(QaExample(str(qa["id"]), qa["question"], context, answers, start))
  return out


def write_squad_json(path: str | os.PathLike, examples: Sequence[QaExample], title: str = "") -> None:
  """Writes QaExamples as SQuAD v1.1 JSON (one paragraph per example)."""
  paragraphs = [
    {
      "context": ex.context,
      "qas": [
        {
          "id": ex.qid,
          "question": ex.question,
          "answers": [{"text": ex.answers[0], "answer_start": ex.answer_start}] + [{"text": a} for a in ex.answers[1:]],
        }
      ],
    }
    for ex in examples
  ]
  Path(path).parent.mkdir(parents=True, exist_ok=True)
  Path(path).write_text(json.dumps({"version": "1.1", "data": [{"title": title, "paragraphs": paragraphs}]}))


def load_squad(data_dir: str = "", tfds_dir: str = "") -> TaskData:
  """train-v1.1.json / dev-v1.1.json from `data_dir`, else tfds `squad` (train / validation)."""
  if data_dir:
    train = read_squad_json(Path(data_dir) / "train-v1.1.json")
    dev = read_squad_json(Path(data_dir) / "dev-v1.1.json")
    return TaskData(SQUAD_SPEC, train, dev)
  from core.data import tfds_builders  # pylint: disable=g-import-not-at-top

  def convert(source) -> list[QaExample]:
    out = []
    for ex in source:
      texts, starts = list(ex["answers"]["text"]), list(ex["answers"]["answer_start"])
      out.append(
        QaExample(str(ex["id"]), ex["question"], ex["context"], tuple(texts), int(starts[0]) if starts else -1)
      )
    return out

  train = convert(tfds_builders.paper_dataset("squad", "train", tfds_dir or None))
  dev = convert(tfds_builders.paper_dataset("squad", "validation", tfds_dir or None))
  return TaskData(SQUAD_SPEC, train, dev)
