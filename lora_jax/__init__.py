"""LoRA: low-rank adaptation of any Flax Linen model (Hu et al. 2021, arXiv 2106.09685). Imports only `core`.

  spec = LoraSpec(r'.*/attention/(query|value)/kernel', rank=8, alpha=16.0)
  lora_params = init(jax.random.key(0), params, spec)           # A kaiming, B = 0: the base model exactly
  y = apply(model, params, lora_params, spec, x)                 # y = base(x) + s·(x·A)·B, model code untouched
  merged = merge(params, lora_params, spec)                      # W₀ + ΔW in float32, cast once (§4.2)
  y_B = apply_mixed(model, params, stack([lp0, lp1]), ids_B, spec, x)   # row b uses adapter ids_B[b]
  registry = Registry(model, params, spec)                       # named adapters, one compiled forward
  lora_jax.checkpoint.save(dir, lora_params, spec) / .load(dir)  # adapter-only; export_peft / import_peft

Finetuning entry point: `python -m lora_jax.finetune --config=configs/lora/cpu.py --workdir=W` (lora_jax/README.md).
"""

from lora_jax.apply import apply, apply_mixed
from lora_jax.lora import adapters, combine, count, delta, init, merge, stack, unmerge
from lora_jax.registry import Registry
from lora_jax.spec import LoraSpec

__all__ = [
  "LoraSpec",
  "Registry",
  "adapters",
  "apply",
  "apply_mixed",
  "combine",
  "count",
  "delta",
  "init",
  "merge",
  "stack",
  "unmerge",
]
