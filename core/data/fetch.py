"""Fetches bundled data sources into the cache: `python -m core.data.fetch [names...]` (default: all)."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

from core.data import registry


def _size_mb(path) -> float:
  return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def main(argv: Sequence[str]) -> int:
  names = list(argv) or list(registry.SOURCES)
  if any(n in ("-h", "--help") for n in names):
    print(__doc__)
    print("sources: " + ", ".join(sorted(registry.SOURCES)))
    return 0
  print(f"cache: {registry.cache_dir()}")
  failed = 0
  for name in names:
    start = time.perf_counter()
    try:
      was_there = registry.is_fetched(name)
      path = registry.fetch(name)
    except (RuntimeError, ValueError, OSError) as e:
      failed += 1
      print(f"  {name:18s} FAILED: {e}")
      continue
    state = "cached" if was_there else "fetched"
    print(f"  {name:18s} {state:7s} {_size_mb(path):7.1f} MB  {time.perf_counter() - start:5.1f} s  {path}")
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
