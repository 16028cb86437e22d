"""Serving many adapters over one base: one mixed batch vs one merged adapter vs a loop over adapters.

Hu et al. 2021 (arXiv 2106.09685) §4.2: many small task adapters share one frozen base. S-LoRA and Punica (BGMV)
serve a batch whose rows name different adapters in one call; peft loops over the adapters, one sub-batch each
(peft #903, #2283). `lora_jax.apply_mixed` (through `Registry.mixed`) is the one-call kind. This script sweeps the
rows each adapter gets in a batch (1 = every request for a different adapter, the multi-tenant case BGMV is for):
the loop's cost is `adapters` calls of that many rows, the mixed batch one call of all of them. One merged adapter
serving every row does no per-row work at all: its time over the loop's bounds what any mixed-batch code can gain.

  python -m benchmarks.lora.serving [--adapters 8] [--rows 1,2,4,8] [--lengths 16,128]

Goals (issue 13): mixed batch vs one merged adapter >= 0.7x throughput, vs the loop >= 2x.
"""

from __future__ import annotations

import argparse

import jax
import numpy as np

import lora_jax
from benchmarks.core import common
from benchmarks.lora import common as lora_common
from lora_jax.registry import Registry

NAME = "lora_serving"


def split_by_adapter(batch, n_adapters: int):
  """(names_B, order, sub_batches): row b names adapter `task{b mod n}`; the loop serves adapter k's rows
  `order[k * per:(k + 1) * per]` as `sub_batches[k]`, so `mixed[order]` lines up with the loop's outputs."""
  rows = batch[0].shape[0]
  if rows % n_adapters:
    raise ValueError(f"split_by_adapter: batch rows {rows} must be a multiple of the adapter count {n_adapters}")
  names = [f"task{b % n_adapters}" for b in range(rows)]  # every adapter in every batch
  order = np.argsort([b % n_adapters for b in range(rows)], kind="stable")
  per = rows // n_adapters
  sub = [jax.tree.map(lambda x, k=k: x[order[k * per:(k + 1) * per]], batch) for k in range(n_adapters)]
  return names, order, sub


def serve_ms(registry: Registry, forward_merged, batch, n_adapters: int, repeats: int) -> dict[str, float]:
  """Median ms of one batch served three ways: `merged` (one adapter merged, every row), `mixed` (row b with
  adapter b mod n in one call) and `loop` (one call per adapter on its rows, as peft does)."""
  names, _, sub = split_by_adapter(batch, n_adapters)
  return lora_common.interleaved_ms({
    "merged": lambda: forward_merged(*batch),
    "mixed": lambda: registry.mixed(names, *batch),
    "loop": lambda: [registry(f"task{k}", *sub[k]) for k in range(n_adapters)],
  }, repeats)  # fmt: skip


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--adapters", type=int, default=8)
  parser.add_argument("--rows", type=lora_common.int_list, default=[1, 2, 4, 8],
                      help="rows per adapter in a batch, comma-separated")
  parser.add_argument("--lengths", type=lora_common.int_list, default=[16, 128],
                      help="tokens per request, comma-separated")
  parser.add_argument("--rank", type=int, default=8)
  parser.add_argument("--repeats", type=int, default=9)
  parser.add_argument("--name", default=NAME)
  args = parser.parse_args()
  if min(args.rows) < 1 or min(args.lengths) < 1 or args.adapters < 1:
    parser.error(f"--rows {args.rows}, --lengths {args.lengths} and --adapters {args.adapters} must be positive")

  model, params = lora_common.minilm_shape_classifier()
  registry, adapters, spec = lora_common.adapter_registry(model, params, args.adapters, args.rank)
  merged = lora_jax.merge(params, adapters[0], spec)
  forward_at = jax.jit(lambda p, *batch: model.apply({"params": p}, *batch))
  rng = np.random.default_rng(0)
  points = []
  print(f"{args.adapters} adapters (q/v, r={args.rank}), MiniLM shape, fp32, {jax.devices()[0].platform}")
  print(f"{'tokens':>6} {'rows/adapter':>12} {'batch':>5} {'merged ms':>9} {'mixed ms':>9} {'loop ms':>9} "
        f"{'mixed/merged thr.':>17} {'loop/mixed':>10} {'loop/merged':>11}")  # fmt: skip
  for length in args.lengths:
    for per in args.rows:
      batch = lora_common.random_batch(rng, per * args.adapters, length)
      ms = serve_ms(registry, lambda *b: forward_at(merged, *b), batch, args.adapters, args.repeats)
      point = dict(length=length, rows_per_adapter=per, batch=per * args.adapters,
                   **{f"{way}_ms": v for way, v in ms.items()},
                   mixed_throughput_vs_merged=ms["merged"] / ms["mixed"],
                   mixed_speedup_vs_loop=ms["loop"] / ms["mixed"], merged_speedup_vs_loop=ms["loop"] / ms["merged"])
      points.append(point)
      print(f"{length:>6} {per:>12} {point['batch']:>5} {ms['merged']:>9.1f} {ms['mixed']:>9.1f} {ms['loop']:>9.1f} "
            f"{point['mixed_throughput_vs_merged']:>17.2f} {point['mixed_speedup_vs_loop']:>10.2f} "
            f"{point['merged_speedup_vs_loop']:>11.2f}")  # fmt: skip

  def plot(ax):
    lora_common.plot_sweep(
      ax, points, group="length", x="rows_per_adapter", goal=2.0,
      curves=[("mixed_speedup_vs_loop", "o-", "mixed vs loop, {} tokens"),
              ("merged_speedup_vs_loop", "x:", "ceiling (merged vs loop), {} tokens")],
      xlabel=f"rows per adapter ({args.adapters} adapters in every batch)", ylabel="loop time / one-call time",
      title=f"Serving {args.adapters} LoRA adapters on {jax.devices()[0].platform}")  # fmt: skip

  path = common.write_results(args.name, dict(settings=vars(args), points=points), plot)
  print(f"wrote {path}, {path.with_suffix('.png')}")


if __name__ == "__main__":
  main()
