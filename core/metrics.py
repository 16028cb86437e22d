"""Metric writers: JSON lines (`metrics.jsonl`) for scripts and TensorBoard event files for people.

Only process 0 writes; other processes get a writer that does nothing, so every process can call it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np


def _to_float(value: Any) -> float:
  return float(np.asarray(value))


class MetricWriter:
  """Appends `{"step": s, "split": "train", name: value, ...}` lines and TensorBoard scalars under `workdir`."""

  def __init__(self, workdir: str, *, tensorboard: bool = True, enabled: bool | None = None):
    self.enabled = jax.process_index() == 0 if enabled is None else enabled
    self._jsonl = None
    self._tb = None
    if not self.enabled:
      return
    os.makedirs(workdir, exist_ok=True)
    self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a", encoding="utf-8")
    if tensorboard:
      from tensorboardX import SummaryWriter

      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

  def write(self, step: int, metrics: Mapping[str, Any], split: str = "train") -> None:
    if not self.enabled:
      return
    values = {k: _to_float(v) for k, v in metrics.items()}
    record = {"step": int(step), "split": split, **{k: (v if math.isfinite(v) else str(v)) for k, v in values.items()}}
    self._jsonl.write(json.dumps(record) + "\n")
    self._jsonl.flush()
    if self._tb is not None:
      for name, value in values.items():
        self._tb.add_scalar(f"{split}/{name}", value, int(step))

  def close(self) -> None:
    if self._jsonl is not None:
      self._jsonl.close()
      self._jsonl = None
    if self._tb is not None:
      self._tb.close()
      self._tb = None


def read_jsonl(workdir: str, split: str | None = None) -> list[dict[str, Any]]:
  """All records of `workdir/metrics.jsonl` (optionally one split), in file order."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path, encoding="utf-8") as f:
    records = [json.loads(line) for line in f if line.strip()]
  return [r for r in records if split is None or r.get("split") == split]


def mean_metrics(history: list[Mapping[str, Any]]) -> dict[str, float]:
  """Averages a list of per-step metric dicts (host floats) key by key, each over the steps that report it (a host
  hook's metric may come only on some steps, e.g. the time of an index refresh)."""
  keys = dict.fromkeys(k for m in history for k in m)
  return {k: float(np.mean([_to_float(m[k]) for m in history if k in m])) for k in keys}
