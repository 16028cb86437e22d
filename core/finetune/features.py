"""Examples → fixed-length int32 arrays for the finetuning heads (BERT / ELECTRA input conventions).

- Text pairs: '[CLS] A [SEP] B [SEP]', token types 0 / 1, truncated longest-first (BERT §3, GLUE recipe); with a
  byte-level BPE (RoBERTa, Liu et al. 2019) tokenizer '<s> A </s></s> B </s>', token types 0, pad id 1.
- Span QA (BERT §4.2, the reference `run_squad.py` recipe): the context is split on whitespace into words, each word
  into WordPieces; input = '[CLS] question [SEP] context [SEP]' with the question capped at `max_query_length`.
  The answer's char span maps to words, then to the tightest WordPiece span whose text equals the tokenized answer.
  Training examples whose answer was truncated away are dropped (no sliding windows: the bundled contexts fit;
  SQuAD at 384 tokens loses a few percent of its examples); dev examples are kept and scored on the first window.
- Tagging (BERT §5.3): tags are per whitespace word; with `label_tokens='first'` only the first WordPiece of each word
  carries the tag (the rest and [CLS]/[SEP]/padding are IGNORE), with 'all' every WordPiece carries its word's tag.
  Prediction is read from the first WordPiece in both cases.
Shape suffixes: N examples, L max_seq_length.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from core.config import ConfigError
from core.finetune.examples import QaExample, TaggingExample, TextExample
from core.finetune.heads import IGNORE

LABEL_TOKENS = ("first", "all")


@dataclasses.dataclass
class Features:
  """Model inputs (dict of [N, L] int32), labels ([N], [N, 2] or [N, L]) and host-side metadata for decoding."""

  inputs: dict[str, np.ndarray]
  labels: np.ndarray
  meta: dict[str, list] = dataclasses.field(default_factory=dict)

  def __len__(self) -> int:
    return len(self.labels)


class _WordPieces:
  """Caches WordPiece ids per whitespace word (tokenizing words one by one is what keeps offsets exact)."""

  def __init__(self, tokenizer):
    self.tokenizer = tokenizer
    self._cache: dict[str, list[int]] = {}

  def __call__(self, word: str) -> list[int]:
    if word not in self._cache:
      pieces = self.tokenizer.tokenize(word)
      unk = self.tokenizer.unk_id
      self._cache[word] = [self.tokenizer.token_to_id(p) if self.tokenizer.token_to_id(p) is not None else unk
                           for p in pieces]  # fmt: skip
    return self._cache[word]

  def text(self, text: str) -> list[int]:
    return [i for word in text.split() for i in self(word)]


def _require_word_pieces(tokenizer, task_type: str) -> None:
  """Span QA and tagging tokenize word by word; a byte-level BPE (RoBERTa) piece depends on the preceding space."""
  if not getattr(tokenizer, "supports_word_features", True):
    raise ConfigError(
      f"task type {task_type}: not supported with {type(tokenizer).__name__} (byte-level BPE pieces depend on the "
      "preceding space, so word-by-word features are wrong); use a WordPiece (BERT/ELECTRA) encoder"
    )


def text_features(examples: Sequence[TextExample], tokenizer, max_length: int, regression: bool = False) -> Features:
  first = [ex.texts[0] for ex in examples]
  pairs = [ex.texts[1] for ex in examples] if examples and len(examples[0].texts) > 1 else None
  inputs = tokenizer.encode_batch(first, pairs, max_length=max_length)
  labels = np.asarray([ex.label for ex in examples], np.float32 if regression else np.int32)
  return Features(inputs, labels)


def _fill(rows: list[list[int]], length: int, pad: int) -> np.ndarray:
  out = np.full((len(rows), length), pad, np.int32)
  for i, row in enumerate(rows):
    out[i, : len(row)] = row
  return out


def qa_features(
  examples: Sequence[QaExample], tokenizer, max_length: int, max_query_length: int = 64, training: bool = True
) -> Features:
  """See the module docstring. meta: 'example' (index into examples), 'token_to_word' per row, 'words'."""
  _require_word_pieces(tokenizer, "span_qa")
  pieces = _WordPieces(tokenizer)
  ids, types, context_masks, starts, ends = [], [], [], [], []
  meta: dict[str, list] = {"example": [], "token_to_word": [], "words": []}
  for index, ex in enumerate(examples):
    query = pieces.text(ex.question)[:max_query_length]
    words, word_starts = [], []
    for position, ch in enumerate(ex.context):
      if not ch.isspace() and (position == 0 or ex.context[position - 1].isspace()):
        words.append("")
        word_starts.append(position)
      if not ch.isspace():
        words[-1] += ch
    budget = max_length - len(query) - 3
    doc_ids, doc_word = [], []
    for w, word in enumerate(words):
      for piece in pieces(word):
        if len(doc_ids) < budget:
          doc_ids.append(piece)
          doc_word.append(w)
    offset = len(query) + 2
    start = end = 0
    if ex.answer_start >= 0 and ex.answers:
      span = _answer_tokens(ex, words, word_starts, doc_word, doc_ids, pieces)
      if span is None and training:
        continue
      if span is not None:
        start, end = span[0] + offset, span[1] + offset
    elif training:
      continue
    row = [tokenizer.cls_id, *query, tokenizer.sep_id, *doc_ids, tokenizer.sep_id]
    ids.append(row)
    types.append([0] * offset + [1] * (len(doc_ids) + 1))
    context_masks.append([0] * offset + [1] * len(doc_ids))
    starts.append(start)
    ends.append(end)
    meta["example"].append(index)
    meta["token_to_word"].append([-1] * offset + doc_word)
    meta["words"].append(words)
  inputs = {
    "input_ids": _fill(ids, max_length, tokenizer.pad_id),
    "token_type_ids": _fill(types, max_length, 0),
    "attention_mask": _fill([[1] * len(r) for r in ids], max_length, 0),
    "context_mask": _fill(context_masks, max_length, 0),
  }
  labels = np.stack([np.asarray(starts, np.int32), np.asarray(ends, np.int32)], axis=-1).reshape(-1, 2)
  return Features(inputs, labels, meta)


def _answer_tokens(ex: QaExample, words, word_starts, doc_word, doc_ids, pieces) -> tuple[int, int] | None:
  """(first, last) WordPiece index inside the context of the answer, or None when truncated / not found."""
  answer_end = ex.answer_start + len(ex.answers[0]) - 1
  word_ends = [s + len(w) - 1 for s, w in zip(word_starts, words, strict=True)]
  start_word = next((w for w, e in enumerate(word_ends) if e >= ex.answer_start), None)
  end_word = next((w for w, e in enumerate(word_ends) if e >= answer_end), None)
  if start_word is None or end_word is None:
    return None
  in_span = [t for t, w in enumerate(doc_word) if start_word <= w <= end_word]
  if not in_span or doc_word[-1] < end_word:
    return None
  lo, hi = in_span[0], in_span[-1]
  target = pieces.text(ex.answers[0])
  for new_lo in range(lo, hi + 1):  # tightest sub-span equal to the tokenized answer (run_squad `_improve_answer_span`)
    for new_hi in range(hi, new_lo - 1, -1):
      if doc_ids[new_lo : new_hi + 1] == target:
        return new_lo, new_hi
  return lo, hi


def qa_prediction_text(meta: dict[str, list], row: int, start: int, end: int) -> str:
  """The whitespace words covered by WordPiece positions [start, end] of feature row `row`."""
  token_to_word = meta["token_to_word"][row]
  if not (0 <= start < len(token_to_word) and 0 <= end < len(token_to_word)):
    return ""
  first, last = token_to_word[start], token_to_word[end]
  if first < 0 or last < first:
    return ""
  return " ".join(meta["words"][row][first : last + 1])


def tagging_features(
  examples: Sequence[TaggingExample], tokenizer, max_length: int, label_tokens: str = "first"
) -> Features:
  """See the module docstring. meta: 'first_piece' (per row: WordPiece index of each kept word), 'num_words'."""
  if label_tokens not in LABEL_TOKENS:
    raise ValueError(f"label_tokens: unknown value {label_tokens!r} (allowed: {', '.join(LABEL_TOKENS)})")
  _require_word_pieces(tokenizer, "tagging")
  pieces = _WordPieces(tokenizer)
  ids, labels = [], []
  meta: dict[str, list] = {"first_piece": [], "num_words": []}
  for ex in examples:
    row, row_labels, firsts = [tokenizer.cls_id], [IGNORE], []
    for word, tag in zip(ex.words, ex.tags, strict=True):
      word_ids = pieces(word) or [tokenizer.unk_id]
      if len(row) + len(word_ids) > max_length - 1:
        break
      firsts.append(len(row))
      row += word_ids
      row_labels += [tag] + [tag if label_tokens == "all" else IGNORE] * (len(word_ids) - 1)
    ids.append(row + [tokenizer.sep_id])
    labels.append(row_labels + [IGNORE])
    meta["first_piece"].append(firsts)
    meta["num_words"].append(len(ex.words))
  inputs = {
    "input_ids": _fill(ids, max_length, tokenizer.pad_id),
    "token_type_ids": np.zeros((len(ids), max_length), np.int32),
    "attention_mask": _fill([[1] * len(r) for r in ids], max_length, 0),
  }
  return Features(inputs, _fill(labels, max_length, IGNORE), meta)
