"""Many adapters over one frozen base: a registry keyed by name, switched without recompiling, served mixed.

Hu et al. 2021 (arXiv 2106.09685) §4.2: "it allows for quick task-switching when deployed" — the base is shared and
each task is a small (A, B) pair. US 2022/0383126: a plurality of low-rank adaptations over one pretrained model,
selected per task. Here the adapters are arguments of one jitted forward, not constants of it, so switching is a
dict lookup: every adapter with the same targets and ranks reuses the same compiled program (`compiled_programs()`
counts them). `mixed` serves a batch whose rows name different adapters in one call (`lora_jax.apply_mixed`).

  registry = Registry(model, params, spec)
  registry.add("sst2", lora_sst2); registry.add("cola", lora_cola)   # or registry.load("cola", adapter_dir)
  logits = registry("sst2", ids)                                     # factored forward with that adapter
  logits_B = registry.mixed(["sst2", "cola", None, ...], ids)        # row b with adapter names[b] (None = base)
  params_sst2 = registry.merged("sst2")                              # W₀ + ΔW: zero added latency (§4.2)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from lora_jax import checkpoint as checkpoint_lib
from lora_jax import lora as lora_lib
from lora_jax.apply import apply, apply_mixed
from lora_jax.spec import LoraSpec


class Registry:
  """Named adapters sharing one base model, one spec and one compiled forward."""

  def __init__(self, model: Any, params: Any, spec: LoraSpec, *, method: Any = None):
    self.model, self.params, self.spec = model, params, spec
    self._adapters: dict[str, Any] = {}
    self._stacked: tuple[tuple[str, ...], Any] | None = None
    self._forward = jax.jit(lambda p, lp, *args: apply(model, p, lp, spec, *args, method=method))
    self._mixed = jax.jit(lambda p, st, ids, *args: apply_mixed(model, p, st, ids, spec, *args, method=method))

  @property
  def names(self) -> list[str]:
    return list(self._adapters)

  def add(self, name: str, lora_params: Any) -> None:
    """Registers an adapter; its targets and ranks must be those of the adapters already here (one program)."""
    if name in self._adapters:
      raise ValueError(f"Registry.add: an adapter named {name!r} is already registered (remove it first)")
    if self._adapters:
      lora_lib.stack([next(iter(self._adapters.values())), lora_params])  # one-line error on a different layout
    self._adapters[name] = lora_params
    self._stacked = None

  def load(self, name: str, directory: str) -> dict[str, Any]:
    """Adds the adapter saved by `lora_jax.checkpoint.save` in `directory`; returns its metadata."""
    lora_params, spec, _, meta = checkpoint_lib.load(directory)
    if spec != self.spec:
      raise ValueError(f"Registry.load: {directory} was trained with {spec}, this registry serves {self.spec}")
    self.add(name, lora_params)
    return meta

  def remove(self, name: str) -> None:
    self._get(name)
    del self._adapters[name]
    self._stacked = None

  def _get(self, name: str) -> Any:
    if name not in self._adapters:
      raise KeyError(f"Registry: no adapter named {name!r} (have {self.names})")
    return self._adapters[name]

  def __call__(self, name: str, *args: Any) -> Any:
    """The model's forward with adapter `name` (factored: W₀x + s·(xA)B)."""
    return self._forward(self.params, self._get(name), *args)

  def mixed(self, names_B: Sequence[str | None], *args: Any) -> Any:
    """One forward in which row b uses adapter names_B[b] (None = the base alone)."""
    if self._stacked is None:
      order = tuple(self._adapters)
      self._stacked = (order, lora_lib.stack([self._adapters[n] for n in order]))
    order, stacked = self._stacked
    index = {n: i for i, n in enumerate(order)}
    for n in names_B:
      if n is not None:
        self._get(n)
    ids_B = jnp.asarray([-1 if n is None else index[n] for n in names_B], jnp.int32)
    return self._mixed(self.params, stacked, ids_B, *args)

  def merged(self, name: str) -> Any:
    """Base params with adapter `name` merged in (W₀ + ΔW, float32 arithmetic, cast once)."""
    return lora_lib.merge(self.params, self._get(name), self.spec)

  def compiled_programs(self) -> int:
    """How many programs the single-adapter forward has compiled (1 after any number of same-shape switches)."""
    return self._forward._cache_size()  # pylint: disable=protected-access
