"""Finetuning tasks: a registry name → (train, dev) examples, the task type, label names and the metric to report.

ELECTRA is evaluated on GLUE (Wang et al. 2018) and SQuAD 1.1/2.0 (paper §3.1); the metrics follow §3.1: Matthews
correlation for CoLA, Spearman for STS-B, accuracy for the other GLUE tasks, EM/F1 for SQuAD. The patent's last
step (US 2021/0089724: "the encoder is finetuned (classification, QA with start/end vectors, NER)") is covered by
three task types plus regression.

Sources:
- GLUE: a directory of GLUE-format TSVs (`data_dir`: train.tsv / dev.tsv with the columns of `GLUE_TSV`, as written
  by GLUE's download script) or, when no `data_dir` is given, tfds `glue/<task>` through `core.data.paper_dataset`
  (needs the data prepared as array_record; `tfds.testing.mock_data` in tests).
- SQuAD v1.1: `data_dir` with train-v1.1.json / dev-v1.1.json, else tfds `squad/v1.1`.
- Bundled real data (offline, small; `electra_jax.tasks_bundled`): polarity, newsgroups, wordnet_pos, capital_qa,
  wiki_links. Generated (`electra_jax.tasks_generated`): negation (SST-2 layout) and word_order (CoLA layout), written as
  GLUE TSV and read back here.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


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
  task_type: str  # classification | regression | span_qa | tagging
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


@dataclasses.dataclass(frozen=True)
class GlueFormat:
  """Where a GLUE TSV keeps its texts and label: column names (header row) or indices (CoLA has no header)."""

  text_columns: tuple[str | int, ...]
  label_column: str | int
  labels: tuple[str, ...] | None  # None = regression
  header: bool = True
  dev_file: str = "dev.tsv"


# GLUE's TSV conventions (GLUE download script; ELECTRA `finetune/classification/classification_tasks.py`).
GLUE_TSV: dict[str, GlueFormat] = {
  "cola": GlueFormat((3,), 1, ("0", "1"), header=False),
  "sst2": GlueFormat(("sentence",), "label", ("0", "1")),
  "mrpc": GlueFormat(("#1 String", "#2 String"), "Quality", ("0", "1")),
  "qqp": GlueFormat(("question1", "question2"), "is_duplicate", ("0", "1")),
  "stsb": GlueFormat(("sentence1", "sentence2"), "score", None),
  "mnli": GlueFormat(
    ("sentence1", "sentence2"), "gold_label", ("contradiction", "entailment", "neutral"), True, "dev_matched.tsv"
  ),
  "qnli": GlueFormat(("question", "sentence"), "label", ("entailment", "not_entailment")),
  "rte": GlueFormat(("sentence1", "sentence2"), "label", ("entailment", "not_entailment")),
}
# tfds `glue/<task>`: (text features, label names in tfds's integer order, dev split).
GLUE_TFDS: dict[str, tuple[tuple[str, ...], tuple[str, ...] | None, str]] = {
  "cola": (("sentence",), ("unacceptable", "acceptable"), "validation"),
  "sst2": (("sentence",), ("negative", "positive"), "validation"),
  "mrpc": (("sentence1", "sentence2"), ("not_equivalent", "equivalent"), "validation"),
  "qqp": (("question1", "question2"), ("not_duplicate", "duplicate"), "validation"),
  "stsb": (("sentence1", "sentence2"), None, "validation"),
  "mnli": (("premise", "hypothesis"), ("entailment", "neutral", "contradiction"), "validation_matched"),
  "qnli": (("question", "sentence"), ("entailment", "not_entailment"), "validation"),
  "rte": (("sentence1", "sentence2"), ("entailment", "not_entailment"), "validation"),
}
# ELECTRA §3.1: Spearman for STS, Matthews for CoLA, accuracy for the rest (F1 is reported too for MRPC / QQP).
_GLUE_METRIC = {"cola": "mcc", "stsb": "spearman"}


def glue_spec(task: str, labels: tuple[str, ...] | None = None) -> TaskSpec:
  fmt = GLUE_TSV[task]
  names = fmt.labels if labels is None else labels
  return TaskSpec(
    name=task,
    task_type="regression" if fmt.labels is None else "classification",
    labels=() if fmt.labels is None else tuple(names),
    metric=_GLUE_METRIC.get(task, "accuracy"),
    source="glue",
    description=f"GLUE {task}",
  )


def read_glue_tsv(path: str | os.PathLike, fmt: GlueFormat, *, skip_unlabelled: bool = True) -> list[TextExample]:
  """Reads one GLUE-format TSV (no quoting, as GLUE's files) into TextExamples; one-line errors name the file."""
  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"GLUE TSV not found: {path}")
  with open(path, encoding="utf-8", newline="") as f:
    rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
  if fmt.header:
    if not rows:
      raise ValueError(f"{path}: empty file (expected a header row)")
    header, rows = rows[0], rows[1:]
    try:
      text_idx = [header.index(c) for c in fmt.text_columns]
      label_idx = header.index(fmt.label_column)
    except ValueError:
      raise ValueError(f"{path}: header {header} lacks columns {list(fmt.text_columns) + [fmt.label_column]}") from None
  else:
    text_idx, label_idx = list(fmt.text_columns), int(fmt.label_column)
  out = []
  width = max(text_idx + [label_idx]) + 1
  for line, row in enumerate(rows, start=2 if fmt.header else 1):
    if len(row) < width:
      if skip_unlabelled:
        continue
      raise ValueError(f"{path}:{line}: {len(row)} columns, need {width}")
    raw = row[label_idx].strip()
    if fmt.labels is None:
      label: int | float = float(raw)
    elif raw in fmt.labels:
      label = fmt.labels.index(raw)
    elif skip_unlabelled and raw in ("", "-", "-1"):
      continue
    else:
      raise ValueError(f"{path}:{line}: label {raw!r} not in {list(fmt.labels)}")
    out.append(TextExample(tuple(row[i] for i in text_idx), label))
  return out


