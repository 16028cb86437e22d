"""Tests for core.data.tokenizers: WordPiece against BERT's reference tokenizer, byte tokenizer."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from core.data import corpora
from core.data.tokenizers import ByteTokenizer, WordPieceTokenizer

GOLDEN = Path(__file__).parent / "golden" / "wordpiece_golden.json"


@pytest.fixture(scope="module")
def wordpiece() -> WordPieceTokenizer:
  return WordPieceTokenizer(corpora.bert_vocab_path())


def test_golden_file_matches_the_vocab():
  golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
  assert golden["vocab_sha256"] == hashlib.sha256(corpora.bert_vocab_path().read_bytes()).hexdigest()
  assert len(golden["cases"]) >= 50
  assert sum(1 for c in golden["cases"] if c["pair"] is not None) >= 5


def test_ids_equal_reference_bert_tokenizer(wordpiece):
  golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
  mismatches = []
  for case in golden["cases"]:
    ours = wordpiece.encode(case["text"], case["pair"])
    if ours != case["ids"]:
      mismatches.append((case["text"][:40], case["pair"], ours, case["ids"]))
  assert not mismatches, mismatches


def test_special_ids_and_vocab(wordpiece):
  assert wordpiece.vocab_size == 30_522
  assert (wordpiece.pad_id, wordpiece.unk_id, wordpiece.cls_id, wordpiece.sep_id, wordpiece.mask_id) == (
    0,
    100,
    101,
    102,
    103,
  )
  assert wordpiece.tokenize("Unaffable") == ["una", "##ffa", "##ble"]  # greedy longest match first
  assert wordpiece.encode("hello world") == [101, 7592, 2088, 102]


def test_decode_inverts_encode_on_normalized_text(wordpiece):
  text = "the capital of france is paris, and zurich is in switzerland."
  assert wordpiece.decode(wordpiece.encode(text)) == text
  assert wordpiece.decode(wordpiece.encode("Café Déjà")) == "cafe deja"
  assert wordpiece.decode(wordpiece.encode("a"), skip_special_tokens=False) == "[CLS] a [SEP]"


def test_encode_truncates_to_max_length(wordpiece):
  long_text = "word " * 1000
  ids = wordpiece.encode(long_text)
  assert len(ids) == 512 and ids[0] == 101 and ids[-1] == 102
  short = WordPieceTokenizer(corpora.bert_vocab_path(), max_length=8)
  ids = short.encode("one two three four five six", "seven eight nine ten")
  assert len(ids) == 8 and ids.count(102) == 2


def test_offsets_map_each_wordpiece_back_to_its_characters(wordpiece):
  text = "The Bank of England opened in 1694."
  ids, offsets, word_ids = wordpiece.encode_with_offsets(text)
  assert ids == wordpiece.encode(text)[1:-1]  # the same ids as encode, without [CLS] / [SEP]
  pieces = wordpiece.tokenize(text)
  for piece, (start, end) in zip(pieces, offsets):
    assert text[start:end].lower() == piece.removeprefix("##")
  assert word_ids[0] == 0 and word_ids[-1] == len(text.replace(".", " .").split()) - 1


def test_encode_batch_pads_and_truncates(wordpiece):
  texts = ["What is the capital of France?", "short", "long " * 200]
  pairs = ["Paris.", "x", "y"]
  batch = wordpiece.encode_batch(texts, pairs, max_length=16)
  assert set(batch) == {"input_ids", "token_type_ids", "attention_mask"}
  for value in batch.values():
    assert value.shape == (3, 16) and value.dtype == np.int32
  first = wordpiece.encode(texts[0], pairs[0])
  np.testing.assert_array_equal(batch["input_ids"][0, : len(first)], first)
  np.testing.assert_array_equal(batch["input_ids"][0, len(first) :], 0)
  assert batch["attention_mask"][0].sum() == len(first)
  # token types: 0 on [CLS] A [SEP], 1 on B [SEP], 0 on padding
  sep = len(wordpiece.encode(texts[0]))
  np.testing.assert_array_equal(batch["token_type_ids"][0, :sep], 0)
  np.testing.assert_array_equal(batch["token_type_ids"][0, sep : len(first)], 1)
  assert batch["attention_mask"][2].sum() == 16 and batch["input_ids"][2, -1] == 102
  single = wordpiece.encode_batch(["a b c"], max_length=8)
  np.testing.assert_array_equal(single["input_ids"][0], [101, 1037, 1038, 1039, 102, 0, 0, 0])
  np.testing.assert_array_equal(single["token_type_ids"], 0)
  with pytest.raises(ValueError, match="2 texts but 1 pairs"):
    wordpiece.encode_batch(["a", "b"], ["c"])


def test_missing_vocab_is_a_one_line_error(tmp_path):
  missing = tmp_path / "nope" / "vocab.txt"
  with pytest.raises(FileNotFoundError) as info:
    WordPieceTokenizer(missing)
  message = str(info.value)
  assert "\n" not in message and str(missing) in message and "make data" in message


@pytest.mark.parametrize(
  "text", ["", "hello", "Ünïcödé ✓", "中文 日本語 한국어", "emoji 😀🎉👍🏽", "\x00\x01 control \t\n", "a" * 1000]
)
def test_byte_tokenizer_round_trip(text):
  tok = ByteTokenizer()
  ids = tok.encode(text, add_bos=True, add_eos=True)
  assert ids[0] == tok.bos_id == 1 and ids[-1] == tok.eos_id == 2
  assert all(3 <= i < tok.vocab_size for i in ids[1:-1])
  assert len(ids) == len(text.encode("utf-8")) + 2
  assert tok.decode(ids) == text
  np.testing.assert_array_equal(tok.encode_array(text, add_bos=True, add_eos=True), ids)


def test_byte_tokenizer_layout_and_errors():
  tok = ByteTokenizer()
  assert tok.vocab_size == 259 and tok.pad_id == 0
  assert tok.encode("A") == [ord("A") + 3]
  assert tok.decode([0, 0, ord("h") + 3, ord("i") + 3, 2, 0]) == "hi"
  assert tok.decode([0xFF + 3]) == "\ufffd"  # invalid UTF-8 is replaced
  with pytest.raises(ValueError, match="byte token ids"):
    tok.decode([259])
