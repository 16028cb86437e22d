"""Knowledge corpora and open-domain QA from the bundled data.

REALM, arXiv 2002.08909 §3 (the knowledge corpus Z of documents z retrieved by p(z|x)) and §4 (open-QA evaluation:
exact match after answer normalisation); US 11,003,865 claim 1, step 3 (a knowledge corpus of documents embedded and
indexed). The paper's corpus is Wikipedia in 288-wordpiece blocks; here it is WordNet glosses and the bundled
Wikipedia excerpt in 100-word blocks (`core.data.corpora`).
"""

from __future__ import annotations

import collections
import dataclasses
import re
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from core.data import corpora as core_corpora
from core.finetune import metrics

SOURCES = ("wordnet", "wikipedia")


@dataclasses.dataclass(frozen=True)
class Document:
  """One retrieval unit. REALM embeds it as '[CLS] title [SEP] text [SEP]' (§3.4, reference `block_records`)."""

  doc_id: int
  title: str
  text: str


def _source_documents(source: str) -> list[tuple[str, str]]:
  if source == "wordnet":
    # One document per synset: "lemma, synonym, ...: gloss", title = the first lemma.
    return [(lemmas[0], f"{', '.join(lemmas)}: {gloss}") for lemmas, gloss, _ in core_corpora.wordnet_glosses()]
  if source == "wikipedia":
    return core_corpora.wikipedia_passages(words=100)
  raise ValueError(f"unknown knowledge source {source!r}; choose from {SOURCES}")


def knowledge_corpus(
  sources: Sequence[str] = SOURCES, max_docs: int | None = None, seed: int = 0
) -> list[Document]:
  """Documents of `sources` in that order, each source in its file order (WordNet: noun, verb, adj, adv synsets,
  117,659; Wikipedia: the 106-article excerpt cut into 100-word blocks, 4,462).

  With `max_docs`, a uniform sample of that many (seeded, drawn without replacement) keeping the order. `doc_id` is
  the position in the returned list, so it indexes the embedding matrix; the same arguments give the same ids.
  """
  if isinstance(sources, str):
    sources = (sources,)
  if not sources:
    raise ValueError("knowledge_corpus needs at least one source")
  pairs = [pair for source in sources for pair in _source_documents(source)]
  if max_docs is not None:
    if max_docs < 1:
      raise ValueError(f"max_docs must be >= 1, got {max_docs}")
    if max_docs < len(pairs):
      keep = np.sort(np.random.default_rng(seed).choice(len(pairs), size=max_docs, replace=False))
      pairs = [pairs[i] for i in keep]
  return [Document(i, title, text) for i, (title, text) in enumerate(pairs)]


# ---------------------------------------------------------------------------------------------------------------------
# QA over the corpus from the bsdgames quiz files.
# ---------------------------------------------------------------------------------------------------------------------

CAPITAL_CATEGORIES = (
  "state:capital", "europe:capital", "africa:capital", "america:capital", "asia:capital", "province:capital"
)
# Categories whose answer is one entity (its alternatives are spellings of it), with a question template each.
QUESTION_TEMPLATES = {
  **{category: "What is the capital of {}?" for category in CAPITAL_CATEGORIES},
  "state:flower": "What is the state flower of {}?",
  "elements:element": "Which chemical element has the symbol {}?",
  "pres:vice": "Who was vice president under {}?",
  "pres:successor": "Who succeeded {} as president of the United States?",
  "sov:successor": "Who succeeded {} as sovereign of England?",
  "poetry:author": 'Who wrote the line "{}"?',
}


class QAExample(NamedTuple):
  question: str
  answers: tuple[str, ...]  # accepted forms, canonical first
  gold_doc_ids: tuple[int, ...]  # documents that contain an answer and the subject (see `capital_qa`)


_WORD = re.compile(r"\w+")
_OVERSTRIKE = re.compile(r".\x08")  # quiz files write accents as overstrikes: "C^\bote d'Ivoire" reads "Cote d'Ivoire"


def _normalise(text: str) -> str:
  return " ".join(_WORD.findall(text.lower()))


