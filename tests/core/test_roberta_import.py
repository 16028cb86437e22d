"""core.bert_import on the RoBERTa family (Liu et al. 2019, arXiv 1907.11692): golden match with HF transformers on a
tiny random RobertaModel (tests/core/golden/make_roberta_golden.py), config mapping, one-line errors, and the
byte-level BPE tokenizer of core.data.tokenizers on a vocabulary written here."""

import json
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from core import bert, bert_import, pretrained
from core.config import ConfigError
from core.data import tokenizers
from core.finetune import features
from core.finetune.examples import TaggingExample, TextExample

GOLDEN_DIR = Path(__file__).parent / "golden"
TINY_DIR = GOLDEN_DIR / "tiny_roberta"


@pytest.fixture(scope="module")
def golden():
  return dict(np.load(GOLDEN_DIR / "tiny_roberta_golden.npz"))


@pytest.fixture(scope="module")
def tiny():
  return bert_import.load_hf_bert(TINY_DIR)


def _hidden(config, params, g):
  token_types = np.zeros_like(g["input_ids"])
  out = bert.BertEncoder(config).apply({"params": params}, g["input_ids"], token_types, g["attention_mask"])
  return np.asarray(out, np.float32)


def _one_line_error(exc_type, fn, match):
  with pytest.raises(exc_type, match=match) as info:
    fn()
  assert "\n" not in str(info.value)
  return str(info.value)


def test_tiny_roberta_matches_transformers_golden(tiny, golden):
  config, params = tiny
  hidden = _hidden(config, params, golden)
  real = golden["attention_mask"].astype(bool)
  assert real[0].all() and not real[1].all()  # row 1 is right-padded
  err = np.abs(hidden - golden["last_hidden_state"])[real].max()
  print(f"tiny RoBERTa max abs error vs transformers on real tokens: {err:.2e}")
  assert err < 1e-5
  # Without the offset (HF's rows 0..L-1 as positions) the outputs are clearly different: the test can fail.
  table = load_file(str(TINY_DIR / "model.safetensors"))["embeddings.position_embeddings.weight"]
  shifted = jax.tree.map(np.asarray, params)
  shifted["embeddings"]["position_embeddings"]["embedding"] = table[:18]
  assert np.abs(_hidden(config, shifted, golden) - golden["last_hidden_state"])[real].max() > 1e-2


def test_config_fields_mapped(tiny):
  config, params = tiny
  hf = json.loads((TINY_DIR / "config.json").read_text())
  assert hf["model_type"] == "roberta" and hf["max_position_embeddings"] == 20 and hf["pad_token_id"] == 1
  assert config.max_position_embeddings == 18  # 20 - (padding_idx + 1)
  assert (config.type_vocab_size, config.layer_norm_eps) == (1, 1e-5)
  assert (config.vocab_size, config.hidden_size, config.num_layers, config.num_heads) == (64, 16, 2, 2)
  assert params["embeddings"]["position_embeddings"]["embedding"].shape == (18, 16)
  assert bert_import.position_offset(hf) == 2 and bert_import.position_offset(hf | {"pad_token_id": 0}) == 1
  assert bert_import.position_offset({"model_type": "bert", "pad_token_id": 0}) == 0
  for family in ("xlm-roberta", "camembert"):
    assert bert_import.config_from_hf(hf | {"model_type": family}) == config


def test_prefixed_checkpoint_and_pretrained_loader(tiny, tmp_path):
  # RobertaForMaskedLM-style names ('roberta.' prefix, lm_head, position_ids buffer) load to the same params.
  _, params = tiny
  tensors = {f"roberta.{k}": v for k, v in load_file(str(TINY_DIR / "model.safetensors")).items()}
  tensors["roberta.embeddings.position_ids"] = np.arange(20, dtype=np.int64)[None]
  tensors["lm_head.bias"] = np.zeros(64, np.float32)
  d = tmp_path / "mlm"
  d.mkdir()
  save_file(tensors, str(d / "model.safetensors"))
  shutil.copy(TINY_DIR / "config.json", d / "config.json")
  _, loaded = bert_import.load_hf_bert(d)
  jax.tree.map(np.testing.assert_array_equal, loaded, params)
  # core.pretrained accepts the directory as it is (what finetuning's init_checkpoint reads).
  assert pretrained.resolve(TINY_DIR) == ("bert", TINY_DIR)
  config, enc = pretrained.load_encoder(TINY_DIR)
  assert config.max_position_embeddings == 18
  jax.tree.map(np.testing.assert_array_equal, enc, jax.tree.map(np.asarray, params))


def _write(tmp_path: Path, name: str, hf: dict, tensors: dict) -> Path:
  d = tmp_path / name
  d.mkdir()
  save_file(tensors, str(d / "model.safetensors"))
  (d / "config.json").write_text(json.dumps(hf))
  return d


