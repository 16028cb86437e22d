"""Seeded synthetic knowledge for REALM: made-up entities with attributes, documents about them, masked queries.

A controlled version of REALM's setting (arXiv 2002.08909 §3, §3.4): the knowledge a masked query needs sits in one
document of the corpus, and for held-out entities nowhere else, so the encoder cannot memorise it and only retrieval
(p(z|x), Eq. 2) can beat chance. US 11,003,865 claim 1, step 1 (a masked language modelling task from the text of a
first document) and step 3 (the knowledge corpus).

Each entity has two documents built from the same attribute values with different wordings:
- a profile (the gold document of the entity's queries): "Kavo Miltura was born in Zorbek. ...";
- a biography, from which the queries are cut: one sentence per attribute, the value being the span to mask. The
  biography is a query's originating document (`source_doc_id`), which REALM never lets the retriever return (§3.4).
Held-out entities have documents but no training query; their queries form the held-out set. Values are spread evenly
over entities (a shuffled round-robin), so a model without retrieval is at chance = 1 / len(values) per attribute
(`SyntheticKnowledge.chance`; 1/8 for every attribute of `ATTRIBUTES`).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

from realm_jax.corpora import Document

_SYLLABLES = (
  "ka ro mi tu ve lan dor shi pel qua zan bre tho vik sel mar nu ga fen lio rak tem bo ju sa dex ori wal ky hen".split()
)


@dataclasses.dataclass(frozen=True)
class Attribute:
  """An attribute's possible values and the two wordings: in the profile (gold) and in the biography (query)."""

  values: tuple[str, ...]
  profile: str  # format fields {name}, {value}
  biography: str


def _made_up_words(rng: np.random.Generator, count: int, syllables: tuple[int, int]) -> list[str]:
  capacity = sum(len(_SYLLABLES) ** n for n in range(syllables[0], syllables[1] + 1))
  if count > capacity // 2:  # rejection sampling slows down near the capacity and never ends past it
    raise ValueError(f"{count} distinct words of {syllables} syllables: at most {capacity // 2} are drawn")
  words: dict[str, None] = {}
  while len(words) < count:
    n = int(rng.integers(syllables[0], syllables[1] + 1))
    words.setdefault("".join(rng.choice(_SYLLABLES, size=n)).capitalize(), None)
  return list(words)


MAX_ENTITIES = 100_000  # names of up to four syllables: 2 · 100,000 last names fit in half of 30² + 30³ + 30⁴


def _syllables(count: int, low: int, high: int) -> tuple[int, int]:
  """(low, h) for the smallest h >= high whose words number at least 2 · count: first names have two syllables up
  to 225 entities (30² / 4), then three as well; last names two or three up to 6,975 entities, then four."""
  while sum(len(_SYLLABLES) ** n for n in range(low, high + 1)) // 2 < count:
    high += 1
  return low, high


_CITIES = tuple(_made_up_words(np.random.default_rng(1234), 8, (2, 3)))
ATTRIBUTES = {
  "born_in": Attribute(_CITIES, "{name} was born in {value}.", "As a child in {value}, {name} learned to read."),
  "occupation": Attribute(
    ("painter", "chemist", "sailor", "baker", "surgeon", "poet", "architect", "farmer"),
    "{name} works as a {value}.",
    "For many years {name} earned a living as a {value}.",
  ),
  "founded": Attribute(
    ("1804", "1837", "1862", "1889", "1913", "1946", "1971", "1998"),
    "{name} founded a workshop in {value}.",
    "The workshop that {name} started opened in {value}.",
  ),
  "colour": Attribute(
    ("red", "blue", "green", "yellow", "purple", "orange", "white", "black"),
    "The favourite colour of {name} is {value}.",
    "{name} always dressed in {value}.",
  ),
}


class Query(NamedTuple):
  """A masked-attribute query: `text[answer_span[0]:answer_span[1]] == answer` is the span to mask and predict."""

  text: str
  answer: str
  answer_span: tuple[int, int]
  attribute: str
  entity: str
  gold_doc_id: int  # the entity's profile, which holds the answer
  source_doc_id: int  # the biography the sentence was cut from: never a retrieval candidate (REALM §3.4)


class SyntheticKnowledge(NamedTuple):
  documents: list[Document]
  train_queries: list[Query]
  heldout_queries: list[Query]
  entities: dict[str, dict[str, str]]  # name -> {attribute: value}
  heldout_entities: tuple[str, ...]
  chance: dict[str, float]  # attribute -> 1 / number of values: accuracy without retrieval


