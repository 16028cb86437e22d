"""Random-access tfds data sources: bundled corpora (built locally) and the papers' full datasets."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import tensorflow_datasets as tfds

from core.data import registry
from core.data.tfds_builders import bundled

BUNDLED_BUILDERS: dict[str, type[tfds.core.GeneratorBasedBuilder]] = {
  "bundled_wikipedia": bundled.BundledWikipedia,
  "bundled_wordnet": bundled.BundledWordnet,
  "bundled_quiz": bundled.BundledQuiz,
  "bundled_polarity": bundled.BundledPolarity,
}

# Paper dataset -> (tfds name, module whose import registers the builder). tfds registers these
# builders lazily by module; importing the module explicitly makes them available without TensorFlow.
_TFDS_QA = "tensorflow_datasets.question_answering"
PAPER_DATASETS: dict[str, tuple[str, str]] = {
  "wikipedia": ("wikipedia/20230601.en", "tensorflow_datasets.text.wikipedia"),
  # OpenWebText (ELECTRA's Small-OWT release, §3.1) is not a tfds builder; tfds's C4 limited to the OpenWebText
  # URL list (Common Crawl 2018-34 ... 2019-30) is: web text selected the same way, in C4's cleaning.
  "openwebtext": ("c4/webtextlike", "tensorflow_datasets.text.c4"),
  "natural_questions_open": (
    "natural_questions_open",
    "tensorflow_datasets.datasets.natural_questions_open.natural_questions_open_dataset_builder",
  ),
  "web_questions": ("web_questions", f"{_TFDS_QA}.web_questions"),
  "squad": ("squad/v1.1", "tensorflow_datasets.datasets.squad.squad_dataset_builder"),
}
GLUE_TASKS = (
  "cola",
  "sst2",
  "mrpc",
  "qqp",
  "stsb",
  "mnli",
  "mnli_mismatched",
  "mnli_matched",
  "qnli",
  "rte",
  "wnli",
  "ax",
)
_GLUE_MODULE = "tensorflow_datasets.text.glue"


def default_tfds_dir() -> Path:
  return registry.cache_dir() / "tfds"


def _decode(value: Any) -> Any:
  if isinstance(value, bytes):
    return value.decode("utf-8")
  if isinstance(value, dict):
    return {k: _decode(v) for k, v in value.items()}
  if isinstance(value, list):
    return [_decode(v) for v in value]
  return value


class DecodedSource(Sequence):
  """Random-access view of a tfds data source with text features as `str` (grain-compatible)."""

  def __init__(self, source: Sequence[dict[str, Any]]):
    self._source = source

  def __len__(self) -> int:
    return len(self._source)

  def __iter__(self) -> Iterator[dict[str, Any]]:
    for index in range(len(self)):
      yield self[index]

  def __getitem__(self, index):
    if isinstance(index, slice):
      return [self[i] for i in range(*index.indices(len(self)))]
    length = len(self)
    position = int(index) + length if int(index) < 0 else int(index)
    if not 0 <= position < length:
      raise IndexError(f"index {index} out of range for {length} examples")
    return _decode(self._source[position])

  def __repr__(self) -> str:
    return f"DecodedSource({self._source!r})"


def bundled_builder(name: str, data_dir: Path | str | None = None) -> tfds.core.GeneratorBasedBuilder:
  """The tfds builder of a bundled corpus ('bundled_wikipedia' or short 'wikipedia', ...)."""
  key = name if name.startswith("bundled_") else f"bundled_{name}"
  if key not in BUNDLED_BUILDERS:
    raise ValueError(f"unknown bundled dataset {name!r}; allowed: {', '.join(sorted(BUNDLED_BUILDERS))}")
  return BUNDLED_BUILDERS[key](data_dir=str(data_dir or default_tfds_dir()), file_format="array_record")


def load_source(name: str, split: str = "train", data_dir: Path | str | None = None) -> DecodedSource:
  """Random-access source of a bundled corpus, prepared as array_record on first use.

  `split` accepts tfds slicing ('train[:80%]', 'train[80%:]'); every bundled corpus has one 'train'
  split. Examples are dicts with `str` text; data_dir defaults to `<data cache>/tfds`.
  """
  builder = bundled_builder(name, data_dir)
  builder.download_and_prepare(file_format="array_record")
  return DecodedSource(builder.as_data_source(split=split))


def _tensorflow_missing() -> bool:
  return importlib.util.find_spec("tensorflow") is None


def _resolve_paper(name: str) -> tuple[str, str]:
  if name.startswith("glue/"):
    task = name.split("/", 1)[1]
    if task not in GLUE_TASKS:
      raise ValueError(f"unknown GLUE task {task!r}; allowed: {', '.join(GLUE_TASKS)}")
    return name, _GLUE_MODULE
  if name not in PAPER_DATASETS:
    allowed = sorted(PAPER_DATASETS) + ["glue/<task>"]
    raise ValueError(f"unknown paper dataset {name!r}; allowed: {', '.join(allowed)}")
  return PAPER_DATASETS[name]


def paper_dataset(name: str, split: str, data_dir: Path | str | None = None, download: bool = False) -> DecodedSource:
  """Random-access source of a paper's full-scale dataset via `tfds.data_source`.

  Names: 'wikipedia' (wikipedia/20230601.en), 'openwebtext' (c4/webtextlike), 'natural_questions_open', 'web_questions',
  'squad' (squad/v1.1) and 'glue/<task>'. The data must already be prepared as array_record in
  `data_dir` (or `download=True` with network access); under `tfds.testing.mock_data` random
  examples with the real schema are returned.
  """
  tfds_name, module = _resolve_paper(name)
  try:
    importlib.import_module(module)
  except ModuleNotFoundError as e:
    if e.name == "tensorflow" or (_tensorflow_missing() and "tensorflow" in str(e)):
      raise RuntimeError(f"tfds dataset {tfds_name!r} needs TensorFlow here: pip install tensorflow-cpu") from None
    raise
  try:
    source = tfds.data_source(
      tfds_name,
      split=split,
      data_dir=str(data_dir) if data_dir else None,
      download=download,
      builder_kwargs={"file_format": "array_record"},
      download_and_prepare_kwargs={"file_format": "array_record"},
    )
  except KeyError:  # tfds: "`splits` is empty", i.e. nothing prepared in data_dir
    raise FileNotFoundError(
      f"tfds dataset {tfds_name!r} is not prepared in {data_dir or tfds.core.constants.DATA_DIR}; "
      "prepare it as array_record there (needs network) or pass download=True"
    ) from None
  return DecodedSource(source)
