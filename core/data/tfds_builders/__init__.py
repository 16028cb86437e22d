"""tfds builders for the bundled corpora and loaders for the papers' tfds datasets (no TensorFlow)."""

from core.data.tfds_builders.bundled import BundledPolarity, BundledQuiz, BundledWikipedia, BundledWordnet
from core.data.tfds_builders.loading import (
  BUNDLED_BUILDERS,
  GLUE_TASKS,
  PAPER_DATASETS,
  DecodedSource,
  bundled_builder,
  default_tfds_dir,
  load_source,
  paper_dataset,
)

__all__ = [
  "BUNDLED_BUILDERS",
  "GLUE_TASKS",
  "PAPER_DATASETS",
  "BundledPolarity",
  "BundledQuiz",
  "BundledWikipedia",
  "BundledWordnet",
  "DecodedSource",
  "bundled_builder",
  "default_tfds_dir",
  "load_source",
  "paper_dataset",
]