def test_bad_checkpoints_give_one_line_errors(tmp_path):
  hf = json.loads((TINY_DIR / "config.json").read_text())
  tensors = load_file(str(TINY_DIR / "model.safetensors"))
  # A position table with no row after the padding_idx + 1 offset rows (config says 2 = pad + 1 rows).
  positions = "embeddings.position_embeddings.weight"
  short = tensors | {positions: tensors[positions][:2]}
  d = _write(tmp_path, "short", hf | {"max_position_embeddings": 2}, short)
  _one_line_error(ValueError, lambda: bert_import.load_hf_bert(d), "no position after the padding_idx")
  # A table that disagrees with config.json names the tensor and both row counts.
  d = _write(tmp_path, "rows", hf, short)
  msg = _one_line_error(ValueError, lambda: bert_import.load_hf_bert(d), "embeddings.position_embeddings.weight")
  assert "(2, 16)" in msg and "20 rows" in msg
  # Unsupported model types and the RoBERTa MLM head.
  d = _write(tmp_path, "deberta", hf | {"model_type": "deberta-v2"}, tensors)
  _one_line_error(ValueError, lambda: bert_import.load_hf_bert(d), "unsupported model_type 'deberta-v2'")
  _one_line_error(ValueError, lambda: bert_import.load_hf_bert(TINY_DIR, with_mlm_head=True), "with_mlm_head")
  with pytest.raises(ConfigError, match="not loadable: unsupported model_type"):
    pretrained.load_encoder(d)


def _bpe_files(tmp_path: Path) -> Path:
  """A tiny byte-level BPE vocabulary: RoBERTa's 5 special tokens, the bytes of 'a', 'b', 'c', ' ' (Ġ) and merges."""
  vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4}
  for piece in ("a", "b", "c", "Ġ", "ab", "Ġab", "Ġc"):
    vocab[piece] = len(vocab)
  d = tmp_path / "bpe"
  d.mkdir()
  (d / "vocab.json").write_text(json.dumps(vocab))
  (d / "merges.txt").write_text("#version: 0.2\na b\nĠ ab\nĠ c\n", encoding="utf-8")
  return d


def test_byte_level_bpe_layout_and_padding(tmp_path):
  d = _bpe_files(tmp_path)
  tok = tokenizers.ByteLevelBpeTokenizer.from_dir(d)
  assert (tok.cls_id, tok.pad_id, tok.sep_id, tok.unk_id, tok.mask_id, tok.vocab_size) == (0, 1, 2, 3, 4, 12)
  assert tok.tokenize("ab c") == ["ab", "Ġc"]
  batch = tok.encode_batch(["ab c", "ab"], ["c", "ab ab"], max_length=10)
  ab, g_c, c, g_ab = 9, 11, 7, 10
  # <s> A </s></s> B </s> (Liu et al. 2019 as released), padded with pad id 1, token types all 0.
  np.testing.assert_array_equal(batch["input_ids"][0], [0, ab, g_c, 2, 2, c, 2, 1, 1, 1])
  np.testing.assert_array_equal(batch["input_ids"][1], [0, ab, 2, 2, ab, g_ab, 2, 1, 1, 1])
  np.testing.assert_array_equal(batch["attention_mask"][0], [1] * 7 + [0] * 3)
  assert not batch["token_type_ids"].any() and batch["input_ids"].dtype == np.int32
  single = tok.encode_batch(["ab c ab c"], max_length=4)  # truncated: <s> ab Ġc </s>
  np.testing.assert_array_equal(single["input_ids"][0], [0, ab, g_c, 2])
  assert tok.decode(batch["input_ids"][0]) == "ab cc"
  # The same tokenizer from a tokenizer.json, and the finetuning runner's choice of tokenizer.
  tok.save(d / "tokenizer.json")
  from_json = tokenizers.ByteLevelBpeTokenizer.from_dir(d)
  np.testing.assert_array_equal(from_json.encode_batch(["ab c"], ["c"], 10)["input_ids"], batch["input_ids"][:1])
  feats = features.text_features([TextExample(("ab c", "c"), 1)], tok, 10)
  np.testing.assert_array_equal(feats.inputs["input_ids"], batch["input_ids"][:1])
  # Word-level features (span QA, tagging) need WordPieces: one-line error naming the task type.
  _one_line_error(
    ConfigError, lambda: features.tagging_features([TaggingExample(["ab"], [0])], tok, 10), "task type tagging"
  )


def test_runner_picks_the_byte_level_tokenizer(tmp_path):
  import ml_collections

  from core.finetune import runner

  config = ml_collections.ConfigDict({"task": {"vocab_path": ""}})
  d = _bpe_files(tmp_path)
  assert isinstance(runner._tokenizer(config, str(d)), tokenizers.ByteLevelBpeTokenizer)
  (d / "tokenizer.json").write_text("{not json")
  _one_line_error(ConfigError, lambda: runner._tokenizer(config, str(d)), "tokenizer.json: not a tokenizers file")
  (d / "tokenizer.json").unlink()
  (d / "vocab.json").unlink()
  assert isinstance(runner._tokenizer(config, str(d)), tokenizers.WordPieceTokenizer)  # the bundled default
