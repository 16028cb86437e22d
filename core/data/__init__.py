"""Data: offline sources (fetch + sha256 + cache), corpus loaders, tokenizers, grain pipelines, tfds.

`core.data.tfds_builders` (imports tensorflow_datasets) is loaded on first use of `load_source` or
`paper_dataset`. Fetch one source with `core.data.registry.fetch(name)`: `core.data.fetch` is the
command-line module (`python -m core.data.fetch`).
"""

from typing import Any

from core.data.corpora import (
  bert_vocab_path,
  fanoutqa_dev,
  lee_corpus,
  minilm_dir,
  newsgroups,
  polarity_sentences,
  quiz_pairs,
  quiz_records,
  wikipedia_articles,
  wikipedia_passages,
  wordnet_glosses,
)
from core.data.pipeline import classification_dataset, iterator_checkpoint_args, iterator_restore_args, lm_dataset
from core.data.registry import SOURCES, Source, cache_dir, fetch_all
from core.data.tokenizers import ByteTokenizer, WordPieceTokenizer

_LAZY_TFDS = ("load_source", "paper_dataset")


def __getattr__(name: str) -> Any:
  if name in _LAZY_TFDS:
    from core.data import tfds_builders  # pylint: disable=g-import-not-at-top

    return getattr(tfds_builders, name)
  raise AttributeError(f"module 'core.data' has no attribute {name!r}")


__all__ = [
  "SOURCES",
  "ByteTokenizer",
  "Source",
  "WordPieceTokenizer",
  "bert_vocab_path",
  "cache_dir",
  "classification_dataset",
  "fanoutqa_dev",
  "fetch_all",
  "iterator_checkpoint_args",
  "iterator_restore_args",
  "lee_corpus",
  "lm_dataset",
  "load_source",
  "minilm_dir",
  "newsgroups",
  "paper_dataset",
  "polarity_sentences",
  "quiz_pairs",
  "quiz_records",
  "wikipedia_articles",
  "wikipedia_passages",
  "wordnet_glosses",
]
