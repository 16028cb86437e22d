"""Tokenizers: BERT WordPiece (HF `tokenizers` backend, matches BERT's reference tokenizer), RoBERTa's byte-level
BPE (vocab.json + merges.txt or tokenizer.json) and bytes."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

PAD_TOKEN, UNK_TOKEN, CLS_TOKEN, SEP_TOKEN, MASK_TOKEN = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS = (PAD_TOKEN, UNK_TOKEN, CLS_TOKEN, SEP_TOKEN, MASK_TOKEN)


def _read_vocab(vocab_path: Path) -> dict[str, int]:
  if not vocab_path.is_file():
    raise FileNotFoundError(
      f"WordPiece vocabulary not found: {vocab_path} (run `make data` or `python -m core.data.fetch "
      "minilm`, then use core.data.bert_vocab_path())"
    )
  vocab: dict[str, int] = {}
  with open(vocab_path, encoding="utf-8") as f:
    for index, line in enumerate(f):
      vocab.setdefault(line.rstrip("\n"), index)
  missing = [t for t in SPECIAL_TOKENS if t not in vocab]
  if missing:
    raise ValueError(f"{vocab_path} lacks BERT special tokens {missing}")
  return vocab


class _HfBackedTokenizer:
  """What the WordPiece and byte-level BPE tokenizers share: a HuggingFace `tokenizers` backend (`self._base`, no
  truncation or padding) and per-length configured copies for `encode` / `encode_batch`. Subclasses set the pad
  token, the frame shown in errors, and whether pairs keep their segment ids."""

  _pad_token: str
  _frame: str  # e.g. '[CLS] x [SEP]', for the max_length error
  _segment_ids = True  # False: token_type_ids all 0 (RoBERTa has one segment type)
  _min_pair_length = 3
  max_length: int
  _base: Tokenizer
  _configured: dict[int, Tokenizer]

  def _tokenizer(self, max_length: int, pad: bool) -> Tokenizer:
    key = max_length if pad else -max_length
    if key not in self._configured:
      if max_length < 3:
        raise ValueError(f"max_length must be >= 3 to hold {self._frame}, got {max_length}")
      tok = Tokenizer.from_str(self._base.to_str())
      tok.enable_truncation(max_length=max_length, strategy="longest_first")
      if pad:
        tok.enable_padding(pad_id=self.pad_id, pad_token=self._pad_token, length=max_length)
      self._configured[key] = tok
    return self._configured[key]

  def tokenize(self, text: str) -> list[str]:
    """Subword strings without special tokens."""
    return self._base.encode(text, add_special_tokens=False).tokens

  def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]], list[int | None]]:
    """(ids, character offsets [start, end), word index per token) of `text`'s subwords, without special tokens
    or truncation: what span-level code (salient-span masking, answer spans) needs to map characters to tokens."""
    encoding = self._base.encode(text, add_special_tokens=False)
    return encoding.ids, encoding.offsets, encoding.word_ids

  def encode(self, text: str, pair: str | None = None, add_special_tokens: bool = True) -> list[int]:
    """Token ids of the framed text (and pair), truncated to `self.max_length`."""
    return self._tokenizer(self.max_length, pad=False).encode(text, pair, add_special_tokens=add_special_tokens).ids

  def encode_batch(
    self, texts: Sequence[str], pairs: Sequence[str] | None = None, max_length: int = 128
  ) -> dict[str, np.ndarray]:
    """Encodes a batch, truncated and padded to `max_length`.

    Returns int32 arrays [B, max_length]: input_ids, token_type_ids (1 on the pair segment; all 0 for a
    one-segment tokenizer) and attention_mask (1 on real tokens).
    """
    texts = list(texts)
    if pairs is not None:
      pairs = list(pairs)
      if len(pairs) != len(texts):
        raise ValueError(f"got {len(texts)} texts but {len(pairs)} pairs")
      if max_length < self._min_pair_length:
        raise ValueError(f"max_length must be >= {self._min_pair_length} to hold a pair, got {max_length}")
      inputs = list(zip(texts, pairs))
    else:
      inputs = texts
    encodings = self._tokenizer(max_length, pad=True).encode_batch(inputs)
    shape = (len(texts), max_length)
    types = [e.type_ids for e in encodings] if self._segment_ids else np.zeros(shape)
    return {
      "input_ids": np.array([e.ids for e in encodings], dtype=np.int32).reshape(shape),
      "token_type_ids": np.array(types, dtype=np.int32).reshape(shape),
      "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int32).reshape(shape),
    }

  def encode_documents(self, texts: Sequence[str]) -> list[np.ndarray]:
    """Whole documents as int32 ids, no special tokens, no truncation (input to packing)."""
    encodings = self._base.encode_batch(list(texts), add_special_tokens=False)
    return [np.asarray(e.ids, dtype=np.int32) for e in encodings]

  def decode(self, ids: Sequence[int] | np.ndarray, skip_special_tokens: bool = True) -> str:
    return self._base.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

  def convert_ids_to_tokens(self, ids: Sequence[int] | np.ndarray) -> list[str]:
    return [self._base.id_to_token(int(i)) for i in ids]


class WordPieceTokenizer(_HfBackedTokenizer):
  """BERT WordPiece tokenizer: basic (whitespace / punctuation / CJK) split, lowercasing and accent
  stripping when `lowercase`, greedy longest-match-first WordPiece, '[CLS] A [SEP] (B [SEP])'.

  `encode` truncates to `max_length` (longest sequence first for pairs).
  """

  _pad_token, _frame = PAD_TOKEN, "[CLS] x [SEP]"

  def __init__(self, vocab_path: str | Path, lowercase: bool = True, max_length: int = 512):
    self.vocab_path = Path(vocab_path)
    self.lowercase = lowercase
    self.max_length = max_length
    self._vocab = _read_vocab(self.vocab_path)
    self._base = self._build()
    self._configured: dict[int, Tokenizer] = {}

  def _build(self) -> Tokenizer:
    tok = Tokenizer(models.WordPiece(self._vocab, unk_token=UNK_TOKEN, max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(
      clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=self.lowercase
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
      single=f"{CLS_TOKEN} $A {SEP_TOKEN}",
      pair=f"{CLS_TOKEN} $A {SEP_TOKEN} $B:1 {SEP_TOKEN}:1",
      special_tokens=[(CLS_TOKEN, self.cls_id), (SEP_TOKEN, self.sep_id)],
    )
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    return tok

  @property
  def vocab_size(self) -> int:
    return len(self._vocab)

  @property
  def pad_id(self) -> int:
    return self._vocab[PAD_TOKEN]

  @property
  def unk_id(self) -> int:
    return self._vocab[UNK_TOKEN]

  @property
  def cls_id(self) -> int:
    return self._vocab[CLS_TOKEN]

  @property
  def sep_id(self) -> int:
    return self._vocab[SEP_TOKEN]

  @property
  def mask_id(self) -> int:
    return self._vocab[MASK_TOKEN]

  def token_to_id(self, token: str) -> int | None:
    return self._vocab.get(token)



BPE_BOS, BPE_PAD, BPE_EOS, BPE_UNK, BPE_MASK = "<s>", "<pad>", "</s>", "<unk>", "<mask>"
BPE_SPECIAL_TOKENS = (BPE_BOS, BPE_PAD, BPE_EOS, BPE_UNK, BPE_MASK)


def has_byte_level_bpe(directory: str | os.PathLike) -> bool:
  """True when `directory` holds a byte-level BPE tokenizer (tokenizer.json, or vocab.json + merges.txt)."""
  d = Path(directory)
  return (d / "tokenizer.json").is_file() or ((d / "vocab.json").is_file() and (d / "merges.txt").is_file())


class ByteLevelBpeTokenizer(_HfBackedTokenizer):
  """RoBERTa's tokenizer (Liu et al. 2019, arXiv 1907.11692 §4.4: GPT-2's byte-level BPE, no unknown bytes):
  '<s> A </s>' and '<s> A </s></s> B </s>', padded with `<pad>` (id 1 in RoBERTa vocabularies), token types all 0
  (RoBERTa has no segment embeddings). Same interface as `WordPieceTokenizer` for `core.finetune.features`'
  text features; `cls_id`/`sep_id` are `<s>`/`</s>`. `tokenize` of a lone word lacks the 'Ġ' (space) prefix it
  gets inside a sentence, so word-by-word features (span QA, tagging) are not supported (`supports_word_features`).

  Build it with `from_dir` (tokenizer.json preferred, else vocab.json + merges.txt), `from_files` or
  `from_tokenizer_json`. `encode` truncates to `max_length` (longest sequence first for pairs).
  """

  supports_word_features = False
  _pad_token, _frame, _segment_ids, _min_pair_length = BPE_PAD, "<s> x </s>", False, 4

  def __init__(self, tokenizer: Tokenizer, max_length: int = 512, source: str = ""):
    self.source = source
    self.max_length = max_length
    self._base = tokenizer
    self._base.no_truncation()
    self._base.no_padding()
    missing = [t for t in BPE_SPECIAL_TOKENS if tokenizer.token_to_id(t) is None]
    if missing:
      raise ValueError(f"{source or 'tokenizer'} lacks RoBERTa special tokens {missing}")
    self._configured: dict[int, Tokenizer] = {}

  @classmethod
  def from_files(
    cls, vocab_path: str | Path, merges_path: str | Path, *, add_prefix_space: bool = False, max_length: int = 512
  ) -> ByteLevelBpeTokenizer:
    """GPT-2 / RoBERTa files: vocab.json ({piece: id}) and merges.txt (one 'a b' merge a line, '#version' header)."""
    for path in (vocab_path, merges_path):
      if not Path(path).is_file():
        raise FileNotFoundError(f"byte-level BPE file not found: {path}")
    try:
      vocab = json.loads(Path(vocab_path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
      raise ValueError(f"{vocab_path}: invalid JSON ({e.msg} at line {e.lineno})") from None
    lines = Path(merges_path).read_text(encoding="utf-8").splitlines()
    merges = [tuple(line.split(" ")) for line in lines if line and not line.startswith("#version")]
    bad = [m for m in merges if len(m) != 2]
    if bad:
      raise ValueError(f"{merges_path}: merges must be 'a b' pairs, got {' '.join(bad[0])!r}")
    tok = Tokenizer(models.BPE(vocab, merges, unk_token=BPE_UNK if BPE_UNK in vocab else None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(
      [AddedToken(t, special=True) for t in BPE_SPECIAL_TOKENS if t != BPE_MASK]
      + [AddedToken(BPE_MASK, lstrip=True, special=True)]
    )
    if BPE_BOS in vocab and BPE_EOS in vocab:
      tok.post_processor = processors.RobertaProcessing(
        (BPE_EOS, vocab[BPE_EOS]), (BPE_BOS, vocab[BPE_BOS]), add_prefix_space=add_prefix_space
      )
    return cls(tok, max_length, source=str(vocab_path))

  @classmethod
  def from_tokenizer_json(cls, path: str | Path, max_length: int = 512) -> ByteLevelBpeTokenizer:
    """A HuggingFace tokenizer.json (pre-tokenizer, post-processor and special tokens as saved)."""
    if not Path(path).is_file():
      raise FileNotFoundError(f"tokenizer.json not found: {path}")
    try:
      tok = Tokenizer.from_file(str(path))
    except Exception as e:  # noqa: BLE001 - the tokenizers library raises a bare Exception for malformed files
      reason = str(e).splitlines()[0] if str(e) else type(e).__name__
      raise ValueError(f"{path}: not a tokenizers file ({reason})") from None
    return cls(tok, max_length, source=str(path))

  @classmethod
  def from_dir(cls, directory: str | os.PathLike, max_length: int = 512) -> ByteLevelBpeTokenizer:
    """tokenizer.json if `directory` has one, else vocab.json + merges.txt."""
    d = Path(directory)
    if (d / "tokenizer.json").is_file():
      return cls.from_tokenizer_json(d / "tokenizer.json", max_length)
    if not has_byte_level_bpe(d):
      raise FileNotFoundError(f"{d}: no tokenizer.json or vocab.json + merges.txt")
    return cls.from_files(d / "vocab.json", d / "merges.txt", max_length=max_length)

  def save(self, path: str | Path) -> None:
    """Writes the tokenizer as a HuggingFace tokenizer.json."""
    self._base.save(str(path))

  @property
  def vocab_size(self) -> int:
    return self._base.get_vocab_size(with_added_tokens=True)

  @property
  def pad_id(self) -> int:
    return self._base.token_to_id(BPE_PAD)

  @property
  def unk_id(self) -> int:
    return self._base.token_to_id(BPE_UNK)

  @property
  def cls_id(self) -> int:
    return self._base.token_to_id(BPE_BOS)

  @property
  def sep_id(self) -> int:
    return self._base.token_to_id(BPE_EOS)

  @property
  def mask_id(self) -> int:
    return self._base.token_to_id(BPE_MASK)

  def token_to_id(self, token: str) -> int | None:
    return self._base.token_to_id(token)



class ByteTokenizer:
  """UTF-8 byte tokenizer: id = byte + 3; ids 0, 1, 2 are pad, bos (begin) and eos (end of sequence).

  vocab_size is 259. `decode` drops special ids and replaces invalid UTF-8 with U+FFFD.
  """

  PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
  NUM_SPECIAL = 3
  vocab_size = 256 + NUM_SPECIAL

  @property
  def pad_id(self) -> int:
    return self.PAD_ID

  @property
  def bos_id(self) -> int:
    return self.BOS_ID

  @property
  def eos_id(self) -> int:
    return self.EOS_ID

  def encode(self, text: str, add_bos: bool = False, add_eos: bool = False) -> list[int]:
    ids = [b + self.NUM_SPECIAL for b in text.encode("utf-8")]
    return ([self.BOS_ID] if add_bos else []) + ids + ([self.EOS_ID] if add_eos else [])

  def encode_array(self, text: str, add_bos: bool = False, add_eos: bool = False) -> np.ndarray:
    """Same as `encode` as an int32 array (fast path for long documents)."""
    ids = np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int32) + self.NUM_SPECIAL
    parts = (
      ([np.array([self.BOS_ID], np.int32)] if add_bos else [])
      + [ids]
      + ([np.array([self.EOS_ID], np.int32)] if add_eos else [])
    )
    return np.concatenate(parts)

  def decode(self, ids: Sequence[int] | np.ndarray) -> str:
    values = [int(i) for i in ids]
    bad = [i for i in values if not 0 <= i < self.vocab_size]
    if bad:
      raise ValueError(f"byte token ids must be in [0, {self.vocab_size}), got {bad[:5]}")
    data = bytes(i - self.NUM_SPECIAL for i in values if i >= self.NUM_SPECIAL)
    return data.decode("utf-8", errors="replace")
