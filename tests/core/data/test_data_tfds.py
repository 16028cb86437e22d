"""Tests for core.data.tfds_builders: local array_record builders and the papers' tfds datasets."""

from __future__ import annotations

import importlib
import sys

import pytest
import tensorflow_datasets as tfds

from core.data import corpora, tfds_builders


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
  return tmp_path_factory.mktemp("tfds")


def test_bundled_polarity_builds_and_reads(tfds_dir):
  builder = tfds_builders.BundledPolarity(data_dir=str(tfds_dir), file_format="array_record")
  assert builder.name == "bundled_polarity"
  builder.download_and_prepare(file_format="array_record")
  source = builder.as_data_source(split="train")
  assert len(source) == 200
  assert builder.info.features["label"].names == ["neg", "pos"]
  expected = set(corpora.polarity_sentences())
  got = {(ex["text"].decode("utf-8"), int(ex["label"])) for ex in source}
  assert got == expected


def test_load_source_returns_str_examples_and_supports_slicing(tfds_dir):
  train = tfds_builders.load_source("polarity", "train[:80%]", tfds_dir)
  rest = tfds_builders.load_source("bundled_polarity", "train[80%:]", tfds_dir)
  assert len(train) == 160 and len(rest) == 40
  example = train[0]
  assert isinstance(example["text"], str) and example["label"] in (0, 1)
  assert len(train[2:5]) == 3
  assert train[-1] == train[159]
  with pytest.raises(IndexError):
    train[160]  # pylint: disable=pointless-statement


def test_load_source_quiz_and_wikipedia(tfds_dir):
  quiz = tfds_builders.load_source("quiz", "train", tfds_dir)
  assert len(quiz) == len(corpora.quiz_pairs())
  rows = {(ex["category"], ex["question"], ex["answer"]) for ex in quiz}
  assert ("state:capital", "Alabama", "Montgomery") in rows
  assert all(isinstance(a, str) for a in quiz[0]["answers"])
  wiki = tfds_builders.load_source("wikipedia", "train", tfds_dir)
  assert len(wiki) == 106
  assert {ex["title"] for ex in wiki} == {t for t, _ in corpora.wikipedia_articles()}


def test_load_source_wordnet(tmp_path, monkeypatch):
  # Every 59th synset (all five parts of speech): tfds serialises ~6k examples/CPU-s, so all 117,659 (counted by
  # test_data_corpora) would take 20 s; the builder must pass through each synset it is given, in order.
  synsets = corpora.wordnet_glosses()[::59]
  monkeypatch.setattr(corpora, "wordnet_glosses", lambda: synsets)
  wordnet = tfds_builders.load_source("wordnet", "train", tmp_path)
  assert len(wordnet) == len(synsets) == 1_995
  example = wordnet[123]
  assert set(example) == {"lemmas", "gloss", "pos"}
  assert isinstance(example["lemmas"], list) and all(isinstance(l, str) for l in example["lemmas"])
  assert example["pos"] in {"n", "v", "a", "s", "r"}
  assert sorted((tuple(ex["lemmas"]), ex["gloss"], ex["pos"]) for ex in wordnet) == sorted(synsets)
  assert {ex["pos"] for ex in wordnet} == {"n", "v", "a", "s", "r"}


def test_unknown_bundled_name():
  with pytest.raises(ValueError, match="allowed: bundled_polarity, bundled_quiz"):
    tfds_builders.load_source("imdb")


@pytest.mark.parametrize(
  "name,split,keys",
  [
    ("natural_questions_open", "train", {"question", "answer"}),
    ("web_questions", "train", {"question", "answers", "url"}),
    ("squad", "train", {"id", "title", "context", "question", "answers"}),
    ("glue/sst2", "train", {"sentence", "label", "idx"}),
    ("glue/mnli", "validation_matched", {"premise", "hypothesis", "label", "idx"}),
    ("wikipedia", "train", {"title", "text"}),
    ("openwebtext", "train", {"text", "timestamp", "url", "content-length", "content-type"}),
  ],
)
def test_paper_datasets_under_mock_data(name, split, keys):
  with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE, num_examples=4):
    source = tfds_builders.paper_dataset(name, split)
    assert len(source) == 4
    example = source[0]
  assert set(example) == keys


def test_paper_datasets_do_not_import_tensorflow():
  with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE, num_examples=2):
    for name in ("glue/cola", "wikipedia", "squad"):
      tfds_builders.paper_dataset(name, "train")
  assert "tensorflow" not in sys.modules


def test_paper_dataset_errors(tmp_path, monkeypatch):
  with pytest.raises(ValueError, match="unknown paper dataset 'bookcorpus'; allowed: .*openwebtext"):
    tfds_builders.paper_dataset("bookcorpus", "train")
  with pytest.raises(ValueError, match="unknown GLUE task 'sst3'"):
    tfds_builders.paper_dataset("glue/sst3", "train")
  with pytest.raises(FileNotFoundError) as info:
    tfds_builders.paper_dataset("squad", "train", data_dir=tmp_path)
  assert "not prepared" in str(info.value) and "\n" not in str(info.value)

  real_import = importlib.import_module

  def import_needing_tensorflow(module, *args, **kwargs):
    if module.startswith("tensorflow_datasets.text"):
      raise ModuleNotFoundError("No module named 'tensorflow'", name="tensorflow")
    return real_import(module, *args, **kwargs)

  monkeypatch.setattr(importlib, "import_module", import_needing_tensorflow)
  with pytest.raises(RuntimeError) as info:
    tfds_builders.paper_dataset("glue/sst2", "train")
  assert str(info.value) == "tfds dataset 'glue/sst2' needs TensorFlow here: pip install tensorflow-cpu"
