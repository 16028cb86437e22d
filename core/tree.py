"""Parameter paths, regex selection and shape checks over pytrees: one naming for every tool that addresses params.

A leaf is named by its key path joined with '/', e.g. 'encoder/layer_0/attention/query/kernel' (dict keys, dataclass
attributes and sequence indices alike). The optimizer's decay mask, sharding rules, checkpoint and import checks,
layer-wise LR decay and LoRA's target selection all read these names, so a pattern written for one works for all.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from flax import traverse_util


class ShapeError(ValueError):
  """A tree whose paths or shapes differ from the ones a model expects."""


def path_str(key_path: Sequence[Any]) -> str:
  """'encoder/layer_0/attention/query/kernel' for a jax key path (DictKey, GetAttrKey, SequenceKey, ...)."""
  return jax.tree_util.keystr(tuple(key_path), simple=True, separator="/")


def named_leaves(tree: Any, *, is_leaf: Callable[[Any], bool] | None = None) -> list[tuple[str, Any]]:
  """[(path_str, leaf), ...] in the tree's flattening order."""
  return [(path_str(p), leaf) for p, leaf in jax.tree_util.tree_leaves_with_path(tree, is_leaf=is_leaf)]


def map_with_path_str(fn: Callable[..., Any], tree: Any, *rest: Any) -> Any:
  """`jax.tree.map` whose `fn(path_str, leaf, *rest_leaves)` also receives the leaf's name."""
  return jax.tree_util.tree_map_with_path(lambda p, leaf, *others: fn(path_str(p), leaf, *others), tree, *rest)


def select(tree: Any, patterns: str | Sequence[str]) -> Any:
  """Tree of bools shaped like `tree`: True where any regex in `patterns` fully matches the leaf's path."""
  compiled = [re.compile(p) for p in ([patterns] if isinstance(patterns, str) else patterns)]
  return map_with_path_str(lambda name, _: any(p.fullmatch(name) for p in compiled), tree)


def _has_shape(x: Any) -> bool:
  # Orbax metadata leaves (ArrayMetadata) carry a shape but may be registered containers; stop there.
  return hasattr(x, "shape") and not isinstance(x, dict)


def _shapes(tree: Any) -> dict[str, tuple[int, ...]]:
  return {name: tuple(getattr(leaf, "shape", np.shape(leaf))) for name, leaf in named_leaves(tree, is_leaf=_has_shape)}


def check_shapes(expected: Any, actual: Any, what: str) -> None:
  """Raises a one-line ShapeError naming the first path of `expected` (the model's tree) missing from `actual`, the
  first path of `actual` the model does not have, or the first leaf whose shape differs; `what` names `actual`.

  Leaves may be arrays, `jax.ShapeDtypeStruct`s or orbax metadata: anything with a `.shape`.
  """
  want, have = _shapes(expected), _shapes(actual)
  for name, shape in want.items():
    if name not in have:
      raise ShapeError(f"{what}: has no entry {name} (the model expects shape {shape})")
  for name in have:
    if name not in want:
      raise ShapeError(f"{what}: unexpected entry {name} (the model has no such parameter)")
  for name, shape in want.items():
    if have[name] != shape:
      raise ShapeError(f"{what}: {name} has shape {have[name]}, the model expects {shape}")


def partition(tree: Mapping[str, Any], patterns: str | Sequence[str]) -> tuple[dict[str, Any], dict[str, Any]]:
  """Splits a nested dict of params into (selected, rest): two nested dicts holding the leaves whose path does / does
  not fully match a regex in `patterns`, with the original paths. `combine(selected, rest)` rebuilds `tree`.

  This is how a frozen base and its trainable part (adapters, a head) are kept apart: the optimizer only ever sees
  `selected`, so the rest has no gradient and no optimizer state (`core.train.Task.trainable`).
  """
  compiled = [re.compile(p) for p in ([patterns] if isinstance(patterns, str) else patterns)]
  flat = traverse_util.flatten_dict(dict(tree), sep="/")
  chosen = {name: leaf for name, leaf in flat.items() if any(p.fullmatch(name) for p in compiled)}
  rest = {name: leaf for name, leaf in flat.items() if name not in chosen}
  return traverse_util.unflatten_dict(chosen, sep="/"), traverse_util.unflatten_dict(rest, sep="/")


def combine(*trees: Mapping[str, Any]) -> dict[str, Any]:
  """Merges nested dicts with disjoint leaf paths into one (the inverse of `partition`); a path set twice is an
  error."""
  flat: dict[str, Any] = {}
  for tree in trees:
    for name, leaf in traverse_util.flatten_dict(dict(tree), sep="/").items():
      if name in flat:
        raise ValueError(f"combine: {name} is in more than one tree")
      flat[name] = leaf
  return traverse_util.unflatten_dict(flat, sep="/")
