"""Loaders for the bundled corpora; each fetches its source on first use (see `core.data.registry`)."""

from __future__ import annotations

import functools
import io
import json
import pickle
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from core.data import quiz, registry, wikitext

WIKIPEDIA_XML = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
WORDNET_POS_FILES = ("noun", "verb", "adj", "adv")


def _dir(name: str, cache_dir: Path | str | None) -> Path:
  return registry.fetch(name, cache_dir)


def minilm_dir(cache_dir: Path | str | None = None) -> Path:
  """Directory with all-MiniLM-L6-v2 `model.safetensors`, `config.json`, `vocab.txt`, `tokenizer.json`."""
  return _dir("minilm", cache_dir)


def bert_vocab_path(cache_dir: Path | str | None = None) -> Path:
  """Uncased BERT WordPiece vocabulary (30,522 entries) shipped with MiniLM."""
  return minilm_dir(cache_dir) / "vocab.txt"


@functools.lru_cache(maxsize=4)
def _wikipedia_articles(root: Path) -> tuple[tuple[str, str], ...]:
  articles = []
  for title, markup in wikitext.iter_pages(root / WIKIPEDIA_XML):
    text = wikitext.strip_markup(markup)
    if text:
      articles.append((title, text))
  return tuple(articles)


def wikipedia_articles(cache_dir: Path | str | None = None) -> list[tuple[str, str]]:
  """(title, plain text) of the 106 main-namespace, non-redirect articles of the gensim enwiki excerpt.

  Paragraphs are separated by newlines; see `core.data.wikitext.strip_markup` for what is removed.
  """
  return list(_wikipedia_articles(_dir("gensim_test_data", cache_dir)))


def wikipedia_passages(words: int = 100, cache_dir: Path | str | None = None) -> list[tuple[str, str]]:
  """(title, passage): each article cut into consecutive `words`-word chunks (retrieval corpus units).

  The last chunk of an article may be shorter. 100 words is the passage size of ORQA / DPR-style
  Wikipedia retrieval corpora.
  """
  out = []
  for title, text in wikipedia_articles(cache_dir):
    out.extend((title, p) for p in wikitext.passages(text, words))
  return out


def _wordnet_lemma(word: str) -> str:
  if word.endswith(")") and "(" in word:  # adjective position markers: 'able(a)', 'elect(ip)'
    word = word[: word.rindex("(")]
  return word.replace("_", " ")


def parse_wordnet_data_line(line: str) -> tuple[tuple[str, ...], str, str]:
  """Parses one synset line of a WordNet `data.*` file into (lemmas, gloss, ss_type).

  Fields: offset, lex_filenum, ss_type, w_cnt (hex), then w_cnt (word, lex_id) pairs, ...; the gloss
  follows ' | '. ss_type is one of n, v, a, s (adjective satellite), r.
  """
  head, _, gloss = line.partition(" | ")
  fields = head.split()
  ss_type = fields[2]
  count = int(fields[3], 16)
  lemmas = tuple(_wordnet_lemma(fields[4 + 2 * i]) for i in range(count))
  return lemmas, gloss.strip(), ss_type


@functools.lru_cache(maxsize=4)
def _wordnet_glosses(root: Path) -> tuple[tuple[tuple[str, ...], str, str], ...]:
  out = []
  for pos in WORDNET_POS_FILES:
    with open(root / f"data.{pos}", encoding="utf-8") as f:
      for line in f:
        if line.startswith("  "):  # licence header
          continue
        out.append(parse_wordnet_data_line(line))
  return tuple(out)


def wordnet_glosses(cache_dir: Path | str | None = None) -> list[tuple[tuple[str, ...], str, str]]:
  """(lemma words, gloss, ss_type) for all 117,659 WordNet 3.0 synsets (nouns, verbs, adj, adv).

  Lemmas have '_' replaced by spaces; the gloss is the definition followed by quoted examples.
  """
  return list(_wordnet_glosses(_dir("wordnet", cache_dir)))


def quiz_records(cache_dir: Path | str | None = None) -> list[quiz.QuizRecord]:
  """All bsdgames quiz question/answer records with canonical forms and accepted alternatives."""
  return quiz.read_quiz_dir(_dir("quiz", cache_dir))


