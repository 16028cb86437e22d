"""Import of HuggingFace BERT-family checkpoints (safetensors + config.json) into the `core.bert` param tree.

Reads the weights of a pretrained BERT (Devlin et al. 2018, §3) or ELECTRA discriminator body with
`safetensors.numpy.load_file` - no torch needed. torch Linear weights are stored [out, in] (y = x Wᵀ + b) and are
transposed to flax's [in, out] kernels; embedding tables are copied as they are.

RoBERTa family (Liu et al. 2019, RoBERTa, arXiv 1907.11692 §4; model_type 'roberta', 'xlm-roberta', 'camembert',
tensor prefix 'roberta.'): the same encoder as BERT, with type_vocab_size 1 and layer_norm_eps 1e-5 read from
config.json, and learned positions offset by padding_idx + 1. HF computes the position of token i as
cumsum(input_ids != pad)_i + padding_idx, so in a right-padded row real token i reads row i + padding_idx + 1 (= i + 2
for the usual pad id 1) and padding reads row padding_idx. The import drops the first padding_idx + 1 rows of
`position_embeddings` (514 -> 512 for roberta-base; padding_idx = config.json's `pad_token_id`, default 1), so the
plain 0..L-1 positions of `core.bert` equal HF's for every real token of a right-padded batch (left padding or a pad
id inside a row would shift HF's positions; padded positions differ but are masked out as keys). The MLM head
(`lm_head.*`) is not imported; `save_hf_bert` writes BERT names only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from core import tree as tree_lib
from core.bert import BertConfig, BertEncoder, BertForMlm

# Model types whose weights follow the BERT layout exactly, and the RoBERTa family (positions offset by pad + 1).
_BERT_MODEL_TYPES = (None, "bert", "electra")
_ROBERTA_MODEL_TYPES = ("roberta", "xlm-roberta", "camembert")
_SUPPORTED_MODEL_TYPES = _BERT_MODEL_TYPES + _ROBERTA_MODEL_TYPES
_BASE_PREFIXES = ("bert.", "electra.", "roberta.")
# Top-level names of the base model; an unused tensor under one of these means config and weights disagree.
_BASE_NAMESPACES = ("embeddings.", "encoder.", "embeddings_project.")
_IGNORED = ("embeddings.position_ids", "embeddings.token_type_ids")
_POSITIONS = "embeddings.position_embeddings.weight"


def position_offset(hf: dict[str, Any]) -> int:
  """Rows of HF's `position_embeddings` before the row of position 0: padding_idx + 1 for the RoBERTa family (HF's
  position of real token i is cumsum(non-pad)_i + padding_idx, Liu et al. 2019 as released), 0 for BERT/ELECTRA."""
  if hf.get("model_type") not in _ROBERTA_MODEL_TYPES:
    return 0
  pad = hf.get("pad_token_id", 1)
  if pad is None:
    pad = 1
  if not isinstance(pad, int) or isinstance(pad, bool) or pad < 0:
    raise ValueError(f"config.json: pad_token_id must be an int >= 0 for model_type {hf['model_type']!r}, got {pad!r}")
  return pad + 1


def config_from_hf(hf: dict[str, Any], dtype: str = "float32") -> BertConfig:
  """Maps a HuggingFace Bert/Electra/RobertaConfig dict to `BertConfig`; one-line ValueError if unsupported.

  For the RoBERTa family max_position_embeddings is the usable count, HF's minus `position_offset` (514 -> 512)."""
  model_type = hf.get("model_type")
  if model_type not in _SUPPORTED_MODEL_TYPES:
    supported = ", ".join(t for t in _SUPPORTED_MODEL_TYPES if t)
    raise ValueError(f"unsupported model_type {model_type!r}; supported: {supported}")
  if hf.get("hidden_act", "gelu") != "gelu":
    raise ValueError(f"unsupported hidden_act {hf.get('hidden_act')!r}; only exact (erf) 'gelu' is implemented")
  if hf.get("position_embedding_type", "absolute") != "absolute":
    raise ValueError(
      f"unsupported position_embedding_type {hf.get('position_embedding_type')!r}; only 'absolute' is implemented"
    )
  if hf.get("is_decoder") or hf.get("add_cross_attention"):
    raise ValueError("unsupported config: is_decoder/add_cross_attention (encoder-only BERT is implemented)")
  required = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
    "type_vocab_size",
  )
  missing = [k for k in required if k not in hf]
  if missing:
    raise ValueError(f"config.json lacks required keys {missing}")
  embedding_size = hf.get("embedding_size")
  if embedding_size == hf["hidden_size"]:
    embedding_size = None
  offset = position_offset(hf)
  if int(hf["max_position_embeddings"]) < offset + 1:
    raise ValueError(
      f"{model_type} max_position_embeddings {hf['max_position_embeddings']} leaves no position after the "
      f"padding_idx + 1 = {offset} offset rows (need >= {offset + 1})"
    )
  return BertConfig(
    vocab_size=int(hf["vocab_size"]),
    hidden_size=int(hf["hidden_size"]),
    num_layers=int(hf["num_hidden_layers"]),
    num_heads=int(hf["num_attention_heads"]),
    intermediate_size=int(hf["intermediate_size"]),
    embedding_size=None if embedding_size is None else int(embedding_size),
    max_position_embeddings=int(hf["max_position_embeddings"]) - offset,
    type_vocab_size=int(hf["type_vocab_size"]),
    hidden_dropout_rate=float(hf.get("hidden_dropout_prob", 0.1)),
    attention_dropout_rate=float(hf.get("attention_probs_dropout_prob", 0.1)),
    layer_norm_eps=float(hf.get("layer_norm_eps", 1e-12)),
    initializer_range=float(hf.get("initializer_range", 0.02)),
    dtype=dtype,
  ).validate()


