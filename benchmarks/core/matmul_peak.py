"""fp32 matmul peak FLOP/s on this machine (jitted jnp.dot, median of repeats).

  python -m benchmarks.core.matmul_peak [--sizes 1024,2048,3072,4096] [--repeats 5]

Writes results/core_matmul_peak.json + .png; other benchmarks import
`benchmarks.core.common.measure_matmul_peak` to express throughput as a fraction of peak.
"""

import argparse

from benchmarks.core import common


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sizes", default="1024,2048,3072,4096", help="comma-separated square sizes")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--warmup", type=int, default=2)
  args = parser.parse_args(argv)
  sizes = [int(s) for s in args.sizes.split(",") if s]

  result = common.measure_matmul_peak(sizes, warmup=args.warmup, repeats=args.repeats)
  for row in result["per_size"]:
    print(f"n={row['n']:5d}  median {row['median_s'] * 1e3:9.2f} ms  {row['flops'] / 1e9:8.1f} GFLOP/s")
  print(f"fp32 matmul peak {result['peak_flops'] / 1e9:.1f} GFLOP/s at n={result['peak_size']}")

  def plot(ax):
    ns = [r["n"] for r in result["per_size"]]
    ax.plot(ns, [r["flops"] / 1e9 for r in result["per_size"]], "o-")
    ax.set_xlabel("square size n")
    ax.set_ylabel("GFLOP/s (fp32, median)")
    ax.set_title("jitted jnp.dot fp32 throughput")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)

  path = common.write_results("core_matmul_peak", result, plot)
  print(f"wrote {path}")
  return result


if __name__ == "__main__":
  main()