def write_glue_tsv(path: str | os.PathLike, columns: Sequence[str] | None, rows: Sequence[Sequence[Any]]) -> None:
  """Writes a GLUE-format TSV with a header row (none when `columns` is None, as CoLA); tabs and newlines inside
  fields become spaces."""
  clean = lambda v: " ".join(str(v).replace("\t", " ").split())
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_suffix(path.suffix + ".tmp")
  with open(tmp, "w", encoding="utf-8", newline="") as f:
    if columns is not None:
      f.write("\t".join(columns) + "\n")
    f.writelines("\t".join(clean(v) for v in row) + "\n" for row in rows)
  os.replace(tmp, path)


def load_glue_tsv_dir(task: str, data_dir: str | os.PathLike) -> TaskData:
  fmt = GLUE_TSV[task]
  train = read_glue_tsv(Path(data_dir) / "train.tsv", fmt)
  dev = read_glue_tsv(Path(data_dir) / fmt.dev_file, fmt)
  return TaskData(glue_spec(task), train, dev)


def _tfds_examples(source, text_features: Sequence[str], regression: bool) -> list[TextExample]:
  out = []
  for ex in source:
    label = ex["label"]
    if not regression and int(label) < 0:  # test splits carry label -1
      continue
    out.append(TextExample(tuple(str(ex[k]) for k in text_features), float(label) if regression else int(label)))
  return out


def load_glue_tfds(task: str, tfds_dir: str | None = None) -> TaskData:
  """GLUE from tfds `glue/<task>` (core.data.paper_dataset; train + the dev split of GLUE_TFDS)."""
  from core.data import tfds_builders  # pylint: disable=g-import-not-at-top

  features, labels, dev_split = GLUE_TFDS[task]
  regression = labels is None
  train = _tfds_examples(tfds_builders.paper_dataset(f"glue/{task}", "train", tfds_dir or None), features, regression)
  dev = _tfds_examples(tfds_builders.paper_dataset(f"glue/{task}", dev_split, tfds_dir or None), features, regression)
  return TaskData(glue_spec(task, labels), train, dev)


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


def _glue_loader(task: str) -> Callable[..., TaskData]:
  def load(data_dir: str = "", tfds_dir: str = "", **_: Any) -> TaskData:
    return load_glue_tsv_dir(task, data_dir) if data_dir else load_glue_tfds(task, tfds_dir)

  return load