def _name_map(config: BertConfig, with_mlm_head: bool) -> dict[tuple[str, ...], tuple[str, bool]]:
  """flax param path -> (HF tensor name without the 'bert.' prefix, transpose?). LayerNorm names use weight/bias."""
  names: dict[tuple[str, ...], tuple[str, bool]] = {}

  def dense(path: tuple[str, ...], hf: str) -> None:
    names[path + ("kernel",)] = (f"{hf}.weight", True)
    names[path + ("bias",)] = (f"{hf}.bias", False)

  def norm(path: tuple[str, ...], hf: str) -> None:
    names[path + ("scale",)] = (f"{hf}.weight", False)
    names[path + ("bias",)] = (f"{hf}.bias", False)

  for table in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
    names[("embeddings", table, "embedding")] = (f"embeddings.{table}.weight", False)
  norm(("embeddings", "layer_norm"), "embeddings.LayerNorm")
  if config.emb_size != config.hidden_size:
    dense(("embeddings_project",), "embeddings_project")
  for i in range(config.num_layers):
    ours, hf = (f"layer_{i}",), f"encoder.layer.{i}"
    for proj in ("query", "key", "value"):
      dense(ours + ("attention", proj), f"{hf}.attention.self.{proj}")
    dense(ours + ("attention", "out"), f"{hf}.attention.output.dense")
    norm(ours + ("attention_layer_norm",), f"{hf}.attention.output.LayerNorm")
    dense(ours + ("intermediate",), f"{hf}.intermediate.dense")
    dense(ours + ("output",), f"{hf}.output.dense")
    norm(ours + ("output_layer_norm",), f"{hf}.output.LayerNorm")
  if with_mlm_head:
    names = {("encoder",) + k: v for k, v in names.items()}
    dense(("mlm_head", "dense"), "cls.predictions.transform.dense")
    norm(("mlm_head", "layer_norm"), "cls.predictions.transform.LayerNorm")
    names[("mlm_head", "bias")] = ("cls.predictions.bias", False)
  return names


def hf_tensor_names(config: BertConfig) -> dict[str, tuple[str, bool]]:
  """'/'-joined `BertEncoder` param path -> (HF tensor name, stored transposed?): e.g. 'layer_0/attention/query/kernel'
  -> ('encoder.layer.0.attention.self.query.weight', True). What adapter formats (peft) name modules by."""
  return {"/".join(path): value for path, value in _name_map(config, with_mlm_head=False).items()}


