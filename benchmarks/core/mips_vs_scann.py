"""Exact jitted MIPS vs ScaNN on a clustered L2-normalised database (REALM §3.3 retrieval).

  python -m benchmarks.core.mips_vs_scann                         # 1M x 128, 2,000 queries, k=10
  python -m benchmarks.core.mips_vs_scann --n 50000 --queries 500  # quick

Prints `ScaNN/exact throughput ratio Xx, recall@10 Y` and writes results/core_mips_vs_scann.json + .png
(name gets a `_n<N>` suffix when --n differs from the default, so quick runs don't overwrite the full one).
"""

import argparse
import json
import statistics
import tempfile
import time

import jax
import numpy as np

from benchmarks.core import common
from core import mips
from core import scann_index

DEFAULT_N = 1_000_000


def _matmul_peak_flops() -> float:
  path = common.RESULTS_DIR / "core_matmul_peak.json"
  if path.is_file():
    return float(json.loads(path.read_text())["peak_flops"])
  return common.measure_matmul_peak((1024, 2048), repeats=3)["peak_flops"]


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--n", type=int, default=DEFAULT_N, help="database rows")
  parser.add_argument("--queries", type=int, default=2000)
  parser.add_argument("--d", type=int, default=128)
  parser.add_argument("--k", type=int, default=10)
  parser.add_argument("--clusters", type=int, default=1000)
  parser.add_argument("--noise", type=float, default=1.0, help="perturbation norm relative to unit centres")
  parser.add_argument("--query_chunk", type=int, default=None, help="exact: queries per block (None: auto)")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--num_leaves", type=int, default=None)
  parser.add_argument("--num_leaves_to_search", type=int, default=None)
  parser.add_argument("--reorder", type=int, default=None)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)

  t0 = time.perf_counter()
  x_MxD = mips.clustered_vectors(args.seed, args.n + args.queries, args.d, args.clusters, args.noise)
  database_NxD, query_QxD = x_MxD[: args.n], x_MxD[args.n :]
  print(
    f"data {args.n}x{args.d} + {args.queries} queries, {args.clusters} clusters, noise {args.noise}: "
    f"{time.perf_counter() - t0:.1f} s"
  )

  # Exact: jitted matmul + lax.top_k, query-chunked.
  database_dev = jax.device_put(database_NxD)
  query_dev = jax.device_put(query_QxD)
  exact = lambda: mips.exact_topk(query_dev, database_dev, args.k, query_chunk=args.query_chunk)
  t0 = time.perf_counter()
  exact_scores, exact_idx = jax.block_until_ready(exact())
  exact_first_s = time.perf_counter() - t0
  exact_times = common.time_fn(exact, warmup=0, repeats=args.repeats)
  exact_s = statistics.median(exact_times)
  exact_qps = args.queries / exact_s
  exact_flops = 2.0 * args.queries * args.n * args.d / exact_s
  peak = _matmul_peak_flops()
  exact_idx = np.asarray(exact_idx)
  print(
    f"exact: {exact_qps:,.0f} qps (median {exact_s:.2f} s, first call incl. compile {exact_first_s:.2f} s), "
    f"{exact_flops / 1e9:.1f} GFLOP/s = {exact_flops / peak:.1%} of fp32 matmul peak"
  )

  # ScaNN: build, then batched search (single thread) and search_batched_parallel.
  t0 = time.perf_counter()
  index = scann_index.ScannIndex.build(database_NxD, args.k, args.num_leaves, args.num_leaves_to_search, args.reorder)
  build_s = time.perf_counter() - t0
  print(f"scann build {build_s:.1f} s, {index.meta}")
  scann = {}
  for mode, parallel in (("batched", False), ("batched_parallel", True)):
    run = lambda: index.search(query_QxD, args.k, parallel=parallel)
    _, idx = run()
    times = common.time_fn(run, warmup=0, repeats=args.repeats)
    median_s = statistics.median(times)
    scann[mode] = dict(qps=args.queries / median_s, median_s=median_s, recall_at_k=mips.recall_at_k(idx, exact_idx))
    print(f"scann {mode}: {scann[mode]['qps']:,.0f} qps, recall@{args.k} {scann[mode]['recall_at_k']:.4f}")

  with tempfile.TemporaryDirectory() as tmp:
    t0 = time.perf_counter()
    index.save(tmp)
    save_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    scann_index.ScannIndex.load(tmp)
    load_s = time.perf_counter() - t0

  best_mode = max(scann, key=lambda m: scann[m]["qps"])
  ratio = scann[best_mode]["qps"] / exact_qps
  print(
    f"ScaNN/exact throughput ratio {ratio:.1f}x, recall@{args.k} {scann[best_mode]['recall_at_k']:.4f} "
    f"(ScaNN {best_mode} {scann[best_mode]['qps']:,.0f} qps vs exact {exact_qps:,.0f} qps, "
    f"N={args.n:,}, build {build_s:.1f} s)"
  )

  result = dict(
    config=vars(args),
    exact=dict(
      qps=exact_qps,
      median_s=exact_s,
      times_s=exact_times,
      first_call_s=exact_first_s,
      flops=exact_flops,
      fraction_of_matmul_peak=exact_flops / peak,
      matmul_peak_flops=peak,
    ),
    scann=dict(build_s=build_s, save_s=save_s, load_s=load_s, params=index.meta, **scann),
    summary=dict(ratio=ratio, scann_mode=best_mode, recall_at_k=scann[best_mode]["recall_at_k"]),
  )

  def plot(ax):
    names = ["exact (jit)", "ScaNN batched", "ScaNN parallel"]
    qps = [exact_qps, scann["batched"]["qps"], scann["batched_parallel"]["qps"]]
    recalls = [1.0, scann["batched"]["recall_at_k"], scann["batched_parallel"]["recall_at_k"]]
    bars = ax.bar(names, qps, color=["tab:gray", "tab:blue", "tab:orange"])
    for bar, r in zip(bars, recalls):
      ax.annotate(
        f"recall@{args.k} {r:.3f}",
        (bar.get_x() + bar.get_width() / 2, bar.get_height()),
        ha="center",
        va="bottom",
        fontsize=8,
      )
    ax.set_yscale("log")
    ax.set_ylim(bottom=min(qps) / 4, top=max(qps) * 2)
    ax.set_ylabel("queries / s")
    ax.set_title(f"MIPS top-{args.k}, N={args.n:,} x {args.d}, {jax.devices()[0].device_kind}")

  name = "core_mips_vs_scann" if args.n == DEFAULT_N else f"core_mips_vs_scann_n{args.n}"
  print(f"wrote {common.write_results(name, result, plot)}")
  return result


if __name__ == "__main__":
  main()
