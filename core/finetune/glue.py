"""GLUE (Wang et al. 2018) as finetuning data: GLUE-format TSV directories or tfds `glue/<task>`.

The metric per task follows ELECTRA §3.1: Matthews correlation for CoLA, Spearman for STS-B, accuracy for the
other GLUE tasks (F1 of the positive class is reported alongside for MRPC / QQP, GLUE's own convention).
- TSV: a directory with train.tsv / dev.tsv in the columns of `GLUE_TSV`, as written by GLUE's download script.
- tfds: `glue/<task>` through `core.data.paper_dataset` (needs the data prepared as array_record;
  `tfds.testing.mock_data` in tests).
`write_glue_tsv` is also how generated tasks are stored, so they are read back through the same reader.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.finetune.examples import TaskData, TaskSpec, TextExample


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
GLUE_NAMES = tuple(GLUE_TSV)
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
# ELECTRA §3.1: Spearman for STS, Matthews for CoLA, accuracy for the rest.
GLUE_METRIC = {"cola": "mcc", "stsb": "spearman"}


def glue_spec(task: str, labels: tuple[str, ...] | None = None) -> TaskSpec:
  fmt = GLUE_TSV[task]
  names = fmt.labels if labels is None else labels
  return TaskSpec(
    name=task,
    task_type="regression" if fmt.labels is None else "classification",
    labels=() if fmt.labels is None else tuple(names),
    metric=GLUE_METRIC.get(task, "accuracy"),
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
