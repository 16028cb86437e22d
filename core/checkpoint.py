"""Orbax checkpoints of a whole training run: params, optimizer state, step, RNG and the data iterator's position.

One `CheckpointManager` under `<workdir>/checkpoints` keeps the last K steps. Each step directory holds two items:
`state` (the TrainState pytree, saved with `StandardSave`; the RNG as raw key data) and `data` (the grain
iterator's state), so a run killed at any point continues exactly where its last checkpoint stopped; a third item,
`host`, holds what the loop's host hooks keep between steps (`core.train.HostHook.state`, e.g. REALM's document
index), saved in the same atomic step directory. Orbax writes
into a temporary directory and renames it when complete, so a half-written checkpoint is never picked up.
"""

from __future__ import annotations

import os
from typing import Any

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp

from core import tree as tree_lib


class CheckpointError(RuntimeError):
  """A checkpoint that cannot be used: unreadable, or saved from a different model."""


class Checkpointer:
  """Saves and restores (TrainState, data iterator) pairs under `<workdir>/checkpoints`."""

  def __init__(self, workdir: str, *, max_to_keep: int = 3, async_save: bool = True):
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True, enable_async_checkpointing=async_save)
    handlers = {
      "state": ocp.StandardCheckpointHandler(),
      "data": grain.checkpoint.CheckpointHandler(),
      "host": ocp.StandardCheckpointHandler(),
    }
    self._manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=handlers)

  @property
  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(
    self, step: int, state: Any, data_iterator: Any | None = None, *, host: Any | None = None, force: bool = False
  ) -> None:
    """Saves `state`, the iterator's position and (when given) `host`, a pytree of host arrays, as one step."""
    items = {"state": ocp.args.StandardSave(state)}
    if data_iterator is not None:
      items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
    if host is not None:
      items["host"] = ocp.args.StandardSave(host)
    self._manager.save(step, args=ocp.args.Composite(**items), force=force)

  def restore_host(self, template: Any, step: int | None = None) -> Any:
    """The `host` item of a step, restored into the shapes and dtypes of `template` (numpy arrays come back as
    numpy). One-line CheckpointError when the step has none or its shapes differ."""
    step = self.latest_step if step is None else step
    try:
      saved = self._manager.item_metadata(step)["host"]
    except Exception as e:
      raise CheckpointError(f"checkpoint {self.directory}/{step} is unreadable: {_first_line(e)}") from None
    if saved is None:
      raise CheckpointError(f"checkpoint {self.directory}/{step} has no host state (saved without the task's hooks?)")
    try:
      tree_lib.check_shapes(template, saved, f"checkpoint {self.directory}/{step} host state")
    except tree_lib.ShapeError as e:
      raise CheckpointError(f"{e} (saved from a different corpus or config?)") from None
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(host=ocp.args.StandardRestore(template)))
    except Exception as e:
      raise CheckpointError(f"checkpoint {self.directory}/{step} is unreadable: {_first_line(e)}") from None
    return restored["host"]

  def restore(self, abstract_state: Any, data_iterator: Any | None = None, step: int | None = None) -> Any:
    """Restores into the shapes/dtypes/shardings of `abstract_state` (from `jax.eval_shape`); sets the iterator.

    Raises a one-line CheckpointError when the saved tree does not match the model or the files are unreadable.
    """
    step = self.latest_step if step is None else step
    if step is None:
      raise CheckpointError(f"no checkpoint in {self.directory}")
    self._check_matches(step, abstract_state)
    items = {"state": ocp.args.StandardRestore(abstract_state)}
    if data_iterator is not None:
      items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(**items))
    except Exception as e:  # orbax/tensorstore raise many types for damaged files
      raise CheckpointError(f"checkpoint {self.directory}/{step} is unreadable: {_first_line(e)}") from None
    return restored["state"]

  def state_metadata(self, step: int) -> Any:
    """The saved state's tree of array metadata (shapes and dtypes; no array is read)."""
    try:
      saved = self._manager.item_metadata(step)["state"]
    except Exception as e:
      raise CheckpointError(f"checkpoint {self.directory}/{step} is unreadable: {_first_line(e)}") from None
    if saved is None:
      raise CheckpointError(f"checkpoint {self.directory}/{step} is unreadable: no 'state' item")
    return saved

  def _check_matches(self, step: int, abstract_state: Any) -> None:
    """Compares saved shapes with the model's before reading any array (a different config fails here)."""
    saved = self.state_metadata(step)
    try:
      tree_lib.check_shapes(abstract_state, saved, f"checkpoint {self.directory}/{step}")
    except tree_lib.ShapeError as e:
      raise CheckpointError(f"{e} (saved from a different model or config?)") from None

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


def _first_line(e: BaseException) -> str:
  text = str(e).strip().splitlines()
  return f"{type(e).__name__}: {text[0] if text else ''}"[:300]


def to_host(tree: Any) -> Any:
  """Numpy copy of a (possibly sharded) pytree; used by tests and exporters."""
  return jax.tree_util.tree_map(lambda x: np.asarray(jax.device_get(x)), tree)


def restore_float32(path: str | os.PathLike, item: Any) -> Any:
  """The entries that `item` names (a tree of arrays or ShapeDtypeStructs: a subtree is enough, e.g.
  {'params': {'encoder': ...}}) read from the orbax PyTree at `path` as float32 numpy arrays, on the host, whatever
  mesh or device they were saved from. Callers check shapes first (`core.tree.check_shapes` on the metadata)."""
  args = ocp.args.PyTreeRestore(
    item=item,
    restore_args=jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), item),
    partial_restore=True,
  )
  with ocp.PyTreeCheckpointer() as checkpointer:
    restored = checkpointer.restore(os.path.abspath(path), args=args)
  return jax.tree.map(lambda x: np.asarray(x, np.float32), restored)
