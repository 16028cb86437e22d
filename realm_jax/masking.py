"""Masking for REALM pretraining: salient spans, random spans and uniform tokens.

REALM, arXiv 2002.08909 §3.4 "Salient span masking" (one named entity or date per sentence, masked with [MASK]) and
Table 2's ablation (random uniform masks as in BERT; random span masks as in SpanBERT, Joshi et al. 2019); US
11,003,865 claim 1, step 1 (a masked language modelling task generated from the text of a first document).

REALM finds salient spans with a BERT-based CoNLL named-entity tagger and a date regex. This module needs no tagger
model; `salient_spans` is a documented regular-expression rule instead (dates, numbers, capitalised multi-word names).

All functions are host-side numpy, seeded by a `np.random.Generator`: the same generator state gives the same output.
Labels are the original id at predicted positions and `IGNORE_ID` elsewhere; special tokens are never predicted.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from core import mlm

IGNORE_ID = -100  # core.mlm weights positions instead of using an ignore id; -100 is the HF / optax-free convention

# ---------------------------------------------------------------------------------------------------------------------
# Salient spans: the rule.
#
# 1. Dates: "12 May 1998", "12th of May 1998", "May 12, 1998", "May 1998", "12 May", "May 12", a decade ("1990s",
#    "'90s"), a year with an era ("44 BC", "AD 800"). Month names in full or as 3-letter abbreviations ("Sept." too).
#    A bare year ("1998") is caught by rule 2.
# 2. Numbers: digits with thousands separators and decimals ("1,000.5"), ordinals ("3rd", "21st"), an optional "%".
#    A digit run glued to letters ("B52", "H2O") is not a number.
# 3. Names: >= 2 consecutive capitalised words (a capital letter then letters, digits, apostrophes, hyphens or
#    periods: "O'Brien", "Saint-Exupéry", "St."), where one lowercase joiner from NAME_JOINERS ("of", "de", "van",
#    or a pair: "of the", "de la", ...) may sit between two capitalised words, all on one line ("Bank of England",
#    "Ludwig van Beethoven", "Bank of the United States"; not "London and Paris", not "Paris on May"). Leading words
#    from SENTENCE_STARTERS ("The", "In", "Yesterday", ...) are dropped from a candidate first ("In London" is one
#    word, not a span), and a single sentence-initial capitalised word is never a span. Known misses: a name next to
#    a joined name merges ("Albert Einstein of the Bank of England"); "The" inside a title is dropped when leading.
#    With `single_word_names=True`, a single capitalised word that does not start a sentence is a name too ("the
#    capital is Montgomery").
# 4. Overlapping (or touching) spans are merged into one.
# ---------------------------------------------------------------------------------------------------------------------

_MONTHS = (
  "January|February|March|April|May|June|July|August|September|October|November|December"
  r"|Jan\.?|Feb\.?|Mar\.?|Apr\.?|Jun\.?|Jul\.?|Aug\.?|Sept?\.?|Oct\.?|Nov\.?|Dec\.?"
)
_DAY = r"(?:[12]\d|3[01]|0?[1-9])(?:st|nd|rd|th)?"
_YEAR = r"\d{3,4}"
_DATE = re.compile(
  rf"""(?<![\w])(?:
      {_DAY}\s+(?:of\s+)?(?:{_MONTHS})(?:,?\s+{_YEAR})?      # 12 May 1998, 12th of May, 12 May
    | (?:{_MONTHS})\s+{_DAY}(?:,?\s+{_YEAR})?(?![\d])        # May 12, 1998 / May 12
    | (?:{_MONTHS})\s+{_YEAR}                                  # May 1998
    | (?:\d{{1,3}}0s|'\d0s)                                    # 1990s, 1800s, '90s
    | \d{{1,4}}\s+(?:BC|BCE|AD|CE)\b | (?:AD|CE)\s+\d{{1,4}}   # 44 BC, AD 800
  )(?![\w])""",
  re.VERBOSE,
)
_NUMBER = re.compile(r"(?<![\w.,])(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:st|nd|rd|th|%)?(?![\w])")

NAME_JOINERS = ("of the", "van der", "van den", "von der", "de la", "of", "de", "van", "von", "der", "den", "du", "da",
                "di", "del", "della", "des", "la", "le", "y", "bin", "ibn", "al", "el")  # longest first
SENTENCE_STARTERS = frozenset(
  """A An The In On At By For From To With Without Of As If When While After Before During Since Until Although
  Though But And Or So Yet Then Thus However Also Meanwhile Today Yesterday Tomorrow This That These Those There Here
  It Its He She His Her Hers They Their Them We Our I You Your My Some Many Most Several Each Every All No Not One
  Two Three Both Either Neither Such What Which Who Whom Whose Where Why How Is Are Was Were Be""".split()
)
_UPPER = "A-ZÀ-ÖØ-Þ"
_ABBREVIATIONS = r"St|Mt|Ft|Dr|Mr|Mrs|Ms|Jr|Sr|Co|Inc|Ltd|Gen|Col|Capt|Lt|Sgt|Rev|Prof|[A-Z]"
_CAP_WORD = rf"(?:(?:{_ABBREVIATIONS})\.|[{_UPPER}][\w'’\-]*)"  # "St.", "J." keep their period; "Smith." does not
_JOINER = "|".join(j.replace(" ", " +") for j in NAME_JOINERS)
_NAME = re.compile(rf"(?<![\w'’\-]){_CAP_WORD}(?: +(?:(?:{_JOINER}) +)?{_CAP_WORD})*")
_WORD = re.compile(r"[^\s]+")
_SENTENCE_END = re.compile(r"(?:[.!?][\"'’”)\]]*\s+|\n+)")


def _is_sentence_start(text: str, start: int) -> bool:
  before = text[:start].rstrip(" \t\"'“‘([")
  return not before or before[-1] in ".!?\n:;"


def _name_spans(text: str, single_word_names: bool) -> list[tuple[int, int]]:
  spans = []
  for match in _NAME.finditer(text):
    words = [(w.start() + match.start(), w.end() + match.start()) for w in _WORD.finditer(match.group())]
    while words and text[words[0][0] : words[0][1]] in SENTENCE_STARTERS:
      words.pop(0)
    while words and text[words[0][0] : words[0][1]][0].islower():  # a joiner left first by dropping a starter
      words.pop(0)
    if not words:
      continue
    capitals = sum(1 for s, e in words if text[s : e][0].isupper())
    start, end = words[0][0], words[-1][1]
    if capitals >= 2 or (single_word_names and capitals == 1 and not _is_sentence_start(text, start)):
      spans.append((start, end))
  return spans


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
  merged: list[tuple[int, int]] = []
  for start, end in sorted(spans):
    if merged and start <= merged[-1][1]:
      merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
    else:
      merged.append((start, end))
  return merged


def salient_spans(text: str, single_word_names: bool = False) -> list[tuple[int, int]]:
  """Sorted, non-overlapping (start_char, end_char) spans of dates, numbers and capitalised multi-word names.

  The rule stands in for REALM's named-entity tagger + date regex (§3.4); it is written out above this function.
  Deterministic: the same text always gives the same spans.
  """
  spans = [m.span() for m in _DATE.finditer(text)]
  spans += [m.span() for m in _NUMBER.finditer(text)]
  spans += _name_spans(text, single_word_names)
  return _merge(spans)


def sentence_bounds(text: str) -> list[tuple[int, int]]:
  """(start_char, end_char) of each sentence: a cut after [.!?] (plus closing quotes/brackets) and whitespace, or at
  a newline. Abbreviations ("St. Louis") are cut too; for salient masking that only makes an extra candidate span."""
  bounds, start = [], 0
  for match in _SENTENCE_END.finditer(text):
    if match.start() > start:
      bounds.append((start, match.start() + 1))
    start = match.end()
  if start < len(text):
    bounds.append((start, len(text)))
  return bounds


# ---------------------------------------------------------------------------------------------------------------------
# WordPiece sequences with character offsets.
# ---------------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Tokens:
  """'[CLS] wordpieces [SEP]' of one text with what masking needs: character offsets into `text` ((0, 0) at special
  tokens), word index per wordpiece (-1 at special tokens) and the tokenizer's special ids."""

  text: str
  ids_L: np.ndarray  # int32[L]
  offsets_Lx2: np.ndarray  # int32[L, 2]
  word_ids_L: np.ndarray  # int32[L]
  special_L: np.ndarray  # bool[L]
  mask_id: int
  pad_id: int
  vocab_size: int


def tokenize_with_offsets(tokenizer, text: str, max_length: int | None = None) -> Tokens:
  """'[CLS] text [SEP]' truncated to `max_length` (default `tokenizer.max_length`) with offsets and word ids.

  Offsets and word ids come from `WordPieceTokenizer.encode_with_offsets` (the same normaliser, pre-tokeniser and
  vocabulary as `tokenizer.encode`, hence the same ids).
  """
  max_length = tokenizer.max_length if max_length is None else max_length
  if max_length < 3:
    raise ValueError(f"max_length must be >= 3 to hold [CLS] x [SEP], got {max_length}")
  ids, offsets, word_ids = tokenizer.encode_with_offsets(text)
  n = min(len(ids), max_length - 2)
  ids_L = np.array([tokenizer.cls_id, *ids[:n], tokenizer.sep_id], np.int32)
  offsets_Lx2 = np.zeros((n + 2, 2), np.int32)
  if n:
    offsets_Lx2[1:-1] = np.asarray(offsets[:n], np.int32)
  word_ids_L = np.array([-1, *(-1 if w is None else w for w in word_ids[:n]), -1], np.int32)
  special_L = np.zeros(n + 2, bool)
  special_L[[0, -1]] = True
  return Tokens(text, ids_L, offsets_Lx2, word_ids_L, special_L, tokenizer.mask_id, tokenizer.pad_id,
                tokenizer.vocab_size)


def _apply(tokens: Tokens, is_masked_L: np.ndarray, rng: np.random.Generator, mask_token_fraction: float,
           random_token_fraction: float) -> tuple[np.ndarray, np.ndarray]:
  """[MASK] / random / kept replacement at the chosen positions (BERT §3.1; core.mlm.corrupt_ids in numpy)."""
  is_masked_L = is_masked_L & ~tokens.special_L
  kind_L = rng.random(is_masked_L.shape)
  random_L = rng.integers(0, tokens.vocab_size, is_masked_L.shape, dtype=np.int32)
  new_L = np.where(kind_L < mask_token_fraction, tokens.mask_id, tokens.ids_L)
  new_L = np.where((kind_L >= mask_token_fraction) & (kind_L < mask_token_fraction + random_token_fraction),
                   random_L, new_L)
  masked_ids_L = np.where(is_masked_L, new_L, tokens.ids_L).astype(np.int32)
  labels_L = np.where(is_masked_L, tokens.ids_L, IGNORE_ID).astype(np.int32)
  return masked_ids_L, labels_L


def span_positions(tokens: Tokens, start_char: int, end_char: int) -> np.ndarray:
  """bool[L]: the non-special wordpieces whose character range overlaps [start_char, end_char)."""
  starts_L, ends_L = tokens.offsets_Lx2[:, 0], tokens.offsets_Lx2[:, 1]
  return ~tokens.special_L & (starts_L < end_char) & (ends_L > start_char)


def salient_span_mask(
  tokens: Tokens,
  rng: np.random.Generator,
  *,
  spans: list[tuple[int, int]] | None = None,
  single_word_names: bool = False,
  mask_token_fraction: float = 1.0,
  random_token_fraction: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
  """REALM's salient span masking (§3.4; claim 1 step 1): in each sentence with a salient span, one span chosen
  uniformly with `rng` has all its wordpieces replaced by [MASK]. Returns (masked_ids_L, labels_L).

  `spans` defaults to `salient_spans(tokens.text)`. A span cut by truncation is not a candidate. A text with no
  salient span gives no prediction (all labels IGNORE_ID): REALM pretrains on sentences that have one, so callers
  drop such examples (`has_salient_span`).
  """
  spans = salient_spans(tokens.text, single_word_names) if spans is None else spans
  kept_end = int(tokens.offsets_Lx2[~tokens.special_L, 1].max()) if (~tokens.special_L).any() else 0
  is_masked_L = np.zeros(tokens.ids_L.shape, bool)
  for sent_start, sent_end in sentence_bounds(tokens.text):
    inside = [(s, e) for s, e in spans if sent_start <= s and e <= sent_end and e <= kept_end]
    if inside:
      start, end = inside[int(rng.integers(len(inside)))]
      is_masked_L |= span_positions(tokens, start, end)
  return _apply(tokens, is_masked_L, rng, mask_token_fraction, random_token_fraction)


def has_salient_span(text: str, single_word_names: bool = False) -> bool:
  return bool(salient_spans(text, single_word_names))


def _budget(tokens: Tokens, mask_prob: float) -> int:
  """max(1, min(cap, round(p · n))) with n = [CLS] + wordpieces + [SEP] and the cap of core.mlm (BERT's count)."""
  n = len(tokens.ids_L)
  return max(1, min(mlm.max_predictions(mask_prob, n), int(round(mask_prob * n))))


def uniform_token_mask(
  tokens: Tokens,
  rng: np.random.Generator,
  *,
  mask_prob: float = 0.15,
  mask_token_fraction: float = 1.0,
  random_token_fraction: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
  """BERT's uniform token masking (REALM Table 2 "random uniform masks"): exactly core.mlm's count of positions,
  max(1, min(int((p + 0.005)·L), round(p·L))), drawn uniformly among non-special wordpieces. Defaults replace every
  chosen position by [MASK] like the other two strategies; BERT's 0.8 / 0.1 / 0.1 is (0.8, 0.1)."""
  eligible = np.flatnonzero(~tokens.special_L)
  count = min(_budget(tokens, mask_prob), len(eligible))
  is_masked_L = np.zeros(tokens.ids_L.shape, bool)
  is_masked_L[rng.choice(eligible, size=count, replace=False)] = True
  return _apply(tokens, is_masked_L, rng, mask_token_fraction, random_token_fraction)


def random_span_mask(
  tokens: Tokens,
  rng: np.random.Generator,
  *,
  mask_prob: float = 0.15,
  geometric_p: float = 0.2,
  max_span_words: int = 10,
  mask_token_fraction: float = 1.0,
  random_token_fraction: float = 0.0,
  max_tries: int = 100,
) -> tuple[np.ndarray, np.ndarray]:
  """SpanBERT's random span masking (REALM Table 2 "random span masks"; Joshi et al. 2019 §3.1): span lengths in
  whole words from Geo(p = 0.2) truncated at 10 words, each span starting at a random word, non-overlapping, until
  the same token budget as `uniform_token_mask` is met (a span that would overshoot it is redrawn, at most
  `max_tries` draws)."""
  lengths = np.arange(1, max_span_words + 1)
  probs = geometric_p * (1 - geometric_p) ** (lengths - 1)
  probs /= probs.sum()
  word_ids_L = tokens.word_ids_L
  words = np.unique(word_ids_L[~tokens.special_L])
  budget = _budget(tokens, mask_prob)
  is_masked_L = np.zeros(tokens.ids_L.shape, bool)
  for _ in range(max_tries):
    if is_masked_L.sum() >= budget or len(words) == 0:
      break
    length = int(rng.choice(lengths, p=probs))
    first = int(rng.integers(len(words)))
    span_words = words[first : first + length]
    span_L = np.isin(word_ids_L, span_words) & ~tokens.special_L
    if (span_L & is_masked_L).any() or is_masked_L.sum() + span_L.sum() > budget:
      continue
    is_masked_L |= span_L
  return _apply(tokens, is_masked_L, rng, mask_token_fraction, random_token_fraction)


MASKERS = {"salient_span": salient_span_mask, "random_span": random_span_mask, "uniform": uniform_token_mask}


def mask_batch(tokens_list: list[Tokens], rng: np.random.Generator, kind: str = "salient_span",
               max_length: int | None = None, **kwargs) -> dict[str, np.ndarray]:
  """Masks each sequence with `MASKERS[kind]` and pads to `max_length` (default: the longest). Returns int32
  input_ids_BxL, labels_BxL (IGNORE_ID where not predicted, and on padding) and attention_mask_BxL."""
  if kind not in MASKERS:
    raise ValueError(f"masking kind must be one of {sorted(MASKERS)}, got {kind!r}")
  if not tokens_list:
    raise ValueError("mask_batch needs at least one sequence")
  length = max(len(t.ids_L) for t in tokens_list) if max_length is None else max_length
  if max(len(t.ids_L) for t in tokens_list) > length:
    raise ValueError(f"a sequence is longer than max_length={length}; tokenize with max_length={length}")
  batch = len(tokens_list)
  input_ids_BxL = np.full((batch, length), tokens_list[0].pad_id, np.int32)
  labels_BxL = np.full((batch, length), IGNORE_ID, np.int32)
  attention_mask_BxL = np.zeros((batch, length), np.int32)
  for b, tokens in enumerate(tokens_list):
    masked_ids_L, labels_L = MASKERS[kind](tokens, rng, **kwargs)
    n = len(masked_ids_L)
    input_ids_BxL[b, :n], labels_BxL[b, :n], attention_mask_BxL[b, :n] = masked_ids_L, labels_L, 1
  return {"input_ids": input_ids_BxL, "labels": labels_BxL, "attention_mask": attention_mask_BxL}