def _resolve(path: Any) -> tuple[Path, Path]:
  path = Path(path)
  weights = path / "model.safetensors" if path.is_dir() else path
  if not weights.is_file():
    raise FileNotFoundError(f"no safetensors checkpoint at {weights}")
  config = weights.parent / "config.json"
  if not config.is_file():
    raise FileNotFoundError(f"no config.json next to {weights}")
  return weights, config


def _lookup(tensors: dict[str, np.ndarray], prefix: str, name: str) -> str | None:
  """The stored key for `name`, trying the base-model prefix and the old TF gamma/beta LayerNorm names."""
  candidates = [name]
  if ".LayerNorm." in name:
    candidates.append(
      name.replace(".LayerNorm.weight", ".LayerNorm.gamma").replace(".LayerNorm.bias", ".LayerNorm.beta")
    )
  for cand in candidates:
    for key in (cand,) if cand.startswith("cls.") else (prefix + cand, cand):
      if key in tensors:
        return key
  return None


def load_hf_bert(path: Any, *, dtype: str = "float32", with_mlm_head: bool = False) -> tuple[BertConfig, dict]:
  """Loads `model.safetensors` + `config.json` (a directory, or the .safetensors file) into `BertEncoder` params.

  Accepts the HF names of BertModel / BertForMaskedLM / ElectraModel / RobertaModel (optional 'bert.', 'electra.'
  or 'roberta.' prefix); ignores the pooler, task heads and the position_ids buffer. RoBERTa-family position tables
  lose their first padding_idx + 1 rows (module docstring); their MLM head (`lm_head.*`) is not read. With
  `with_mlm_head=True` the result is the `BertForMlm` tree {'encoder', 'mlm_head'} read from `cls.predictions.*`
  (ValueError if the checkpoint has no MLM head, e.g. all-MiniLM-L6-v2; or for the RoBERTa family). Params are
  float32; `dtype` sets the config's compute dtype.

  Raises one-line FileNotFoundError (missing file) or ValueError (unsupported config, missing tensors, a tensor
  whose shape disagrees with config.json, unexpected base-model tensors, an untied MLM decoder).
  """
  from safetensors.numpy import load_file

  weights_path, config_path = _resolve(path)
  try:
    hf_config = json.loads(config_path.read_text())
  except json.JSONDecodeError as e:
    raise ValueError(f"{config_path}: invalid JSON ({e.msg} at line {e.lineno})") from None
  config = config_from_hf(hf_config, dtype=dtype)
  offset = position_offset(hf_config)
  if offset and with_mlm_head:
    raise ValueError(f"{weights_path.name}: with_mlm_head is not supported for model_type {hf_config['model_type']!r}")
  tensors = load_file(str(weights_path))
  prefix = next((p for p in _BASE_PREFIXES if any(k.startswith(p) for k in tensors)), "")
  positions_key = _lookup(tensors, prefix, _POSITIONS)
  if offset and positions_key is not None:
    table = tensors[positions_key]
    rows = int(hf_config["max_position_embeddings"])
    if table.ndim != 2 or table.shape[0] != rows:
      raise ValueError(
        f"{weights_path.name}: tensor {positions_key} has shape {tuple(table.shape)}, expected {rows} rows "
        f"from config.json (padding_idx + 1 = {offset} offset rows + {config.max_position_embeddings} positions)"
      )
    tensors[positions_key] = table[offset:]

  model = BertForMlm(config) if with_mlm_head else BertEncoder(config)
  ids_1x1 = jnp.zeros((1, 1), jnp.int32)
  expected = traverse_util.flatten_dict(jax.eval_shape(lambda: model.init(jax.random.key(0), ids_1x1))["params"])
  names = _name_map(config, with_mlm_head)
  if set(names) != set(expected):
    raise AssertionError(f"internal name map out of sync with the model: {set(names) ^ set(expected)}")

  if with_mlm_head and not any(k.startswith("cls.predictions.") for k in tensors):
    raise ValueError(
      f"{weights_path}: no MLM head (cls.predictions.*) in this checkpoint; "
      "load the encoder and initialise the head instead"
    )
  flat: dict[tuple[str, ...], np.ndarray] = {}
  used: set[str] = set()
  missing: list[str] = []
  for our_path, (hf_name, transpose) in names.items():
    key = _lookup(tensors, prefix, hf_name)
    if key is None:
      missing.append(hf_name)
      continue
    want = tuple(expected[our_path].shape)
    value = tensors[key]
    got = tuple(value.shape[::-1]) if transpose else tuple(value.shape)
    if got != want:
      torch_want = want[::-1] if transpose else want
      raise ValueError(
        f"{weights_path.name}: tensor {key} has shape {tuple(value.shape)}, expected {torch_want} from config.json"
      )
    value = np.asarray(value, np.float32)
    flat[our_path] = np.ascontiguousarray(value.T) if transpose else value
    used.add(key)
  if missing:
    raise ValueError(f"{weights_path.name}: {len(missing)} tensors missing, e.g. {missing[:4]}")

  unexpected = sorted(
    k
    for k in tensors
    if k not in used and k.removeprefix(prefix) not in _IGNORED and k.removeprefix(prefix).startswith(_BASE_NAMESPACES)
  )
  if unexpected:
    raise ValueError(
      f"{weights_path.name}: {len(unexpected)} base-model tensors not used by config.json "
      f"(e.g. {unexpected[:4]}); config and weights disagree"
    )
  if with_mlm_head and "cls.predictions.decoder.weight" in tensors:
    table = flat[("encoder", "embeddings", "word_embeddings", "embedding")]
    if not np.array_equal(np.asarray(tensors["cls.predictions.decoder.weight"], np.float32), table):
      raise ValueError(
        f"{weights_path.name}: cls.predictions.decoder.weight differs from the word "
        "embeddings; only tied MLM heads are supported"
      )

  params = traverse_util.unflatten_dict({k: jnp.asarray(v) for k, v in flat.items()})
  tree_lib.check_shapes(traverse_util.unflatten_dict(expected), params, weights_path.name)
  return config, params


