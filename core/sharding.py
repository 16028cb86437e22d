"""Meshes, shardings and multi-host setup: `jax.jit` + `NamedSharding` on a `Mesh` (today's replacement for pmap).

Data parallelism shards the batch's leading axis over the mesh axis `data`; parameters are replicated unless a
rule maps them onto the `model` axis. `jax.pmap` is in maintenance mode (jax 0.8 re-implemented it on
`jit(shard_map)`), so nothing here uses it; per-device code uses `jax.shard_map` (see `core.mips`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from core import tree as tree_lib

DATA = "data"
MODEL = "model"


def initialize_multihost() -> None:
  """Joins a multi-process job (Cloud TPU, Slurm, k8s discover their peers). Call before any other jax call."""
  jax.distributed.initialize()


def make_mesh(data: int = -1, model: int = 1, devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A (data, model) mesh over all devices; -1 takes what is left. Axes are `Auto` so XLA propagates shardings."""
  devices = list(devices if devices is not None else jax.devices())
  n = len(devices)
  if model < 1 or n % model:
    raise ValueError(f"mesh.model: {model} does not divide the {n} devices")
  if data == -1:
    data = n // model
  if data * model != n:
    raise ValueError(f"mesh: data={data} x model={model} != {n} devices")
  return jax.make_mesh((data, model), (DATA, MODEL), axis_types=(AxisType.Auto, AxisType.Auto), devices=devices)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over `data`, the rest replicated."""
  return NamedSharding(mesh, P(DATA))


def param_shardings(params: Any, mesh: Mesh, rules: Sequence[tuple[str, P]] = ()) -> Any:
  """NamedShardings for a param tree: the first regex in `rules` that matches a leaf's path wins; else replicated.

  Example rule for Megatron-style FFN sharding: `(r".*/intermediate/kernel", P(None, "model"))`.
  """
  compiled = [(re.compile(pattern), spec) for pattern, spec in rules]

  def for_leaf(name: str, leaf: Any) -> NamedSharding:
    for pattern, spec in compiled:
      if pattern.fullmatch(name):
        if len(spec) > np.ndim(leaf):
          raise ValueError(f"sharding rule {pattern.pattern!r}: spec {spec} has more axes than {name} {np.shape(leaf)}")
        return NamedSharding(mesh, spec)
    return NamedSharding(mesh, P())

  return tree_lib.map_with_path_str(for_leaf, params)


def shard_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Assembles a global batch from this process's local rows (`jax.make_array_from_process_local_data`).

  With one process the local rows are the whole batch; on a pod every process passes its own slice and the
  global leading dimension is `local * process_count`.
  """
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()}


def check_batch_divisible(global_batch: int, mesh: Mesh, field: str = "train.batch_size") -> None:
  """One-line error when the global batch does not split evenly over the data axis or the processes."""
  n_data = mesh.shape[DATA]
  if global_batch % n_data:
    raise ValueError(f"{field}: {global_batch} is not divisible by the {n_data} devices of the mesh's data axis")
  if global_batch % jax.process_count():
    raise ValueError(f"{field}: {global_batch} is not divisible by the {jax.process_count()} processes")
