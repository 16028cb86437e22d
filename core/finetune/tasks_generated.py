"""Generated GLUE-format tasks whose label needs context: negation (SST-2 layout) and word order (CoLA layout).

**negation** — negation flips the sentiment word's polarity.

Each sentence puts one sentiment adjective (from `POSITIVE` / `NEGATIVE`) into a template; half of the sentences
(independently of the adjective) wrap it in a negating construction ("was not", "was never", "i did not think ...
was", "was anything but", "nobody would say ... was", "it is not true that ... was"). Label = polarity(adjective)
XOR negated, so every adjective and every negator occurs equally often in both classes: a bag-of-words model scores
chance and only the interaction — what the negator scopes over — predicts the label (the SST-2 phenomenon that
motivates contextual encoders; Socher et al. 2013 §5.2 "negating positive/negative sentences").

Written as SST-2-style TSV (`sentence\\tlabel` header, label 1 = positive) by `write_negation_tsv`, so it is read
back through the generic GLUE-TSV reader like any GLUE task. Deterministic per seed; dev sentences never occur in
train.

**word_order** — CoLA-style acceptability on real sentences: the WordNet 3.0 usage examples (the quoted sentences in
the glosses; WordNet is not one of the pretraining corpora) of 6–20 words; each source sentence is used once, half as written (label 1,
acceptable) and half with one pair of adjacent, different words swapped (label 0). Bag-of-words scores chance; the
label is a word-order judgement, the kind of grammaticality call GLUE's CoLA asks for.
A few swaps leave a sentence acceptable ("slowly and carefully"), so the labels carry a little noise, as CoLA's do.
Written as CoLA's headerless TSV (source, label, mark, sentence) by `write_word_order_tsv` and scored, as CoLA, with
Matthews correlation.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from core.finetune import glue

POSITIVE = ("good", "great", "excellent", "wonderful", "enjoyable", "brilliant", "charming", "delightful", "moving",
            "entertaining", "clever", "beautiful", "funny", "fresh", "memorable", "gripping", "impressive", "superb",
            "touching", "witty")  # fmt: skip
NEGATIVE = ("bad", "awful", "boring", "dull", "terrible", "tedious", "bland", "clumsy", "lifeless", "mediocre",
            "predictable", "silly", "forgettable", "weak", "tiresome", "messy", "shallow", "pointless", "flat",
            "lame")  # fmt: skip
SUBJECTS = ("the film", "this movie", "the acting", "the plot", "the script", "the ending", "the soundtrack",
            "the dialogue", "the direction", "the cast", "the story", "the cinematography", "the sequel",
            "the performance", "the premise", "the second half")  # fmt: skip
ADVERBS = ("", "very", "really", "truly", "quite", "rather", "remarkably", "surprisingly")
VERBS = ("was", "is", "seemed", "felt")
# (plain template, negated template); {s} subject, {v} verb, {a} adverb + adjective.
TEMPLATES = (
  ("{s} {v} {a} .", "{s} {v} not {a} ."),
  ("{s} {v} {a} .", "{s} {v} never {a} ."),
  ("i thought {s} {v} {a} .", "i did not think {s} {v} {a} ."),
  ("{s} {v} {a} indeed .", "{s} {v} anything but {a} ."),
  ("everyone would say {s} {v} {a} .", "nobody would say {s} {v} {a} ."),
  ("it is true that {s} {v} {a} .", "it is not true that {s} {v} {a} ."),
  ("honestly , {s} {v} {a} .", "honestly , {s} {v} not {a} ."),
)


def negation_sentence(rng: np.random.Generator) -> tuple[str, int, bool]:
  """(sentence, label 1 = positive, negated) for one draw."""
  positive = bool(rng.integers(2))
  adjective = str(rng.choice(POSITIVE if positive else NEGATIVE))
  negated = bool(rng.integers(2))
  plain, negative_form = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
  adverb = str(rng.choice(ADVERBS))
  phrase = f"{adverb} {adjective}".strip()
  sentence = (negative_form if negated else plain).format(s=rng.choice(SUBJECTS), v=rng.choice(VERBS), a=phrase)
  return " ".join(sentence.split()), int(positive != negated), negated


def generate_negation(seed: int = 0, train_size: int = 2000, dev_size: int = 500):
  """Disjoint (train, dev) lists of (sentence, label); dev draws skip sentences already in train."""
  rng = np.random.default_rng([seed, 0x6E6567])  # 'neg'
  train, seen = [], set()
  while len(train) < train_size:
    sentence, label, _ = negation_sentence(rng)
    if sentence not in seen:
      seen.add(sentence)
      train.append((sentence, label))
  dev = []
  while len(dev) < dev_size:
    sentence, label, _ = negation_sentence(rng)
    if sentence not in seen:
      seen.add(sentence)
      dev.append((sentence, label))
  return train, dev


def _write_once(directory: str | os.PathLike, stamp: dict, write: Callable[[Path], None]) -> Path:
  """Runs `write(directory)` unless `generator.json` says train.tsv / dev.tsv already hold this draw (`stamp`)."""
  directory = Path(directory)
  stamp_path = directory / "generator.json"
  done = (directory / "train.tsv").is_file() and (directory / "dev.tsv").is_file()
  if done and stamp_path.is_file() and json.loads(stamp_path.read_text()) == stamp:
    return directory
  write(directory)
  stamp_path.write_text(json.dumps(stamp))
  return directory


def write_negation_tsv(
  directory: str | os.PathLike, seed: int = 0, train_size: int = 2000, dev_size: int = 500
) -> Path:
  """Writes `train.tsv` and `dev.tsv` (SST-2 layout: `sentence\tlabel` header) unless already there."""

  def write(directory: Path) -> None:
    train, dev = generate_negation(seed, train_size, dev_size)
    glue.write_glue_tsv(directory / "train.tsv", ("sentence", "label"), train)
    glue.write_glue_tsv(directory / "dev.tsv", ("sentence", "label"), dev)

  stamp = {"generator": "negation", "version": 1, "seed": seed, "train_size": train_size, "dev_size": dev_size}
  return _write_once(directory, stamp, write)


WORD_ORDER_WORDS = (6, 20)  # usage examples of this many whitespace words


@functools.cache
def usage_examples(min_words: int = WORD_ORDER_WORDS[0], max_words: int = WORD_ORDER_WORDS[1]) -> tuple[str, ...]:
  """The distinct WordNet usage examples (quoted in the glosses) of min_words..max_words words, sorted (computed once
  per process: every finetuning run of word_order draws from them)."""
  from core.data import corpora  # pylint: disable=g-import-not-at-top

  quoted = {m.strip() for _, gloss, _ in corpora.wordnet_glosses() for m in re.findall(r'"([^"]+)"', gloss)}
  return tuple(sorted(q for q in quoted if min_words <= len(q.split()) <= max_words))


def swap_adjacent(words: list[str], rng: np.random.Generator) -> list[str]:
  """`words` with one random pair of adjacent, different words swapped."""
  positions = [i for i in range(len(words) - 1) if words[i].lower() != words[i + 1].lower()]
  i = positions[int(rng.integers(len(positions)))]
  return words[:i] + [words[i + 1], words[i]] + words[i + 2 :]


def generate_word_order(
  seed: int = 0, train_size: int = 2000, dev_size: int = 500, sources: Sequence[str] | None = None
):
  """Disjoint (train, dev) lists of (sentence, label 1 = as written / 0 = two adjacent words swapped)."""
  sources = usage_examples() if sources is None else sources
  rng = np.random.default_rng([seed, 0x6F7264])  # 'ord'
  order = rng.permutation(len(sources))[: train_size + dev_size]
  rows = []
  for i in order:
    words = sources[i].split()
    acceptable = bool(rng.integers(2))
    rows.append((sources[i] if acceptable else " ".join(swap_adjacent(words, rng)), int(acceptable)))
  return rows[:train_size], rows[train_size:]


def write_word_order_tsv(
  directory: str | os.PathLike, seed: int = 0, train_size: int = 2000, dev_size: int = 500
) -> Path:
  """Writes CoLA-layout `train.tsv` / `dev.tsv` (no header: source, label, '*' if unacceptable, sentence)."""

  def write(directory: Path) -> None:
    for name, rows in zip(("train.tsv", "dev.tsv"), generate_word_order(seed, train_size, dev_size)):
      cola_rows = [("wordnet", label, "" if label else "*", sentence) for sentence, label in rows]
      glue.write_glue_tsv(directory / name, None, cola_rows)

  stamp = {"generator": "word_order", "version": 1, "seed": seed, "train_size": train_size, "dev_size": dev_size}
  return _write_once(directory, stamp, write)


WRITERS: dict[str, Callable[..., Path]] = {"negation": write_negation_tsv, "word_order": write_word_order_tsv}
