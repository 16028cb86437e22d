"""Memory of a ReformerLM training step against depth: reversible vs plain residual stack (Reformer §3, Table 5).

Kitaev et al., arXiv 2001.04451 §3: a reversible stack stores only its outputs and recomputes each layer's inputs in
the backward pass, so activation memory does not grow with the number of layers (the n_l factor of Table 3 removed);
a plain stack keeps every layer's activations for backprop. Measured from XLA's compiled memory analysis of
jit(value_and_grad(loss)) (`.lower(...).compile().memory_analysis()`: temp = the buffers the step allocates beyond its
arguments and outputs, i.e. activations and workspace) for 2 / 6 / 12 layers at L = 16K, and with --rss the peak
resident memory of a fresh process that runs one step (`resource.getrusage`, includes the Python / XLA runtime).

Issue 11 goals: reversible 12 layers <= 1.3x reversible 2 layers; plain 12 layers >= 3x reversible 12 layers.

  python -m benchmarks.reformer.memory_vs_depth [--length 16384] [--layers 2,6,12] [--rss]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import optax

from benchmarks.core import common
from reformer_jax import model as model_lib

NAME = "reformer_memory_vs_depth"


def make_config(args, n_layers: int, reversible: bool) -> model_lib.ReformerConfig:
  return model_lib.ReformerConfig(
    d_model=args.d_model,
    d_ff=args.d_ff,
    n_layers=n_layers,
    n_heads=args.heads,
    d_head=args.d_head,
    attention=(args.attention,),
    n_hashes=args.hashes,
    chunk_len=args.chunk,
    local_chunk_len=args.chunk,
    max_len=args.length,
    reversible=reversible,
    ff_chunk_size=args.ff_chunk,
  ).validate()


def make_step(config: model_lib.ReformerConfig):
  """jit(value_and_grad) of ReformerLM's next-byte cross-entropy on ids [B, L] (what a train step differentiates)."""
  model = model_lib.ReformerLM(config)

  def loss(params, ids_BxL, key):
    logits_BxLxV = model.apply({"params": params}, ids_BxL, rngs={"hash": key})
    return optax.softmax_cross_entropy_with_integer_labels(logits_BxLxV[:, :-1], ids_BxL[:, 1:]).mean()

  def init(key, ids_BxL):
    return model.init({"params": key, "hash": key}, ids_BxL)["params"]

  return jax.jit(jax.value_and_grad(loss)), init


def measure(args, n_layers: int, reversible: bool) -> dict:
  config = make_config(args, n_layers, reversible)
  step, init = make_step(config)
  key = jax.random.key(args.seed)
  ids = jax.ShapeDtypeStruct((args.batch, args.length), jnp.int32)
  params = jax.eval_shape(init, key, ids)
  start = time.perf_counter()
  compiled = step.lower(params, ids, key).compile()
  stats = compiled.memory_analysis()
  n_params = sum(x.size for x in jax.tree.leaves(params))
  return dict(
    layers=n_layers,
    reversible=reversible,
    compile_s=time.perf_counter() - start,
    params=int(n_params),
    temp_bytes=int(stats.temp_size_in_bytes),
    argument_bytes=int(stats.argument_size_in_bytes),
    output_bytes=int(stats.output_size_in_bytes),
    alias_bytes=int(stats.alias_size_in_bytes),
  )


def run_child(args) -> None:
  """One step of one configuration in this (fresh) process; prints {'peak_rss_bytes', 'step_s'} as JSON."""
  config = make_config(args, args.child_layers, bool(args.child_reversible))
  step, init = make_step(config)
  key = jax.random.key(args.seed)
  ids = jax.random.randint(jax.random.fold_in(key, 1), (args.batch, args.length), 3, config.vocab_size)
  params = jax.jit(init)(key, ids)
  compiled = step.lower(params, ids, key).compile()
  start = time.perf_counter()
  jax.block_until_ready(compiled(params, ids, key))
  step_s = time.perf_counter() - start
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kilobytes
  print(json.dumps(dict(peak_rss_bytes=rss, step_s=step_s)))


def measure_rss(args, n_layers: int, reversible: bool) -> dict:
  argv = [a for a in sys.argv[1:] if a != "--rss"]
  command = [sys.executable, "-m", "benchmarks.reformer.memory_vs_depth", *argv]
  command += ["--child_layers", str(n_layers), "--child_reversible", str(int(reversible))]
  done = subprocess.run(command, capture_output=True, text=True, check=False)
  if done.returncode:
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return dict(rss_error=f"exit {done.returncode}: {tail}")
  return json.loads(done.stdout.strip().splitlines()[-1])


