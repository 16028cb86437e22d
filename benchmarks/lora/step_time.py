"""LoRA's training step against full finetuning's, swept over the sequence length (and batch size).

Hu et al. 2021 (arXiv 2106.09685) §4.2: LoRA trains faster because it computes no gradient for the frozen weights
(25% more throughput on GPT-3 175B). It saves the frozen weights' gradient products, a third of a step's matmul
FLOPs, and their optimizer update; it keeps the forward and the input-gradient products down to the first adapted
layer. Full finetuning's gradient and AdamW update of every parameter (22.8M, half of them the word-embedding
table) cost the same for any number of tokens in the batch, so LoRA saves a larger share of a short-sequence step.
Per shape, one run times full finetuning, LoRA on query/value and LoRA on every linear layer in alternation
(`--repeats` rounds, medians), and records XLA's FLOPs and bytes-accessed ratios of the compiled q/v and full steps.

  python -m benchmarks.lora.step_time [--lengths 32,64,128] [--batches 32] [--rank 8]

Goal (issue 13): LoRA step / full step <= 0.7 on the same model and batch.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax

import lora_jax
from benchmarks.core import common
from benchmarks.lora import common as lora_common

NAME = "lora_step_time"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--lengths", type=lora_common.int_list, default=[32, 64, 128], help="comma-separated")
  parser.add_argument("--batches", type=lora_common.int_list, default=[32], help="comma-separated")
  parser.add_argument("--rank", type=int, default=8)
  parser.add_argument("--repeats", type=int, default=9)
  parser.add_argument("--name", default=NAME)
  args = parser.parse_args()
  if min(args.lengths) < 1 or min(args.batches) < 1 or args.rank < 1:
    parser.error(f"--lengths {args.lengths}, --batches {args.batches} and --rank {args.rank} must be positive")

  model, params = lora_common.minilm_shape_classifier()
  specs = {"full": None,
           "lora": lora_jax.LoraSpec(lora_common.TARGETS, rank=args.rank, alpha=2.0 * args.rank),
           "all_linear": lora_jax.LoraSpec(lora_common.ALL_LINEAR, rank=args.rank, alpha=2.0 * args.rank)}  # fmt: skip
  tx = optax.adamw(1e-4, weight_decay=0.01)
  rng = np.random.default_rng(0)
  points = []
  print(f"MiniLM-shape classifier (6 x 384), LoRA r={args.rank}, AdamW, fp32, {jax.devices()[0].platform}")
  print(f"{'batch':>5} {'length':>6} {'full ms':>8} {'q/v ms':>8} {'all ms':>8} {'q/v / full':>10} "
        f"{'all / full':>10} {'FLOPs ratio':>11} {'bytes ratio':>11}")  # fmt: skip
  for batch_size in args.batches:
    for length in args.lengths:
      batch = lora_common.random_batch(rng, batch_size, length)
      labels = jnp.asarray(rng.integers(0, 2, (batch_size,)), jnp.int32)
      steps = lora_common.compiled_steps(model, params, specs, batch, labels, tx)
      ms = lora_common.step_ms(steps, args.repeats)
      full_cost, lora_cost = common.xla_cost(steps["full"][0]), common.xla_cost(steps["lora"][0])
      point = {"batch": batch_size, "length": length, **{f"step_{name}_ms": v for name, v in ms.items()},
               "step_ratio": ms["lora"] / ms["full"], "step_all_linear_ratio": ms["all_linear"] / ms["full"],
               "step_flops_ratio": lora_cost["flops"] / full_cost["flops"],
               "step_bytes_ratio": lora_cost["bytes accessed"] / full_cost["bytes accessed"]}  # fmt: skip
      points.append(point)
      print(f"{batch_size:>5} {length:>6} {ms['full']:>8.1f} {ms['lora']:>8.1f} {ms['all_linear']:>8.1f} "
            f"{point['step_ratio']:>10.3f} {point['step_all_linear_ratio']:>10.3f} "
            f"{point['step_flops_ratio']:>11.3f} {point['step_bytes_ratio']:>11.3f}")  # fmt: skip

  def plot(ax):
    lora_common.plot_sweep(
      ax, points, group="batch", x="length", goal=0.7,
      curves=[("step_ratio", "o-", "q/v LoRA / full, batch {}"),
              ("step_all_linear_ratio", "s-", "all-linear LoRA / full, batch {}"),
              ("step_flops_ratio", "x:", "XLA FLOPs ratio (q/v), batch {}"),
              ("step_bytes_ratio", "+:", "XLA bytes ratio (q/v), batch {}")],
      xlabel="sequence length (tokens)", ylabel="training step time / full finetuning's",
      title=f"LoRA training step vs full finetuning on {jax.devices()[0].platform}")  # fmt: skip

  path = common.write_results(args.name, {"settings": vars(args), "points": points}, plot)
  print(f"wrote {path}, {path.with_suffix('.png')}")


if __name__ == "__main__":
  main()
