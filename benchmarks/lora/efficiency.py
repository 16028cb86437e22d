"""LoRA's efficiency claims measured in one run: parameters, optimizer state, step time, latency, serving, storage.

Hu et al. 2021 (arXiv 2106.09685) §4.2 and Table 1: trainable parameters and optimizer state shrink by the same
factor, training is faster (no gradients for the frozen weights), a merged adapter adds no inference latency, many
adapters share one base (S-LoRA / Punica serve a batch that mixes adapters; peft loops over them, peft #903 #2283).
Model: a BERT-family classifier of the bundled MiniLM-L6's shape (6 x 384, random init: timing does not depend on the
weights), LoRA r = 8 on query/value + the head trained, fp32, batch `--batch` x `--length` tokens; the training step
also with LoRA on all linear layers (QLoRA's choice), against the same full step.

  python -m benchmarks.lora.efficiency [--batch 32] [--length 128] [--adapters 8]

Goals (issue 13): trainable-parameter ratio = optimizer-state bytes ratio <= 1%; LoRA step / full step <= 0.7;
merged / base latency 1.00 +- 0.05; mixed batch of 8 adapters vs one merged adapter >= 0.7x throughput and vs a
loop over adapters (one sub-batch each, as peft) >= 2x; adapter switch <= 20 ms without recompiling; checkpoint
bytes: adapter directory vs the full model.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp

import lora_jax
from benchmarks.core import common
from benchmarks.lora import common as lora_common
from benchmarks.lora import serving
from lora_jax import checkpoint

NAME = "lora_efficiency"


def _bytes(tree) -> int:
  return int(sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree) if hasattr(x, "dtype")))


def _median_ms(fn, repeats) -> float:
  return 1e3 * float(np.median(common.time_fn(fn, warmup=2, repeats=repeats)))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--length", type=int, default=128)
  parser.add_argument("--adapters", type=int, default=8)
  parser.add_argument("--serve_length", type=int, default=16, help="tokens per request in the serving comparison")
  parser.add_argument("--rank", type=int, default=8)
  parser.add_argument("--repeats", type=int, default=7)
  parser.add_argument("--name", default=NAME)
  args = parser.parse_args()
  if args.batch % args.adapters:
    parser.error(f"--batch {args.batch} must be a multiple of --adapters {args.adapters}")

  model, params = lora_common.minilm_shape_classifier()
  rng = np.random.default_rng(0)
  ids, types, mask = lora_common.random_batch(rng, args.batch, args.length)
  labels = jnp.asarray(rng.integers(0, 2, (args.batch,)), jnp.int32)
  registry, adapters, spec = lora_common.adapter_registry(model, params, args.adapters, args.rank)
  lora = adapters[0]
  rows = {}

  # 1. Parameters and optimizer state (AdamW: two moments per trainable leaf).
  tx = optax.adamw(1e-4, weight_decay=0.01)
  trainable_lora = {"lora": lora, "head": params["head"]}
  full_state, lora_state = jax.eval_shape(tx.init, params), jax.eval_shape(tx.init, trainable_lora)
  n_total = sum(x.size for x in jax.tree.leaves(params))
  n_lora = sum(x.size for x in jax.tree.leaves(trainable_lora))
  rows["trainable_param_ratio"] = n_lora / n_total
  rows["optimizer_bytes_ratio"] = _bytes(lora_state) / _bytes(full_state)

  # 2. Training step: full finetuning vs LoRA on q/v and on every linear layer (QLoRA's choice), adapters + head
  # trained; `python -m benchmarks.lora.step_time` sweeps the sequence length.
  specs = {"full": None, "lora": spec,
           "all_linear": lora_jax.LoraSpec(lora_common.ALL_LINEAR, rank=args.rank, alpha=2.0 * args.rank)}
  steps = lora_common.compiled_steps(model, params, specs, (ids, types, mask), labels, tx)
  step_times = lora_common.step_ms(steps, args.repeats)
  rows["step_full_ms"], rows["step_lora_ms"] = step_times["full"], step_times["lora"]
  rows["step_ratio"] = rows["step_lora_ms"] / rows["step_full_ms"]
  rows["step_all_linear_ms"] = step_times["all_linear"]
  rows["step_all_linear_ratio"] = rows["step_all_linear_ms"] / rows["step_full_ms"]
  # XLA's own counts for the two compiled steps: the ratio a compute-bound device approaches (FLOPs) and the one a
  # memory-bound one does (bytes accessed); the measured ratio lies between them.
  full_cost, lora_cost = common.xla_cost(steps["full"][0]), common.xla_cost(steps["lora"][0])
  rows["step_flops_ratio"] = lora_cost["flops"] / full_cost["flops"]
  rows["step_bytes_ratio"] = lora_cost["bytes accessed"] / full_cost["bytes accessed"]

  # 3. Inference: base vs merged adapter (same program shape) vs factored adapter.
  forward_at = jax.jit(lambda p, *batch: model.apply({"params": p}, *batch))
  forward = lambda p: forward_at(p, ids, types, mask)  # noqa: E731
  merged = lora_jax.merge(params, lora, spec)
  latency = lora_common.interleaved_ms({"base": lambda: forward(params), "merged": lambda: forward(merged)},
                                       args.repeats)
  rows["base_ms"], rows["merged_ms"] = latency["base"], latency["merged"]
  rows["merged_over_base"] = rows["merged_ms"] / rows["base_ms"]

  # 4. Serving many adapters: mixed batch vs one merged adapter vs a loop over adapters (one sub-batch each);
  # `python -m benchmarks.lora.serving` sweeps the rows per adapter.
  for length in sorted({args.serve_length, args.length}):  # short requests (overhead-bound) and long (compute-bound)
    batch = jax.tree.map(lambda x, n=length: x[:, :n], (ids, types, mask))
    serve = serving.serve_ms(registry, lambda *b: forward_at(merged, *b), batch, args.adapters, args.repeats)
    rows[f"serve_L{length}_ms"] = serve
    rows[f"mixed_throughput_vs_merged_L{length}"] = serve["merged"] / serve["mixed"]
    rows[f"mixed_speedup_vs_loop_L{length}"] = serve["loop"] / serve["mixed"]
    # One adapter merged for every row does no per-row work: the most any mixed batch can gain over the loop here.
    rows[f"merged_speedup_vs_loop_L{length}"] = serve["loop"] / serve["merged"]
  rows["mixed_throughput_vs_merged"] = rows[f"mixed_throughput_vs_merged_L{args.serve_length}"]
  rows["mixed_speedup_vs_loop"] = rows[f"mixed_speedup_vs_loop_L{args.serve_length}"]

  # 5. Switching: the registry's forward with a different adapter each call vs the same adapter each call.
  one = jax.tree.map(lambda x: x[:1], (ids, types, mask))
  same = _median_ms(lambda: registry("task0", *one), args.repeats)
  programs = registry.compiled_programs()
  cycle = iter(range(10**9))
  switching = _median_ms(lambda: registry(f"task{next(cycle) % args.adapters}", *one), args.repeats)
  rows["switch_ms"] = max(0.0, switching - same)
  rows["recompiles_while_switching"] = registry.compiled_programs() - programs
  merge_switch = jax.jit(lambda p, old, new: lora_jax.merge(lora_jax.unmerge(p, old, spec), new, spec))
  rows["unmerge_merge_switch_ms"] = _median_ms(lambda: merge_switch(merged, adapters[0], adapters[1]), args.repeats)

  # 6. Storage: adapter directory (adapters + head) vs the full model in orbax.
  with tempfile.TemporaryDirectory() as tmp:
    rows["adapter_bytes"] = checkpoint.save(Path(tmp) / "adapter", lora, spec, extra=params["head"])
    with ocp.StandardCheckpointer() as ckpt:
      ckpt.save(Path(tmp) / "full", params)
    rows["full_model_bytes"] = sum(f.stat().st_size for f in (Path(tmp) / "full").rglob("*") if f.is_file())
  rows["checkpoint_bytes_ratio"] = rows["adapter_bytes"] / rows["full_model_bytes"]
  rows["lora_params"], rows["total_params"] = lora_jax.count(lora), int(n_total)

  goals = {
    "trainable_param_ratio": "<= 0.01", "optimizer_bytes_ratio": "<= 0.01 and = trainable ratio",
    "step_ratio": "<= 0.7", "merged_over_base": "1.00 +- 0.05", "mixed_throughput_vs_merged": ">= 0.7",
    "mixed_speedup_vs_loop": ">= 2", "switch_ms": "<= 20, no recompile", "checkpoint_bytes_ratio": "-",
  }  # fmt: skip
  print(f"MiniLM-shape classifier (6 x 384), batch {args.batch} x {args.length}, LoRA q/v r={args.rank}, fp32, "
        f"{jax.devices()[0].platform}")  # fmt: skip
  for key, goal in goals.items():
    print(f"  {key:>28}: {rows[key]:.4g}   (goal {goal})")
  for key in ("step_full_ms", "step_lora_ms", "step_all_linear_ms", "step_all_linear_ratio", "step_flops_ratio",
              "step_bytes_ratio", "base_ms", "merged_ms",
              *[k for k in rows if k[-1].isdigit()], "unmerge_merge_switch_ms",
              "recompiles_while_switching", "adapter_bytes", "full_model_bytes"):  # fmt: skip
    print(f"  {key:>28}: {rows[key]:.4g}")

  def plot(ax):
    keys = ["trainable_param_ratio", "optimizer_bytes_ratio", "step_ratio", "step_all_linear_ratio", "merged_over_base",
            "mixed_throughput_vs_merged", "mixed_speedup_vs_loop", "checkpoint_bytes_ratio"]  # fmt: skip
    ax.barh(range(len(keys)), [rows[k] for k in keys])
    ax.set_yticks(range(len(keys)), keys, fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("ratio (log scale)")
    ax.set_title(f"LoRA efficiency, MiniLM shape, batch {args.batch}x{args.length}")

  path = common.write_results(args.name, dict(settings=vars(args), rows=rows, goals=goals), plot)
  print(f"wrote {path}, {path.with_suffix('.png')}")


if __name__ == "__main__":
  main()
