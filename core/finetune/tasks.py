"""The finetuning task registry: a name → (train, dev) examples, the task type, label names and the metric.

ELECTRA is evaluated on GLUE (Wang et al. 2018) and SQuAD 1.1 (paper §3.1) with the metrics of §3.1; the patent's
last step (US 2021/0089724: "the encoder is finetuned (classification, QA with start/end vectors, NER)") is covered
by three task types plus regression. Sources:
- GLUE (`core.finetune.glue`): a directory of GLUE-format TSVs (`data_dir`), else tfds `glue/<task>`.
- SQuAD v1.1 (`core.finetune.squad`): `data_dir` with train-v1.1.json / dev-v1.1.json, else tfds `squad/v1.1`.
- Bundled real data (offline, small; `core.finetune.tasks_bundled`): polarity, newsgroups, wordnet_pos, capital_qa,
  wiki_links. Generated (`core.finetune.tasks_generated`): negation (SST-2 layout) and word_order (CoLA layout),
  written as GLUE TSV and read back through the GLUE reader.
This module imports the loaders; they import only `examples` / `glue`, never the registry.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from core.finetune import glue, squad, tasks_bundled, tasks_generated
from core.finetune.examples import TaskData, TaskSpec

GLUE_NAMES = glue.GLUE_NAMES
BUNDLED_NAMES = tuple(tasks_bundled.LOADERS)
GENERATED_NAMES = ("negation", "word_order")


def _glue_loader(task: str) -> Callable[..., TaskData]:
  def load(data_dir: str = "", tfds_dir: str = "", **_: Any) -> TaskData:
    return glue.load_glue_tsv_dir(task, data_dir) if data_dir else glue.load_glue_tfds(task, tfds_dir)

  return load


def _squad_loader(data_dir: str = "", tfds_dir: str = "", **_: Any) -> TaskData:
  return squad.load_squad(data_dir, tfds_dir)


def _bundled_loader(name: str) -> Callable[..., TaskData]:
  def load(seed: int = 0, train_size: int = 0, dev_size: int = 0, **_: Any) -> TaskData:
    sizes = {k: v for k, v in (("train_size", train_size), ("dev_size", dev_size)) if v}
    return tasks_bundled.LOADERS[name](seed=seed, **sizes)

  return load


def _generated_loader(name: str, glue_layout: str, labels: tuple[str, ...], description: str):
  """A generated task: `tasks_generated.WRITERS[name]` writes it as GLUE TSV in the `glue_layout` task's layout
  (once per seed and size), and it is read back with that task's reader; scored with that task's metric."""

  def load(
    data_dir: str = "", cache_dir: str = "", seed: int = 0, train_size: int = 0, dev_size: int = 0, **_: Any
  ) -> TaskData:
    sizes = {k: v for k, v in (("train_size", train_size), ("dev_size", dev_size)) if v}
    directory = data_dir or os.path.join(cache_dir or ".", f"{name}_seed{seed}")
    tasks_generated.WRITERS[name](directory, seed=seed, **sizes)
    data = glue.load_glue_tsv_dir(glue_layout, directory)
    metric = glue.GLUE_METRIC.get(glue_layout, "accuracy")
    return TaskData(TaskSpec(name, "classification", labels, metric, "generated", description), data.train, data.dev)

  return load


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