def to_hf_tensors(
  config: BertConfig, params: dict, *, with_mlm_head: bool = False, prefix: str = ""
) -> dict[str, np.ndarray]:
  """Inverse of `load_hf_bert`: flax params -> HF-named float32 numpy tensors (torch [out, in] layout).

  Write them with `safetensors.numpy.save_file`; `prefix='bert.'` gives BertForMaskedLM-style names.
  """
  flat = traverse_util.flatten_dict(params)
  out: dict[str, np.ndarray] = {}
  for our_path, (hf_name, transpose) in _name_map(config, with_mlm_head).items():
    value = np.asarray(flat[our_path], np.float32)
    key = hf_name if hf_name.startswith("cls.") else prefix + hf_name
    out[key] = np.ascontiguousarray(value.T) if transpose else value
  return out


def hf_config_dict(config: BertConfig) -> dict[str, Any]:
  """A HuggingFace-style config.json dict for `config` (inverse of `config_from_hf`)."""
  hf = {
    "model_type": "bert",
    "hidden_act": "gelu",
    "position_embedding_type": "absolute",
    "vocab_size": config.vocab_size,
    "hidden_size": config.hidden_size,
    "num_hidden_layers": config.num_layers,
    "num_attention_heads": config.num_heads,
    "intermediate_size": config.intermediate_size,
    "max_position_embeddings": config.max_position_embeddings,
    "type_vocab_size": config.type_vocab_size,
    "hidden_dropout_prob": config.hidden_dropout_rate,
    "attention_probs_dropout_prob": config.attention_dropout_rate,
    "layer_norm_eps": config.layer_norm_eps,
    "initializer_range": config.initializer_range,
  }
  if config.embedding_size is not None:
    hf.update(model_type="electra", embedding_size=config.embedding_size)
  return hf


def save_hf_bert(
  directory: str | Path, config: BertConfig, params: dict, *, vocab_path: str | Path | None = None
) -> Path:
  """Inverse of `load_hf_bert` for `BertEncoder` params: writes `model.safetensors` + `config.json` (HF names and
  layout) and a copy of `vocab_path` as `vocab.txt` into `directory`; returns it."""
  from safetensors.numpy import save_file

  directory = Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  save_file(to_hf_tensors(config, params), str(directory / "model.safetensors"))
  (directory / "config.json").write_text(json.dumps(hf_config_dict(config), indent=2))
  if vocab_path:
    (directory / "vocab.txt").write_bytes(Path(vocab_path).read_bytes())
  return directory
