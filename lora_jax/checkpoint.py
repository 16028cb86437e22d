"""Adapter-only checkpoints (orbax) and peft-format safetensors adapters for BERT-family encoders.

Hu et al. 2021 (arXiv 2106.09685) §4.2: "we only need to store and load" the adapters, 35 MB instead of 350 GB for
GPT-3 with r = 4; many tasks share one base. US 2022/0383126: the low-rank matrices stored per task, the base stored
once. Here an adapter directory holds only the adapters (+ optional extra trained params such as a task head) and
`lora_spec.json` (the spec, the base it was trained on, parameter and byte counts); the base comes from its own path.

  save(directory, lora_params, spec, extra=head, base='minilm')    -> bytes written
  lora_params, spec, extra, meta = load(directory)
  export_peft(directory, lora_params, spec)                      -> adapter_model.safetensors + adapter_config.json
  lora_params, spec = import_peft(directory)                     (huggingface/peft's LoRA format, BERT names)

peft layout (`peft/tuners/lora/layer.py`): per adapted torch Linear `<module>.lora_A.weight` [r, in] and
`<module>.lora_B.weight` [out, r], keys prefixed 'base_model.model.', scaling lora_alpha / r (or / √r with
use_rslora). Our A [in, r], B [r, out] are their transposes, so ΔW (flax [in, out]) = s·A@B = (s·B_peft@A_peft)ᵀ.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import traverse_util

from core import bert as bert_lib
from core import bert_import
from lora_jax import lora as lora_lib
from lora_jax.spec import LoraSpec

SPEC_FILE = "lora_spec.json"
PARAMS_DIR = "params"
PEFT_WEIGHTS, PEFT_CONFIG = "adapter_model.safetensors", "adapter_config.json"
_PEFT_PREFIX = "base_model.model."
_HF_BASE_PREFIXES = ("bert.", "roberta.", "electra.")


def spec_to_dict(spec: LoraSpec) -> dict[str, Any]:
  targets = [t if isinstance(t, str) else list(t) for t in spec.targets]
  return dict(targets=targets, rank=spec.rank, alpha=spec.alpha, rslora=spec.rslora, dropout=spec.dropout,
              init=spec.init, in_axes=spec.in_axes)  # fmt: skip


def spec_from_dict(d: dict[str, Any]) -> LoraSpec:
  targets = [t if isinstance(t, str) else tuple(t) for t in d["targets"]]
  return LoraSpec(targets, rank=d["rank"], alpha=d["alpha"], rslora=d["rslora"], dropout=d["dropout"],
                  init=d["init"], in_axes=d["in_axes"])  # fmt: skip


def _dir_bytes(directory: Path) -> int:
  return sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())


def save(directory: str | os.PathLike, lora_params: Any, spec: LoraSpec, *, extra: Any = None, base: str = "") -> int:
  """Writes the adapters (+ `extra` trained params, e.g. the head) and `lora_spec.json`; returns the bytes written.

  Refuses to overwrite: an existing adapter directory is never replaced (a one-line FileExistsError).
  """
  directory = Path(directory).absolute()
  if directory.exists() and any(directory.iterdir()):
    raise FileExistsError(f"lora_jax.checkpoint.save: {directory} exists and is not empty; not overwriting it")
  directory.mkdir(parents=True, exist_ok=True)
  tree = {"lora": jax.device_get(lora_params), "extra": jax.device_get(extra) if extra is not None else {}}
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(directory / PARAMS_DIR, tree)
  meta = {
    "spec": spec_to_dict(spec),
    "base": base,
    "adapter_params": lora_lib.count(lora_params),
    "extra_params": int(sum(np.size(x) for x in jax.tree.leaves(tree["extra"]))),
  }
  meta["bytes"] = _dir_bytes(directory / PARAMS_DIR)
  (directory / SPEC_FILE).write_text(json.dumps(meta, indent=2) + "\n")
  return meta["bytes"]


def load(directory: str | os.PathLike) -> tuple[Any, LoraSpec, Any, dict[str, Any]]:
  """(lora_params, spec, extra, meta) from a `save` directory; one-line errors for a directory that is not one."""
  directory = Path(directory).absolute()
  if not (directory / SPEC_FILE).is_file() or not (directory / PARAMS_DIR).is_dir():
    raise FileNotFoundError(f"lora_jax.checkpoint.load: {directory} has no {SPEC_FILE} + {PARAMS_DIR}/ (not saved "
                            f"by lora_jax.checkpoint.save)")  # fmt: skip
  meta = json.loads((directory / SPEC_FILE).read_text())
  with ocp.StandardCheckpointer() as checkpointer:
    tree = checkpointer.restore(directory / PARAMS_DIR)
  return tree["lora"], spec_from_dict(meta["spec"]), tree["extra"] or None, meta


def _hf_module_names(n_layers: int) -> dict[str, str]:
  """Our kernel path ('encoder/layer_0/attention/query/kernel') -> the HF module ('encoder.layer.0.attention.self.query'),
  from `core.bert_import`'s name map (BERT, ELECTRA and RoBERTa bodies share these names)."""
  config = bert_lib.BertConfig(num_layers=n_layers)
  names = {}
  for path, (hf_name, transpose) in bert_import.hf_tensor_names(config).items():
    if transpose:  # the kernels of torch Linear layers
      names[f"encoder/{path}"] = hf_name.removesuffix(".weight")
  return names


