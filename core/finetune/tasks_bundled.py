"""Finetuning tasks built from the bundled offline corpora (real text; small, so scores are noisy — CPU sanity checks,
not paper numbers). Every split is fixed by `seed` and disjoint by construction.

- polarity: 200 Rotten-Tomatoes sentences (Pang & Lee; SST-2's source), neg/pos, 100 each → 150 train / 50 dev.
- newsgroups: 200 20-Newsgroups posts, alt.atheism vs sci.space → 150 / 50. Headers are removed (they name the
  newsgroup), as sklearn's `remove=('headers',)`.
- wordnet_pos: WordNet 3.0 gloss → part of speech of its synset (noun / verb / adjective incl. satellites / adverb),
  class-balanced: 1000 per class train (4000), 250 per class dev (1000); chance 25%. Glosses shared by several
  synsets are dropped.
- capital_qa (SQuAD-style span QA): "What is the capital of X?" for the bsdgames quiz capitals (countries, US states,
  Canadian provinces); the context is the WordNet entry "City: gloss" of the capital whose gloss names X, shuffled
  among `distractors` entries of other capitals; the answer is the city's name at the start of its entry. Only
  questions whose capital has a WordNet gloss mentioning X are kept (228 places of 294 quiz records). 80/20 split
  by question (182 / 46); each train question appears with `train_contexts` (4) different distractor draws.
- wiki_links (tagging, BIO): words of the bundled Wikipedia sentences that lie inside a [[wiki link]] are tagged
  B-LINK / I-LINK, others O (entity-mention detection with Wikipedia's own annotation). 80/20 split by article.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from core.finetune.examples import QaExample, TaggingExample, TaskData, TaskSpec, TextExample


def _split(examples: list[Any], n_train: int, n_dev: int, seed: int) -> tuple[list[Any], list[Any]]:
  """Seeded disjoint (train, dev); a train request larger than the set leaves dev its n_dev examples."""
  order = np.random.default_rng(seed).permutation(len(examples))
  n_train = max(0, min(n_train, len(examples) - n_dev))
  return [examples[i] for i in order[:n_train]], [examples[i] for i in order[n_train : n_train + n_dev]]


def polarity(seed: int = 0, train_size: int = 150, dev_size: int = 50) -> TaskData:
  from core.data import corpora  # pylint: disable=g-import-not-at-top

  examples = [TextExample((text,), label) for text, label in corpora.polarity_sentences()]
  train, dev = _split(examples, train_size, dev_size, seed)
  spec = TaskSpec("polarity", "classification", ("negative", "positive"), "accuracy", "bundled",
                  "Pang & Lee movie-review polarity (200 sentences)")  # fmt: skip
  return TaskData(spec, train, dev)


def strip_news_headers(post: str) -> str:
  """The body of a Usenet post: everything after the first blank line (the header block names the newsgroup),
  without quoted 'Newsgroups:' lines that some bodies repeat."""
  _, sep, body = post.partition("\n\n")
  lines = [line for line in (body if sep else post).splitlines() if "Newsgroups:" not in line]
  return " ".join(" ".join(lines).split())


def newsgroups(seed: int = 0, train_size: int = 150, dev_size: int = 50) -> TaskData:
  from core.data import corpora  # pylint: disable=g-import-not-at-top

  names = ("alt.atheism", "sci.space")
  examples = [TextExample((strip_news_headers(text),), names.index(group)) for text, group in corpora.newsgroups()]
  train, dev = _split(examples, train_size, dev_size, seed)
  spec = TaskSpec("newsgroups", "classification", names, "accuracy", "bundled", "20 Newsgroups, 2 groups (200 posts)")
  return TaskData(spec, train, dev)


WORDNET_POS = ("noun", "verb", "adjective", "adverb")
_SS_TYPE_TO_POS = {"n": 0, "v": 1, "a": 2, "s": 2, "r": 3}


def wordnet_pos(seed: int = 0, train_size: int = 4000, dev_size: int = 1000) -> TaskData:
  """Class-balanced gloss → POS: train_size / 4 and dev_size / 4 synsets of each class, disjoint."""
  from core.data import corpora  # pylint: disable=g-import-not-at-top

  synsets = corpora.wordnet_glosses()
  counts = collections.Counter(gloss for _, gloss, _ in synsets)
  by_class: list[list[str]] = [[] for _ in WORDNET_POS]
  for _, gloss, ss_type in synsets:
    if counts[gloss] == 1:  # a gloss shared by several synsets (possibly of different POS) is dropped
      by_class[_SS_TYPE_TO_POS[ss_type]].append(gloss)
  rng = np.random.default_rng(seed)
  train, dev = [], []
  per_train, per_dev = train_size // len(WORDNET_POS), dev_size // len(WORDNET_POS)
  for label, glosses in enumerate(by_class):
    order = rng.permutation(len(glosses))[: per_train + per_dev]
    train += [TextExample((glosses[i],), label) for i in order[:per_train]]
    dev += [TextExample((glosses[i],), label) for i in order[per_train:]]
  train = [train[i] for i in rng.permutation(len(train))]
  spec = TaskSpec("wordnet_pos", "classification", WORDNET_POS, "accuracy", "bundled", "WordNet gloss -> POS")
  return TaskData(spec, train, dev)


def capital_entries() -> list[tuple[str, str, tuple[str, ...]]]:
  """(place X, WordNet entry 'City: gloss', accepted answers) for quiz capitals whose gloss names X.

  The entry's first word(s) are the city's WordNet lemma; answers = that lemma + the quiz's alternatives.
  """
  from core.data import corpora  # pylint: disable=g-import-not-at-top

  by_lemma: dict[str, list[tuple[str, str]]] = {}
  for lemmas, gloss, ss_type in corpora.wordnet_glosses():
    if ss_type == "n":
      for lemma in lemmas:
        by_lemma.setdefault(lemma.lower(), []).append((lemma, gloss))
  out, seen = [], set()
  for record in corpora.quiz_records():
    if record.answer_field != "capital" or record.question in seen:
      continue
    places = [q.lower() for q in record.question_alternatives]
    for answer in record.answer_alternatives:
      hits = [(lemma, g) for lemma, g in by_lemma.get(answer.lower(), []) if any(p in g.lower() for p in places)]
      if hits:
        lemma, gloss = hits[0]
        answers = tuple(dict.fromkeys((lemma, *record.answer_alternatives)))
        out.append((record.question, f"{lemma}: {gloss.strip()}.", answers))
        seen.add(record.question)
        break
  return out


def capital_qa(seed: int = 0, train_size: int = 0, dev_size: int = 0, distractors: int = 3,
               train_contexts: int = 4) -> TaskData:  # fmt: skip
  """SQuAD-style examples; `train_size` / `dev_size` > 0 cap the number of questions per split."""
  entries = capital_entries()
  rng = np.random.default_rng(seed)
  order = rng.permutation(len(entries))
  n_train = round(0.8 * len(entries))
  splits = {"train": [entries[i] for i in order[:n_train]], "dev": [entries[i] for i in order[n_train:]]}
  caps = {"train": train_size, "dev": dev_size}
  out: dict[str, list[QaExample]] = {}
  for split, items in splits.items():
    questions = items[: caps[split]] if caps[split] else items
    examples = []
    for q_index, (place, entry, answers) in enumerate(questions):
      others = [e for p, e, _ in items if p != place]
      for draw in range(train_contexts if split == "train" else 1):
        chosen = [others[i] for i in rng.choice(len(others), size=min(distractors, len(others)), replace=False)]
        position = int(rng.integers(len(chosen) + 1))
        parts = chosen[:position] + [entry] + chosen[position:]
        start = sum(len(p) + 1 for p in parts[:position])
        context = " ".join(parts)
        assert context[start : start + len(answers[0])] == answers[0]
        qid = f"capital-{split}-{q_index}-{draw}"
        examples.append(QaExample(qid, f"What is the capital of {place}?", context, answers, start))
    out[split] = examples
  spec = TaskSpec("capital_qa", "span_qa", (), "f1", "bundled", "quiz capitals over WordNet glosses (span QA)")
  return TaskData(spec, out["train"], out["dev"])


WIKI_TAGS = ("O", "B-LINK", "I-LINK")
_OPEN, _CLOSE = "\x01", "\x02"
_PLAIN_LINK = re.compile(r"\[\[([^\[\]|:]+?)(?:\|([^\[\]]*))?\]\]")  # innermost, no namespace (no ':')
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def mark_links(wikitext: str) -> str:
  """Wraps the label of every plain [[target|label]] link in sentinels that survive `core.data.wikitext`."""

  def mark(match: re.Match[str]) -> str:
    label = (match.group(2) or match.group(1).split("#", 1)[0]).strip()
    return f"{_OPEN}{label}{_CLOSE}" if label else ""

  return _PLAIN_LINK.sub(mark, wikitext)


def tag_words(sentence: str) -> TaggingExample:
  """Whitespace words of a sentinel-marked sentence with BIO link tags (a word touching a link is inside it)."""
  words, tags = [], []
  link, link_id, current, current_link = False, 0, [], None
  previous_link = None

  def finish():
    nonlocal current, current_link, previous_link
    if current:
      words.append("".join(current))
      if current_link is None:
        tags.append(0)
      else:
        tags.append(2 if current_link == previous_link else 1)
      previous_link = current_link
    current, current_link = [], None

  for ch in sentence:
    if ch == _OPEN:
      link, link_id = True, link_id + 1
    elif ch == _CLOSE:
      link = False
    elif ch.isspace():
      finish()
    else:
      current.append(ch)
      if link and current_link is None:
        current_link = link_id
  finish()
  return TaggingExample(tuple(words), tuple(tags))


def wiki_link_sentences(min_words: int = 5, max_words: int = 60) -> list[tuple[str, TaggingExample]]:
  """(article title, tagged sentence) for the bundled Wikipedia articles; sentences with >= 1 link only."""
  from core.data import corpora, registry, wikitext  # pylint: disable=g-import-not-at-top

  xml = registry.fetch("gensim_test_data") / corpora.WIKIPEDIA_XML
  out = []
  for title, markup in wikitext.iter_pages(xml):
    for paragraph in wikitext.strip_markup(mark_links(markup)).split("\n"):
      for sentence in _SENTENCE_END.split(paragraph):
        example = tag_words(sentence)
        if min_words <= len(example.words) <= max_words and any(example.tags):
          out.append((title, example))
  return out


def wiki_links(seed: int = 0, train_size: int = 4000, dev_size: int = 1000) -> TaskData:
  """80/20 split of the articles (seeded), then `train_size` / `dev_size` sentences sampled from each side."""
  sentences = wiki_link_sentences()
  titles = sorted({t for t, _ in sentences})
  rng = np.random.default_rng(seed)
  dev_titles = {titles[i] for i in rng.permutation(len(titles))[: max(1, len(titles) // 5)]}
  train = [s for t, s in sentences if t not in dev_titles]
  dev = [s for t, s in sentences if t in dev_titles]
  train = [train[i] for i in np.sort(rng.permutation(len(train))[:train_size])]
  dev = [dev[i] for i in np.sort(rng.permutation(len(dev))[:dev_size])]
  spec = TaskSpec("wiki_links", "tagging", WIKI_TAGS, "token_f1", "bundled", "words inside Wikipedia [[links]] (BIO)")
  return TaskData(spec, train, dev)


LOADERS: dict[str, Callable[..., TaskData]] = {
  "polarity": polarity,
  "newsgroups": newsgroups,
  "wordnet_pos": wordnet_pos,
  "capital_qa": capital_qa,
  "wiki_links": wiki_links,
}
