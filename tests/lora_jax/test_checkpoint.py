"""lora_jax.checkpoint: adapter-only orbax directories restored onto a base given by path, and peft-format adapters
(torch layout, peft's key names and scaling) written and read back."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lora_jax
from core import bert as bert_lib
from core import bert_import, pretrained
from lora_jax import checkpoint

ENCODER = bert_lib.BertConfig(
  vocab_size=40, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=24, max_position_embeddings=16
)
SPEC = lora_jax.LoraSpec(
  [(r"encoder/layer_\d+/attention/query/kernel", 2, 4.0), r"encoder/layer_\d+/attention/value/kernel"],
  rank=3, alpha=6.0,
)  # fmt: skip


def _encoder_params():
  ids = jnp.zeros((1, 4), jnp.int32)
  return {"encoder": jax.jit(bert_lib.BertEncoder(ENCODER).init)(jax.random.key(0), ids)["params"]}


def _trained_adapters(params, spec=SPEC):
  """Adapters with non-zero B (as after training), so a wrong transpose or scaling shows in the outputs."""
  lora = lora_jax.init(jax.random.key(1), params, spec)
  return jax.tree_util.tree_map_with_path(
    lambda path, x: jax.random.normal(jax.random.key(len(str(path))), x.shape) * 0.1
    if "lora_b" in str(path) else x, lora)  # fmt: skip


def _forward(params, lora):
  ids = jnp.array([[1, 5, 7, 9, 2, 0]])
  encoder = bert_lib.BertEncoder(ENCODER)
  return lora_jax.apply(encoder, params["encoder"], lora["encoder"], _strip(SPEC), ids)


def _strip(spec):
  """The spec over paths without the leading 'encoder/' (BertEncoder's own param tree)."""
  targets = [(t[0].removeprefix("encoder/"), *t[1:]) if isinstance(t, tuple) else t.removeprefix("encoder/")
             for t in spec.targets]  # fmt: skip
  return lora_jax.LoraSpec(targets, rank=spec.rank, alpha=spec.alpha, rslora=spec.rslora)


def test_adapter_directory_restores_onto_a_base_given_by_path(tmp_path):
  params = _encoder_params()
  lora = _trained_adapters(params)
  head = {"kernel": np.arange(6, dtype=np.float32).reshape(3, 2)}
  base_dir = bert_import.save_hf_bert(tmp_path / "base", ENCODER, params["encoder"])
  written = checkpoint.save(tmp_path / "adapter", lora, SPEC, extra=head, base=str(base_dir))
  on_disk = sum(f.stat().st_size for f in (tmp_path / "adapter" / "params").rglob("*") if f.is_file())
  assert written == on_disk > 0

  restored, spec, extra, meta = checkpoint.load(tmp_path / "adapter")
  assert spec == SPEC and meta["adapter_params"] == lora_jax.count(lora) == 2 * (2 * (16 + 16) + 3 * (16 + 16))
  np.testing.assert_array_equal(extra["kernel"], head["kernel"])
  _, base = pretrained.load_encoder(meta["base"])
  np.testing.assert_allclose(_forward({"encoder": base}, restored), _forward(params, lora), atol=1e-6)
  assert float(jnp.abs(_forward(params, lora) - _forward(params, jax.tree.map(jnp.zeros_like, lora))).max()) > 1e-3

  with pytest.raises(FileExistsError, match="exists and is not empty; not overwriting"):
    checkpoint.save(tmp_path / "adapter", lora, SPEC)
  assert checkpoint.load(tmp_path / "adapter")[3] == meta  # untouched
  with pytest.raises(FileNotFoundError, match="not saved by lora_jax.checkpoint.save"):
    checkpoint.load(tmp_path / "base")


def test_peft_export_uses_torch_layout_names_and_scaling_and_reads_back(tmp_path):
  params = _encoder_params()
  lora = _trained_adapters(params)
  checkpoint.export_peft(tmp_path / "peft", lora, SPEC, base_model="tiny-bert")
  config = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
  assert config["peft_type"] == "LORA" and config["target_modules"] == ["query", "value"]
  from safetensors.numpy import load_file

  tensors = load_file(str(tmp_path / "peft" / "adapter_model.safetensors"))
  module = "encoder.layer.1.attention.self.query"
  a_peft, b_peft = tensors[f"base_model.model.{module}.lora_A.weight"], tensors[f"base_model.model.{module}.lora_B.weight"]
  assert a_peft.shape == (2, 16) and b_peft.shape == (16, 2)  # torch Linear: A [r, in], B [out, r]
  rank = config["rank_pattern"].get(module, config["r"])
  alpha = config["alpha_pattern"].get(module, config["lora_alpha"])
  delta_torch = (alpha / rank) * b_peft @ a_peft  # peft's ΔW for a torch weight [out, in]
  kernel_path = "encoder/layer_1/attention/query/kernel"
  a, b = lora_jax.adapters(lora)[kernel_path]
  ours = lora_jax.delta(kernel_path, a, b, (16, 16), SPEC)
  np.testing.assert_allclose(delta_torch.T, ours, rtol=1e-6, atol=1e-7)

  back, spec = checkpoint.import_peft(tmp_path / "peft")
  for path, (a0, b0) in lora_jax.adapters(lora).items():
    a1, b1 = lora_jax.adapters(back)[path]
    np.testing.assert_array_equal(a1, a0)
    np.testing.assert_array_equal(b1, b0)
    assert spec.scaling(path) == SPEC.scaling(path)
  with pytest.raises(FileNotFoundError, match="lacks adapter_model.safetensors"):
    checkpoint.import_peft(tmp_path)