class _PhraseIndex:
  """Finds documents containing a phrase as whole words (case-, punctuation-insensitive) via a word -> doc index."""

  def __init__(self, corpus: Sequence[Document]):
    self.texts = [f" {_normalise(d.text)} " for d in corpus]
    self.postings: dict[str, set[int]] = collections.defaultdict(set)
    for i, text in enumerate(self.texts):
      for word in set(text.split()):
        self.postings[word].add(i)

  def find(self, phrase: str) -> set[int]:
    words = _normalise(phrase).split()
    if not words:
      return set()
    candidates = set.intersection(*(self.postings.get(w, set()) for w in words))
    needle = f" {' '.join(words)} "
    return {i for i in candidates if needle in self.texts[i]}


def capital_qa(
  corpus: Sequence[Document], categories: Sequence[str] = CAPITAL_CATEGORIES, require_gold: bool = False
) -> list[QAExample]:
  """Questions from the bundled quiz files with their accepted answers and gold documents (§4 open-QA data).

  Gold rule: a document is gold when its text contains, as whole words after lower-casing and dropping punctuation,
  one accepted answer form AND one accepted form of the question's subject (e.g. "Montgomery: capital of the state
  of Alabama ..." for "What is the capital of Alabama?"). Answer forms shorter than 3 characters other than the
  canonical one are ignored ("Wm 2"). Questions keep an empty `gold_doc_ids` unless `require_gold`, which drops them.
  `gold_doc_ids` are `Document.doc_id`s.
  """
  unknown = [c for c in categories if c not in QUESTION_TEMPLATES]
  if unknown:
    raise ValueError(f"no question template for quiz categories {unknown}; known: {sorted(QUESTION_TEMPLATES)}")
  index = _PhraseIndex(corpus)
  ids = [d.doc_id for d in corpus]
  out = []
  for record in core_corpora.quiz_records():
    if record.category not in categories:
      continue
    answers = tuple(a for i, a in enumerate(record.answer_alternatives) if i == 0 or len(a) >= 3)
    with_answer = set().union(*(index.find(a) for a in answers))
    with_subject = set().union(*(index.find(q) for q in record.question_alternatives))
    gold = tuple(ids[i] for i in sorted(with_answer & with_subject))
    if gold or not require_gold:
      question = QUESTION_TEMPLATES[record.category].format(_OVERSTRIKE.sub("", record.question))
      out.append(QAExample(question, tuple(_OVERSTRIKE.sub("", a) for a in answers), gold))
  return out


# ---------------------------------------------------------------------------------------------------------------------
# FanOutQA answers as answer-normalisation cases.
# ---------------------------------------------------------------------------------------------------------------------


def _leaf_answers(answer: Any) -> list[str]:
  if isinstance(answer, dict):
    return [s for value in answer.values() for s in _leaf_answers(value)]
  if isinstance(answer, list):
    return [s for value in answer for s in _leaf_answers(value)]
  if isinstance(answer, bool) or answer is None:
    return []
  return [str(answer)]


def _variants(gold: str) -> tuple[str, ...]:
  """Surface forms SQuAD normalisation (lower-case, drop punctuation and a/an/the, squash spaces) maps onto `gold`."""
  return (
    gold,
    gold.upper() if gold.isascii() else gold,
    gold.lower(),
    f"  {gold}  ",
    f"the {gold}",
    f"{gold}.",
    f'"{gold}"',
    " ".join(gold.split()).replace(" ", "  "),
  )


def fanoutqa_answer_cases(max_cases: int | None = None) -> list[tuple[tuple[str, ...], str]]:
  """(prediction_variants, gold) pairs: every string / number leaf of a FanOutQA dev answer (str, list or dict of
  them) with surface variants that exact match after standard normalisation must accept (§4 "exact match").

  Golds whose normal form is empty (pure punctuation / articles) are skipped; duplicates appear once, in file order.
  """
  seen: dict[str, None] = {}
  for example in core_corpora.fanoutqa_dev():
    for gold in _leaf_answers(example["answer"]):
      gold = gold.strip()
      if metrics.normalize_answer(gold):
        seen.setdefault(gold, None)
  cases = [(_variants(gold), gold) for gold in seen]
  return cases if max_cases is None else cases[:max_cases]
