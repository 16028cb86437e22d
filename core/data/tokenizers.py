"""Tokenizers: BERT WordPiece (HF `tokenizers` backend, matches BERT's reference tokenizer) and bytes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

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


class WordPieceTokenizer:
  """BERT WordPiece tokenizer: basic (whitespace / punctuation / CJK) split, lowercasing and accent
  stripping when `lowercase`, greedy longest-match-first WordPiece, '[CLS] A [SEP] (B [SEP])'.

  `encode` truncates to `max_length` (longest sequence first for pairs).
  """

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

  def _tokenizer(self, max_length: int, pad: bool) -> Tokenizer:
    key = max_length if pad else -max_length
    if key not in self._configured:
      if max_length < 3:
        raise ValueError(f"max_length must be >= 3 to hold [CLS] x [SEP], got {max_length}")
      tok = Tokenizer.from_str(self._base.to_str())
      tok.enable_truncation(max_length=max_length, strategy="longest_first")
      if pad:
        tok.enable_padding(pad_id=self.pad_id, pad_token=PAD_TOKEN, length=max_length)
      self._configured[key] = tok
    return self._configured[key]

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

  def tokenize(self, text: str) -> list[str]:
    """WordPiece strings without special tokens."""
    return self._base.encode(text, add_special_tokens=False).tokens

  def encode(self, text: str, pair: str | None = None, add_special_tokens: bool = True) -> list[int]:
    """Token ids of '[CLS] text [SEP] (pair [SEP])', truncated to `self.max_length`."""
    return self._tokenizer(self.max_length, pad=False).encode(text, pair, add_special_tokens=add_special_tokens).ids

  def encode_batch(
    self, texts: Sequence[str], pairs: Sequence[str] | None = None, max_length: int = 128
  ) -> dict[str, np.ndarray]:
    """Encodes a batch, truncated and padded to `max_length`.

    Returns int32 arrays [B, max_length]: input_ids, token_type_ids (1 on the pair segment) and
    attention_mask (1 on real tokens).
    """
    texts = list(texts)
    if pairs is not None:
      pairs = list(pairs)
      if len(pairs) != len(texts):
        raise ValueError(f"got {len(texts)} texts but {len(pairs)} pairs")
      inputs = list(zip(texts, pairs))
    else:
      inputs = texts
    encodings = self._tokenizer(max_length, pad=True).encode_batch(inputs)
    shape = (len(texts), max_length)
    return {
      "input_ids": np.array([e.ids for e in encodings], dtype=np.int32).reshape(shape),
      "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int32).reshape(shape),
      "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int32).reshape(shape),
    }

  def encode_documents(self, texts: Sequence[str]) -> list[np.ndarray]:
    """Whole documents as int32 WordPiece ids, no special tokens, no truncation (input to packing)."""
    encodings = self._base.encode_batch(list(texts), add_special_tokens=False)
    return [np.asarray(e.ids, dtype=np.int32) for e in encodings]

  def decode(self, ids: Sequence[int] | np.ndarray, skip_special_tokens: bool = True) -> str:
    return self._base.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

  def convert_ids_to_tokens(self, ids: Sequence[int] | np.ndarray) -> list[str]:
    return [self._base.id_to_token(int(i)) for i in ids]


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
