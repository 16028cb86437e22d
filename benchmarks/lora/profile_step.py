"""Where a LoRA training step spends its time: a per-op profile of one compiled backward, from `jax.profiler`.

The gradient of the classification loss w.r.t. adapters + head (`--method lora`, LoRA r = 8 on the parameters
matching `--targets`) or w.r.t. every parameter (`--method full`, full finetuning's backward) on a MiniLM-shape
classifier (`--layers` x 384, random init), batch `--batch` x `--length`, fp32. The step is timed (median of
`--repeats`), then traced for 3 calls; each XLA op's (fusion's) mean time per call is read back from the Perfetto
trace, and the slowest `--top` go to results/<name>.json + a bar plot, with every op's time summed by kind
(`ynn_fusion.45` and `ynn_fusion.3` are both `ynn_fusion`). On XLA:CPU each fusion is one trace event, so this finds
the op a slow step spends its time in (how the all-linear step's 0.91 of full finetuning was traced to the FFN
intermediate's adapters: lora_jax/README.md, Efficiency), and, run once per method, where LoRA's backward saves.

  python -m benchmarks.lora.profile_step --targets 'encoder/layer_\\d+/intermediate/kernel'
  python -m benchmarks.lora.profile_step --method full --layers 2 --length 128 --name lora_profile_full_step
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import lora_jax
from benchmarks.core import common
from benchmarks.lora import common as lora_common

NAME = "lora_profile_step"
_HOST_EVENTS = ("ThunkExecutor", "$", "SlinkyThreadPool")  # the executor's and Python's frames, not XLA ops


def op_times_ms(trace_dir: str, calls: int) -> dict[str, float]:
  """Mean ms per call of each XLA op in the Perfetto trace `jax.profiler.trace` wrote under trace_dir."""
  trace = next(Path(trace_dir).rglob("*.trace.json.gz"))
  totals = collections.Counter()
  for event in json.loads(gzip.decompress(trace.read_bytes()))["traceEvents"]:
    if event.get("ph") == "X" and not event["name"].startswith(_HOST_EVENTS):
      totals[event["name"]] += event.get("dur", 0) / 1e3 / calls
  return dict(totals.most_common())


def op_kinds_ms(ops: dict[str, float]) -> dict[str, float]:
  """Op times summed by kind: the name without XLA's numeric suffix (`ynn_fusion.45` -> `ynn_fusion`), slowest first."""
  kinds = collections.Counter()
  for name, ms in ops.items():
    stem, _, suffix = name.rpartition(".")
    kinds[stem if stem and suffix.isdigit() else name] += ms
  return dict(kinds.most_common())


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--method", default="lora", choices=("lora", "full"), help="full: every parameter's gradient")
  parser.add_argument("--targets", default=r"encoder/layer_\d+/intermediate/kernel")
  parser.add_argument("--layers", type=int, default=1)
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--length", type=int, default=64)
  parser.add_argument("--repeats", type=int, default=10)
  parser.add_argument("--top", type=int, default=12)
  parser.add_argument("--name", default=NAME)
  args = parser.parse_args()

  model, params = lora_common.minilm_shape_classifier(args.layers)
  ids, types, mask = lora_common.random_batch(np.random.default_rng(0), args.batch, args.length)
  labels = jnp.zeros((args.batch,), jnp.int32)
  spec = lora_jax.LoraSpec(args.targets, rank=8, alpha=16.0)
  lora = lora_common.trained_adapter(params, spec)

  batch = (ids, types, mask)
  if args.method == "full":
    compiled = jax.jit(jax.grad(lambda p: lora_common.loss_full(model, p, batch, labels))).lower(params).compile()
    step = lambda: compiled(params)  # noqa: E731
  else:
    trainable = {"lora": lora, "head": params["head"]}
    grad = jax.grad(lambda t, base: lora_common.loss_lora(model, spec, t, base, batch, labels))
    compiled = jax.jit(grad).lower(trainable, params).compile()
    step = lambda: compiled(trainable, params)  # noqa: E731
  flops = float(common.xla_cost(compiled)["flops"])
  step_ms = 1e3 * float(np.median(common.time_fn(step, warmup=2, repeats=args.repeats)))
  calls = 3
  with tempfile.TemporaryDirectory() as trace_dir:
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
      for _ in range(calls):
        jax.block_until_ready(step())
    ops = op_times_ms(trace_dir, calls)
  top, kinds = dict(list(ops.items())[: args.top]), op_kinds_ms(ops)
  what = "full finetuning" if args.method == "full" else args.targets
  print(f"{what}: {args.layers} layer(s), batch {args.batch} x {args.length}: backward {step_ms:.1f} ms, "
        f"{flops / 1e9:.1f} GFLOP (XLA's count)")
  for name, ms in top.items():
    print(f"  {ms:8.2f} ms  {name}")
  print("by kind: " + ", ".join(f"{name} {ms:.1f}" for name, ms in list(kinds.items())[:6]) + " (ms)")

  def plot(ax):
    ax.barh(range(len(top)), list(top.values()))
    ax.set_yticks(range(len(top)), list(top), fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("ms per call")
    ax.set_title(f"{'Full' if args.method == 'full' else 'LoRA'} backward by XLA op ({step_ms:.0f} ms in all)")

  results = dict(settings=vars(args), step_ms=step_ms, flops=flops, top_ops_ms=top, op_kinds_ms=kinds,
                 ops_total_ms=sum(ops.values()))
  path = common.write_results(args.name, results, plot)
  print(f"wrote {path}, {path.with_suffix('.png')}")


if __name__ == "__main__":
  main()