def _layers(paths) -> int:
  found = [int(m.group(1)) for p in paths if (m := re.search(r"layer_(\d+)/", p))]
  return max(found, default=-1) + 1


def export_peft(directory: str | os.PathLike, lora_params: Any, spec: LoraSpec, *, base_model: str = "") -> Path:
  """Writes the adapters of a `core.bert` encoder (params under 'encoder/...') in peft's LoRA format."""
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top

  pairs = lora_lib.adapters(lora_params)
  names = _hf_module_names(_layers(pairs))
  tensors, ranks, alphas = {}, {}, {}
  for path, (a, b) in pairs.items():
    if path not in names:
      raise ValueError(f"export_peft: {path} is not a BERT-family Linear kernel (peft names cover encoder/layer_i/...)")
    module = names[path]
    tensors[f"{_PEFT_PREFIX}{module}.lora_A.weight"] = np.ascontiguousarray(np.asarray(a, np.float32).T)
    tensors[f"{_PEFT_PREFIX}{module}.lora_B.weight"] = np.ascontiguousarray(np.asarray(b, np.float32).T)
    rule = spec.rule(path)
    ranks[module], alphas[module] = rule.rank, rule.alpha
  rank, alpha = max(set(ranks.values()), key=list(ranks.values()).count), max(alphas.values())
  config = {
    "peft_type": "LORA",
    "base_model_name_or_path": base_model,
    "r": rank,
    "lora_alpha": alpha,
    "rank_pattern": {m: r for m, r in ranks.items() if r != rank},
    "alpha_pattern": {m: a for m, a in alphas.items() if a != alpha},
    "target_modules": sorted({m.rsplit(".", 1)[-1] for m in ranks}),
    "use_rslora": spec.rslora,
    "lora_dropout": spec.dropout,
    "bias": "none",
    "fan_in_fan_out": False,
    "modules_to_save": None,
    "task_type": None,
  }
  directory = Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  save_file(tensors, str(directory / PEFT_WEIGHTS))
  (directory / PEFT_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
  return directory


def import_peft(directory: str | os.PathLike) -> tuple[dict[str, Any], LoraSpec]:
  """peft LoRA adapters of a BERT-family model -> (lora_params over 'encoder/...' kernel paths, spec)."""
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top

  directory = Path(directory)
  if not (directory / PEFT_WEIGHTS).is_file() or not (directory / PEFT_CONFIG).is_file():
    raise FileNotFoundError(f"import_peft: {directory} lacks {PEFT_WEIGHTS} or {PEFT_CONFIG}")
  config = json.loads((directory / PEFT_CONFIG).read_text())
  if config.get("peft_type") != "LORA" or config.get("use_dora") or config.get("fan_in_fan_out"):
    raise ValueError(f"import_peft: {directory / PEFT_CONFIG}: only plain LoRA adapters (peft_type LORA, no DoRA, "
                     f"fan_in_fan_out false) are supported")  # fmt: skip
  tensors = load_file(str(directory / PEFT_WEIGHTS))
  modules = {}
  for key, value in tensors.items():
    match = re.fullmatch(r"(?:base_model\.model\.)?(.+)\.lora_([AB])(?:\.default)?\.weight", key)
    if match is None:
      raise ValueError(f"import_peft: unexpected tensor {key} (modules_to_save / embedding adapters not supported)")
    module = match.group(1)
    for prefix in _HF_BASE_PREFIXES:
      module = module.removeprefix(prefix)
    modules.setdefault(module, {})[match.group(2)] = value
  layers = 1 + max((int(m.group(1)) for k in modules if (m := re.search(r"layer\.(\d+)\.", k))), default=-1)
  ours = {hf: path for path, hf in _hf_module_names(layers).items()}
  flat, rules = {}, []
  for module, pair in sorted(modules.items()):
    if module not in ours or set(pair) != {"A", "B"}:
      raise ValueError(f"import_peft: {module} is not a BERT-family Linear with both lora_A and lora_B")
    path = ours[module]
    flat[f"{path}/{lora_lib.LORA_A}"] = np.ascontiguousarray(np.asarray(pair["A"], np.float32).T)
    flat[f"{path}/{lora_lib.LORA_B}"] = np.ascontiguousarray(np.asarray(pair["B"], np.float32).T)
    rank = config.get("rank_pattern", {}).get(module, config["r"])
    alpha = config.get("alpha_pattern", {}).get(module, config["lora_alpha"])
    rules.append((re.escape(path), int(rank), float(alpha)))
  spec = LoraSpec(rules, rank=int(config["r"]), alpha=float(config["lora_alpha"]),
                  rslora=bool(config.get("use_rslora", False)), dropout=float(config.get("lora_dropout", 0.0)))  # fmt: skip
  return traverse_util.unflatten_dict(flat, sep="/"), spec