def _mib(n: float) -> str:
  return f"{n / 2**20:,.0f}"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--length", type=int, default=16384)
  parser.add_argument("--layers", default="2,6,12")
  parser.add_argument("--batch", type=int, default=1)
  parser.add_argument("--d_model", type=int, default=256)
  parser.add_argument("--d_ff", type=int, default=512)
  parser.add_argument("--heads", type=int, default=4)
  parser.add_argument("--d_head", type=int, default=64)
  parser.add_argument("--attention", default="lsh", choices=model_lib.ATTENTION_KINDS)
  parser.add_argument("--hashes", type=int, default=2)
  parser.add_argument("--chunk", type=int, default=128)
  parser.add_argument("--ff_chunk", type=int, default=0, help="feed-forward chunk size (0 = unchunked)")
  parser.add_argument("--rss", action="store_true", help="also run one step per config in a fresh process")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--name", default=NAME, help="results/<name>.json + .png")
  parser.add_argument("--child_layers", type=int, default=0, help=argparse.SUPPRESS)
  parser.add_argument("--child_reversible", type=int, default=0, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child_layers:
    run_child(args)
    return
  try:
    layers = [int(n) for n in args.layers.split(",") if n]
  except ValueError:
    parser.error(f"--layers: need comma-separated ints, got {args.layers!r}")
  if not layers or min(layers) < 1:
    parser.error(f"--layers: need ints >= 1, got {args.layers!r}")
  try:
    make_config(args, layers[0], True)
  except ValueError as e:
    parser.error(str(e))

  print(
    f"ReformerLM train step (loss + grads), L={args.length}, batch {args.batch}, d_model {args.d_model}, d_ff "
    f"{args.d_ff}, {args.heads}x{args.d_head} heads, {args.attention} attention ({args.hashes} hashes, chunk "
    f"{args.chunk}), fp32; MiB"
  )
  print(f"{'layers':>6} {'stack':>10} | {'temp':>8} {'args+out':>9} {'peak RSS':>9} | {'compile s':>9}")
  rows = []
  for n_layers in layers:
    for reversible in (True, False):
      row = measure(args, n_layers, reversible)
      if args.rss:
        row.update(measure_rss(args, n_layers, reversible))
      rows.append(row)
      rss = _mib(row["peak_rss_bytes"]) if "peak_rss_bytes" in row else row.get("rss_error", "-")
      print(
        f"{n_layers:>6} {'reversible' if reversible else 'plain':>10} | {_mib(row['temp_bytes']):>8} "
        f"{_mib(row['argument_bytes'] + row['output_bytes']):>9} {rss:>9} | {row['compile_s']:>9.1f}",
        flush=True,
      )

  temp = {(r["layers"], r["reversible"]): r["temp_bytes"] for r in rows}
  lo, hi = min(layers), max(layers)
  ratios = {
    f"reversible_{hi}_over_reversible_{lo}": temp[hi, True] / temp[lo, True],
    f"plain_{hi}_over_reversible_{hi}": temp[hi, False] / temp[hi, True],
    f"plain_{hi}_over_plain_{lo}": temp[hi, False] / temp[lo, False],
  }
  print(
    f"temp memory: reversible {hi} / {lo} layers = {ratios[f'reversible_{hi}_over_reversible_{lo}']:.2f}x (goal <= "
    f"1.3x) | plain / reversible at {hi} layers = {ratios[f'plain_{hi}_over_reversible_{hi}']:.2f}x (goal >= 3x) | "
    f"plain {hi} / {lo} = {ratios[f'plain_{hi}_over_plain_{lo}']:.2f}x"
  )

  def plot(ax):
    for reversible, style in ((True, "o-"), (False, "s--")):
      points = [(r["layers"], r["temp_bytes"] / 2**20) for r in rows if r["reversible"] == reversible]
      ax.plot(*zip(*points), style, label="reversible" if reversible else "plain")
    ax.set_xlabel("layers")
    ax.set_ylabel("XLA temp memory of a train step (MiB)")
    ax.set_title(f"ReformerLM, L={args.length}, compiled memory analysis")
    ax.legend()

  settings = {k: v for k, v in vars(args).items() if k not in ("name", "child_layers", "child_reversible")}
  path = common.write_results(args.name, dict(settings=settings, rows=rows, ratios=ratios), plot)
  print(f"wrote {path}, {path.with_suffix('.png')}")


if __name__ == "__main__":
  main()
