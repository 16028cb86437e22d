"""tfds builders over the bundled corpora (array_record output; no TensorFlow needed).

    builder = BundledPolarity(data_dir=d, file_format='array_record')
    builder.download_and_prepare(file_format='array_record')
    source = builder.as_data_source(split='train')   # random access, source[i] -> dict

A builder's own data source returns text features as `bytes`; `load_source` (loading.py) wraps it to
return `str`. The raw files come from the data cache ($JLM_DATA_DIR, see core.data.registry);
nothing is downloaded by tfds itself.
"""

from __future__ import annotations

import inspect

import tensorflow_datasets as tfds
from etils import epath

from core.data import corpora


class _LocalBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base class: resolves `code_path` from the source file.

  tfds 4.9.10's default `code_path` needs the `importlib_resources` backport for builders defined in
  a package; reading the file path directly avoids that dependency.
  """

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:  # pytype: disable=signature-mismatch
    return epath.Path(inspect.getfile(cls))


class BundledWikipedia(_LocalBuilder):
  """106 plain-text articles from the gensim enwiki excerpt (CC BY-SA)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Markup stripped with core.data.wikitext."}

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
      features=tfds.features.FeaturesDict({"title": tfds.features.Text(), "text": tfds.features.Text()}),
      supervised_keys=None,
      homepage="https://dumps.wikimedia.org/enwiki/",
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples()}

  def _generate_examples(self):
    for index, (title, text) in enumerate(corpora.wikipedia_articles()):
      yield index, {"title": title, "text": text}


class BundledWordnet(_LocalBuilder):
  """117,659 WordNet 3.0 synsets: lemmas, gloss, ss_type (n, v, a, s, r)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "WordNet 3.0 from Debian wordnet-base."}

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
      features=tfds.features.FeaturesDict(
        {
          "lemmas": tfds.features.Sequence(tfds.features.Text()),
          "gloss": tfds.features.Text(),
          "pos": tfds.features.Text(),
        }
      ),
      supervised_keys=None,
      homepage="https://wordnet.princeton.edu/",
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples()}

  def _generate_examples(self):
    for index, (lemmas, gloss, pos) in enumerate(corpora.wordnet_glosses()):
      yield index, {"lemmas": list(lemmas), "gloss": gloss, "pos": pos}


class BundledQuiz(_LocalBuilder):
  """bsdgames quiz question/answer pairs with accepted answer alternatives."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "bsdgames 2.17 quiz files, column 0 asked, every other column answered."}

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
      features=tfds.features.FeaturesDict(
        {
          "question": tfds.features.Text(),
          "answer": tfds.features.Text(),
          "answers": tfds.features.Sequence(tfds.features.Text()),
          "category": tfds.features.Text(),
        }
      ),
      supervised_keys=("question", "answer"),
      homepage="https://packages.debian.org/bookworm/bsdgames",
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples()}

  def _generate_examples(self):
    for index, record in enumerate(corpora.quiz_records()):
      yield (
        index,
        {
          "question": record.question,
          "answer": record.answer,
          "answers": list(record.answer_alternatives),
          "category": record.category,
        },
      )


class BundledPolarity(_LocalBuilder):
  """200 Rotten Tomatoes sentences (Pang & Lee), 100 positive and 100 negative."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "gensim test data pang_lee_polarity.cor."}

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
      features=tfds.features.FeaturesDict(
        {
          "text": tfds.features.Text(),
          "label": tfds.features.ClassLabel(names=["neg", "pos"]),
        }
      ),
      supervised_keys=("text", "label"),
      homepage="https://www.cs.cornell.edu/people/pabo/movie-review-data/",
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples()}

  def _generate_examples(self):
    for index, (text, label) in enumerate(corpora.polarity_sentences()):
      yield index, {"text": text, "label": label}