def quiz_pairs(cache_dir: Path | str | None = None) -> list[tuple[str, str, str]]:
  """(category, question, answer) from the bsdgames quiz files, e.g. ('state:capital', 'Alabama',
  'Montgomery'). Category is '<data file>:<answer column title>'; question is column 0 of a data
  line. Answers keep optional parts and the first alternative; see `quiz_records` for alternatives.
  """
  return [(r.category, r.question, r.answer) for r in quiz_records(cache_dir)]


def fanoutqa_dev(cache_dir: Path | str | None = None) -> list[dict[str, Any]]:
  """FanOutQA dev set: 310 dicts with 'id', 'question', 'answer' (str / list / dict), 'decomposition'
  (single-hop sub-questions, each with 'question', 'answer', 'depends_on', 'evidence' page title)."""
  with open(_dir("fanoutqa", cache_dir) / "fanout-final-dev.json", encoding="utf-8") as f:
    return json.load(f)


def polarity_sentences(cache_dir: Path | str | None = None) -> list[tuple[str, int]]:
  """(sentence, label) for 200 Rotten Tomatoes sentences (Pang & Lee), label 1 positive, 0 negative."""
  out = []
  path = _dir("gensim_test_data", cache_dir) / "pang_lee_polarity.cor"
  for line in path.read_text(encoding="cp1252").splitlines():
    label, _, text = line.partition(" ")
    if label not in ("__label__pos", "__label__neg"):
      raise ValueError(f"{path}: unexpected label {label!r}")
    out.append((text.strip(), 1 if label == "__label__pos" else 0))
  return out


class _Bunch(dict):
  """Stand-in for sklearn's Bunch while unpickling."""


def _bunch_reconstructor(cls, base, state):
  """copyreg._reconstructor restricted to Bunch(dict); protocol-0 pickles pass the items as state."""
  if cls is not _Bunch or base is not dict or not (state is None or isinstance(state, dict)):
    raise pickle.UnpicklingError("mini_newsgroup: only an sklearn Bunch may be reconstructed")
  return _Bunch(state or {})


def _numpy_reconstruct(*args):
  from numpy._core import multiarray  # pylint: disable=g-import-not-at-top

  return multiarray._reconstruct(*args)  # pylint: disable=protected-access


class _NewsgroupsUnpickler(pickle.Unpickler):
  """Allows exactly the globals of an sklearn Bunch of Python 2 strings and numpy arrays."""

  _ALLOWED = {
    ("sklearn.datasets.base", "Bunch"): _Bunch,
    ("sklearn.utils", "Bunch"): _Bunch,
    ("sklearn.utils._bunch", "Bunch"): _Bunch,
    ("copy_reg", "_reconstructor"): _bunch_reconstructor,
    ("copyreg", "_reconstructor"): _bunch_reconstructor,
    ("__builtin__", "dict"): dict,
    ("builtins", "dict"): dict,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
  }

  def find_class(self, module: str, name: str):
    try:
      return self._ALLOWED[(module, name)]
    except KeyError:
      raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in mini_newsgroup") from None


def newsgroups(cache_dir: Path | str | None = None) -> list[tuple[str, str]]:
  """(post text incl. headers, newsgroup name) for 200 20-Newsgroups posts (alt.atheism, sci.space)."""
  raw = zlib.decompress((_dir("gensim_test_data", cache_dir) / "mini_newsgroup").read_bytes())
  bunch = _NewsgroupsUnpickler(io.BytesIO(raw), encoding="latin-1").load()
  data, target, names = bunch["data"], np.asarray(bunch["target"]), list(bunch["target_names"])
  return [(str(text), str(names[int(t)])) for text, t in zip(data, target, strict=True)]


def lee_corpus(background: bool = True, cache_dir: Path | str | None = None) -> list[str]:
  """Lee news corpus, one article per string: 300 background articles (`lee_background.cor`) or the
  50 articles of the Lee similarity test set (`lee.cor`)."""
  name = "lee_background.cor" if background else "lee.cor"
  text = (_dir("gensim_test_data", cache_dir) / name).read_text(encoding="cp1252")
  return [line.strip() for line in text.splitlines() if line.strip()]