def _render(template: str, name: str, value: str) -> tuple[str, tuple[int, int]]:
  before, _, after = template.partition("{value}")
  prefix = before.format(name=name)
  return prefix + value + after.format(name=name), (len(prefix), len(prefix) + len(value))


def synthetic_knowledge(
  num_entities: int = 100,
  heldout_fraction: float = 0.2,
  seed: int = 0,
  attributes: dict[str, Attribute] | None = None,
) -> SyntheticKnowledge:
  """Entities with made-up two-word names (syllables), their profile and biography documents, and masked queries.

  Document ids: entity i's profile is 2i, its biography 2i + 1. The last `round(heldout_fraction · num_entities)`
  entities in a seeded shuffle are held out: their queries are only in `heldout_queries`. Same seed, same output.
  """
  attributes = ATTRIBUTES if attributes is None else attributes
  if not 2 <= num_entities <= MAX_ENTITIES:
    raise ValueError(f"num_entities must be in [2, {MAX_ENTITIES}], got {num_entities}")
  num_heldout = int(round(heldout_fraction * num_entities))
  if not 1 <= num_heldout < num_entities:
    raise ValueError(f"heldout_fraction={heldout_fraction} leaves {num_heldout} of {num_entities} entities held out")
  rng = np.random.default_rng(seed)
  taken = {v for a in attributes.values() for v in a.values}
  firsts = [w for w in _made_up_words(rng, 2 * num_entities, _syllables(2 * num_entities, 2, 2)) if w not in taken]
  lasts = [w for w in _made_up_words(rng, 2 * num_entities, _syllables(2 * num_entities, 2, 3)) if w not in taken]
  names = list(dict.fromkeys(f"{f} {l}" for f, l in zip(rng.permutation(firsts), rng.permutation(lasts))))
  names = names[:num_entities]
  if len(names) < num_entities:
    raise ValueError(f"could not make {num_entities} distinct names from the syllable list")
  values = {key: rng.permutation(np.arange(num_entities) % len(a.values)) for key, a in attributes.items()}
  entities = {name: {k: attributes[k].values[values[k][i]] for k in attributes} for i, name in enumerate(names)}
  heldout = set(rng.permutation(names)[num_entities - num_heldout :].tolist())

  documents, train, held = [], [], []
  for i, name in enumerate(names):
    order = rng.permutation(list(attributes))
    profile = " ".join(_render(attributes[k].profile, name, entities[name][k])[0] for k in order)
    documents.append(Document(2 * i, name, profile))
    sentences, queries = [], []
    for k in rng.permutation(list(attributes)):
      text, span = _render(attributes[k].biography, name, entities[name][k])
      sentences.append(text)
      queries.append(Query(text, entities[name][k], span, str(k), name, 2 * i, 2 * i + 1))
    documents.append(Document(2 * i + 1, name, " ".join(sentences)))
    (held if name in heldout else train).extend(queries)
  chance = {k: 1.0 / len(a.values) for k, a in attributes.items()}
  return SyntheticKnowledge(documents, train, held, entities, tuple(n for n in names if n in heldout), chance)


CORPUS_KINDS = ("profiles", "profiles_and_biographies")


def retrieval_corpus(kb: SyntheticKnowledge, kind: str = "profiles") -> tuple[list[Document], dict[int, int]]:
  """The knowledge corpus Z the retriever searches, and the map from `kb.documents` ids to its ids.

  'profiles': Z holds the profiles only (doc i = entity i's profile) and the biographies are pretraining text X
  outside Z — REALM's own setting when it pretrains on CC-News and retrieves from Wikipedia (§4, Table 1), so no
  document needs excluding. 'profiles_and_biographies': Z = every document (ids unchanged); a query's biography is
  then in Z and must be excluded (§3.4), and the other entities' biographies, written with the query's own
  templates, are the distractors a retriever must learn to pass over.
  """
  if kind not in CORPUS_KINDS:
    raise ValueError(f"synthetic corpus: unknown value {kind!r} (allowed: {', '.join(CORPUS_KINDS)})")
  if kind == "profiles_and_biographies":
    return list(kb.documents), {d.doc_id: d.doc_id for d in kb.documents}
  profiles = kb.documents[0::2]
  return [Document(i, d.title, d.text) for i, d in enumerate(profiles)], {d.doc_id: i for i, d in enumerate(profiles)}