def _squad_loader(data_dir: str = "", tfds_dir: str = "", **_: Any) -> TaskData:
  return load_squad(data_dir, tfds_dir)


def _bundled_loader(name: str) -> Callable[..., TaskData]:
  def load(seed: int = 0, train_size: int = 0, dev_size: int = 0, **_: Any) -> TaskData:
    from electra_jax import tasks_bundled  # pylint: disable=g-import-not-at-top

    sizes = {k: v for k, v in (("train_size", train_size), ("dev_size", dev_size)) if v}
    return tasks_bundled.LOADERS[name](seed=seed, **sizes)

  return load


def _generated_loader(name: str, glue_layout: str, labels: tuple[str, ...], description: str):
  """A generated task: `tasks_generated.write_<name>_tsv` writes it as GLUE TSV in the `glue_layout` task's layout
  (once per seed and size), and it is read back with that task's reader; scored with that task's metric."""

  def load(
    data_dir: str = "", cache_dir: str = "", seed: int = 0, train_size: int = 0, dev_size: int = 0, **_: Any
  ) -> TaskData:
    from electra_jax import tasks_generated  # pylint: disable=g-import-not-at-top

    sizes = {k: v for k, v in (("train_size", train_size), ("dev_size", dev_size)) if v}
    directory = data_dir or os.path.join(cache_dir or ".", f"{name}_seed{seed}")
    getattr(tasks_generated, f"write_{name}_tsv")(directory, seed=seed, **sizes)
    data = load_glue_tsv_dir(glue_layout, directory)
    metric = _GLUE_METRIC.get(glue_layout, "accuracy")
    return TaskData(TaskSpec(name, "classification", labels, metric, "generated", description), data.train, data.dev)

  return load


GLUE_NAMES = tuple(GLUE_TSV)
BUNDLED_NAMES = ("polarity", "newsgroups", "wordnet_pos", "capital_qa", "wiki_links")
GENERATED_NAMES = ("negation", "word_order")
TASKS: dict[str, Callable[..., TaskData]] = {
  **{name: _glue_loader(name) for name in GLUE_NAMES},
  "squad": _squad_loader,
  **{name: _bundled_loader(name) for name in BUNDLED_NAMES},
  "negation": _generated_loader(
    "negation", "sst2", ("negative", "positive"), "sentiment templates; negation flips the adjective's polarity"
  ),
  "word_order": _generated_loader(
    "word_order", "cola", ("unacceptable", "acceptable"), "WordNet usage examples, as written or with 2 words swapped"
  ),
}


def subsample(examples: list[Any], size: int, seed: int) -> list[Any]:
  """A seeded random subset of `size` examples in their original order (all of them when size <= 0 or >= N)."""
  if size <= 0 or size >= len(examples):
    return list(examples)
  import numpy as np  # pylint: disable=g-import-not-at-top

  keep = np.sort(np.random.default_rng(seed).permutation(len(examples))[:size])
  return [examples[i] for i in keep]


def load_task(
  name: str,
  *,
  seed: int = 0,
  data_dir: str = "",
  tfds_dir: str = "",
  cache_dir: str = "",
  train_size: int = 0,
  dev_size: int = 0,
) -> TaskData:
  """(spec, train, dev) of a registered task.

  `seed` fixes the split / subsample of bundled and generated sets (not the finetuning seed); `train_size` /
  `dev_size` > 0 cap the splits: GLUE / SQuAD are subsampled with `seed`; bundled / generated loaders size their own
  splits (capital_qa counts questions, each train question giving several contexts).
  An unknown name raises a one-line ValueError listing the registered tasks.
  """
  if name not in TASKS:
    raise ValueError(f"unknown task {name!r} (allowed: {', '.join(TASKS)})")
  data = TASKS[name](
    seed=seed, data_dir=data_dir, tfds_dir=tfds_dir, cache_dir=cache_dir, train_size=train_size, dev_size=dev_size
  )
  if data.spec.source in ("glue", "squad"):  # bundled / generated loaders size their splits themselves
    data.train = subsample(data.train, train_size, seed)
    data.dev = subsample(data.dev, dev_size, seed + 1)
  if not data.train or not data.dev:
    raise ValueError(f"task {name!r}: empty split (train {len(data.train)}, dev {len(data.dev)} examples)")
  return data
