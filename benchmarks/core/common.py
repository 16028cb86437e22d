"""Shared benchmark helpers: timing, fp32 matmul peak, results/<name>.json + .png writer."""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

RESULTS_DIR = Path(__file__).resolve().parents[2] / "results"


def time_fn(fn: Callable[[], Any], *, warmup: int = 1, repeats: int = 5) -> list[float]:
  """Wall-clock seconds of `fn()` per repeat after `warmup` calls; outputs are block_until_ready'd."""
  for _ in range(warmup):
    jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return times


def xla_cost(compiled) -> dict:
  """XLA's cost analysis of a compiled program ({'flops', 'bytes accessed', ...}; a list of one dict on some jax)."""
  cost = compiled.cost_analysis()
  return cost[0] if isinstance(cost, list) else cost


def measure_matmul_peak(
  sizes=(1024, 2048, 3072, 4096), *, dtype=jnp.float32, warmup: int = 2, repeats: int = 5, seed: int = 0
) -> dict:
  """Square matmul FLOP/s (2·n³ / median time) with a jitted jnp.dot per size.

  Returns {'peak_flops': max over sizes, 'peak_size': n, 'per_size': [{n, median_s, min_s, flops}]}.
  """
  dot = jax.jit(jnp.dot)
  per_size = []
  key = jax.random.key(seed)
  for n in sizes:
    ka, kb = jax.random.split(jax.random.fold_in(key, n))
    a_NxN = jax.random.normal(ka, (n, n), dtype)
    b_NxN = jax.random.normal(kb, (n, n), dtype)
    times = time_fn(lambda: dot(a_NxN, b_NxN), warmup=warmup, repeats=repeats)
    median_s = statistics.median(times)
    per_size.append(dict(n=int(n), median_s=median_s, min_s=min(times), flops=2.0 * n**3 / median_s))
  best = max(per_size, key=lambda r: r["flops"])
  return dict(peak_flops=best["flops"], peak_size=best["n"], dtype=jnp.dtype(dtype).name, per_size=per_size)


def metadata() -> dict:
  """Run environment: jax version, backend, device kind/count, CPU count, host, UTC date."""
  device = jax.devices()[0]
  return dict(
    jax_version=jax.__version__,
    backend=jax.default_backend(),
    device_kind=device.device_kind,
    device_count=jax.device_count(),
    cpu_count=os.cpu_count(),
    cpu_model=_cpu_model(),
    platform=platform.platform(),
    python=platform.python_version(),
    numpy_version=np.__version__,
    date=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
  )


def write_results(
  name: str, results: dict, plot: Callable[[Any], None] | None = None, results_dir: str | os.PathLike | None = None
) -> Path:
  """Writes results_dir/<name>.json ({'meta': metadata(), **results}) and <name>.png if `plot(ax)` is given."""
  out_dir = Path(results_dir) if results_dir is not None else RESULTS_DIR
  out_dir.mkdir(parents=True, exist_ok=True)
  json_path = out_dir / f"{name}.json"
  json_path.write_text(json.dumps(dict(meta=metadata(), **results), indent=1, default=_to_builtin) + "\n")
  if plot is not None:
    import matplotlib  # pylint: disable=g-import-not-at-top

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

    fig, ax = plt.subplots(figsize=(6, 4))
    plot(ax)
    fig.tight_layout()
    fig.savefig(out_dir / f"{name}.png", dpi=100)
    plt.close(fig)
  return json_path


def _cpu_model() -> str:
  try:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor()


def _to_builtin(obj):
  if isinstance(obj, (np.generic, jax.Array)):
    return np.asarray(obj).tolist()
  if isinstance(obj, Path):
    return str(obj)
  raise TypeError(f"not JSON serialisable: {type(obj)}")
